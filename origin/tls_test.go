package origin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/internal/tlsfiles"
	"github.com/valyala/fasthttp"
)

// tlsOrigin serves HTTPS on loopback with a certificate for origin.test from
// a private CA; with clientCA set it requires a client certificate from it.
// Each answer names the client certificate's subject, if any.
func tlsOrigin(t *testing.T, server testutil.CertFiles, clientCA string) (port string) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(server.Cert, server.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		cfg.ClientCAs.AppendCertsFromPEM(pem)
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Logger: quiet{}, Handler: func(ctx *fasthttp.RequestCtx) {
		client := "none"
		if cs := ctx.TLSConnectionState(); cs != nil && len(cs.PeerCertificates) > 0 {
			client = cs.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(ctx, "client=%s", client)
	}}
	testutil.Serve(t, tls.NewListener(raw, cfg), srv.Serve, srv.Shutdown)
	_, port, _ = net.SplitHostPort(raw.Addr().String())
	return port
}

func TestTLSFilesPrivateCA(t *testing.T) {
	dir := t.TempDir()
	certs := testutil.Certs(t, dir, "origin.test", "cache-client")
	other := testutil.Certs(t, t.TempDir(), "stranger") // another CA
	srv := certs["origin.test"]
	port := tlsOrigin(t, srv, "")
	mtlsPort := tlsOrigin(t, srv, srv.CA)
	client := certs["cache-client"]

	tests := []struct {
		name  string
		url   string
		files TLSFiles
		want  string // the body, or an error message part
		ok    bool
	}{
		{"private CA", "https://127.0.0.1:" + port, TLSFiles{CAFile: srv.CA, ServerName: "origin.test"}, "client=none", true},
		{"system roots do not know the CA", "https://127.0.0.1:" + port, TLSFiles{ServerName: "origin.test"}, "certificate signed by unknown authority", false},
		{"another CA", "https://127.0.0.1:" + port, TLSFiles{CAFile: other["stranger"].CA, ServerName: "origin.test"}, "certificate signed by unknown authority", false},
		// Named by IP, the server's certificate does not match without the
		// name it carries.
		{"no server name", "https://127.0.0.1:" + port, TLSFiles{CAFile: srv.CA}, "doesn't contain any IP SANs", false},
		{"wrong server name", "https://127.0.0.1:" + port, TLSFiles{CAFile: srv.CA, ServerName: "other.test"}, "not other.test", false},
		{"client certificate", "https://127.0.0.1:" + mtlsPort,
			TLSFiles{CAFile: srv.CA, ServerName: "origin.test", CertFile: client.Cert, KeyFile: client.Key}, "client=cache-client", true},
		// In TLS 1.3 the server refuses a client certificate after the
		// client's side of the handshake is done: the client learns it as
		// the connection closed before an answer.
		{"client certificate required", "https://127.0.0.1:" + mtlsPort, TLSFiles{CAFile: srv.CA, ServerName: "origin.test"}, "server closed connection", false},
		{"client certificate from another CA", "https://127.0.0.1:" + mtlsPort,
			TLSFiles{CAFile: srv.CA, ServerName: "origin.test", CertFile: other["stranger"].Cert, KeyFile: other["stranger"].Key}, "server closed connection", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestPool(t, PoolOptions{Servers: []string{tt.url}, GetTLS: loadTLS(t, tt.files).Current}, ClientOptions{FailThreshold: -1})
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("/")
			err := r.Fetch(context.Background(), req, resp)
			if tt.ok {
				if err != nil || string(resp.Body()) != tt.want {
					t.Fatalf("fetch: %q, %v; want %q", resp.Body(), err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("fetch: %v; want an error with %q", err, tt.want)
			}
		})
	}
}

// TestTLSVerifiesTunnels: Dial verifies the server as Fetch does.
func TestTLSVerifiesTunnels(t *testing.T) {
	certs := testutil.Certs(t, t.TempDir(), "origin.test")
	srv := certs["origin.test"]
	port := tlsOrigin(t, srv, "")
	for _, tt := range []struct {
		files TLSFiles
		ok    bool
	}{{TLSFiles{CAFile: srv.CA, ServerName: "origin.test"}, true}, {TLSFiles{ServerName: "origin.test"}, false}} {
		c := newClient(t, ClientOptions{URL: "https://127.0.0.1:" + port, GetTLSConfig: loadTLS(t, tt.files).Current})
		conn, err := c.Dial(context.Background(), upgradeRequest("/ws", "x"))
		if conn != nil {
			conn.Close()
		}
		var verr *tls.CertificateVerificationError
		if tt.ok != (err == nil) || !tt.ok && !errors.As(err, &verr) {
			t.Errorf("CA file %q: Dial error %v, want ok %v (or a verification error)", tt.files.CAFile, err, tt.ok)
		}
	}
}

// loadTLS loads files, which must load.
func loadTLS(t *testing.T, files TLSFiles) *tlsfiles.Reloader[tls.Config] {
	t.Helper()
	r, err := files.Load(nil)
	if err != nil || r == nil {
		t.Fatalf("Load(%+v): %v, %v", files, r, err)
	}
	return r
}

func TestTLSFilesErrors(t *testing.T) {
	dir := t.TempDir()
	certs := testutil.Certs(t, dir, "a", "b")
	a, b := certs["a"], certs["b"]
	missing := filepath.Join(dir, "missing.pem")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"missing CA", TLSFiles{CAFile: missing}, "ca_file " + missing + ": no such file or directory"},
		{"CA not PEM", TLSFiles{CAFile: junk}, "ca_file " + junk + ": no PEM certificate in it"},
		{"missing certificate", TLSFiles{CertFile: missing, KeyFile: a.Key}, "cert_file " + missing + ": no such file or directory"},
		{"missing key", TLSFiles{CertFile: a.Cert, KeyFile: missing}, "key_file " + missing + ": no such file or directory"},
		{"key not PEM", TLSFiles{CertFile: a.Cert, KeyFile: junk}, "key_file " + junk + ": no PEM private key in it"},
		{"key of another certificate", TLSFiles{CertFile: a.Cert, KeyFile: b.Key},
			"cert_file " + a.Cert + " and key_file " + b.Key + ": tls: private key does not match public key"},
		{"certificate without key", TLSFiles{CertFile: a.Cert}, "key_file: missing: cert_file is set"},
		{"key without certificate", TLSFiles{KeyFile: a.Key}, "cert_file: missing: key_file is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.files.Load(nil); err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	// The caller names the files by its settings.
	_, err := TLSFiles{CAFile: missing}.Load(func(field string) string { return "origins[1].tls." + field })
	if want := "origins[1].tls.ca_file " + missing + ": no such file or directory"; err == nil || err.Error() != want || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("named: %v, want %q", err, want)
	}
	if r, err := (TLSFiles{}).Load(nil); r != nil || err != nil {
		t.Errorf("zero TLSFiles: %v, %v; want nil, nil (system roots)", r, err)
	}
}

