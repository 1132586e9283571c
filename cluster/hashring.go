package cluster

import (
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/serialx/hashring"
)

// hashRing is a consistent-hash ring backed by serialx/hashring, with
// vnodes points per node so shares are even.
type hashRing struct {
	ring   *hashring.HashRing
	nodes  []Node          // sorted by name
	byName map[string]Node // the library returns names; built once here
}

var _ Ring = (*hashRing)(nil)

// ringPoint is the library's HashKey for our hash. The library's default
// (MD5 into a heap-allocated 128-bit pair) costs about four allocations per
// lookup; xxhash into a uint64 costs one (boxing the key) and hashes faster.
// A 64-bit point space makes a collision between two nodes' points, which
// would make the library's point->node map depend on build order,
// practically impossible (~1e-12 at 32 nodes x 160 points).
type ringPoint uint64

func (p ringPoint) Less(other hashring.HashKey) bool { return p < other.(ringPoint) }

func hashPoint(b []byte) hashring.HashKey { return ringPoint(xxhash.Sum64(b)) }

func newHashRing(sorted []Node, vnodes int) *hashRing {
	weights := make(map[string]int, len(sorted))
	byName := make(map[string]Node, len(sorted))
	for _, n := range sorted {
		weights[n.Name] = vnodes
		byName[n.Name] = n
	}
	return &hashRing{
		ring:   hashring.NewWithHashAndWeights(weights, hashPoint),
		nodes:  sorted,
		byName: byName,
	}
}

// Owner costs two small allocations inside the library (GetNode copies the
// string back into a []byte for the hash, and the HashKey is boxed); the
// []byte->string conversion on our side is avoided.
func (r *hashRing) Owner(key []byte) (Node, bool) {
	switch len(r.nodes) {
	case 0:
		return Node{}, false
	case 1:
		return r.nodes[0], true
	}
	// The library only reads the string during the call and keeps no
	// reference to it, so viewing key's bytes without a copy is safe.
	name, ok := r.ring.GetNode(unsafe.String(unsafe.SliceData(key), len(key)))
	if !ok {
		return Node{}, false
	}
	n, ok := r.byName[name]
	return n, ok
}

func (r *hashRing) Members() []Node { return r.nodes }
