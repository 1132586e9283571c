package main

// HTTPS on the client listener, with the real binary: certificate files
// named in the environment, a hit over TLS, and a certificate rotated on
// disk served without a signal, at the default check interval.

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

func TestProcessTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	binary := buildBinary(t)
	listenRE := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)
	orig := startChild(t, binary, "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, listenRE, "the origin process to log its address")

	ca := testutil.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair := func(serial int64) {
		t.Helper()
		cert, key := ca.Issue(t, "ringcache", serial)
		// Renamed into place, each file whole, as a careful deploy script
		// would: the key first, so the pair is mismatched for a moment.
		for path, data := range map[string][]byte{keyFile: key, certFile: cert} {
			if err := os.WriteFile(path+".new", data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}
	}
	writePair(1)
	srv := startChildEnv(t, binary, cleanEnv("RINGCACHE_TLS_CERT="+certFile, "RINGCACHE_TLS_KEY="+keyFile),
		"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin", "http://"+originAddr)
	addr := waitMatch(t, srv.stderr, listenRE, "the serve process to log its address")

	c := &fasthttp.Client{ReadTimeout: 10 * time.Second, TLSConfig: &tls.Config{RootCAs: ca.Pool()}}
	defer c.CloseIdleConnections()
	for i, want := range []string{"fwd=uri-miss", "hit"} {
		r, err := testutil.Do(c, fasthttp.MethodGet, "https://"+addr+"/tls?cc=max-age=60", nil)
		if err != nil {
			t.Fatalf("request %d over TLS: %v\n%s", i, err, srv.stderr)
		}
		testutil.ExpectStatus(t, fmt.Sprintf("request %d", i), r, 200)
		testutil.ExpectCacheStatus(t, fmt.Sprintf("request %d", i), r, want)
	}

	serial := func() (int64, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	writePair(2)
	var got int64
	var err error
	testutil.Eventually(t, 20*time.Second, func() bool { got, err = serial(); return err == nil && got == 2 }, func() string {
		return fmt.Sprintf("the rotated certificate (serial 2) without a signal; last %d, %v; output:\n%s", got, err, srv.stderr)
	})

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
		if srv.err != nil {
			t.Fatalf("serve exited with %v:\n%s", srv.err, srv.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
