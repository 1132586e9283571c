// Package cluster tracks ringcache's members with serf gossip and splits the
// key space between them with a consistent-hash ring. A Ring is an immutable
// snapshot of who owns what; Membership rebuilds one after each (coalesced)
// membership change and publishes it through an atomic pointer, so readers on
// the request path never lock.
package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Ring kinds accepted by NewRing.
const (
	KindHashRing   = "hashring"   // serialx/hashring, vnodes points per node
	KindRendezvous = "rendezvous" // highest-random-weight hashing
)

// DefaultVNodes is the number of ring points per node for KindHashRing. With
// a handful of points the shares skew badly (groupcache saw 36/63 with 3);
// 160 keeps three nodes within a few percent of a third each.
const DefaultVNodes = 160

// maxVNodes bounds the build cost of a hashring (nodes*vnodes points).
const maxVNodes = 1 << 16

// Node is a cluster member as the ring sees it.
type Node struct {
	Name string // serf node name, unique in the cluster
	Addr string // peer HTTP address (host:port), from the member's "peer" tag
}

// Ring maps a key to its owner. A Ring never changes after it is built; a
// membership change builds a new one, so it is safe for concurrent use.
type Ring interface {
	// Owner returns the node owning key; ok is false only when the ring is
	// empty. key is borrowed for the call only.
	Owner(key []byte) (n Node, ok bool)
	// Owners appends to dst the first n distinct members of key's
	// preference list — its owner, then the members that own it, in
	// order, should the ones before them leave — and returns it: the
	// owner and n-1 replicas. Fewer when the ring has fewer members.
	// With dst's capacity it allocates nothing.
	Owners(dst []Node, key []byte, n int) []Node
	// Members returns the ring's nodes sorted by Name. Callers must not
	// modify the returned slice.
	Members() []Node
}

// NewRing builds a ring of the given kind ("" means KindHashRing) over nodes.
// vnodes is the number of points per node for KindHashRing (0 means
// DefaultVNodes) and is ignored by KindRendezvous. Owners depend only on the
// set of nodes, never on their order in the slice.
func NewRing(kind string, nodes []Node, vnodes int) (Ring, error) {
	if vnodes == 0 {
		vnodes = DefaultVNodes
	}
	if vnodes < 0 || vnodes > maxVNodes {
		return nil, fmt.Errorf("ring vnodes must be in 1..%d (got %d)", maxVNodes, vnodes)
	}
	if len(nodes) > maxRingNodes {
		return nil, fmt.Errorf("a ring holds at most %d nodes (got %d)", maxRingNodes, len(nodes))
	}
	sorted, err := sortedNodes(nodes)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "", KindHashRing:
		return newHashRing(sorted, vnodes), nil
	case KindRendezvous:
		return newRendezvous(sorted), nil
	default:
		return nil, fmt.Errorf("unknown ring kind %q (valid: %s, %s)", kind, KindHashRing, KindRendezvous)
	}
}

// sortedNodes copies nodes sorted by name and rejects empty or duplicate
// names: two nodes with one name would make ownership depend on order.
func sortedNodes(nodes []Node) ([]Node, error) {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	var errs []error
	for i, n := range out {
		if n.Name == "" {
			errs = append(errs, fmt.Errorf("ring node with addr %q has an empty name", n.Addr))
			continue
		}
		if i > 0 && out[i-1].Name == n.Name {
			errs = append(errs, fmt.Errorf("duplicate ring node name %q", n.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// DefaultShareSamples is the sample size Shares uses when given samples <= 0.
const DefaultShareSamples = 10000

// Shares returns the fraction of a fixed, deterministic sample of URL-like
// keys owned by each member of r (every member appears, possibly with 0).
// It is meant for the admin view, not the request path.
func Shares(r Ring, samples int) map[string]float64 {
	if samples <= 0 {
		samples = DefaultShareSamples
	}
	members := r.Members()
	out := make(map[string]float64, len(members))
	for _, n := range members {
		out[n.Name] = 0
	}
	if len(members) == 0 {
		return out
	}
	counts := make(map[string]int, len(members))
	var buf []byte
	for i := range samples {
		buf = sampleKey(buf[:0], i)
		if n, ok := r.Owner(buf); ok {
			counts[n.Name]++
		}
	}
	for name, c := range counts {
		out[name] = float64(c) / float64(samples)
	}
	return out
}

// sampleKey appends the i-th sample key, shaped like a cache key
// (host + path) so shares reflect real-looking input.
func sampleKey(dst []byte, i int) []byte {
	dst = append(dst, "example.com/assets/"...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	return append(dst, ".js"...)
}

// Others returns the members of r other than name: the ring the others
// form without it, to build when it leaves (where its keys go) or has just
// joined (where its keys were).
func Others(r Ring, name string) []Node {
	if r == nil {
		return nil
	}
	var out []Node
	for _, n := range r.Members() {
		if n.Name != name {
			out = append(out, n)
		}
	}
	return out
}
