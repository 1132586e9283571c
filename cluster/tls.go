package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// PeerTLS is mutual TLS between members: every member presents a
// certificate signed by the cluster's CA and accepts only peers that do.
// Names are not checked, since members are addressed by IP and come and
// go: a certificate from the cluster's CA is what makes a member, as the
// peer secret does one layer up.
type PeerTLS struct {
	Server *tls.Config // for the peer listener
	Client *tls.Config // for requests to peers (PeerOptions.TLS)
}

// LoadPeerTLS reads a PEM certificate chain and key for this node and the
// PEM CA certificates that sign every member's. Errors name the file and
// what is wrong with it.
func LoadPeerTLS(certFile, keyFile, caFile string) (*PeerTLS, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS certificate %s / key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("peer TLS CA %s: no PEM certificate in it", caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("peer TLS certificate %s: %w", certFile, err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	// A node whose own certificate its peers would refuse fails at start,
	// not on every forwarded request.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("peer TLS certificate %s is not signed by the CA in %s: %w", certFile, caFile, err)
	}
	verify := verifyChain(pool)
	return &PeerTLS{
		Server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		Client: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			// The chain is checked below, against the cluster's CA only;
			// the name is not (see PeerTLS).
			InsecureSkipVerify: true,
			VerifyConnection:   verify,
		},
	}, nil
}

// verifyChain checks a server's certificate chain against roots, ignoring
// its names.
func verifyChain(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
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
}
