package cluster

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cluster/clustertest"
)

func TestLoadPeerTLSErrors(t *testing.T) {
	dir := t.TempDir()
	ours := clustertest.Certs(t, dir, "a", "b")
	other := clustertest.Certs(t, t.TempDir(), "x")
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
		{"missing cert", filepath.Join(dir, "nope.pem"), a.Key, a.CA, "nope.pem"},
		{"key of another cert", a.Cert, b.Key, a.CA, "private key does not match public key"},
		{"missing CA", a.Cert, a.Key, filepath.Join(dir, "no-ca.pem"), "peer TLS CA"},
		{"CA without certificates", a.Cert, a.Key, empty, "no PEM certificate in it"},
		{"cert of another CA", x.Cert, x.Key, a.CA, "is not signed by the CA in"},
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
	ours := clustertest.Certs(t, t.TempDir(), "a", "b")
	theirs := clustertest.Certs(t, t.TempDir(), "x")
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
	files := clustertest.Certs(t, dir, "a", "b")
	a, oldB := mustLoadPeerTLS(t, files["a"]), mustLoadPeerTLS(t, files["b"])
	if serr, cerr := tlsHandshake(t, a.Server, oldB.Client); serr != nil {
		t.Fatalf("before rotation: %v / %v", serr, cerr)
	}
	clustertest.Certs(t, dir, "a", "b") // a new CA and certificates, same files
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

func mustLoadPeerTLS(t *testing.T, f clustertest.CertFiles) *PeerTLS {
	t.Helper()
	p, err := LoadPeerTLS(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
