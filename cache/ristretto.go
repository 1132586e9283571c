package cache

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Sizing of ristretto's admission counters: about ten per entry the store
// can hold, guessing entries of typicalEntryBytes. Each counter costs about
// 3-4 bytes, fixed at construction.
const (
	typicalEntryBytes = 4 << 10
	minCounters       = 1 << 14 // ~64 KiB: small stores still get a useful sketch
	maxCounters       = 1 << 25 // ~128 MiB: enough for caches of hundreds of GiB
)

// Ristretto is a Store on ristretto: TinyLFU admission, sampled LFU eviction.
//
// ristretto applies writes asynchronously; Set waits for its own write, so a
// Get after Set returns true sees the entry. Whether ristretto kept it, and
// how many entries and bytes it holds, is learnt from its callbacks: every
// way it lets go of a value (rejection, eviction, replacement, deletion)
// passes through onExit. Nothing is kept per entry beyond ristretto's own
// bookkeeping.
type Ristretto struct {
	c        *ristretto.Cache[[]byte, *Entry]
	maxBytes int64
	now      func() int64
	// checkClock: Get compares Expires with now. Without WithClock,
	// ristretto's own expiry check on Get (wall clock, TTL counted from the
	// Set) already does, and a second clock read costs as much as the rest
	// of a hit on some VMs.
	checkClock bool
	closing    atomic.Bool
	// With an owned clock, ristretto gets no TTLs (its Get would read the
	// wall clock on every hit); a sweeper deletes expired entries instead.
	stopSweep chan struct{}
	swept     sync.WaitGroup

	// mu orders Set's accounting against onExit. setting holds the entries
	// whose Set is waiting for ristretto, mapped to whether they have left
	// it meanwhile; an entry counts in items and bytes from the moment its
	// Set saw it kept until onExit sees it leave.
	mu           sync.Mutex
	setting      map[*Entry]bool
	items, bytes atomic.Int64

	hits, misses             stripedCounter // on the hit path: striped, not one hot word
	sets, rejects, evictions atomic.Uint64
}

var _ Store = (*Ristretto)(nil)

// NewRistretto returns a ristretto store charging at most maxBytes of entry
// cost. The only option honoured is WithClock; that clock then also decides
// expiry on Get and Range. Either way ristretto reclaims expired entries on
// its own wall-clock timer, seconds after they expire.
func NewRistretto(maxBytes int64, opts ...Option) (*Ristretto, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("ristretto store: max bytes must be > 0 (got %d)", maxBytes)
	}
	o := buildOptions(opts)
	r := &Ristretto{maxBytes: maxBytes, now: o.now, checkClock: o.ownedClock, setting: make(map[*Entry]bool)}
	c, err := ristretto.NewCache(&ristretto.Config[[]byte, *Entry]{
		NumCounters: numCounters(maxBytes),
		MaxCost:     maxBytes,
		BufferItems: 64,
		// Entry.Cost already includes bookkeeping (EntryOverhead).
		IgnoreInternalCost: true,
		// ristretto's default hashes through an interface conversion and a
		// second (xxhash) pass for conflicts. Get compares the stored key
		// instead, which rules out collisions completely, so one seeded
		// runtime hash is enough.
		KeyToHash: func(k []byte) (uint64, uint64) { return keyHash(k), 0 },
		// Metrics stay off: they keep a map of insertion times for up to
		// 100k keys (megabytes) and a locked histogram per eviction.
		OnEvict: r.onEvict,
		OnExit:  r.onExit,
	})
	if err != nil {
		return nil, fmt.Errorf("ristretto store: %w", err)
	}
	r.c = c
	if r.checkClock {
		r.stopSweep = make(chan struct{})
		r.swept.Add(1)
		go r.sweep(sweepEvery)
	}
	return r, nil
}

func numCounters(maxBytes int64) int64 {
	n := maxBytes / typicalEntryBytes * 10
	return min(max(n, minCounters), maxCounters)
}

func keyHash(k []byte) uint64 { return z.MemHash(k) }

