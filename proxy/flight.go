package proxy

import (
	"sync"
	"time"
)

// flightGroup collapses concurrent origin fetches for one key: the first
// caller (the leader) fetches, the others wait for its result. Unlike
// singleflight, waiting is bounded and a waiter that gives up or cannot use
// the result fetches on its own, so one slow or uncacheable response never
// makes requests queue behind each other.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  *result // set before done is closed; nil if the leader panicked
	n    int     // waiters, for metrics
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

// finish publishes the leader's result and releases the waiters. The
// leader must call it exactly once, also when it panics (res == nil).
func (g *flightGroup) finish(key []byte, f *flight, res *result) {
	g.mu.Lock()
	if g.m[string(key)] == f {
		delete(g.m, string(key))
	}
	g.mu.Unlock()
	f.res = res
	close(f.done)
}

// wait blocks until the leader finishes or timeout passes.
func (f *flight) wait(timeout time.Duration) (*result, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.done:
		return f.res, f.res != nil
	case <-t.C:
		return nil, false
	}
}
