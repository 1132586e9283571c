package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Test certificates: one CA type issues every certificate the tests use
// (client TLS, peer TLS, origin TLS), by one rule (Issue).

// CA is a certificate authority made for one test: a fresh ECDSA P-256 key
// and a self-signed certificate, valid for an hour.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is Cert in PEM form, what a CA file holds.
	PEM []byte
}

// NewCA makes a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ringcache test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool is a certificate pool holding the CA, for a client's RootCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue returns a PEM certificate and PEM private key signed by the CA,
// with name as common name and the given serial number, valid for an hour
// as a server's and as a client's. Its subject alternative names are hosts
// (each an IP address or a DNS name), or, when none is given, 127.0.0.1,
// ::1 and localhost: what a client verifies when it dials a test server by
// its loopback address.
func (ca *CA) Issue(t testing.TB, name string, serial int64, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// CertFiles are the PEM files of one certificate: itself, its key, and the
// CA that signed it.
type CertFiles struct{ Cert, Key, CA string }

// WriteFiles issues a certificate as Issue does and writes it into dir
// with its key and the CA: name.pem, name-key.pem and ca.pem.
func (ca *CA) WriteFiles(t testing.TB, dir, name string, serial int64, hosts ...string) CertFiles {
	t.Helper()
	cert, key := ca.Issue(t, name, serial, hosts...)
	f := CertFiles{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	for path, data := range map[string][]byte{f.Cert: cert, f.Key: key, f.CA: ca.PEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Certs writes a fresh CA and, for each name, a certificate it issues for
// that name alone (its one subject alternative name, so that a client
// verifying another name refuses it) into dir, and returns the files per
// name.
func Certs(t testing.TB, dir string, names ...string) map[string]CertFiles {
	t.Helper()
	ca := NewCA(t)
	files := make(map[string]CertFiles, len(names))
	for i, name := range names {
		files[name] = ca.WriteFiles(t, dir, name, int64(i+2), name)
	}
	return files
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// SecretDir lays files out as Kubernetes mounts a Secret (and
// cert-manager's certificates): each file is a symlink through "..data"
// to a timestamped directory holding the contents, and an update writes a
// new directory and swaps the "..data" symlink in one rename. The files'
// own symlinks never change, so only their content tells an update apart.
type SecretDir struct {
	Dir string
	gen int
}

// NewSecretDir creates an empty secret volume in a temporary directory.
func NewSecretDir(t testing.TB) *SecretDir {
	return &SecretDir{Dir: t.TempDir()}
}

// Path is where a file named name is read from.
func (s *SecretDir) Path(name string) string { return filepath.Join(s.Dir, name) }

// Update publishes files (name to content) atomically, as the kubelet
// does: the previous version stays readable until the swap.
func (s *SecretDir) Update(t testing.TB, files map[string][]byte) {
	t.Helper()
	s.gen++
	version := "..2026_11_25_10_00_00." + strconv.Itoa(s.gen)
	if err := os.Mkdir(filepath.Join(s.Dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, version, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.Dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(s.Dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
	}
}
