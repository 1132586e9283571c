package cache

import (
	"sync"
	"unsafe"
)

// LRU is a Store that evicts the least recently used entries first, behind
// one mutex. It is the simple alternative to Ristretto: no admission policy,
// so every entry that fits is stored.
type LRU struct {
	mu       sync.Mutex
	maxBytes int64
	now      func() int64
	m        map[string]*lruNode
	root     lruNode // sentinel of a ring: root.next is the most recently used
	bytes    int64
	// Counters, under mu like everything else.
	hits, misses, sets, rejects, evictions uint64
}

var _ Store = (*LRU)(nil)

type lruNode struct {
	prev, next *lruNode
	e          *Entry // its Cost is what the node charges
}

// NewLRU returns an LRU store charging at most maxBytes of entry cost; with
// maxBytes <= 0 it refuses everything. The only option honoured is
// WithClock, which decides expiry.
func NewLRU(maxBytes int64, opts ...Option) *LRU {
	o := buildOptions(opts)
	l := &LRU{maxBytes: maxBytes, now: o.now, m: make(map[string]*lruNode)}
	l.root.prev, l.root.next = &l.root, &l.root
	return l
}

// mapKey views an entry's key as a string without copying it: entries are
// immutable once stored, so the bytes cannot change under the map, and the
// key is not held twice.
func mapKey(k []byte) string { return unsafe.String(unsafe.SliceData(k), len(k)) }

// Get returns the entry under key, marking it most recently used. An
// expired entry is dropped and reported missing. Get does not allocate.
func (l *LRU) Get(key []byte) (*Entry, bool) {
	l.mu.Lock()
	n := l.m[string(key)] // the compiler does not allocate for this conversion
	if n == nil {
		l.misses++
		l.mu.Unlock()
		return nil, false
	}
	if n.e.Expires != 0 && n.e.Expired(l.now()) {
		l.unlink(n)
		l.evictions++
		l.misses++
		l.mu.Unlock()
		return nil, false
	}
	l.moveToFront(n)
	l.hits++
	e := n.e // read under the lock: an overwrite reuses the node
	l.mu.Unlock()
	return e, true
}

// Set stores e, evicting least recently used entries until the store is
// within budget. It refuses (returns false) an entry costing more than the
// whole store or already expired; a refused overwrite leaves the previous
// entry in place.
func (l *LRU) Set(e *Entry) bool {
	cost := e.Cost()
	refuse := cost > l.maxBytes || (e.Expires != 0 && e.Expired(l.now()))
	l.mu.Lock()
	defer l.mu.Unlock()
	if refuse {
		l.rejects++
		return false
	}
	if n := l.m[string(e.Key())]; n != nil {
		l.bytes += cost - n.e.Cost()
		// Re-key: the old map key points into the old entry's memory.
		delete(l.m, mapKey(n.e.Key()))
		n.e = e
		l.m[mapKey(e.Key())] = n
		l.moveToFront(n)
	} else {
		n := &lruNode{e: e}
		l.m[mapKey(e.Key())] = n
		l.bytes += cost
		l.pushFront(n)
	}
	// cost <= maxBytes, so this stops before reaching the new entry.
	for l.bytes > l.maxBytes {
		l.unlink(l.root.prev)
		l.evictions++
	}
	l.sets++
	return true
}

// Delete removes the entry under key, if any.
func (l *LRU) Delete(key []byte) {
	l.mu.Lock()
	if n := l.m[string(key)]; n != nil {
		l.unlink(n)
	}
	l.mu.Unlock()
}

// Range calls fn for every live entry, most recently used first, on a
// snapshot taken under the lock: fn runs unlocked and may call the store.
func (l *LRU) Range(fn func(e *Entry) bool) {
	l.mu.Lock()
	snap := make([]*Entry, 0, len(l.m))
	for n := l.root.next; n != &l.root; n = n.next {
		snap = append(snap, n.e)
	}
	l.mu.Unlock()
	now := l.now()
	for _, e := range snap {
		if e.Expired(now) {
			continue
		}
		if !fn(e) {
			return
		}
	}
}

// Stats returns the store's counters.
func (l *LRU) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{
		Bytes:     l.bytes,
		Items:     int64(len(l.m)),
		Hits:      l.hits,
		Misses:    l.misses,
		Sets:      l.sets,
		Rejects:   l.rejects,
		Evictions: l.evictions,
	}
}

// Close drops every entry.
func (l *LRU) Close() {
	l.mu.Lock()
	clear(l.m)
	l.root.prev, l.root.next = &l.root, &l.root
	l.bytes = 0
	l.mu.Unlock()
}

func (l *LRU) pushFront(n *lruNode) {
	n.prev, n.next = &l.root, l.root.next
	n.next.prev = n
	l.root.next = n
}

func (l *LRU) moveToFront(n *lruNode) {
	if l.root.next == n {
		return
	}
	n.prev.next, n.next.prev = n.next, n.prev
	l.pushFront(n)
}

// unlink removes n from the list and the map and uncharges it.
func (l *LRU) unlink(n *lruNode) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
	delete(l.m, mapKey(n.e.Key()))
	l.bytes -= n.e.Cost()
}
