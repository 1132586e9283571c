package cluster

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
)

func TestLoadPeerTLSErrors(t *testing.T) {
	dir := t.TempDir()
	ours := testutil.Certs(t, dir, "a", "b")
	other := testutil.Certs(t, t.TempDir(), "x")
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, b, x := ours["a"], ours["b"], other["x"]
	for _, tc := range []struct {
		name            string
		cert, key, ca   string
		wantErrContains string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), a.Key, a.CA, "peer_tls_cert " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"key of another cert", a.Cert, b.Key, a.CA, "private key does not match public key"},
		{"missing CA", a.Cert, a.Key, filepath.Join(dir, "no-ca.pem"), "peer_tls_ca " + filepath.Join(dir, "no-ca.pem") + ": no such file or directory"},
		{"CA without certificates", a.Cert, a.Key, empty, "peer_tls_ca " + empty + ": no PEM certificate in it"},
		{"cert of another CA", x.Cert, x.Key, a.CA, "peer_tls_cert " + x.Cert + ": not signed by the CA in " + a.CA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPeerTLS(tc.cert, tc.key, tc.ca)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrContains) {
				t.Fatalf("error %v; want one containing %q", err, tc.wantErrContains)
			}
		})
	}
	if _, err := LoadPeerTLS(a.Cert, a.Key, a.CA); err != nil {
		t.Fatalf("good files: %v", err)
	}
}

// TestPeerTLSMutual: members of one CA talk; a client without a
// certificate, or with one from another CA, is refused, and a client
// refuses a server from another CA.
func TestPeerTLSMutual(t *testing.T) {
	ours := testutil.Certs(t, t.TempDir(), "a", "b")
	theirs := testutil.Certs(t, t.TempDir(), "x")
	a, b, x := mustLoadPeerTLS(t, ours["a"]), mustLoadPeerTLS(t, ours["b"]), mustLoadPeerTLS(t, theirs["x"])
	noCert := b.Client.Clone()
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }

	if serr, cerr := tlsHandshake(t, a.Server, b.Client); serr != nil {
		t.Fatalf("members of one CA: server %v, client %v", serr, cerr)
	}
	for name, tc := range map[string]struct{ server, client *tls.Config }{
		"client without a certificate": {a.Server, noCert},
		"client of another CA":         {a.Server, x.Client},
		"server of another CA":         {x.Server, a.Client},
	} {
		if serr, cerr := tlsHandshake(t, tc.server, tc.client); serr == nil {
			t.Errorf("%s: the server read the client's data (client %v)", name, cerr)
		}
	}
}

// tlsHandshake runs one TLS connection between server and client configs,
// the client sending a byte, and reports each side's error: nil on the
// server side means it read the client's byte.
func tlsHandshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 client certificates are checked after the client's
			// handshake returns: read to see the verdict.
			_, err = tc.Read(make([]byte, 1))
		}
		done <- err
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), client)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Write([]byte("x"))
		if err == nil {
			_, err = c.Read(make([]byte, 1)) // the server's alert, or its close
		}
		c.Close()
	}
	return <-done, err
}

// TestPeerTLSReload: certificates rotated in place (a new CA) are used
// after Reload; files that do not load leave the current ones in use.
func TestPeerTLSReload(t *testing.T) {
	dir := t.TempDir()
	files := testutil.Certs(t, dir, "a", "b")
	a, oldB := mustLoadPeerTLS(t, files["a"]), mustLoadPeerTLS(t, files["b"])
	if serr, cerr := tlsHandshake(t, a.Server, oldB.Client); serr != nil {
		t.Fatalf("before rotation: %v / %v", serr, cerr)
	}
	testutil.Certs(t, dir, "a", "b") // a new CA and certificates, same files
	newB := mustLoadPeerTLS(t, files["b"])
	if serr, _ := tlsHandshake(t, a.Server, newB.Client); serr == nil {
		t.Fatal("a accepted the new CA before reloading")
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if serr, cerr := tlsHandshake(t, a.Server, newB.Client); serr != nil {
		t.Fatalf("after reload: %v / %v", serr, cerr)
	}
	if serr, _ := tlsHandshake(t, a.Server, oldB.Client); serr == nil {
		t.Fatal("a still accepts the old CA after reloading")
	}
	if serr, cerr := tlsHandshake(t, newB.Server, a.Client); serr != nil {
		t.Fatalf("a as a client after reload: %v / %v", serr, cerr)
	}
	// A broken rotation: the error names the file, the old material stays.
	if err := os.WriteFile(files["a"].Cert, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), files["a"].Cert) {
		t.Fatalf("reloading a broken certificate: %v", err)
	}
	if serr, cerr := tlsHandshake(t, a.Server, newB.Client); serr != nil {
		t.Fatalf("after a failed reload: %v / %v", serr, cerr)
	}
}

// TestPeerTLSWatch: rotated files are used without Reload (no SIGHUP)
// once Watch looks again.
func TestPeerTLSWatch(t *testing.T) {
	dir := t.TempDir()
	files := testutil.Certs(t, dir, "a", "b")
	a := mustLoadPeerTLS(t, files["a"])
	a.Watch(5*time.Millisecond, nil)
	defer a.Close()
	testutil.Certs(t, dir, "a", "b") // a new CA and certificates, same files
	newB := mustLoadPeerTLS(t, files["b"])
	var serr, cerr error
	testutil.Eventually(t, 10*time.Second, func() bool {
		serr, cerr = tlsHandshake(t, a.Server, newB.Client)
		return serr == nil
	}, func() string { return fmt.Sprintf("a to accept the new CA: server %v, client %v", serr, cerr) })
}

