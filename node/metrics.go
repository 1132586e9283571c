package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ringcache/ringcache/internal/buildinfo"
)

// registerNodeMetrics exposes what describes the node as a whole: its build
// and its origin's circuit breaker.
func (n *Node) registerNodeMetrics() {
	bi := buildinfo.Read()
	n.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "ringcache_build_info",
			Help:        "Always 1; the labels say which build runs (as `ringcache version` does).",
			ConstLabels: prometheus.Labels{"version": bi.Version, "goversion": bi.GoVersion, "revision": bi.Revision},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ringcache_origin_circuit_open",
			Help: "1 while the origin's circuit breaker is open (consecutive transport failures: requests fail fast or serve stale, one probe per cooldown), 0 while closed.",
		}, func() float64 {
			if n.origin.Healthy() {
				return 0
			}
			return 1
		}),
	)
}
