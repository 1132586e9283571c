package node

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/tlsfiles"
	"github.com/ringcache/ringcache/origin"
	"github.com/ringcache/ringcache/proxy"
)

// The proxy fetches from, and tunnels to, the origin router: it knows
// nothing of pools, only that each request names its authority in Host.
var (
	_ proxy.Fetcher = (*origin.Router)(nil)
	_ proxy.Dialer  = (*origin.Router)(nil)
)

// newOrigins builds the origin router from cfg: origin (with the
// origin_tls_* settings) as the default pool of one server, then the pools
// of origins. It returns the TLS files read too, each kept by a
// tlsfiles.Reloader as the node's other certificate files are, for the
// node to watch: connections to the origins use what they hold at the
// time. A TLS file that cannot be used is named by its setting.
func newOrigins(cfg config.Config, metrics *proxy.Metrics, log *slog.Logger) (*origin.Router, []*tlsfiles.Reloader[tls.Config], error) {
	var pools []origin.PoolOptions
	var files []*tlsfiles.Reloader[tls.Config]
	// load reads a pool's files; the pool gets no configuration (system
	// roots) when none is set.
	load := func(p *origin.PoolOptions, f origin.TLSFiles, setting func(field string) string) error {
		r, err := f.Load(setting)
		if err != nil || r == nil {
			return err
		}
		files = append(files, r)
		p.GetTLS = r.Current
		return nil
	}
	if cfg.Origin != "" {
		p := origin.PoolOptions{Servers: []string{cfg.Origin}}
		f := origin.TLSFiles{CAFile: cfg.OriginTLSCA, ServerName: cfg.OriginTLSServerName, CertFile: cfg.OriginTLSCert, KeyFile: cfg.OriginTLSKey}
		if err := load(&p, f, func(field string) string {
			return map[string]string{"ca_file": "origin_tls_ca", "cert_file": "origin_tls_cert", "key_file": "origin_tls_key"}[field]
		}); err != nil {
			return nil, nil, err
		}
		pools = append(pools, p)
	}
	for i, pc := range cfg.Origins {
		p := origin.PoolOptions{Hosts: pc.Hosts, Servers: pc.Servers, Balance: pc.Balance, HealthCheck: pc.HealthCheck}
		if err := load(&p, pc.TLS, func(field string) string { return fmt.Sprintf("origins[%d].tls.%s", i, field) }); err != nil {
			return nil, nil, err
		}
		pools = append(pools, p)
	}
	r, err := origin.NewRouter(origin.RouterOptions{
		Client: origin.ClientOptions{
			ConnectTimeout:  cfg.OriginConnectTimeout,
			ResponseTimeout: cfg.OriginTimeout,
			MaxConns:        cfg.OriginMaxConns,
			PreserveHost:    cfg.PreserveHost,
			Observe:         metrics.ObserveOrigin,
		},
		Pools:  pools,
		Logger: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("origin: %w", err)
	}
	return r, files, nil
}

// originCollector exposes each origin server's state: whether it is up
// (circuit closed, health check passing), its circuit, and the requests
// sent to it.
type originCollector struct {
	r                  *origin.Router
	up, open, requests *prometheus.Desc
}

func newOriginCollector(r *origin.Router) *originCollector {
	labels := []string{"pool", "server"}
	return &originCollector{
		r: r,
		up: prometheus.NewDesc("ringcache_origin_up",
			"1 while the origin server is in rotation: its circuit breaker is closed and its health check (if any) passes; 0 otherwise.", labels, nil),
		open: prometheus.NewDesc("ringcache_origin_circuit_open",
			"1 while the origin server's circuit breaker is open (consecutive transport failures: it is skipped, or requests fail fast or serve stale when it is the only one, one probe per cooldown), 0 while closed.", labels, nil),
		requests: prometheus.NewDesc("ringcache_origin_requests_total",
			"Requests sent to the origin server (round trips and tunnel dials), whatever their outcome.", labels, nil),
	}
}

func (c *originCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.open
	ch <- c.requests
}

func (c *originCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.r.Status() {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b2f(s.Up), s.Pool, s.Server)
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, b2f(s.CircuitOpen), s.Pool, s.Server)
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(s.Requests), s.Pool, s.Server)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
