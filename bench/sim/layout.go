package sim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// layout is the hash ring itself rather than a sample of keys on it: the
// points of every member of a universe, laid out as cluster's default ring
// lays them out (point j of member n at xxhash(n + "-" + j); a key belongs
// to the first point above its hash, wrapping around). The points cut the
// hash space into arcs; every key in an arc has the same preference list
// on any ring of a subset of the members, so a placement of the arcs,
// each weighing its length, gives what a population of infinitely many
// keys would: exact shares, and copy loads free of sampling noise.
//
// The layout copies a private detail of package cluster; check compares it
// with Ring.Owners on every key of a population, so that a change there
// fails the simulation instead of skewing it.
type layout struct {
	points []uint64 // sorted; arc i ends at points[i]
	owner  []uint16 // universe id of the member holding points[i]
}

// arcUnit is the share of the hash space one unit of arc weight stands
// for: 2^-48, so that the weights of all arcs sum to 2^48 and sums of a
// few copies of them stay far from overflowing int64.
const arcUnit = 1.0 / (1 << 48)

func newLayout(u *universe, vnodes int) *layout {
	type point struct {
		at   uint64
		node uint16
	}
	pts := make([]point, 0, len(u.names)*vnodes)
	var buf []byte
	for id, name := range u.names {
		for j := range vnodes {
			buf = append(append(buf[:0], name...), '-')
			buf = strconv.AppendInt(buf, int64(j), 10)
			pts = append(pts, point{xxhash.Sum64(buf), uint16(id)})
		}
	}
	// Ties go to the member first by name, as in cluster.
	slices.SortFunc(pts, func(a, b point) int {
		if a.at != b.at {
			if a.at < b.at {
				return -1
			}
			return 1
		}
		return strings.Compare(u.names[a.node], u.names[b.node])
	})
	l := &layout{points: make([]uint64, len(pts)), owner: make([]uint16, len(pts))}
	for i, p := range pts {
		l.points[i], l.owner[i] = p.at, p.node
	}
	return l
}

// arc returns the arc holding a key: the index of the first point strictly
// above its hash, wrapping to 0.
func (l *layout) arc(key []byte) int {
	h := xxhash.Sum64(key)
	i, _ := slices.BinarySearch(l.points, h)
	for i < len(l.points) && l.points[i] == h {
		i++ // strictly above
	}
	if i == len(l.points) {
		return 0
	}
	return i
}

// weights returns each arc's length in arcUnits. Arc 0 wraps around: from
// the last point past 2^64 - 1 to the first.
func (l *layout) weights() []int64 {
	w := make([]int64, len(l.points))
	for i := range l.points {
		var length uint64
		if i == 0 {
			length = l.points[0] - l.points[len(l.points)-1] // mod 2^64
		} else {
			length = l.points[i] - l.points[i-1]
		}
		w[i] = int64(length >> 16)
	}
	return w
}

// place computes every arc's preference list, depth deep, on the ring of
// the members marked in member: walking clockwise from the arc's end,
// each member the first time one of its points is met.
func (l *layout) place(member []bool, depth int) *Placement {
	n := len(l.points)
	p := &Placement{depth: depth, lists: make([]uint16, n*depth), member: slices.Clone(member)}
	parallel(n, 1024, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			list := p.lists[i*depth : (i+1)*depth]
			k := 0
			for j := 0; j < n && k < depth; j++ {
				at := i + j
				if at >= n {
					at -= n
				}
				o := l.owner[at]
				if member[o] && !slices.Contains(list[:k], o) {
					list[k] = o
					k++
				}
			}
			for ; k < depth; k++ {
				list[k] = none
			}
		}
	})
	return p
}

// check reports whether every key of pop has, on the ring placed as keys,
// the preference list of its arc placed as arcs: whether the layout is
// still the ring's.
func (l *layout) check(pop *Population, keys, arcs *Placement) error {
	d := keys.depth
	for i := range pop.Len() {
		a := l.arc(pop.Key(i))
		if got, want := arcs.lists[a*arcs.depth:a*arcs.depth+d], keys.lists[i*d:(i+1)*d]; !slices.Equal(got, want) {
			return fmt.Errorf("key %q: Ring.Owners gives %v, the simulation's copy of the ring's layout %v: the ring changed, update bench/sim's layout", pop.Key(i), want, got)
		}
	}
	return nil
}
