package node

import (
	"crypto/tls"
	"strconv"

	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/tlsfiles"
)

// HTTPS for clients. With tls_cert and tls_key, listen speaks TLS only:
// TLS replaces plain HTTP rather than adding a second client port, so a
// node has one address its clients use whatever the deployment, and no
// plain door is left open by mistake beside the secure one. A client that
// sends plain HTTP anyway is answered 400 (plainToTLS). Members that share
// listen (no peer_listen) still reach it: every connection is TLS, and a
// handshake that offers the peers' protocols is answered with peer TLS,
// which demands a member's certificate (sharedTLS); any other is a
// client's. Clients get HTTP/1.1 (fasthttp speaks nothing else): HTTP/2
// is for a proxy in front to terminate.

// loadClientTLS reads tls_cert and tls_key; errors name the file.
func loadClientTLS(cfg config.Config) (*tlsfiles.Reloader[tls.Certificate], error) {
	cert, key := tlsfiles.File{Setting: "tls_cert", Path: cfg.TLSCert}, tlsfiles.File{Setting: "tls_key", Path: cfg.TLSKey}
	return tlsfiles.New(tlsfiles.Options[tls.Certificate]{
		Files:    []tlsfiles.File{cert, key},
		Parse:    func(data [][]byte) (*tls.Certificate, error) { return tlsfiles.KeyPair(cert, key, data[0], data[1]) },
		Describe: tlsfiles.CertAttrs,
	})
}

// clientTLSConfig is what clients get on listen: TLS 1.2 or 1.3, for
// TLS 1.2 only forward-secret AEAD suites (Mozilla's "intermediate"
// profile; TLS 1.3's suites are all of that kind and not configurable),
// HTTP/1.1, and the certificate files hold now.
func clientTLSConfig(files *tlsfiles.Reloader[tls.Certificate]) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		// A client offering only h2 is refused in the handshake rather
		// than served a protocol it did not ask for.
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return files.Current(), nil
		},
	}
}

// sharedTLS serves members and clients on one port: a handshake offering
// the peers' protocols gets peer TLS (a member's certificate required),
// any other the clients' configuration. Neither can end up on the other's
// side: a client's handshake never agrees on a peer protocol, which is
// what routes a connection to the peer listeners.
func sharedTLS(client *tls.Config, peer *cluster.PeerTLS) *tls.Config {
	return &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if cluster.OffersPeerProtocol(hello) {
				return peer.ServerConfig(hello)
			}
			return client, nil
		},
	}
}

// plainToTLS answers a plain HTTP request sent to a TLS-only listen.
var plainToTLS = func() []byte {
	const body = "400 Bad Request: this port speaks HTTPS; use https://\n"
	return []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()
