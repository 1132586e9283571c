package origin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
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

// Config reads the files and returns the TLS configuration for
// ClientOptions.TLSConfig or PoolOptions.TLS; nil when f is zero. An error
// is a *FileError naming the file at fault.
func (f TLSFiles) Config() (*tls.Config, error) {
	if f.IsZero() {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fileError("ca_file", f.CAFile, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fileError("ca_file", f.CAFile, errors.New("no PEM certificate in the file"))
		}
	}
	switch {
	case f.CertFile == "" && f.KeyFile == "":
	case f.CertFile == "":
		return nil, fileError("cert_file", "", errors.New("missing: key_file is set"))
	case f.KeyFile == "":
		return nil, fileError("key_file", "", errors.New("missing: cert_file is set"))
	default:
		certPEM, err := os.ReadFile(f.CertFile)
		if err != nil {
			return nil, fileError("cert_file", f.CertFile, err)
		}
		keyPEM, err := os.ReadFile(f.KeyFile)
		if err != nil {
			return nil, fileError("key_file", f.KeyFile, err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// Which of the two is at fault is not always clear (a key of
			// another certificate): name the certificate, and its key.
			return nil, fileError("cert_file", f.CertFile, fmt.Errorf("with key_file %s: %w", f.KeyFile, err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// FileError is a TLS file that could not be used. Field is the TLSFiles
// field at fault as the configuration of a pool spells it (ca_file,
// cert_file, key_file), so that the caller can name its own setting.
type FileError struct {
	Field string
	Path  string
	Err   error
}

func (e *FileError) Error() string {
	if e.Path == "" {
		return e.Field + ": " + e.Err.Error()
	}
	return e.Field + " " + e.Path + ": " + e.Err.Error()
}
func (e *FileError) Unwrap() error { return e.Err }

func fileError(field, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is said once, by FileError
	}
	return &FileError{Field: field, Path: path, Err: err}
}