// TestTLSFilesReload: the client certificate and the CA file are read again
// when they change (Reload here; Watch calls it on a change), and new
// connections use what they hold; files that do not load leave the current
// ones in use.
func TestTLSFilesReload(t *testing.T) {
	serverCA, otherCA := testutil.NewCA(t), testutil.NewCA(t)
	server := serverCA.WriteFiles(t, t.TempDir(), "origin.test", 2, "origin.test")
	port := tlsOrigin(t, server, server.CA) // asks for a client certificate from its CA

	dir := t.TempDir()
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(dir, "origin-ca.pem")
	write(caFile, serverCA.PEM)
	client := otherCA.WriteFiles(t, dir, "cache", 3) // of a CA the server does not trust
	files := loadTLS(t, TLSFiles{CAFile: caFile, ServerName: "origin.test", CertFile: client.Cert, KeyFile: client.Key})
	c := newClient(t, ClientOptions{URL: "https://127.0.0.1:" + port, GetTLSConfig: files.Current, FailThreshold: -1})
	get := func() string {
		t.Helper()
		c.Close() // no connection to reuse: the next one uses the files as loaded now
		resp, err := fetch(context.Background(), c, "/")
		if err != nil {
			return err.Error()
		}
		defer fasthttp.ReleaseResponse(resp)
		return string(resp.Body())
	}
	if got := get(); !strings.Contains(got, "server closed connection") {
		t.Fatalf("a client certificate the server does not trust: %q, want the connection closed", got)
	}

	// Renewed by the server's CA, in the same files.
	cert, key := serverCA.Issue(t, "cache-renewed", 4)
	write(client.Key, key)
	write(client.Cert, cert)
	if err := files.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "client=cache-renewed" {
		t.Fatalf("after the renewal: %q, want client=cache-renewed", got)
	}

	// A broken CA file does not load: the current configuration stays.
	write(caFile, []byte("-----BEGIN CERTIFICATE-----\ntruncated"))
	if err := files.Reload(); err == nil || err.Error() != "ca_file "+caFile+": no PEM certificate in it" {
		t.Fatalf("Reload of a broken CA file: %v", err)
	}
	if got := get(); got != "client=cache-renewed" {
		t.Fatalf("after a broken CA file: %q, want the current files still in use", got)
	}

	// The CA file of another CA: the server is no longer trusted.
	write(caFile, otherCA.PEM)
	if err := files.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := get(); !strings.Contains(got, "certificate signed by unknown authority") {
		t.Fatalf("after the CA file changed to another CA: %q, want a verification error", got)
	}
}

// quiet is a fasthttp logger for servers whose refused handshakes are the
// point of the test.
type quiet struct{}

func (quiet) Printf(string, ...any) {}
