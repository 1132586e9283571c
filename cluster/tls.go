package cluster

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"time"

	"github.com/ringcache/ringcache/internal/tlsfiles"
)

// PeerALPN is the TLS application protocol of the members' HTTP exchange
// (forwarded requests, handoffs, purges); FramesALPN is the lookup
// exchange's. A peer listener serves both, routed by what the handshake
// agreed on.
const PeerALPN = "ringcache-peer/1"

// serverProtos are the protocols a peer listener offers.
var serverProtos = []string{PeerALPN, FramesALPN}

// PeerTLS is mutual TLS 1.3 between members: all peer traffic (forwarded
// requests and their answers, lookups, handoffs, purges) is encrypted, and
// both ends prove membership before a byte of HTTP is exchanged, so a
// stranger can neither read users' requests nor answer them, and a
// captured exchange cannot be replayed.
//
// Membership is proven one of two ways. With SecretPeerTLS every member
// derives the same key from the peer secret, and a peer is whoever holds
// it. With LoadPeerTLS every member presents a certificate signed by the
// cluster's CA. Names are not checked either way, since members are
// addressed by IP and come and go.
//
// The files of LoadPeerTLS are kept current by a tlsfiles.Reloader: Watch
// reloads them when they change on disk, Reload at once (SIGHUP).
// Connections already open keep the certificates they started with.
type PeerTLS struct {
	Server *tls.Config // for the peer listener
	Client *tls.Config // for requests to peers (PeerOptions.TLS)

	files *tlsfiles.Reloader[tlsMaterial] // nil for SecretPeerTLS
}

// tlsMaterial is one reading of the files.
type tlsMaterial struct {
	cert   *tls.Certificate
	roots  *x509.CertPool
	server *tls.Config // per handshake, built once per reading
}

// LoadPeerTLS reads a PEM certificate chain and key for this node and the
// PEM CA certificates that sign every member's. Errors name the file, by
// its setting (peer_tls_cert, peer_tls_key, peer_tls_ca), and what is
// wrong with it.
func LoadPeerTLS(certFile, keyFile, caFile string) (*PeerTLS, error) {
	cert, key, ca := tlsfiles.File{Setting: "peer_tls_cert", Path: certFile},
		tlsfiles.File{Setting: "peer_tls_key", Path: keyFile}, tlsfiles.File{Setting: "peer_tls_ca", Path: caFile}
	files, err := tlsfiles.New(tlsfiles.Options[tlsMaterial]{
		Files: []tlsfiles.File{cert, key, ca},
		Parse: func(data [][]byte) (*tlsMaterial, error) {
			return parsePeerFiles(cert, key, ca, data[0], data[1], data[2])
		},
		Describe: func(m *tlsMaterial) []any { return tlsfiles.CertAttrs(m.cert) },
	})
	if err != nil {
		return nil, err
	}
	t := &PeerTLS{files: files}
	t.Server = &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: serverProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return files.Current().server, nil
		},
	}
	t.Client = &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{PeerALPN},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return files.Current().cert, nil
		},
		// The chain is checked in VerifyConnection, against the cluster's
		// CA only; the name is not (see PeerTLS).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs, files.Current().roots)
		},
	}
	return t, nil
}

// parsePeerFiles loads one reading of the peer TLS files: a key pair that
// the CA signed.
func parsePeerFiles(certFile, keyFile, caFile tlsfiles.File, certPEM, keyPEM, caPEM []byte) (*tlsMaterial, error) {
	cert, err := tlsfiles.KeyPair(certFile, keyFile, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, caFile.Errorf("no PEM certificate in it")
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	// A node whose own certificate its peers would refuse fails here, not
	// on every forwarded request.
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, certFile.Errorf("not signed by the CA in %s: %w", caFile.Path, err)
	}
	return &tlsMaterial{
		cert:  cert,
		roots: roots,
		server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			NextProtos:   serverProtos,
			Certificates: []tls.Certificate{*cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    roots,
		},
	}, nil
}

// Reload reads the files again and, if they hold a key pair signed by the
// CA, uses them for every handshake from now on. On error the current
// certificates stay in use. For SecretPeerTLS there is nothing to re-read.
func (t *PeerTLS) Reload() error {
	if t.files == nil {
		return nil
	}
	return t.files.Reload()
}

// Watch reloads the files whenever they change on disk, looking every
// interval (tlsfiles.DefaultInterval when not positive) until Close, and
// logs each change to log. Nothing to watch for SecretPeerTLS.
func (t *PeerTLS) Watch(interval time.Duration, log *slog.Logger) {
	if t.files != nil {
		t.files.Watch(interval, log)
	}
}

// Close stops Watch.
func (t *PeerTLS) Close() {
	if t.files != nil {
		t.files.Close()
	}
}

// ServerConfig returns the configuration a member's handshake with this
// node's peer listener uses, for a listener that also serves clients TLS
// of its own (see OffersPeerProtocol): the Server configuration resolved
// for hello.
func (t *PeerTLS) ServerConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if t.Server.GetConfigForClient != nil {
		return t.Server.GetConfigForClient(hello)
	}
	return t.Server, nil
}

// OffersPeerProtocol reports whether a TLS ClientHello offers one of the
// members' application protocols, as every member's does: a listener
// serving members and clients TLS on one port answers it with the peer
// configuration, which demands a member's certificate, and anything else
// with the clients'. A client claiming a peer protocol gets nowhere
// without a member's certificate.
func OffersPeerProtocol(hello *tls.ClientHelloInfo) bool {
	for _, p := range hello.SupportedProtos {
		if slices.Contains(serverProtos, p) {
			return true
		}
	}
	return false
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

// SecretPeerTLS returns mutual TLS for members that share secret: each
// presents a certificate for an Ed25519 key derived from the secret and
// accepts only a peer presenting the same public key, which only a holder
// of the secret can (TLS 1.3 makes each side sign the handshake). This is
// the default: peer traffic is never plaintext.
func SecretPeerTLS(secret []byte) (*PeerTLS, error) {
	seed, err := derive(secret, purposePeerTLS, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("peer TLS key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	// A fixed, self-signed certificate: what it says beyond the key is never
	// read, and a validity spanning any plausible clock keeps skewed or
	// unsynchronised members talking.
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ringcache peer"},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("peer TLS certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	verify := func(cs tls.ConnectionState) error { return samePublicKey(cs, pub) }
	t := &PeerTLS{
		Server: &tls.Config{
			MinVersion:       tls.VersionTLS13,
			NextProtos:       serverProtos,
			Certificates:     []tls.Certificate{cert},
			ClientAuth:       tls.RequireAnyClientCert, // checked by VerifyConnection
			VerifyConnection: verify,
		},
		Client: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			NextProtos:   []string{PeerALPN},
			Certificates: []tls.Certificate{cert},
			// No CA to check against: VerifyConnection compares the key.
			InsecureSkipVerify: true,
			VerifyConnection:   verify,
		},
	}
	return t, nil
}

// samePublicKey accepts a peer whose certificate carries the cluster's key.
func samePublicKey(cs tls.ConnectionState, want ed25519.PublicKey) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("peer presented no certificate")
	}
	got, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || !got.Equal(want) {
		return errors.New("peer certificate is not the cluster's: another peer secret")
	}
	return nil
}
