package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ringcache/ringcache/internal/buildinfo"
)

// registerNodeMetrics exposes what describes the node as a whole: its build
// and its origin servers.
func (n *Node) registerNodeMetrics() {
	bi := buildinfo.Read()
	n.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "ringcache_build_info",
			Help:        "Always 1; the labels say which build runs (as `ringcache version` does).",
			ConstLabels: prometheus.Labels{"version": bi.Version, "goversion": bi.GoVersion, "revision": bi.Revision},
		}, func() float64 { return 1 }),
		newOriginCollector(n.origins),
	)
}
