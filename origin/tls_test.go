package origin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringcache/ringcache/internal/testutil"
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
			cfg, err := tt.files.Config()
			if err != nil {
				t.Fatal(err)
			}
			r := newTestPool(t, PoolOptions{Servers: []string{tt.url}, TLS: cfg}, ClientOptions{FailThreshold: -1})
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("/")
			err = r.Fetch(context.Background(), req, resp)
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
		cfg, err := tt.files.Config()
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, ClientOptions{URL: "https://127.0.0.1:" + port, TLSConfig: cfg})
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
		field string
		want  string
	}{
		{"missing CA", TLSFiles{CAFile: missing}, "ca_file", "ca_file " + missing + ": no such file or directory"},
		{"CA not PEM", TLSFiles{CAFile: junk}, "ca_file", "ca_file " + junk + ": no PEM certificate in the file"},
		{"missing certificate", TLSFiles{CertFile: missing, KeyFile: a.Key}, "cert_file", "cert_file " + missing + ": no such file or directory"},
		{"missing key", TLSFiles{CertFile: a.Cert, KeyFile: missing}, "key_file", "key_file " + missing + ": no such file or directory"},
		{"key of another certificate", TLSFiles{CertFile: a.Cert, KeyFile: b.Key}, "cert_file",
			"cert_file " + a.Cert + ": with key_file " + b.Key + ": tls: private key does not match public key"},
		{"certificate without key", TLSFiles{CertFile: a.Cert}, "key_file", "key_file: missing: cert_file is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.files.Config()
			var fe *FileError
			if !errors.As(err, &fe) || fe.Field != tt.field || err.Error() != tt.want {
				t.Fatalf("error %v, want %q (field %s)", err, tt.want, tt.field)
			}
		})
	}
	if cfg, err := (TLSFiles{}).Config(); cfg != nil || err != nil {
		t.Errorf("zero TLSFiles: %v, %v; want nil, nil (system roots)", cfg, err)
	}
}

// quiet is a fasthttp logger for servers whose refused handshakes are the
// point of the test.
type quiet struct{}

func (quiet) Printf(string, ...any) {}
