package node

// HTTPS on the client listener and certificate files reloaded from disk,
// against real nodes on loopback sockets: a test CA issues the
// certificates, clients trust only it, and files are rotated as
// cert-manager does (a Kubernetes Secret's "..data" symlink swapped) and in
// place, with no signal sent.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// tlsTimeout bounds each wait for a rotation to show; the nodes look at
// their files every tlsCheck.
const (
	tlsTimeout = 15 * time.Second
	tlsCheck   = 10 * time.Millisecond
)

// servedSerial makes a TLS handshake with addr, as a client trusting only
// ca, and returns the serial number of the certificate it was shown.
func servedSerial(addr string, ca *testutil.CA) (int64, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// waitSerial polls new handshakes with addr until one shows serial.
func waitSerial(t *testing.T, addr string, ca *testutil.CA, serial int64, logs *testutil.LogBuffer) {
	t.Helper()
	var got int64
	var err error
	testutil.Eventually(t, tlsTimeout, func() bool {
		got, err = servedSerial(addr, ca)
		return err == nil && got == serial
	}, func() string {
		return fmt.Sprintf("a handshake showing serial %d; last saw %d, %v; logs:\n%s", serial, got, err, logs)
	})
}

// startTLSNode starts a node serving HTTPS from vol's tls.crt and tls.key
// in front of origin, and returns it with a client trusting ca.
func startTLSNode(t *testing.T, vol *testutil.SecretDir, ca *testutil.CA, origin string, logs *testutil.LogBuffer, mutate func(*config.Config)) (*Node, *fasthttp.Client) {
	t.Helper()
	cfg := config.Default()
	cfg.Origin = origin
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CacheSize = 16 << 20
	cfg.TLSCert, cfg.TLSKey = vol.Path("tls.crt"), vol.Path("tls.key")
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	n, err := Start(cfg, Options{Logger: logs.Logger(), TLSCheckInterval: tlsCheck})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	client := &fasthttp.Client{TLSConfig: &tls.Config{RootCAs: ca.Pool()}, ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	return n, client
}

// plainGet sends a plain-text HTTP request to addr and reads the answer.
func plainGet(t *testing.T, addr string) *fasthttp.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET /plain?cc=max-age%3D60 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp := &fasthttp.Response{}
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("plain HTTP to the TLS port: %v", err)
	}
	return resp
}

