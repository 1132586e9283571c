// Package tlsfiles keeps TLS material read from PEM files current. A
// Reloader reads its files once when it is made (a missing or bad file is
// an error naming the file and the setting that gives it), then again
// whenever what they hold changes, looked at on an interval: rotated
// certificates take effect without a signal or a restart. It compares the
// files' contents, read through any symlinks, not their modification
// times, so a Kubernetes Secret volume — where cert-manager's renewal
// swaps a "..data" symlink to a new directory and the files' own links
// never change — is seen like a file rewritten in place. New contents that
// do not load (a half-written file, a key of another certificate) are
// logged, once, and the material in use stays until the files change
// again. The client listener's certificate, the peer TLS files and the
// origins' CA and client certificate files (origin.TLSFiles.Load) all live
// in a Reloader: one rule for every certificate file a node reads.
package tlsfiles

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often Watch looks at the files when not told:
// a rotation serves new handshakes within a few seconds, for the cost of
// reading a few kilobytes.
const DefaultInterval = 2 * time.Second

// File is one file a Reloader reads, named by the setting that gives it.
type File struct {
	Setting string // "tls_cert": errors and logs name a file by setting and path
	Path    string
}

func (f File) String() string { return f.Setting + " " + f.Path }

// Errorf returns an error about f, e.g. "tls_cert /etc/tls/tls.crt: no PEM
// certificate in it". The format's %w verbs wrap as fmt.Errorf's do.
func (f File) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", f, fmt.Errorf(format, args...))
}

// readError names f in an error of os.ReadFile without repeating the path:
// "tls_cert /etc/tls/tls.crt: no such file or directory". The reason stays
// wrapped (errors.Is(err, fs.ErrNotExist)).
func (f File) readError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", f, err)
}

// Options describe what a Reloader reads and how it loads it.
type Options[T any] struct {
	// Files are read, in this order, each time the Reloader looks.
	Files []File
	// Parse builds the material from the files' contents (data[i] is
	// Files[i]'s). Its errors should name the file at fault (File.Errorf).
	Parse func(data [][]byte) (*T, error)
	// Describe, if set, gives the log attributes of newly loaded material
	// (a certificate's serial number and expiry: see CertAttrs).
	Describe func(*T) []any
}

// Reloader holds the material last loaded from a set of files. Current is
// lock-free, so a TLS handshake can ask for it.
type Reloader[T any] struct {
	o   Options[T]
	cur atomic.Pointer[T]

	mu      sync.Mutex        // one look at the files at a time
	sum     [sha256.Size]byte // what the files held when last read, loaded or not
	lastErr error             // why that did not load; nil when it did

	stop chan struct{} // closed by Close; nil until Watch
	done chan struct{} // closed when the watching goroutine ends
	once sync.Once
}

// New reads and loads the files; its error names the file at fault.
func New[T any](o Options[T]) (*Reloader[T], error) {
	r := &Reloader[T]{o: o}
	if _, err := r.look(true); err != nil {
		return nil, err
	}
	return r, nil
}

// Current returns the material in use, never nil.
func (r *Reloader[T]) Current() *T { return r.cur.Load() }

// Files returns the files r reads, as given.
func (r *Reloader[T]) Files() []File { return r.o.Files }

// Reload reads the files now and loads them even if unchanged (SIGHUP).
// On error the material in use stays.
func (r *Reloader[T]) Reload() error {
	_, err := r.look(true)
	return err
}

// look reads the files and, when forced or when they hold something else
// than at the last look, loads them. It reports whether it tried, and what
// went wrong (a file's error, or the one of contents not changed since).
func (r *Reloader[T]) look(force bool) (tried bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, sum, err := r.read()
	if !force && sum == r.sum {
		return false, r.lastErr
	}
	r.sum = sum
	if err == nil {
		var m *T
		if m, err = r.o.Parse(data); err == nil {
			r.cur.Store(m)
		}
	}
	r.lastErr = err
	return true, err
}

// read returns the files' contents and a fingerprint of them, and the
// error of the first file that cannot be read. Such a file counts by its
// error, so that one that stays missing is one state, reported once.
func (r *Reloader[T]) read() ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	data := make([][]byte, len(r.o.Files))
	var first error
	for i, f := range r.o.Files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			err = f.readError(err)
			if first == nil {
				first = err
			}
			b = []byte("\x00" + err.Error())
		}
		data[i] = b
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return data, sum, first
}

// Watch starts looking at the files every interval (DefaultInterval when
// not positive) until Close, and logs to log what it found: new material
// loaded, or new contents that did not load (the current material stays).
// Call it at most once. Without files there is nothing to watch.
func (r *Reloader[T]) Watch(interval time.Duration, log *slog.Logger) {
	if len(r.o.Files) == 0 {
		return
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
			r.poll(log)
		}
	}()
}

// poll is one look by Watch; a panic (in Parse) is logged, not fatal.
func (r *Reloader[T]) poll(log *slog.Logger) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("TLS files: panic while reloading", "files", r.names(), "panic", p)
		}
	}()
	tried, err := r.look(false)
	switch {
	case !tried:
	case err != nil:
		log.Error("TLS files changed but do not load; the current ones stay in use", "files", r.names(), "err", err)
	default:
		attrs := []any{"files", r.names()}
		if r.o.Describe != nil {
			attrs = append(attrs, r.o.Describe(r.Current())...)
		}
		log.Info("TLS files changed; new handshakes use the new certificate", attrs...)
	}
}

// names lists the files for logs: "tls_cert /a.pem, tls_key /b.pem".
func (r *Reloader[T]) names() string {
	s := make([]string, len(r.o.Files))
	for i, f := range r.o.Files {
		s[i] = f.String()
	}
	return strings.Join(s, ", ")
}

// Close stops Watch and waits for it; the material stays usable. Safe to
// call more than once, and without Watch.
func (r *Reloader[T]) Close() {
	r.once.Do(func() {
		if r.stop != nil {
			close(r.stop)
			<-r.done
		}
	})
}

// KeyPair parses a PEM certificate chain and its PEM private key, the
// contents of cert and key, as tls.X509KeyPair does, with errors that name
// the file at fault. The result's Leaf is set.
func KeyPair(cert, key File, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	if !hasBlock(certPEM, func(typ string) bool { return typ == "CERTIFICATE" }) {
		return nil, cert.Errorf("no PEM certificate in it")
	}
	if !hasBlock(keyPEM, func(typ string) bool { return strings.HasSuffix(typ, "PRIVATE KEY") }) {
		return nil, key.Errorf("no PEM private key in it")
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", cert, key, err)
	}
	return &c, nil
}

// hasBlock reports whether data holds a PEM block of a type ok accepts.
func hasBlock(data []byte, ok func(typ string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if ok(b.Type) {
			return true
		}
	}
}

// CertAttrs are log attributes of a certificate: its subject, serial
// number and expiry.
func CertAttrs(c *tls.Certificate) []any {
	if c == nil || c.Leaf == nil {
		return nil
	}
	return []any{"subject", c.Leaf.Subject.String(), "serial", c.Leaf.SerialNumber.String(), "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339)}
}
