package cluster

import (
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// hashRing is a consistent-hash ring laid out as serialx/hashring lays one
// out with weights: each node gets vnodes points, point j of node n at
// hash(n + "-" + j), and a key belongs to the first point above its hash,
// wrapping around. The hash is xxhash into 64 bits rather than the
// library's MD5: faster, and a collision between two nodes' points — which
// would make owners depend on build order — is practically impossible
// (~1e-12 at 32 nodes x 160 points).
//
// The points are kept here in one sorted slice, so that Owner is a binary
// search that allocates nothing; the library's GetNode takes a string and
// boxes the hash, two allocations per request. TestHashRingMatchesLibrary
// pins the layout to the library's.
type hashRing struct {
	nodes  []Node   // sorted by name
	points []uint64 // sorted
	owner  []uint16 // owner[i] indexes nodes: who holds points[i]
}

var _ Ring = (*hashRing)(nil)

// maxRingNodes is what owner's uint16 can index; far beyond any cluster.
const maxRingNodes = 1 << 16

func newHashRing(sorted []Node, vnodes int) *hashRing {
	type point struct {
		at   uint64
		node uint16
	}
	pts := make([]point, 0, len(sorted)*vnodes)
	var buf []byte
	for i, n := range sorted {
		for j := range vnodes {
			buf = append(append(buf[:0], n.Name...), '-')
			buf = strconv.AppendInt(buf, int64(j), 10)
			pts = append(pts, point{xxhash.Sum64(buf), uint16(i)})
		}
	}
	// Ties (never seen in practice) go to the node first by name, so the
	// layout does not depend on anything but the set of nodes.
	slices.SortFunc(pts, func(a, b point) int {
		if a.at != b.at {
			if a.at < b.at {
				return -1
			}
			return 1
		}
		return int(a.node) - int(b.node)
	})
	r := &hashRing{nodes: sorted, points: make([]uint64, len(pts)), owner: make([]uint16, len(pts))}
	for i, p := range pts {
		r.points[i], r.owner[i] = p.at, p.node
	}
	return r
}

// Owner allocates nothing: a hash of the key and a binary search.
func (r *hashRing) Owner(key []byte) (Node, bool) {
	switch len(r.nodes) {
	case 0:
		return Node{}, false
	case 1:
		return r.nodes[0], true
	}
	return r.nodes[r.owner[r.search(key)]], true
}

// search returns the index of key's point: the first strictly above its
// hash, as the library searches, wrapping around.
func (r *hashRing) search(key []byte) int {
	h := xxhash.Sum64(key)
	lo, hi := 0, len(r.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid] <= h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		lo = 0
	}
	return lo
}

// Owners walks the ring clockwise from key's point, taking each member the
// first time it is met: the members that would own the key as those before
// them left, in that order.
func (r *hashRing) Owners(dst []Node, key []byte, n int) []Node {
	n = min(n, len(r.nodes))
	if n <= 0 {
		return dst
	}
	start := len(dst)
	for i, at := 0, r.search(key); i < len(r.points) && len(dst)-start < n; i, at = i+1, at+1 {
		if at == len(r.points) {
			at = 0
		}
		m := r.nodes[r.owner[at]]
		if !contains(dst[start:], m.Name) {
			dst = append(dst, m)
		}
	}
	return dst
}

func contains(nodes []Node, name string) bool {
	for _, n := range nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}

func (r *hashRing) Members() []Node { return r.nodes }
