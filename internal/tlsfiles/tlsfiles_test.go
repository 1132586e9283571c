package tlsfiles

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 10 * time.Second

// newKeyPair writes ca's certificate serial 1 and its key to tls.crt and
// tls.key in a new directory and loads them.
func newKeyPair(t *testing.T, ca *testutil.CA) (r *Reloader[tls.Certificate], cert, key string) {
	t.Helper()
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, k1 := ca.Issue(t, "node", 1)
	write(t, cert, c1)
	write(t, key, k1)
	r, err := New(keyPairOptions(cert, key))
	if err != nil {
		t.Fatal(err)
	}
	return r, cert, key
}

// keyPairOptions load a certificate and key, as the client listener does.
func keyPairOptions(cert, key string) Options[tls.Certificate] {
	c, k := File{"tls_cert", cert}, File{"tls_key", key}
	return Options[tls.Certificate]{
		Files:    []File{c, k},
		Parse:    func(data [][]byte) (*tls.Certificate, error) { return KeyPair(c, k, data[0], data[1]) },
		Describe: func(m *tls.Certificate) []any { return CertAttrs(m) },
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func serial(r *Reloader[tls.Certificate]) int64 { return r.Current().Leaf.SerialNumber.Int64() }

func TestNewErrorsNameTheFile(t *testing.T) {
	ca := testutil.NewCA(t)
	dir := t.TempDir()
	certA, keyA := ca.Issue(t, "a", 1)
	_, keyB := ca.Issue(t, "b", 2)
	files := map[string][]byte{"a.crt": certA, "a.key": keyA, "b.key": keyB, "junk": []byte("half-written\n")}
	for name, data := range files {
		write(t, filepath.Join(dir, name), data)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, tc := range []struct {
		name      string
		cert, key string
		want      string
	}{
		{"missing cert", p("nope.crt"), p("a.key"), "tls_cert " + p("nope.crt") + ": no such file or directory"},
		{"missing key", p("a.crt"), p("nope.key"), "tls_key " + p("nope.key") + ": no such file or directory"},
		{"directory", dir, p("a.key"), "tls_cert " + dir + ": is a directory"},
		{"cert not PEM", p("junk"), p("a.key"), "tls_cert " + p("junk") + ": no PEM certificate in it"},
		{"key not PEM", p("a.crt"), p("junk"), "tls_key " + p("junk") + ": no PEM private key in it"},
		{"files swapped", p("a.key"), p("a.crt"), "tls_cert " + p("a.key") + ": no PEM certificate in it"},
		{"key of another certificate", p("a.crt"), p("b.key"),
			"tls_cert " + p("a.crt") + " and tls_key " + p("b.key") + ": tls: private key does not match public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(keyPairOptions(tc.cert, tc.key))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := New(keyPairOptions(p("nope.crt"), p("a.key"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file's error %v does not wrap fs.ErrNotExist", err)
	}
	r, err := New(keyPairOptions(p("a.crt"), p("a.key")))
	if err != nil {
		t.Fatal(err)
	}
	if serial(r) != 1 {
		t.Fatalf("serial %d, want 1", serial(r))
	}
}

// TestWatchInPlace: files rewritten in place are loaded without being
// asked; a broken rewrite is logged once and the old certificate stays
// until the files are good again.
func TestWatchInPlace(t *testing.T) {
	ca := testutil.NewCA(t)
	r, cert, key := newKeyPair(t, ca)
	var logs testutil.LogBuffer
	r.Watch(5*time.Millisecond, logs.Logger())
	defer r.Close()

	c2, k2 := ca.Issue(t, "node", 2)
	write(t, key, k2) // the key first: until the certificate follows, they do not match
	write(t, cert, c2)
	testutil.Eventually(t, testTimeout, func() bool { return serial(r) == 2 }, func() string {
		return "serial 2 after rewriting the files; logs:\n" + logs.String()
	})
	testutil.WaitFor(t, testTimeout, func() bool { return strings.Contains(logs.String(), "serial=2") }, "the reload to be logged")

	write(t, cert, []byte("-----BEGIN CERTIFICATE-----\nhalf"))
	testutil.Eventually(t, testTimeout, func() bool {
		return strings.Contains(logs.String(), "tls_cert "+cert+": no PEM certificate in it")
	}, func() string {
		return "the broken file to be logged, naming it; logs:\n" + logs.String()
	})
	if serial(r) != 2 {
		t.Fatalf("serial %d after a broken rewrite, want 2 still", serial(r))
	}
	// The same broken content is not logged again and again.
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	lines := strings.Count(logs.String(), "do not load")
	r.poll(logs.Logger())
	r.poll(logs.Logger())
	if got := strings.Count(logs.String(), "do not load"); got != lines {
		t.Errorf("unchanged broken files logged %d more times", got-lines)
	}

	c3, k3 := ca.Issue(t, "node", 3)
	write(t, key, k3)
	write(t, cert, c3)
	testutil.Eventually(t, testTimeout, func() bool { return serial(r) == 3 }, func() string {
		return "serial 3 after repairing the files; logs:\n" + logs.String()
	})
}

// TestWatchSecretVolume: a Kubernetes Secret update swaps the "..data"
// symlink; the files' own links and times say nothing, their contents do.
func TestWatchSecretVolume(t *testing.T) {
	ca := testutil.NewCA(t)
	vol := testutil.NewSecretDir(t)
	c1, k1 := ca.Issue(t, "node", 10)
	vol.Update(t, map[string][]byte{"tls.crt": c1, "tls.key": k1})
	r, err := New(keyPairOptions(vol.Path("tls.crt"), vol.Path("tls.key")))
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.LogBuffer
	r.Watch(5*time.Millisecond, logs.Logger())
	defer r.Close()
	for s := int64(11); s <= 12; s++ {
		c, k := ca.Issue(t, "node", s)
		vol.Update(t, map[string][]byte{"tls.crt": c, "tls.key": k})
		testutil.Eventually(t, testTimeout, func() bool { return serial(r) == s }, func() string {
			return "the swapped secret's certificate; logs:\n" + logs.String()
		})
	}
	// A bad update (a key of another certificate) keeps the old one.
	c, _ := ca.Issue(t, "node", 13)
	_, k := ca.Issue(t, "node", 14)
	vol.Update(t, map[string][]byte{"tls.crt": c, "tls.key": k})
	testutil.Eventually(t, testTimeout, func() bool { return strings.Contains(logs.String(), "private key does not match") }, func() string {
		return "the mismatch to be logged; logs:\n" + logs.String()
	})
	if serial(r) != 12 {
		t.Fatalf("serial %d after a bad update, want 12", serial(r))
	}
}

// TestMissingFileOnce: a file that disappears is logged once, and loaded
// again when it comes back.
func TestMissingFileOnce(t *testing.T) {
	ca := testutil.NewCA(t)
	r, cert, key := newKeyPair(t, ca)
	defer r.Close() // without Watch: nothing to stop
	var logs testutil.LogBuffer
	log := logs.Logger()
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	r.poll(log)
	r.poll(log)
	if n := strings.Count(logs.String(), "no such file or directory"); n != 1 {
		t.Fatalf("a missing file logged %d times, want once:\n%s", n, logs.String())
	}
	c2, k2 := ca.Issue(t, "node", 2)
	write(t, key, k2)
	write(t, cert, c2)
	r.poll(log)
	if serial(r) != 2 {
		t.Fatalf("serial %d, want 2:\n%s", serial(r), logs.String())
	}
}
