package origin

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/ringcache/ringcache/internal/tlsfiles"
)

// TLSFiles are the TLS settings of an https origin as an operator gives
// them: files and a name. Verification is never turned off: an origin with
// a certificate from a private CA is verified against that CA.
type TLSFiles struct {
	// CAFile names PEM CA certificates that verify the servers instead of
	// the system roots. "" means the system roots.
	CAFile string
	// ServerName is the name sent in SNI and verified in the server's
	// certificate. "" means the host of each server's URL, which suits
	// servers named by their DNS name; servers named by IP address usually
	// need the name their certificate carries.
	ServerName string
	// CertFile and KeyFile name a PEM client certificate (chain) and its
	// key, shown to servers that ask for one (mutual TLS). Both or neither.
	CertFile, KeyFile string
}

// IsZero reports whether nothing is set: system roots, the URL's host, no
// client certificate.
func (f TLSFiles) IsZero() bool { return f == TLSFiles{} }

// Load reads the files into a tlsfiles.Reloader, the one kind of keeper of
// every certificate file a node reads: its material is the servers' TLS
// configuration, and its Current method what PoolOptions.GetTLS and
// ClientOptions.GetTLSConfig take. Watched (or told to Reload), it reads
// the files again when they change on disk, so that a renewed client
// certificate or CA bundle is used by new connections without a restart;
// new contents that do not load are logged, and the current ones stay.
// Load returns nil when f is zero (system roots, nothing to read).
//
// setting names each file in errors and logs, given its field (ca_file,
// cert_file, key_file): origin_tls_ca for origin's CA file, say, or
// origins[1].tls.ca_file. Nil keeps the field's name. An error names the
// file at fault: "ca_file /etc/ca.pem: no such file or directory".
func (f TLSFiles) Load(setting func(field string) string) (*tlsfiles.Reloader[tls.Config], error) {
	if f.IsZero() {
		return nil, nil
	}
	if setting == nil {
		setting = func(field string) string { return field }
	}
	ca := tlsfiles.File{Setting: setting("ca_file"), Path: f.CAFile}
	cert := tlsfiles.File{Setting: setting("cert_file"), Path: f.CertFile}
	key := tlsfiles.File{Setting: setting("key_file"), Path: f.KeyFile}
	switch {
	case f.CertFile == "" && f.KeyFile != "":
		return nil, fmt.Errorf("%s: missing: %s is set", cert.Setting, key.Setting)
	case f.CertFile != "" && f.KeyFile == "":
		return nil, fmt.Errorf("%s: missing: %s is set", key.Setting, cert.Setting)
	}
	var files []tlsfiles.File
	if f.CAFile != "" {
		files = append(files, ca)
	}
	if f.CertFile != "" {
		files = append(files, cert, key)
	}
	return tlsfiles.New(tlsfiles.Options[tls.Config]{
		Files: files,
		Parse: func(data [][]byte) (*tls.Config, error) {
			cfg := &tls.Config{ServerName: f.ServerName}
			if f.CAFile != "" {
				cfg.RootCAs = x509.NewCertPool()
				if !cfg.RootCAs.AppendCertsFromPEM(data[0]) {
					return nil, ca.Errorf("no PEM certificate in it")
				}
				data = data[1:]
			}
			if f.CertFile != "" {
				c, err := tlsfiles.KeyPair(cert, key, data[0], data[1])
				if err != nil {
					return nil, err
				}
				cfg.Certificates = []tls.Certificate{*c}
			}
			return cfg, nil
		},
		Describe: func(cfg *tls.Config) []any {
			if len(cfg.Certificates) == 0 {
				return nil
			}
			return tlsfiles.CertAttrs(&cfg.Certificates[0])
		},
	})
}
