//go:build race

package node

const nodeRaceEnabled = true
