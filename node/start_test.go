package node

// Start's failures: every error names the setting and its value, and a
// failed Start leaves no goroutine and no listener behind.

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/origin"
	"go.uber.org/goleak"
)

func TestStartErrorsLeaveNothing(t *testing.T) {
	o := startTestOrigin(t, "127.0.0.1:0")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tlsFiles := testutil.NewCA(t).WriteFiles(t, t.TempDir(), "node", 1)
	certFile, keyFile := tlsFiles.Cert, tlsFiles.Key
	// Each case fails at a later step than the one before: the listeners
	// taken by then must be given back.
	for _, tc := range []struct {
		name   string
		mutate func(c *config.Config, busy string)
		want   string // the error, with BUSY for the busy address
	}{
		{"listen", func(c *config.Config, busy string) { c.Listen = busy },
			"listen BUSY: address already in use"},
		{"listen, with origin health checks running", func(c *config.Config, busy string) {
			c.Listen = busy
			// Checks of an address nothing listens on: a server's
			// workers, answering them, would outlive the test's Start.
			c.Origins = []config.OriginPool{{Hosts: []string{"a.example"}, Servers: []string{"http://" + testutil.FreeAddr(t)},
				HealthCheck: origin.HealthCheck{Path: "/health", Interval: time.Millisecond}}}
		}, "listen BUSY: address already in use"},
		{"origin TLS file", func(c *config.Config, _ string) {
			c.Origins = []config.OriginPool{{Hosts: []string{"a.example"}, Servers: []string{"https://127.0.0.1:1"},
				TLS: origin.TLSFiles{CAFile: missing}}}
		}, "origins[0].tls.ca_file " + missing + ": no such file or directory"},
		{"tls_cert", func(c *config.Config, _ string) { c.TLSCert, c.TLSKey = missing, keyFile },
			"tls_cert " + missing + ": no such file or directory"},
		// The certificate loaded and watched: the watcher must stop too.
		{"listen with TLS", func(c *config.Config, busy string) { c.TLSCert, c.TLSKey, c.Listen = certFile, keyFile, busy },
			"listen BUSY: address already in use"},
		{"peer TLS files", func(c *config.Config, _ string) {
			c.Gossip, c.PeerTLSCert, c.PeerTLSKey, c.PeerTLSCA = "127.0.0.1:0", missing, missing, missing
		}, "peer_tls_cert " + missing + ": no such file or directory"},
		{"access log", func(c *config.Config, _ string) { c.AccessLog = filepath.Dir(missing) },
			"access_log " + filepath.Dir(missing) + ": is a directory"},
		{"peer_listen", func(c *config.Config, busy string) { c.Gossip, c.PeerListen = "127.0.0.1:0", busy },
			"peer_listen BUSY: address already in use"},
		{"admin", func(c *config.Config, busy string) {
			c.Gossip, c.PeerListen, c.Admin = "127.0.0.1:0", "127.0.0.1:0", busy
		},
			"admin BUSY: address already in use"},
		{"gossip", func(c *config.Config, busy string) { c.Gossip, c.PeerListen = busy, "127.0.0.1:0" },
			"gossip BUSY: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy := testutil.HoldAddr(t)
			cfg := config.Default()
			cfg.Origin = "http://" + o.addr
			cfg.CacheSize = 16 << 20
			cfg.PeerSecret = "start-test-secret-0123456789"
			cfg.AccessLog = filepath.Join(t.TempDir(), "access.log") // its flusher must stop too
			// Fixed free ports rather than :0, to check they are free again.
			cfg.Listen, cfg.Admin = testutil.FreeAddr(t), testutil.FreeAddr(t)
			tc.mutate(&cfg, busy)
			if cfg.PeerListen == "127.0.0.1:0" {
				cfg.PeerListen = testutil.FreeAddr(t)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("test config: %v", err)
			}
			before := goleak.IgnoreCurrent()
			n, err := Start(cfg, Options{})
			if err == nil {
				n.Close(t.Context())
				t.Fatal("Start succeeded")
			}
			if want := strings.ReplaceAll(tc.want, "BUSY", busy); err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if strings.Contains(tc.want, "in use") && !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("error %v does not wrap EADDRINUSE", err)
			}
			for _, addr := range []string{cfg.Listen, cfg.Admin, cfg.PeerListen} {
				if addr == "" || addr == busy {
					continue
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("%s still taken after the failed Start: %v", addr, err)
					continue
				}
				ln.Close()
			}
			goleak.VerifyNone(t, append(testutil.FasthttpHousekeeping(), before)...)
		})
	}
}
