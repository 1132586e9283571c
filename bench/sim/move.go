package sim

import (
	"slices"
	"sync"
)

// Movement is what a membership change costs the data, with R copies of
// every key on its first R owners (cluster.Ring.Owners). It counts items
// of some weight: the keys of a population and their sizes in bytes, or
// the arcs of the ring and their lengths, where only the weights (shares
// of the hash space) mean something.
type Movement struct {
	// OwnerKeys and OwnerBytes count keys whose owner changed: requests
	// for them go to another member.
	OwnerKeys, OwnerBytes int64
	// Copies and CopyBytes count the copies made so that every surviving
	// key is again on its first R owners: to a member that joined, to the
	// member next in line after one left or crashed, back to a member
	// that returned empty. A key may need more than one.
	Copies, CopyBytes int64
	// LostKeys and LostBytes count keys no live member holds any more:
	// the next request for one goes to the origin.
	LostKeys, LostBytes int64
	// Busiest is the most bytes one member sends or receives in a step;
	// for a change made of steps that run one after another (a rolling
	// restart), the sum over the steps. Busiest / rate is the shortest time
	// the copies can take when every member sends and receives at most
	// rate bytes per second (full duplex) and all work in parallel (a
	// schedule that splits transfers reaches it): the time some keys spend
	// with fewer than R copies.
	Busiest int64
	// WorstStep is the largest Busiest of one step; Steps counts them.
	WorstStep int64
	Steps     int
}

// add adds the counts of o to m, for steps run one after another.
func (m *Movement) add(o Movement) {
	m.OwnerKeys += o.OwnerKeys
	m.OwnerBytes += o.OwnerBytes
	m.Copies += o.Copies
	m.CopyBytes += o.CopyBytes
	m.LostKeys += o.LostKeys
	m.LostBytes += o.LostBytes
	m.Busiest += o.Busiest
	m.WorstStep = max(m.WorstStep, o.WorstStep)
	m.Steps += o.Steps
}

// tally accounts the keys of one step, and who sends and receives what.
type tally struct {
	m          Movement
	sent, recv []int64 // bytes, by universe id
}

func newTally(members int) *tally {
	return &tally{sent: make([]int64, members), recv: make([]int64, members)}
}

// key accounts one key of size bytes whose first R owners were old and
// are now new. gone[m] says m's copy is gone (it crashed); staying[m] says
// m is on the ring after the change. A member that leaves gracefully is
// neither: it can still send. Every copy comes from the first live holder
// in old that stays, else from the first live one (a leaver handing off);
// a key with no live holder is lost. It reports whether the key was lost.
func (t *tally) key(size int64, old, new []uint16, gone, staying []bool) (lost bool) {
	t.owner(size, old, new)
	src := none
	for _, h := range old {
		if gone[h] {
			continue
		}
		if staying[h] {
			src = h
			break
		}
		if src == none {
			src = h
		}
	}
	if src == none {
		if len(old) > 0 {
			t.m.LostKeys++
			t.m.LostBytes += size
		}
		return len(old) > 0
	}
	for _, h := range new {
		if slices.Contains(old, h) && !gone[h] {
			continue // it has a copy already
		}
		t.m.Copies++
		t.m.CopyBytes += size
		t.sent[src] += size
		t.recv[h] += size
	}
	return false
}

// owner accounts a change of key's owner, whether or not anyone still has
// the key.
func (t *tally) owner(size int64, old, new []uint16) {
	if len(old) > 0 && len(new) > 0 && old[0] != new[0] {
		t.m.OwnerKeys++
		t.m.OwnerBytes += size
	}
}

// merge adds o's counts of the same step into t.
func (t *tally) merge(o *tally) {
	t.m.add(o.m)
	for i := range t.sent {
		t.sent[i] += o.sent[i]
		t.recv[i] += o.recv[i]
	}
}

// step closes a step: its Busiest from the members' traffic, added to
// total; t is reset for the next step.
func (t *tally) step(total *Movement) {
	var busiest int64
	for i := range t.sent {
		busiest = max(busiest, t.sent[i], t.recv[i])
		t.sent[i], t.recv[i] = 0, 0
	}
	t.m.Busiest, t.m.WorstStep, t.m.Steps = busiest, busiest, 1
	total.add(t.m)
	t.m = Movement{}
}

// compare accounts one change from placement before to after of items
// weighing w (keys and their sizes, or arcs of the ring and their
// lengths), with r copies of each. gone marks the members whose copies are
// gone; the members of after stay. One step.
func compare(w []int64, before, after *Placement, r int, gone []bool) Movement {
	n := len(before.member)
	sum := newTally(n)
	var mu sync.Mutex
	parallel(len(w), 1024, func(lo, hi int) {
		t := newTally(n)
		for i := lo; i < hi; i++ {
			t.key(w[i], before.holders(i, r), after.holders(i, r), gone, after.member)
		}
		mu.Lock()
		sum.merge(t) // sums of integers: the result does not depend on the order
		mu.Unlock()
	})
	var m Movement
	sum.step(&m)
	return m
}
