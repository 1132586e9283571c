package cluster

import "github.com/cespare/xxhash/v2"

// rendezvous is highest-random-weight hashing: every node scores the key
// and the highest score owns it. Adding a node moves only the keys it now
// wins; removing one moves only its keys. Owner is O(nodes) and allocates
// nothing, which is fine for the tens of nodes a cache cluster has.
type rendezvous struct {
	nodes []Node   // sorted by name; ties go to the first, so order is fixed
	seeds []uint64 // per-node hash of the name, computed once
}

var _ Ring = (*rendezvous)(nil)

func newRendezvous(sorted []Node) *rendezvous {
	seeds := make([]uint64, len(sorted))
	for i, n := range sorted {
		seeds[i] = xxhash.Sum64String(n.Name)
	}
	return &rendezvous{nodes: sorted, seeds: seeds}
}

// Owner hashes the key once and mixes that hash with each node's seed,
// rather than hashing (name, key) per node: same ownership properties, one
// pass over the key regardless of cluster size.
func (r *rendezvous) Owner(key []byte) (Node, bool) {
	if len(r.nodes) == 0 {
		return Node{}, false
	}
	h := xxhash.Sum64(key)
	best, bestScore := 0, mix64(h^r.seeds[0])
	for i := 1; i < len(r.seeds); i++ {
		if s := mix64(h ^ r.seeds[i]); s > bestScore {
			best, bestScore = i, s
		}
	}
	return r.nodes[best], true
}

// Owners ranks the members by score for key, highest first: the order in
// which they would own it as those before them left. O(n × members).
func (r *rendezvous) Owners(dst []Node, key []byte, n int) []Node {
	n = min(n, len(r.nodes))
	start := len(dst)
	h := xxhash.Sum64(key)
	for len(dst)-start < n {
		best, bestScore := -1, uint64(0)
		for i := range r.seeds {
			if contains(dst[start:], r.nodes[i].Name) {
				continue
			}
			if s := mix64(h ^ r.seeds[i]); best < 0 || s > bestScore {
				best, bestScore = i, s
			}
		}
		dst = append(dst, r.nodes[best])
	}
	return dst
}

func (r *rendezvous) Members() []Node { return r.nodes }

// mix64 is the splitmix64 finaliser: a bijection with full avalanche, so
// scores of different nodes for one key behave as independent draws.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
