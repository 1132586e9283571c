// Package clustertest holds helpers for tests that run serf clusters in one
// process on loopback.
package clustertest

import (
	"time"

	"github.com/hashicorp/serf/serf"
)

// FastTimers shrinks serf's and memberlist's timers the way serf's own
// testConfig does, so joins, leaves and failures show up within about a
// second on loopback. Tombstone and reconnect timeouts stay long so "left"
// and "failed" members remain visible. Use it as cluster.Options.Tune.
func FastTimers(c *serf.Config) {
	ml := c.MemberlistConfig
	ml.GossipInterval = 10 * time.Millisecond
	// Probes tolerate a loaded 2-core machine under the race detector,
	// where a live member can take well over 50ms to answer: a false
	// "failed" would flake the tests that expect everyone alive.
	ml.ProbeInterval = 200 * time.Millisecond
	ml.ProbeTimeout = 150 * time.Millisecond
	ml.TCPTimeout = time.Second
	ml.SuspicionMult = 3
	ml.PushPullInterval = time.Second
	ml.GossipToTheDeadTime = time.Second
	c.BroadcastTimeout = 2 * time.Second
	c.LeavePropagateDelay = 100 * time.Millisecond
	c.ReapInterval = time.Second
}
