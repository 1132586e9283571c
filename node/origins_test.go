package node

// End to end: a node in front of origin pools (several servers for one
// site, virtual hosts) and an https origin with a private CA.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/origin"
	"github.com/ringcache/ringcache/origin/demo"
	"github.com/valyala/fasthttp"
)

// originStatus returns the node's /stats view of its origin servers, by URL.
func (tn *testNode) originStatus(t *testing.T) map[string]origin.ServerStatus {
	t.Helper()
	r := tn.do(t, fasthttp.MethodGet, tn.adminURL("/stats"), nil)
	testutil.ExpectStatus(t, "/stats", r, 200)
	var v StatsView
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("/stats: %v", err)
	}
	out := make(map[string]origin.ServerStatus)
	for _, s := range v.Origins {
		out[s.Server] = s
	}
	return out
}

// getHost requests path from the node with the Host header host and
// returns the status.
func (tn *testNode) getHost(t *testing.T, path, host string) int {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(tn.base + path)
	req.Header.SetHost(host)
	req.UseHostHeader = true // the client would send the URL's otherwise
	if err := tn.client.DoTimeout(req, resp, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode()
}

// TestOriginPoolServerKilled: a node balancing over two origin servers
// keeps answering every request when one of them is killed, skips it once
// its breaker opens (metrics and /stats say so), and takes it back after it
// returns and its breaker's probe succeeds.
func TestOriginPoolServerKilled(t *testing.T) {
	a, b := startTestOrigin(t, "127.0.0.1:0"), startTestOrigin(t, "127.0.0.1:0")
	urlA, urlB := "http://"+a.addr, "http://"+b.addr
	tn := startTestNode(t, func(c *config.Config) {
		c.Origin = ""
		c.Origins = []config.OriginPool{{Servers: []string{urlA, urlB}}}
	})
	get := func(what string, i int) {
		t.Helper()
		r := tn.get(t, fmt.Sprintf("/%s%d?cc=max-age=60", what, i))
		testutil.ExpectStatus(t, fmt.Sprintf("%s %d", what, i), r, 200)
	}
	for i := range 10 {
		get("both", i)
	}
	if na, nb := a.srv.Requests(), b.srv.Requests(); na != 5 || nb != 5 {
		t.Fatalf("servers got %d and %d requests, want 5 each (round robin)", na, nb)
	}

	a.stop()
	// Every request is answered: one sent to a finds the connection
	// refused and goes on to b. After five such failures a's breaker opens
	// and it is not tried any more.
	for i := range 20 {
		get("one", i)
	}
	if nb := b.srv.Requests(); nb != 25 {
		t.Errorf("b served %d requests in all, want 25", nb)
	}
	metrics := tn.scrape(t)
	for _, m := range []struct {
		series string
		want   float64
	}{
		{`ringcache_origin_circuit_open{pool="default",server="` + urlA + `"}`, 1},
		{`ringcache_origin_up{pool="default",server="` + urlA + `"}`, 0},
		{`ringcache_origin_circuit_open{pool="default",server="` + urlB + `"}`, 0},
		{`ringcache_origin_up{pool="default",server="` + urlB + `"}`, 1},
		{`ringcache_origin_requests_total{pool="default",server="` + urlB + `"}`, 25},
	} {
		if v, ok := testutil.MetricValue(metrics, m.series); !ok || v != m.want {
			t.Errorf("%s = %v (present %v), want %v", m.series, v, ok, m.want)
		}
	}
	if st := tn.originStatus(t); st[urlA].Up || !st[urlA].CircuitOpen || !st[urlB].Up {
		t.Errorf("/stats origins %+v, want a down with its circuit open, b up", st)
	}

	// a comes back on its address; after the breaker's cooldown (2s) one
	// request probes it, and it serves again.
	a = startTestOrigin(t, a.addr)
	i := 0
	testutil.Eventually(t, 20*time.Second, func() bool {
		i++
		get("back", i)
		return a.srv.Requests() > 0
	}, func() string { return fmt.Sprintf("a to serve again (%d requests)", i) })
	if st := tn.originStatus(t); !st[urlA].Up || st[urlA].CircuitOpen {
		t.Errorf("/stats origins %+v, want a up again", st)
	}
}

// TestOriginPoolHealthCheck: with an active health check, a killed server
// is left out as soon as a check fails, before any request has to find
// out; /stats shows the check's verdict.
func TestOriginPoolHealthCheck(t *testing.T) {
	a, b := startTestOrigin(t, "127.0.0.1:0"), startTestOrigin(t, "127.0.0.1:0")
	urlA, urlB := "http://"+a.addr, "http://"+b.addr
	tn := startTestNode(t, func(c *config.Config) {
		c.Origin = ""
		c.Origins = []config.OriginPool{{
			Servers:     []string{urlA, urlB},
			Balance:     origin.LeastConns,
			HealthCheck: origin.HealthCheck{Path: "/__health", Interval: 20 * time.Millisecond, Timeout: time.Second},
		}}
	})
	testutil.Eventually(t, 10*time.Second, func() bool { return a.srv.Requests() >= 2 && b.srv.Requests() >= 2 },
		func() string { return "two rounds of checks" })
	if st := tn.originStatus(t); st[urlA].HealthCheck != "passing" || st[urlB].HealthCheck != "passing" {
		t.Fatalf("/stats origins %+v, want both passing", st)
	}

	a.stop()
	testutil.Eventually(t, 10*time.Second, func() bool { return tn.originStatus(t)[urlA].HealthCheck == "failing" },
		func() string { return fmt.Sprintf("a's check to fail: %+v", tn.originStatus(t)) })
	before := b.srv.Requests()
	for i := range 10 {
		r := tn.get(t, fmt.Sprintf("/hc%d?cc=max-age=60", i))
		testutil.ExpectStatus(t, "with a failing its check", r, 200)
	}
	// b also answers the checks: count the fills through the node's view.
	if st := tn.originStatus(t); st[urlA].Requests != 0 || st[urlB].Requests != 10 || st[urlA].CircuitOpen {
		t.Errorf("/stats origins %+v: want every request on b, none tried on a (its circuit still closed)", st)
	}
	if n := b.srv.Requests() - before; n < 10 {
		t.Errorf("b served %d, want at least the 10 fills", n)
	}
}

// TestOriginVirtualHosts: the request's host picks its pool; other hosts go
// to origin, and with key_host every request is of that host.
func TestOriginVirtualHosts(t *testing.T) {
	def, shop := startTestOrigin(t, "127.0.0.1:0"), startTestOrigin(t, "127.0.0.1:0")
	for _, tt := range []struct {
		name    string
		keyHost string
		host    string
		toShop  bool
	}{
		{name: "named host", host: "shop.example", toShop: true},
		{name: "wildcard, any case, port", host: "EU.Shop.Example:8080", toShop: true},
		{name: "another host", host: "www.example"},
		{name: "key_host decides", keyHost: "shop.example", host: "www.example", toShop: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tn := startTestNode(t, func(c *config.Config) {
				c.Origin = "http://" + def.addr
				c.KeyHost = tt.keyHost
				c.Origins = []config.OriginPool{{Hosts: []string{"shop.example", "*.shop.example"}, Servers: []string{"http://" + shop.addr}}}
			})
			d0, s0 := def.srv.Requests(), shop.srv.Requests()
			if status := tn.getHost(t, "/vhost?cc=max-age=60", tt.host); status != 200 {
				t.Fatalf("Host %s: status %d", tt.host, status)
			}
			gotShop, gotDef := shop.srv.Requests()-s0, def.srv.Requests()-d0
			if tt.toShop && (gotShop != 1 || gotDef != 0) || !tt.toShop && (gotShop != 0 || gotDef != 1) {
				t.Errorf("Host %s: shop pool got %d, default %d; want the %s", tt.host, gotShop, gotDef, map[bool]string{true: "shop pool", false: "default"}[tt.toShop])
			}
		})
	}
}

