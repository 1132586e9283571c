package proxy

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/ringcache/ringcache/cache"
)

// Outcome is how a request was answered, the label of
// ringcache_requests_total.
type Outcome uint8

const (
	Hit         Outcome = iota // fresh stored response
	StaleHit                   // stale response allowed by max-stale or stale-while-revalidate
	StaleError                 // stale response served because the origin failed (stale-if-error)
	Miss                       // fetched from the origin
	Revalidated                // stored response validated by a 304 from the origin
	Pass                       // not cacheable: relayed from the origin (unsafe method, range, private, ...)
	Error                      // the origin failed and nothing stored could answer
	Forwarded                  // answered by the key's owner, another member
	Takeover                   // answered with the copy held by the key's previous owner
	numOutcomes
)

var outcomeText = [numOutcomes]string{"hit", "stale", "stale_error", "miss", "revalidated", "pass", "error", "forwarded", "takeover"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeText[o]
	}
	return "unknown"
}

// Metrics are a node's Prometheus instruments, registered on a registry of
// the caller's so that several nodes can live in one process.
type Metrics struct {
	requests [numOutcomes]prometheus.Counter
	// durations are ringcache_request_duration_seconds's children, bound
	// once like requests': observing one allocates nothing.
	durations [numOutcomes]prometheus.Observer
	coalesced prometheus.Counter
	// coalesceOverdue counts waiters still waiting after CoalesceTimeout,
	// coalesceHedged the fetches started again for them.
	coalesceOverdue prometheus.Counter
	coalesceHedged  prometheus.Counter
	revalidations   prometheus.Counter
	origin          *prometheus.HistogramVec
	peer            *prometheus.HistogramVec
	peerFallbacks   prometheus.Counter
	purges          *prometheus.CounterVec
	purgedEntries   prometheus.Counter
	announcements   *prometheus.CounterVec
	// tunnels counts the connections switched to another protocol
	// (Upgrade, e.g. WebSocket), tunnelsOpen those open now.
	tunnels     prometheus.Counter
	tunnelsOpen prometheus.Gauge
}

// NewMetrics creates the proxy's instruments on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ringcache_requests_total",
		Help: "Proxied requests by cache outcome.",
	}, []string{"outcome"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ringcache_request_duration_seconds",
		Help: "Proxied requests, from the handler's start until the response is ready to write (a streamed body's transfer is not included), by cache outcome.",
		// From a hit (microseconds) to an origin at its timeout.
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"outcome"})
	for o := Outcome(0); o < numOutcomes; o++ {
		// Resolve the children once: the hit path only does atomic adds.
		m.requests[o] = requests.WithLabelValues(o.String())
		m.durations[o] = durations.WithLabelValues(o.String())
	}
	m.coalesced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringcache_coalesced_requests_total",
		Help: "Requests that waited for another request's origin fetch instead of making their own.",
	})
	m.coalesceOverdue = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringcache_coalesce_overdue_total",
		Help: "Coalesced requests still waiting after coalesce_timeout (they keep waiting, up to origin_timeout more).",
	})
	m.coalesceHedged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringcache_coalesce_hedged_total",
		Help: "Fetches started again, at most one per slow fetch, by a request that waited coalesce_timeout.",
	})
	m.revalidations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringcache_background_revalidations_total",
		Help: "Background refreshes started by stale-while-revalidate.",
	})
	m.origin = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ringcache_origin_request_duration_seconds",
		Help:    "Origin round trips, until the response header, by result.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"result"})
	m.peer = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ringcache_peer_request_duration_seconds",
		Help:    "Requests forwarded to the owning member, until its response header, by result.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"result"})
	m.peerFallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringcache_peer_fallbacks_total",
		Help: "Requests served locally because the owning member could not answer.",
	})
	m.purges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ringcache_purges_total",
		Help: "Purges applied on this node, by kind (url, tag, prefix, all; keys: invalidations announced by another member).",
	}, []string{"kind"})
	m.purgedEntries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringcache_purged_entries_total",
		Help: "Stored responses dropped by purges on this node.",
	})
	m.announcements = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ringcache_invalidation_announcements_total",
		Help: "Keys invalidated here by unsafe requests and announced to the other members, by result (sent, failed, dropped).",
	}, []string{"result"})
	m.tunnels = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringcache_tunnels_total",
		Help: "Client connections switched to another protocol (Upgrade, e.g. WebSocket) and tunnelled to the origin after its 101.",
	})
	m.tunnelsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ringcache_tunnels_open",
		Help: "Tunnels to the origin (Upgrade, e.g. WebSocket) open now.",
	})
	if reg != nil {
		reg.MustRegister(requests, durations, m.coalesced, m.coalesceOverdue, m.coalesceHedged, m.revalidations, m.origin, m.peer, m.peerFallbacks, m.purges, m.purgedEntries, m.announcements,
			m.tunnels, m.tunnelsOpen)
	}
	return m
}

// ObserveOrigin records one origin round trip; it fits origin.ClientOptions.Observe.
func (m *Metrics) ObserveOrigin(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			result = "timeout"
		}
	}
	m.origin.WithLabelValues(result).Observe(d.Seconds())
}

// observePurge counts a purge applied on this node and the responses it
// dropped.
func (m *Metrics) observePurge(kind string, dropped int) {
	m.purges.WithLabelValues(kind).Inc()
	m.purgedEntries.Add(float64(dropped))
}

func (m *Metrics) observePeer(nanos int64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.peer.WithLabelValues(result).Observe(float64(nanos) / 1e9)
}

// RegisterStore exposes a store's counters on reg.
func RegisterStore(reg prometheus.Registerer, st cache.Store) {
	stat := func(f func(cache.Stats) float64) func() float64 {
		return func() float64 { return f(st.Stats()) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ringcache_store_bytes", Help: "Bytes held by the store, as charged against its budget."},
			stat(func(s cache.Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ringcache_store_items", Help: "Entries held by the cache."},
			stat(func(s cache.Stats) float64 { return float64(s.Items) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_store_evictions_total", Help: "Entries evicted for room or expiry."},
			stat(func(s cache.Stats) float64 { return float64(s.Evictions) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_store_rejections_total", Help: "Entries refused by the store's admission policy or budget."},
			stat(func(s cache.Stats) float64 { return float64(s.Rejects) })),
	)
}

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
