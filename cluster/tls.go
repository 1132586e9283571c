package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// PeerTLS is mutual TLS between members: every member presents a
// certificate signed by the cluster's CA and accepts only peers that do.
// Names are not checked, since members are addressed by IP and come and
// go: a certificate from the cluster's CA is what makes a member, as the
// peer secret does one layer up.
//
// Reload re-reads the files, so certificates can be rotated in place;
// connections already open keep the certificates they started with.
type PeerTLS struct {
	Server *tls.Config // for the peer listener
	Client *tls.Config // for requests to peers (PeerOptions.TLS)

	certFile, keyFile, caFile string
	cur                       atomic.Pointer[tlsMaterial]
}

// tlsMaterial is one reading of the files.
type tlsMaterial struct {
	cert   *tls.Certificate
	roots  *x509.CertPool
	server *tls.Config // per handshake, built once per reading
}

// LoadPeerTLS reads a PEM certificate chain and key for this node and the
// PEM CA certificates that sign every member's. Errors name the file and
// what is wrong with it.
func LoadPeerTLS(certFile, keyFile, caFile string) (*PeerTLS, error) {
	t := &PeerTLS{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	t.Server = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.cur.Load().server, nil
		},
	}
	t.Client = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return t.cur.Load().cert, nil
		},
		// The chain is checked in VerifyConnection, against the cluster's
		// CA only; the name is not (see PeerTLS).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs, t.cur.Load().roots)
		},
	}
	return t, nil
}

// Reload reads the files again and, if they hold a key pair signed by the
// CA, uses them for every handshake from now on. On error the current
// certificates stay in use.
func (t *PeerTLS) Reload() error {
	cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		return fmt.Errorf("peer TLS certificate %s / key %s: %w", t.certFile, t.keyFile, err)
	}
	pem, err := os.ReadFile(t.caFile)
	if err != nil {
		return fmt.Errorf("peer TLS CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("peer TLS CA %s: no PEM certificate in it", t.caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("peer TLS certificate %s: %w", t.certFile, err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	// A node whose own certificate its peers would refuse fails here, not
	// on every forwarded request.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("peer TLS certificate %s is not signed by the CA in %s: %w", t.certFile, t.caFile, err)
	}
	t.cur.Store(&tlsMaterial{
		cert:  &cert,
		roots: roots,
		server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    roots,
		},
	})
	return nil
}

// verifyChain checks a server's certificate chain against roots, ignoring
// its names.
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}