// Get returns the entry under key. It does not allocate, apart from what
// ristretto does itself: one 512-byte access batch per 64 Gets.
func (r *Ristretto) Get(key []byte) (*Entry, bool) {
	e, ok := r.c.Get(key)
	// Comparing keys makes a hash collision a miss, never a wrong response.
	if !ok || e == nil || !bytes.Equal(e.Key(), key) || (r.checkClock && e.Expires != 0 && e.Expired(r.now())) {
		r.misses.inc(key)
		return nil, false
	}
	r.hits.inc(key)
	return e, true
}

// Set stores e and waits until ristretto has applied it. It returns false
// when e costs more than the whole store, has already expired, or the
// admission policy turned it down; false is also returned in the rare case
// that concurrent Sets evicted or replaced e before Set could report it. A
// refused overwrite may leave the previous entry in place, or, when e was
// larger than it, nothing. One *Entry must not be passed to two Sets at
// once.
func (r *Ristretto) Set(e *Entry) bool {
	sub := r.submit(e)
	if sub == sent {
		r.c.Wait() // orders every callback about e before the check below
	}
	return r.settle(e, sub)
}

// setBatch is Set for many entries with one wait for ristretto, which
// applies writes one at a time on its own goroutine: loading a snapshot
// through Set would wait for that goroutine once per entry. It returns how
// many entries were kept. es must fit ristretto's write buffer
// (maxSetBatch) or the excess is dropped; keys must be distinct.
func (r *Ristretto) setBatch(es []*Entry) int {
	var subs [maxSetBatch]submitted
	es = es[:min(len(es), maxSetBatch)]
	for i, e := range es {
		subs[i] = r.submit(e)
	}
	r.c.Wait()
	kept := 0
	for i, e := range es {
		if r.settle(e, subs[i]) {
			kept++
		}
	}
	return kept
}

// maxSetBatch is the most entries setBatch takes: well inside ristretto's
// write buffer (32 Ki items), beyond which it drops new keys.
const maxSetBatch = 1024

// submitted is what submit did with an entry.
type submitted uint8

const (
	refused submitted = iota // too large or expired: never sent
	present                  // this very entry is stored already
	sent                     // handed to ristretto: settle after a Wait
)

// submit hands e to ristretto unless it can be answered at once (refused,
// or already stored, both counted). settle must follow, after a Wait when
// e was sent.
func (r *Ristretto) submit(e *Entry) submitted {
	cost := e.Cost()
	var ttl time.Duration
	if e.Expires != 0 {
		ttl = time.Duration(e.Expires - r.now())
	}
	if cost > r.maxBytes || (e.Expires != 0 && ttl <= 0) {
		r.rejects.Add(1)
		return refused
	}
	key := e.Key()
	// GetTTL looks without counting an access for the admission policy;
	// only an overwrite reads the old entry.
	if _, there := r.c.GetTTL(key); there {
		if old, ok := r.c.Get(key); ok && old != nil {
			if old == e {
				r.sets.Add(1)
				return present
			}
			if cost > old.Cost() {
				// ristretto updates a present key in place and evicts
				// only when a new key arrives, so a grown overwrite would
				// leave the store over budget. Deleting first sends e
				// through admission and eviction like any new key, at the
				// price of readers missing the key until e is applied.
				r.c.Del(key)
			}
		}
	}
	if r.checkClock {
		ttl = 0 // expiry is ours: Get checks it, sweep reclaims it
	}
	r.mu.Lock()
	r.setting[e] = false
	r.mu.Unlock()
	// A new key dropped before reaching the policy (write buffer full)
	// gets no callback: settle counts it refused.
	if !r.c.SetWithTTL(key, e, cost, ttl) {
		r.mu.Lock()
		r.setting[e] = true
		r.mu.Unlock()
	}
	return sent
}

// settle reports whether e, submitted as sub (and, if sent, followed by a
// Wait), is in the store, and counts a sent one.
func (r *Ristretto) settle(e *Entry, sub submitted) bool {
	if sub != sent {
		return sub == present
	}
	r.mu.Lock()
	left := r.setting[e]
	delete(r.setting, e)
	kept := !left
	if kept {
		r.items.Add(1)
		r.bytes.Add(e.Cost())
	}
	r.mu.Unlock()
	if !kept {
		r.rejects.Add(1)
		return false
	}
	r.sets.Add(1)
	return true
}

