//go:build race

package cluster

// peerRaceEnabled: under the race detector sync.Pool drops some of what is
// put back, so allocation counts of pooled paths mean nothing.
const peerRaceEnabled = true