// TestClientTLS: a node with tls_cert and tls_key serves hits over TLS,
// tells the origin the client came over https, answers plain HTTP with a
// 400, and picks up rotated certificate files by itself — a Secret's
// symlink swap and a rewrite in place — while a broken rotation is logged
// and the current certificate keeps serving.
func TestClientTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	vol := testutil.NewSecretDir(t)
	c1, k1 := ca.Issue(t, "node", 1)
	vol.Update(t, map[string][]byte{"tls.crt": c1, "tls.key": k1})
	o := startFieldsOrigin(t)
	var logs testutil.LogBuffer
	n, client := startTLSNode(t, vol, ca, "http://"+o.addr, &logs, func(c *config.Config) { c.ForwardedHeader = true })
	base := "https://" + n.Addr()

	// A miss, then a hit, over TLS; the origin hears https even though
	// the client claimed http.
	for i, want := range []string{"stored", "hit"} {
		r, err := testutil.Do(client, "GET", base+"/page?cc=max-age%3D300", nil, "X-Forwarded-Proto", "http")
		if err != nil {
			t.Fatalf("GET %d over TLS: %v", i, err)
		}
		testutil.ExpectStatus(t, "GET over TLS", r, 200)
		testutil.ExpectCacheStatus(t, "GET over TLS", r, want)
	}
	if got := len(o.requests()); got != 1 {
		t.Fatalf("origin got %d requests, want 1", got)
	}
	seen := o.last(t)
	if seen["X-Forwarded-Proto"] != "https" || !strings.HasSuffix(seen["Forwarded"], ";proto=https") || seen["X-Forwarded-For"] != "127.0.0.1" {
		t.Fatalf("origin got %v; want X-Forwarded-Proto https, Forwarded ...;proto=https, X-Forwarded-For 127.0.0.1", seen)
	}

	// Plain HTTP on the TLS port: a 400 that says why, nothing proxied.
	if r := plainGet(t, n.Addr()); r.StatusCode() != 400 || !strings.Contains(string(r.Body()), "https://") {
		t.Fatalf("plain HTTP answered %d %q; want 400 naming https", r.StatusCode(), r.Body())
	}
	if got := len(o.requests()); got != 1 {
		t.Fatalf("plain HTTP reached the origin (%d requests)", got)
	}

	// HTTP/1.1 is agreed with a client offering h2 too; h2 alone, and TLS
	// below 1.2, are refused in the handshake.
	if c, err := tls.Dial("tcp", n.Addr(), &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"h2", "http/1.1"}}); err != nil {
		t.Fatalf("handshake offering h2 and http/1.1: %v", err)
	} else {
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("agreed on %q, want http/1.1", p)
		}
		c.Close()
	}
	for name, cfg := range map[string]*tls.Config{
		"h2 only": {RootCAs: ca.Pool(), NextProtos: []string{"h2"}},
		"TLS 1.1": {RootCAs: ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
	} {
		if c, err := tls.Dial("tcp", n.Addr(), cfg); err == nil {
			c.Close()
			t.Errorf("%s: handshake succeeded", name)
		}
	}

	// cert-manager renews: the Secret's ..data symlink moves to new files.
	// No signal is sent.
	c2, k2 := ca.Issue(t, "node", 2)
	vol.Update(t, map[string][]byte{"tls.crt": c2, "tls.key": k2})
	waitSerial(t, n.Addr(), ca, 2, &logs)

	// Rewritten in place (through the links): the key, then the
	// certificate.
	c3, k3 := ca.Issue(t, "node", 3)
	for _, f := range []struct {
		name string
		data []byte
	}{{"tls.key", k3}, {"tls.crt", c3}} {
		if err := os.WriteFile(vol.Path(f.name), f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	waitSerial(t, n.Addr(), ca, 3, &logs)
	// The reloader logs just after it swaps the certificate in, so the
	// line may trail the first handshake that shows it.
	testutil.Eventually(t, tlsTimeout, func() bool { return strings.Contains(logs.String(), "serial=3") }, func() string {
		return "the reload to be logged with the new serial; logs:\n" + logs.String()
	})

	// A broken renewal: logged, naming the file, and serial 3 serves on.
	vol.Update(t, map[string][]byte{"tls.crt": []byte("-----BEGIN CERTIFICATE-----\ntruncated"), "tls.key": k3})
	broken := "tls_cert " + vol.Path("tls.crt") + ": no PEM certificate in it"
	testutil.Eventually(t, tlsTimeout, func() bool { return strings.Contains(logs.String(), broken) }, func() string {
		return "the broken certificate to be logged; logs:\n" + logs.String()
	})
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the broken file is not logged as an error:\n%s", logs.String())
	}
	if got, err := servedSerial(n.Addr(), ca); err != nil || got != 3 {
		t.Fatalf("after a broken renewal: serial %d, %v; want 3", got, err)
	}
	r, err := testutil.Do(client, "GET", base+"/page?cc=max-age%3D300", nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.ExpectCacheStatus(t, "GET after a broken renewal", r, "hit")
	// SIGHUP says the same: the files do not load.
	if applied, _ := n.Reload(n.Config()); slices.Contains(applied, "tls_files") {
		t.Fatalf("reload applied %v with a broken certificate", applied)
	}

	// Repaired: picked up again.
	c4, k4 := ca.Issue(t, "node", 4)
	vol.Update(t, map[string][]byte{"tls.crt": c4, "tls.key": k4})
	waitSerial(t, n.Addr(), ca, 4, &logs)
	if applied, _ := n.Reload(n.Config()); !slices.Contains(applied, "tls_files") {
		t.Fatalf("reload applied %v; want tls_files", applied)
	}
}

// TestClientTLSStartErrors: a missing or broken file stops Start with an
// error naming the setting and the file.
func TestClientTLSStartErrors(t *testing.T) {
	ca := testutil.NewCA(t)
	dir := t.TempDir()
	cert, key := ca.Issue(t, "node", 1)
	_, otherKey := ca.Issue(t, "other", 2)
	files := map[string][]byte{"tls.crt": cert, "tls.key": key, "other.key": otherKey, "junk": []byte("junk\n")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing cert", p("missing.crt"), p("tls.key"), "tls_cert " + p("missing.crt") + ": no such file or directory"},
		{"missing key", p("tls.crt"), p("missing.key"), "tls_key " + p("missing.key") + ": no such file or directory"},
		{"cert not PEM", p("junk"), p("tls.key"), "tls_cert " + p("junk") + ": no PEM certificate in it"},
		{"key of another certificate", p("tls.crt"), p("other.key"),
			"tls_cert " + p("tls.crt") + " and tls_key " + p("other.key") + ": tls: private key does not match public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Origin = "http://127.0.0.1:1"
			cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
			cfg.CacheSize = 16 << 20
			cfg.TLSCert, cfg.TLSKey = tc.cert, tc.key
			n, err := Start(cfg, Options{})
			if err == nil {
				n.Close(t.Context())
				t.Fatal("Start succeeded")
			}
			if err.Error() != tc.want {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// TestWebSocketOverTLS: a tunnel from a client on the TLS listener works
// byte for byte, and the origin's handshake says https.
func TestWebSocketOverTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	vol := testutil.NewSecretDir(t)
	c1, k1 := ca.Issue(t, "node", 1)
	vol.Update(t, map[string][]byte{"tls.crt": c1, "tls.key": k1})
	o := testutil.StartWebSocketOrigin(t)
	var logs testutil.LogBuffer
	n, client := startTLSNode(t, vol, ca, "http://"+o.Addr, &logs, nil)
	ws := testutil.DialWebSocketTLS(t, n.Addr(), &tls.Config{RootCAs: ca.Pool()}, "site.test", "/socket", "X-Forwarded-Proto: http")
	chat(t, ws, "/socket")
	hs := o.Handshakes()
	if len(hs) != 1 {
		t.Fatalf("origin saw %d handshakes, want 1", len(hs))
	}
	if got := string(hs[0].Peek("X-Forwarded-Proto")); got != "https" {
		t.Errorf("origin's handshake X-Forwarded-Proto %q, want https", got)
	}
	if total, _ := tunnelMetrics(t, client, n); total != 1 {
		t.Errorf("ringcache_tunnels_total %v, want 1", total)
	}
}

// TestClusterClientTLS: members sharing listen with HTTPS clients (no
// peer_listen) still forward to each other over peer TLS on that port,
// told apart by the protocols their handshakes offer; the owner's origin
// request says https; a client offering the peers' protocol without a
// member's certificate gets nowhere.
func TestClusterClientTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	vol := testutil.NewSecretDir(t)
	c1, k1 := ca.Issue(t, "node", 1)
	vol.Update(t, map[string][]byte{"tls.crt": c1, "tls.key": k1})
	o := startFieldsOrigin(t)
	c := startClusterOpts(t, 2, func(cfg *config.Config) {
		cfg.Origin = "http://" + o.addr
		cfg.TLSCert, cfg.TLSKey = vol.Path("tls.crt"), vol.Path("tls.key")
		cfg.Replicas = 1 // the subject is the peer hop: no replica may answer instead
	}, func(_ string, o *Options) { o.TLSCheckInterval = tlsCheck })
	c.client.TLSConfig = &tls.Config{RootCAs: ca.Pool()}
	n0 := c.nodes[0]
	if n0.PeerAddr() != n0.Addr() {
		t.Fatalf("peer address %s, want listen's %s", n0.PeerAddr(), n0.Addr())
	}
	path := pathOwnedBy(t, n0, c.names[1], "/tls%d?cc=max-age%%3D300")
	var r testutil.Reply
	var err error
	// n0's peer set follows the ring a moment later: wait for a forward.
	testutil.Eventually(t, 10*time.Second, func() bool {
		r, err = testutil.Do(c.client, "GET", "https://"+n0.Addr()+path, nil)
		return err == nil && strings.Contains(r.CacheStatus(), "detail=peer")
	}, func() string { return fmt.Sprintf("n0 to forward over peer TLS: %v %q", err, r.CacheStatus()) })
	if !strings.HasPrefix(r.CacheStatus(), "n1; ") {
		t.Fatalf("Cache-Status %q; want n1's answer", r.CacheStatus())
	}
	if got := o.last(t)["X-Forwarded-Proto"]; got != "https" {
		t.Fatalf("the owner sent the origin X-Forwarded-Proto %q, want https", got)
	}
	if got := plainGet(t, n0.Addr()).StatusCode(); got != 400 {
		t.Fatalf("plain HTTP on the shared TLS port answered %d, want 400", got)
	}
	// A stranger offering the peers' protocol is asked for a member's
	// certificate and refused.
	conn, err := tls.Dial("tcp", n0.Addr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{cluster.PeerALPN}})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.WriteString(conn, "GET "+cluster.PathPrefix+"entry?key=eA HTTP/1.1\r\nHost: x\r\n\r\n")
		if err == nil {
			_, err = conn.Read(make([]byte, 1)) // TLS 1.3: the refusal comes after the client's handshake
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a member's certificate spoke the peer protocol")
	}
}

// TestClusterPeerTLSRotation: a member's peer certificate rotated on disk
// is shown to the other members within seconds, with no signal; a broken
// one is logged and the current certificate keeps the cluster talking.
func TestClusterPeerTLSRotation(t *testing.T) {
	ca := testutil.NewCA(t)
	dir := t.TempDir()
	serials := map[string]int64{"n0": 100, "n1": 200}
	logs := map[string]*testutil.LogBuffer{"n0": {}, "n1": {}}
	next := 0
	c := startClusterOpts(t, 2, func(cfg *config.Config) {
		name := fmt.Sprintf("n%d", next)
		next++
		cfg.PeerListen = "127.0.0.1:0"
		f := ca.WriteFiles(t, dir, name, serials[name])
		cfg.PeerTLSCert, cfg.PeerTLSKey, cfg.PeerTLSCA = f.Cert, f.Key, f.CA
		cfg.Replicas = 1 // the subject is the peer hop: no replica may answer instead
	}, func(name string, o *Options) {
		o.Logger, o.TLSCheckInterval = logs[name].Logger(), tlsCheck
	})
	n0, n1 := c.nodes[0], c.nodes[1]
	path := pathOwnedBy(t, n0, "n1", "/rot%d?cc=max-age%%3D300")
	forwarded := func(what string) {
		t.Helper()
		var r testutil.Reply
		var err error
		testutil.Eventually(t, 10*time.Second, func() bool {
			r, err = c.get(n0, path)
			return err == nil && strings.HasPrefix(r.CacheStatus(), "n1; ") && strings.Contains(r.CacheStatus(), "detail=peer")
		}, func() string { return fmt.Sprintf("%s: n0 to forward to n1: %v %q", what, err, r.CacheStatus()) })
	}
	forwarded("before the rotation")

	// n1's handshake, as a member (n0's certificate) sees it.
	memberCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "n0.pem"), filepath.Join(dir, "n0-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	shown := func() (int64, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n1.PeerAddr(), &tls.Config{
			RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{memberCert}, NextProtos: []string{cluster.PeerALPN},
		})
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	waitShown := func(serial int64) {
		t.Helper()
		var got int64
		var err error
		testutil.Eventually(t, tlsTimeout, func() bool { got, err = shown(); return err == nil && got == serial }, func() string {
			return fmt.Sprintf("n1 to show serial %d to members; last %d, %v; logs:\n%s", serial, got, err, logs["n1"])
		})
	}
	waitShown(200)

	// Rotated in place. No SIGHUP.
	ca.WriteFiles(t, dir, "n1", 201)
	waitShown(201)
	forwarded("after the rotation")

	// Broken: logged, and serial 201 keeps serving the cluster.
	certFile := filepath.Join(dir, "n1.pem")
	if err := os.WriteFile(certFile, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := "peer_tls_cert " + certFile + ": no PEM certificate in it"
	testutil.Eventually(t, tlsTimeout, func() bool { return strings.Contains(logs["n1"].String(), broken) }, func() string {
		return "the broken peer certificate to be logged; logs:\n" + logs["n1"].String()
	})
	if got, err := shown(); err != nil || got != 201 {
		t.Fatalf("after a broken rotation n1 shows %d, %v; want 201", got, err)
	}
	if r, err := c.get(n0, path); err != nil || !strings.HasPrefix(r.CacheStatus(), "n1; hit") {
		t.Fatalf("forwarding after a broken rotation: %v %q", err, r.CacheStatus())
	}
}

// TestInterimOverTLS: with tls_cert on listen, the origin's 103 still
// reaches the client first (RFC 9110 §15.2), on a node alone and through
// a member of a cluster sharing the TLS port with its peers: the servers
// tell when a connection is quiet from beneath TLS and the sniffing.
func TestInterimOverTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	vol := testutil.NewSecretDir(t)
	c1, k1 := ca.Issue(t, "node", 1)
	vol.Update(t, map[string][]byte{"tls.crt": c1, "tls.key": k1})
	o := testutil.ServeRaw(t, earlyAnswer)
	dial := func(addr string) net.Conn {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: site.test\r\n\r\n" }

	var logs testutil.LogBuffer
	n, _ := startTLSNode(t, vol, ca, "http://"+o.Addr, &logs, nil)
	heads, resp := exchangeOn(t, dial(n.Addr()), get("/alone"))
	if len(heads) != 1 || !strings.HasPrefix(heads[0], "HTTP/1.1 103 ") || resp.StatusCode() != 200 {
		t.Fatalf("one node: %d, interim %q; want the 103 first", resp.StatusCode(), heads)
	}

	c := startClusterOpts(t, 2, func(cfg *config.Config) {
		cfg.Origin = "http://" + o.Addr
		cfg.TLSCert, cfg.TLSKey = vol.Path("tls.crt"), vol.Path("tls.key")
	}, func(_ string, o *Options) { o.TLSCheckInterval = tlsCheck })
	n0 := c.nodes[0]
	// n0's peer set follows the ring a moment later: paths until one is
	// forwarded, each a miss.
	forwarded := false
	for i := 0; i < 50 && !forwarded; i++ {
		heads, resp := exchangeOn(t, dial(n0.Addr()), get(pathOwnedBy(t, n0, c.names[1], "/hinted"+strconv.Itoa(i)+"-%d")))
		cs := string(resp.Header.Peek("Cache-Status"))
		if resp.StatusCode() != 200 || len(heads) != 1 || !strings.HasPrefix(heads[0], "HTTP/1.1 103 ") {
			t.Fatalf("cluster: %d %q, interim %q; want the 103 first", resp.StatusCode(), cs, heads)
		}
		forwarded = strings.Contains(cs, "detail=peer")
	}
	if !forwarded {
		t.Fatal("no request was forwarded to its owner; the test proves nothing")
	}
}