// Delete removes the entry under key; Get misses it from the moment Delete
// returns.
func (r *Ristretto) Delete(key []byte) {
	r.c.Del(key) // removes from ristretto's map at once, calling onExit
}

// Range calls fn for every live entry. It collects them first, holding
// each of ristretto's map shards only to copy pointers out, so fn may call
// the store.
func (r *Ristretto) Range(fn func(e *Entry) bool) {
	now := r.now()
	live := r.collect(make([]*Entry, 0, max(0, r.items.Load())), func(e *Entry) bool { return !e.Expired(now) })
	for _, e := range live {
		if !fn(e) {
			return
		}
	}
}

// collect appends to dst the entries ristretto holds for which keep is
// true. keep runs under a ristretto lock: it must not call the store.
func (r *Ristretto) collect(dst []*Entry, keep func(e *Entry) bool) []*Entry {
	r.c.IterValues(func(e *Entry) bool {
		if e != nil && keep(e) {
			dst = append(dst, e)
		}
		return false
	})
	return dst
}

// Stats returns the store's counters. Bytes and Items follow ristretto's
// callbacks synchronously.
func (r *Ristretto) Stats() Stats {
	return Stats{
		Bytes:     r.bytes.Load(),
		Items:     r.items.Load(),
		Hits:      r.hits.load(),
		Misses:    r.misses.load(),
		Sets:      r.sets.Load(),
		Rejects:   r.rejects.Load(),
		Evictions: r.evictions.Load(),
	}
}

// Close stops ristretto's goroutines and drops every entry.
func (r *Ristretto) Close() {
	if r.stopSweep != nil {
		close(r.stopSweep)
		r.swept.Wait()
	}
	// ristretto's Close calls the eviction callbacks for everything while
	// holding its own locks: they must not count or take our lock.
	r.closing.Store(true)
	r.c.Close()
	r.items.Store(0)
	r.bytes.Store(0)
}

// sweepEvery is how often expired entries are reclaimed when the store
// keeps its own expiry (ristretto's own cleanup runs every 5s too).
const sweepEvery = 5 * time.Second

// sweep deletes expired entries every interval until Close.
func (r *Ristretto) sweep(interval time.Duration) {
	defer r.swept.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-r.stopSweep:
			return
		case <-t.C:
		}
		r.sweepExpired()
	}
}

// sweepExpired deletes every entry expired by the store's clock.
func (r *Ristretto) sweepExpired() {
	now := r.now()
	for _, e := range r.collect(nil, func(e *Entry) bool { return e.Expired(now) }) {
		// A Set may have replaced e since it was collected; ristretto has
		// no compare-and-delete, so look first (the window left is the
		// time between the two calls).
		if cur, ok := r.c.Get(e.Key()); ok && cur != e {
			continue
		}
		r.c.Del(e.Key())
		r.evictions.Add(1)
	}
}

// onEvict runs for entries removed to make room or because they expired.
// onExit follows it for the counts.
func (r *Ristretto) onEvict(it *ristretto.Item[*Entry]) {
	if it.Value != nil && !r.closing.Load() {
		r.evictions.Add(1)
	}
}

// onExit runs whenever ristretto lets go of a value: evicted, rejected,
// replaced or deleted.
func (r *Ristretto) onExit(e *Entry) {
	if e == nil || r.closing.Load() {
		return
	}
	r.mu.Lock()
	if _, waiting := r.setting[e]; waiting {
		r.setting[e] = true // never counted: its Set will report it refused
	} else {
		r.items.Add(-1)
		r.bytes.Add(-e.Cost())
	}
	r.mu.Unlock()
}

// stripedCounter spreads increments over cache lines by key, so parallel
// hits on different keys do not all write one word.
type stripedCounter struct {
	cells [counterStripes]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

const counterStripes = 16

func (c *stripedCounter) inc(key []byte) {
	var i uint
	if n := len(key); n > 0 {
		i = uint(n) ^ uint(key[n-1]) ^ uint(key[n/2])<<1
	}
	c.cells[i%counterStripes].n.Add(1)
}

func (c *stripedCounter) load() uint64 {
	var sum uint64
	for i := range c.cells {
		sum += c.cells[i].n.Load()
	}
	return sum
}
