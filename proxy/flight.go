package proxy

import (
	"sync"
	"time"
)

// flightGroup collapses concurrent origin fetches for one key: the first
// caller (the leader) fetches, the others wait for its result. Unlike
// singleflight, a waiter that cannot use the result fetches on its own, so
// one uncacheable response never makes requests queue behind each other.
// A slow fetch does not scatter the herd: past the coalesce timeout one
// waiter (one per flight) fetches again, and the others wait for whichever
// of the two answers first, up to a bound.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  *result // set before done is closed; nil if the leader panicked
	n    int     // waiters, for metrics
	// Guarded by the group's mu.
	finished bool // done is closed
	hedged   bool // a waiter fetches again
}

// join returns the flight for key and whether the caller leads it.
func (g *flightGroup) join(key []byte) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[string(key)]; ok {
		f.n++
		return f, false
	}
	if g.m == nil {
		g.m = make(map[string]*flight)
	}
	f := &flight{done: make(chan struct{})}
	g.m[string(key)] = f
	return f, true
}

// busy reports whether a fetch for key is in flight.
func (g *flightGroup) busy(key []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.m[string(key)]
	return ok
}

// hedge reports whether the caller, a waiter of f, is the one that fetches
// again because the leader is slow: true for at most one caller per flight,
// and never once f is finished.
func (g *flightGroup) hedge(f *flight) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f.finished || f.hedged {
		return false
	}
	f.hedged = true
	return true
}

// finish publishes a result and releases the waiters. The leader must call
// it exactly once, also when it panics (res == nil); a hedging waiter calls
// it with its own result. The first call wins; later ones do nothing.
func (g *flightGroup) finish(key []byte, f *flight, res *result) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f.finished {
		return
	}
	f.finished = true
	if g.m[string(key)] == f {
		delete(g.m, string(key))
	}
	f.res = res
	close(f.done)
}

// wait blocks until the flight finishes or timeout passes. done is false on
// timeout; res is nil when done and the leader panicked.
func (f *flight) wait(timeout time.Duration) (res *result, done bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.done:
		return f.res, true
	case <-t.C:
		return nil, false
	}
}
