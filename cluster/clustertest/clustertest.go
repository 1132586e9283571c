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
	// where a live member can be starved for most of a second: a false
	// "failed" takes its keys away for a moment, and the tests counting
	// origin requests or expecting everyone alive would see it. A suspect
	// has 2 s (4 probe intervals) to refute, at most 4 s when the others
	// are expected to confirm; a crash still shows within about 5 s.
	ml.ProbeInterval = 500 * time.Millisecond
	ml.ProbeTimeout = 400 * time.Millisecond
	ml.TCPTimeout = time.Second
	ml.SuspicionMult = 4
	ml.SuspicionMaxTimeoutMult = 2
	ml.PushPullInterval = time.Second
	ml.GossipToTheDeadTime = time.Second
	c.BroadcastTimeout = 2 * time.Second
	c.LeavePropagateDelay = 100 * time.Millisecond
	c.ReapInterval = time.Second
}
