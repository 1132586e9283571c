package sim

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/ringcache/ringcache/cluster"
)

// none fills the tail of a preference list on a ring with fewer members
// than the list's depth.
const none = ^uint16(0)

// universe numbers every member name a simulation uses (the cluster and
// the member that joins it), so placements on different rings compare by
// small integers rather than by name.
type universe struct {
	names []string
	ids   map[string]uint16
}

func newUniverse(names []string) (*universe, error) {
	if len(names) >= int(none) {
		return nil, fmt.Errorf("at most %d members (got %d)", none-1, len(names))
	}
	u := &universe{names: names, ids: make(map[string]uint16, len(names))}
	for i, n := range names {
		if _, dup := u.ids[n]; dup {
			return nil, fmt.Errorf("duplicate member name %q", n)
		}
		u.ids[n] = uint16(i)
	}
	return u, nil
}

// ring builds the default ring (vnodes 0: cluster's default) over the
// members with the given ids.
func (u *universe) ring(vnodes int, ids []uint16) (cluster.Ring, error) {
	nodes := make([]cluster.Node, len(ids))
	for i, id := range ids {
		nodes[i] = cluster.Node{Name: u.names[id]}
	}
	return cluster.NewRing(cluster.KindHashRing, nodes, vnodes)
}

// set returns a set of members by id, as a slice indexed by id.
func (u *universe) set(ids ...uint16) []bool {
	s := make([]bool, len(u.names))
	for _, id := range ids {
		s[id] = true
	}
	return s
}

// Placement is every key's preference list on one ring, to a fixed depth:
// for key i, its owner, then the members that would own it as those
// before them left (cluster.Ring.Owners), as universe ids.
type Placement struct {
	depth  int
	lists  []uint16 // key i's list is lists[i*depth : (i+1)*depth], padded with none
	member []bool   // member[id]: id is on the ring
}

// place computes the placement of every key of pop on r, depth members
// deep, on all CPUs. Owners is called with one reused buffer per worker,
// so the only allocation is the result.
func place(r cluster.Ring, pop *Population, u *universe, depth int) *Placement {
	p := &Placement{depth: depth, lists: make([]uint16, pop.Len()*depth), member: make([]bool, len(u.names))}
	for _, n := range r.Members() {
		p.member[u.ids[n.Name]] = true
	}
	parallel(pop.Len(), 1024, func(lo, hi int) {
		buf := make([]cluster.Node, 0, depth)
		for i := lo; i < hi; i++ {
			buf = r.Owners(buf[:0], pop.Key(i), depth)
			l := p.lists[i*depth : (i+1)*depth]
			for j := range l {
				l[j] = none
				if j < len(buf) {
					l[j] = u.ids[buf[j].Name]
				}
			}
		}
	})
	return p
}

// holders returns key i's first n owners: where its copies live with n
// replicas. The slice aliases the placement.
func (p *Placement) holders(i, n int) []uint16 {
	l := p.lists[i*p.depth : i*p.depth+n]
	for j, id := range l {
		if id == none {
			return l[:j]
		}
	}
	return l
}

// parallel runs fn over [0, n) split into one contiguous range per CPU,
// each at least grain long.
func parallel(n, grain int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), max(1, n/grain))
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}
