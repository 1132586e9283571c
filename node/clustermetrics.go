package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ringcache/ringcache/cluster"
)

// registerClusterMetrics exposes membership, peer-endpoint and handoff
// counters. They are read from the components' own counters at scrape
// time, so nothing on the request path pays for them.
func (n *Node) registerClusterMetrics(ps *cluster.PeerServer) {
	ms := func(f func(cluster.MembershipStats) uint64) func() float64 {
		return func() float64 { return float64(f(n.members.Stats())) }
	}
	pss := func(f func(cluster.PeerServerStats) uint64) func() float64 {
		return func() float64 { return float64(f(ps.Stats())) }
	}
	rs := n.replicaStats
	n.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ringcache_cluster_members", Help: "Members on this node's ring (alive, with a peer address)."},
			func() float64 { return float64(len(n.members.Ring().Members())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_cluster_ring_rebuilds_total", Help: "Rings built and swapped in after membership changes."},
			ms(func(s cluster.MembershipStats) uint64 { return s.RingRebuilds })),
		eventCounter("join", ms(func(s cluster.MembershipStats) uint64 { return s.MemberJoin })),
		eventCounter("leave", ms(func(s cluster.MembershipStats) uint64 { return s.MemberLeave })),
		eventCounter("failed", ms(func(s cluster.MembershipStats) uint64 { return s.MemberFailed })),
		eventCounter("update", ms(func(s cluster.MembershipStats) uint64 { return s.MemberUpdate })),
		eventCounter("reap", ms(func(s cluster.MembershipStats) uint64 { return s.MemberReap })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_peer_unauthorized_total", Help: "Peer endpoint requests refused for bad credentials."},
			pss(func(s cluster.PeerServerStats) uint64 { return s.Unauthorized })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_peer_malformed_total", Help: "Malformed peer frames and purge requests dropped."},
			pss(func(s cluster.PeerServerStats) uint64 { return s.Malformed })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_handoff_received_entries_total", Help: "Entries handed over by leaving members and kept."},
			pss(func(s cluster.PeerServerStats) uint64 { return s.Accepted })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_handoff_rejected_entries_total", Help: "Handed-over entries refused (older than a local copy or a purge)."},
			pss(func(s cluster.PeerServerStats) uint64 { return s.Rejected })),
		n.handoffSent,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_replica_received_entries_total", Help: "Replica copies other members pushed here and kept."},
			pss(func(s cluster.PeerServerStats) uint64 { return s.ReplicasIn })),
		replicaCounter("queued", "Entries queued for copying to their other holders (fills and rebalances).", rs(func(s cluster.ReplicaStats) uint64 { return s.Queued })),
		replicaCounter("sent", "Replica copies sent.", rs(func(s cluster.ReplicaStats) uint64 { return s.Sent })),
		replicaCounter("accepted", "Replica copies their receivers kept.", rs(func(s cluster.ReplicaStats) uint64 { return s.Accepted })),
		replicaCounter("dropped", "Replica copies dropped: a member's queue was full.", rs(func(s cluster.ReplicaStats) uint64 { return s.Dropped })),
		replicaCounter("failed", "Replica copies in batches that could not be delivered.", rs(func(s cluster.ReplicaStats) uint64 { return s.Failed })),
		replicaCounter("rebalanced", "Entries queued for their new holders after membership changes.", rs(func(s cluster.ReplicaStats) uint64 { return s.Rebalanced })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ringcache_replica_rebalancing", Help: "1 while a rebalance queues entries for their new holders after a membership change, else 0."},
			func() float64 {
				if n.peers.ReplicaStats().Rebalancing {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ringcache_replica_lag_seconds", Help: "Time from storing an entry to a replica keeping it, for the last batch sent."},
			func() float64 { return n.peers.ReplicaStats().Lag.Seconds() }),
	)
}

func (n *Node) replicaStats(f func(cluster.ReplicaStats) uint64) func() float64 {
	return func() float64 { return float64(f(n.peers.ReplicaStats())) }
}

func replicaCounter(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringcache_replica_" + name + "_total", Help: help}, f)
}

func eventCounter(kind string, f func() float64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "ringcache_cluster_member_events_total",
		Help:        "Serf member events seen, by type.",
		ConstLabels: prometheus.Labels{"type": kind},
	}, f)
}