func mustLoadPeerTLS(t *testing.T, f testutil.CertFiles) *PeerTLS {
	t.Helper()
	p, err := LoadPeerTLS(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretPeerTLS: members deriving TLS from one secret talk; a client
// or server holding another secret's key, or no certificate, is refused.
func TestSecretPeerTLS(t *testing.T) {
	a, b := testTLS(), mustSecretTLS(t, testSecret)
	x := mustSecretTLS(t, []byte("another-secret-of-16+bytes"))
	if serr, cerr := tlsHandshake(t, a.Server, b.Client); serr != nil {
		t.Fatalf("members of one secret: server %v, client %v", serr, cerr)
	}
	noCert := b.Client.Clone()
	noCert.Certificates = nil
	ca := testutil.Certs(t, t.TempDir(), "c")
	for name, tc := range map[string]struct{ server, client *tls.Config }{
		"client without a certificate":   {a.Server, noCert},
		"client of another secret":       {a.Server, x.Client},
		"server of another secret":       {x.Server, a.Client},
		"client with a CA's certificate": {a.Server, mustLoadPeerTLS(t, ca["c"]).Client},
	} {
		if serr, cerr := tlsHandshake(t, tc.server, tc.client); serr == nil {
			t.Errorf("%s: the server read the client's data (client %v)", name, cerr)
		}
	}
	if _, err := SecretPeerTLS([]byte("short")); err == nil {
		t.Error("SecretPeerTLS accepted a 5-byte secret")
	}
}

func mustSecretTLS(t *testing.T, secret []byte) *PeerTLS {
	t.Helper()
	p, err := SecretPeerTLS(secret)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestForwardToImpostor is the attack of a host that got into the ring (or
// onto a member's address) without the secret: whether it speaks plain
// HTTP or TLS with a key of its own, the forwarder sends it nothing of the
// user's request and serves nothing it answers.
func TestForwardToImpostor(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  *tls.Config // nil: plain HTTP
	}{
		{"plain HTTP", nil},
		{"TLS with another secret", mustSecretTLS(t, []byte("the-impostors-own-secret")).Server},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen atomic.Int64
			imp := startImpostor(t, tc.tls, &seen)
			ps := mustPeerSet(t, "a", testutil.NewClock())
			defer ps.Close()
			r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: imp})
			ps.Update(nil, r)
			p, ok := ps.Owner(keyOwnedBy(t, r, "x"))
			if !ok {
				t.Fatal("no owner")
			}
			if status, body, err := forward(t, p, "site.example", "/account", "Cookie", "session=users-secret"); err == nil {
				t.Fatalf("Forward to an impostor succeeded: %d %q", status, body)
			}
			if n := seen.Load(); n != 0 {
				t.Fatalf("the impostor received %d request(s)", n)
			}
		})
	}
}

// TestPeerTrafficEncrypted: what crosses the network between members —
// a user's cookie on the way, the owner's answer on the way back — cannot
// be read by someone capturing it.
func TestPeerTrafficEncrypted(t *testing.T) {
	nodes, r := startTestCluster(t, testutil.NewClock(), "a", "b")
	relay, wire := startRecordingRelay(t, nodes[1].addr)
	ps := mustPeerSet(t, "a", testutil.NewClock())
	defer ps.Close()
	viaRelay := newTestRing(t, nodes[0].node(), Node{Name: "b", Addr: relay})
	ps.Update(nil, viaRelay)
	p, ok := ps.Owner(keyOwnedBy(t, r, "b"))
	if !ok {
		t.Fatal("no owner")
	}
	_, body, err := forward(t, p, "site.example", "/page", "Cookie", "session=users-secret")
	if err != nil {
		t.Fatal(err)
	}
	if body != "served by b" {
		t.Fatalf("body %q", body)
	}
	ps.Close()
	captured := wire()
	if len(captured) == 0 {
		t.Fatal("nothing went through the relay")
	}
	for _, secret := range []string{"users-secret", "served by b", "/page", "site.example"} {
		if bytes.Contains(captured, []byte(secret)) {
			t.Errorf("%q crossed the wire in the clear", secret)
		}
	}
}

// startImpostor listens on loopback as a host outside the cluster would,
// answering every request with 200 "poison" and counting in seen the HTTP
// requests it could read: over TLS with cfg, or, when cfg is nil, in plain
// text, answering whatever bytes arrive.
func startImpostor(t *testing.T, cfg *tls.Config, seen *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if cfg != nil {
				c = tls.Server(c, cfg)
			}
			_ = c.SetDeadline(time.Now().Add(peerTestTimeout))
			buf := make([]byte, 4096)
			if n, _ := c.Read(buf); bytes.Contains(buf[:n], []byte(" HTTP/1.1\r\n")) {
				seen.Add(1)
			}
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npoison"))
			c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return addr
}

// startRecordingRelay forwards TCP connections to target and returns its
// address and a function returning every byte it relayed, both ways.
func startRecordingRelay(t *testing.T, target string) (string, func() []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wire bytes.Buffer
	var wg sync.WaitGroup
	record := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return wire.Write(p)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(io.MultiWriter(dst, record), src)
				dst.Close()
				src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(wire.Bytes())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