// TestOriginTLSPrivateCA: an https origin whose certificate comes from a
// private CA is verified against origin_tls_ca, by the name in
// origin_tls_server_name, and shown the client certificate it requires;
// without the CA the node answers 502, never skipping verification.
func TestOriginTLSPrivateCA(t *testing.T) {
	dir := t.TempDir()
	certs := testutil.Certs(t, dir, "origin.internal", "cache")
	srv := certs["origin.internal"]
	cert, err := tls.LoadX509KeyPair(srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := demo.New(demo.Options{})
	testutil.Serve(t, tls.NewListener(raw, serverCfg), o.Serve, o.Shutdown)
	url := "https://" + raw.Addr().String() // by IP: the certificate names origin.internal only

	tn := startTestNode(t, func(c *config.Config) {
		c.Origin = url
		c.OriginTLSCA, c.OriginTLSServerName = srv.CA, "origin.internal"
		c.OriginTLSCert, c.OriginTLSKey = certs["cache"].Cert, certs["cache"].Key
	})
	r := tn.get(t, "/tls?cc=max-age=60")
	testutil.ExpectStatus(t, "https origin with a private CA", r, 200)
	if o.Requests() != 1 {
		t.Errorf("origin served %d, want 1", o.Requests())
	}

	// The same without the CA: the system roots do not know it.
	noCA := startTestNode(t, func(c *config.Config) {
		c.Origin, c.OriginTLSServerName = url, "origin.internal"
		c.OriginTLSCert, c.OriginTLSKey = certs["cache"].Cert, certs["cache"].Key
	})
	r = noCA.get(t, "/tls?cc=max-age=60")
	testutil.ExpectStatus(t, "https origin, system roots", r, fasthttp.StatusBadGateway)
	if o.Requests() != 1 {
		t.Errorf("origin served %d, want 1: an unverified origin must not be asked", o.Requests())
	}
}

// TestOriginTLSRotation: the CA file and client certificate of a pool live
// in a Secret volume, kept by the node as its other certificate files are:
// a renewal there is shown to the origin on new connections within
// seconds, with no signal; a broken one is logged, naming the file by its
// key path, while the current certificate stays in use; SIGHUP reloads
// them at once, and says so.
func TestOriginTLSRotation(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.WriteFiles(t, t.TempDir(), "origin.internal", 2, "origin.internal")
	cert, err := tls.LoadX509KeyPair(srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The origin names the client certificate it was shown, and closes
	// each connection: every request makes a new one.
	server := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		client := "none"
		if cs := ctx.TLSConnectionState(); cs != nil && len(cs.PeerCertificates) > 0 {
			client = cs.PeerCertificates[0].Subject.CommonName
		}
		ctx.Response.Header.Set("Cache-Control", "no-store")
		ctx.SetConnectionClose()
		fmt.Fprintf(ctx, "client=%s", client)
	}}
	serverCfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	testutil.Serve(t, tls.NewListener(raw, serverCfg), server.Serve, server.Shutdown)

	vol := testutil.NewSecretDir(t)
	issue := func(name string, serial int64) map[string][]byte {
		c, k := ca.Issue(t, name, serial)
		return map[string][]byte{"ca.crt": ca.PEM, "tls.crt": c, "tls.key": k}
	}
	vol.Update(t, issue("cache-1", 10))
	var logs testutil.LogBuffer
	cfg := config.Default()
	cfg.Listen, cfg.Admin, cfg.CacheSize = "127.0.0.1:0", "127.0.0.1:0", 16<<20
	cfg.Origins = []config.OriginPool{{Servers: []string{"https://" + raw.Addr().String()}, TLS: origin.TLSFiles{
		CAFile: vol.Path("ca.crt"), ServerName: "origin.internal", CertFile: vol.Path("tls.crt"), KeyFile: vol.Path("tls.key"),
	}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	n, err := Start(cfg, Options{Logger: logs.Logger(), TLSCheckInterval: tlsCheck})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	client := &fasthttp.Client{ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	shown := func() string {
		r, err := testutil.Do(client, "GET", "http://"+n.Addr()+"/who", nil)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d %s", r.Status, r.Body)
	}
	waitShown := func(want string) {
		t.Helper()
		var got string
		testutil.Eventually(t, tlsTimeout, func() bool { got = shown(); return got == want }, func() string {
			return fmt.Sprintf("the origin to be shown %q; last %q; logs:\n%s", want, got, &logs)
		})
	}
	waitShown("200 client=cache-1")

	// Renewed by a Secret's symlink swap: no signal.
	vol.Update(t, issue("cache-2", 11))
	waitShown("200 client=cache-2")

	// A broken renewal is logged, and cache-2 stays in use.
	broken := issue("cache-3", 12)
	broken["tls.crt"] = []byte("-----BEGIN CERTIFICATE-----\ntruncated")
	vol.Update(t, broken)
	want := "origins[0].tls.cert_file " + vol.Path("tls.crt") + ": no PEM certificate in it"
	testutil.Eventually(t, tlsTimeout, func() bool { return strings.Contains(logs.String(), want) }, func() string {
		return fmt.Sprintf("a log line with %q; logs:\n%s", want, &logs)
	})
	if got := shown(); got != "200 client=cache-2" {
		t.Fatalf("after a broken renewal the origin was shown %q, want the current certificate", got)
	}
	// SIGHUP: the broken files are not applied; once fixed they are, at
	// once.
	if applied, _ := n.Reload(n.Config()); slices.Contains(applied, "origin_tls_files") {
		t.Fatalf("reload of broken files applied %v", applied)
	}
	vol.Update(t, issue("cache-4", 13))
	if applied, _ := n.Reload(n.Config()); !slices.Contains(applied, "origin_tls_files") {
		t.Fatalf("reload applied %v; want origin_tls_files", applied)
	}
	if got := shown(); got != "200 client=cache-4" {
		t.Fatalf("after SIGHUP the origin was shown %q, want client=cache-4", got)
	}
}

// TestOriginTLSFileErrors: a TLS file that cannot be used stops the node at
// start, named with its setting.
func TestOriginTLSFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name   string
		mutate func(*config.Config)
		want   string
	}{
		{"origin_tls_ca", func(c *config.Config) {
			c.Origin, c.OriginTLSCA = "https://127.0.0.1:1", missing
		}, "origin_tls_ca " + missing + ": no such file or directory"},
		{"pool client key", func(c *config.Config) {
			certs := testutil.Certs(t, t.TempDir(), "c")
			c.Origins = []config.OriginPool{{Hosts: []string{"a.example"}, Servers: []string{"https://127.0.0.1:1"},
				TLS: origin.TLSFiles{CertFile: certs["c"].Cert, KeyFile: missing}}}
		}, "origins[0].tls.key_file " + missing + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Origin, cfg.Listen, cfg.Admin = "http://127.0.0.1:1", "127.0.0.1:0", "127.0.0.1:0"
			tc.mutate(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("test config: %v", err)
			}
			n, err := Start(cfg, Options{})
			if err == nil {
				n.Close(t.Context())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}
