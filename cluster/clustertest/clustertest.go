// Package clustertest holds helpers for tests that run serf clusters in one
// process on loopback.
package clustertest

import (
	"time"

	"github.com/hashicorp/serf/serf"
)

// FastTimers shrinks serf's and memberlist's timers the way serf's own
// testConfig does, so joins, leaves and failures show up in well under a
// second on loopback. Tombstone and reconnect timeouts stay long so "left"
// and "failed" members remain visible. Use it as cluster.Options.Tune.
func FastTimers(c *serf.Config) {
	ml := c.MemberlistConfig
	ml.GossipInterval = 10 * time.Millisecond
	ml.ProbeInterval = 100 * time.Millisecond
	ml.ProbeTimeout = 50 * time.Millisecond
	ml.TCPTimeout = time.Second
	ml.SuspicionMult = 2
	ml.PushPullInterval = time.Second
	ml.GossipToTheDeadTime = time.Second
	c.BroadcastTimeout = 2 * time.Second
	c.LeavePropagateDelay = 100 * time.Millisecond
	c.ReapInterval = time.Second
}
