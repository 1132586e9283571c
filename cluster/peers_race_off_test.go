//go:build !race

package cluster

const peerRaceEnabled = false
