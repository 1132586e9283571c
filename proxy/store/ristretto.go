package store

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
// Get after Set returns true sees the entry. An index of the live entries
// (ristretto has no iterator that lets go of its locks) answers Range,
// Stats().Items and Stats().Bytes, and tells Set whether the policy kept the
// entry.
type Ristretto struct {
	c        *ristretto.Cache[[]byte, *Entry]
	idx      index
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
	r := &Ristretto{maxBytes: maxBytes, now: o.now, checkClock: o.ownedClock}
	r.idx.init()
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
	if !ok || e == nil || !bytes.Equal(e.Key, key) || (r.checkClock && e.Expires != 0 && e.Expired(r.now())) {
		r.misses.inc(key)
		return nil, false
	}
	r.hits.inc(key)
	return e, true
}

// Set stores e and waits until ristretto has applied it. It returns false
// when e costs more than the whole store, has already expired, or the
// admission policy turned it down; false is also returned in the rare case
// that concurrent Sets evicted e before Set could report it. A refused
// overwrite may leave the previous entry in place, or, when e was larger
// than it, nothing.
func (r *Ristretto) Set(e *Entry) bool {
	cost := e.Cost()
	var ttl time.Duration
	if e.Expires != 0 {
		ttl = time.Duration(e.Expires - r.now())
	}
	if cost > r.maxBytes || (e.Expires != 0 && ttl <= 0) {
		r.rejects.Add(1)
		return false
	}
	h := keyHash(e.Key)
	if old := r.idx.put(h, e, cost); old != nil && cost > old.Cost() {
		// ristretto updates a present key in place and evicts only when a
		// new key arrives, so a grown overwrite would leave the store over
		// budget. Deleting first sends e through admission and eviction like
		// any new key, at the price of readers missing the key until the
		// Set below is applied.
		r.c.Del(e.Key)
	}
	if r.checkClock {
		ttl = 0 // expiry is ours: Get checks it, sweep reclaims it
	}
	if !r.c.SetWithTTL(e.Key, e, cost, ttl) {
		// Dropped before reaching the policy (write buffer full): no
		// callback will come for e.
		r.idx.remove(h, e)
		r.rejects.Add(1)
		return false
	}
	r.c.Wait()
	if !r.settle(h, e) {
		r.rejects.Add(1)
		return false
	}
	r.sets.Add(1)
	return true
}

// settle reports whether ristretto holds e, once Wait has returned. Set put
// e in the index before handing it over, and every way ristretto lets go of
// a value (rejection, eviction, replacement, deletion) passes through
// onExit, which removes the value from the index; Wait orders those
// callbacks before its return. So e still in the index means e was kept, at
// no cost. Otherwise the key is checked with GetTTL, which unlike Get does
// not count as an access for the admission policy; only when the key is
// present (concurrent Sets of one key raced) is the value read back to
// repair the index.
func (r *Ristretto) settle(h uint64, e *Entry) bool {
	s := r.idx.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[h] == e {
		return true
	}
	if _, ok := r.c.GetTTL(e.Key); !ok {
		return false
	}
	// Holding the shard lock orders this against onExit for v: either v
	// is already gone from ristretto and Get misses, or onExit waits and
	// then finds v here.
	v, ok := r.c.Get(e.Key)
	if !ok || v == nil {
		return false
	}
	if _, held := s.m[h]; !held {
		s.m[h] = v
		r.idx.items.Add(1)
		r.idx.bytes.Add(v.Cost())
	}
	return v == e
}

// Delete removes the entry under key; Get misses it from the moment Delete
// returns.
func (r *Ristretto) Delete(key []byte) {
	r.c.Del(key) // removes from ristretto's map at once, calling onExit
}

// Range calls fn for every live entry, one index shard at a time, holding
// no lock while fn runs: fn may call the store.
func (r *Ristretto) Range(fn func(e *Entry) bool) {
	now := r.now()
	var buf []*Entry
	for i := range r.idx.shards {
		buf = r.idx.shards[i].snapshot(buf[:0])
		for _, e := range buf {
			if e.Expired(now) {
				continue
			}
			if !fn(e) {
				return
			}
		}
	}
}

// Stats returns the store's counters. Bytes and Items count the index,
// which follows ristretto's callbacks synchronously.
func (r *Ristretto) Stats() Stats {
	return Stats{
		Bytes:     r.idx.bytes.Load(),
		Items:     r.idx.items.Load(),
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
	// holding its own locks: they must not count or take index locks.
	r.closing.Store(true)
	r.c.Close()
	r.idx.init() // let go of the entries even if r stays referenced
}

// sweepEvery is how often expired entries are reclaimed when the store
// keeps its own expiry (ristretto's own cleanup runs every 5s too).
const sweepEvery = 5 * time.Second

// sweep deletes expired entries every interval until Close.
func (r *Ristretto) sweep(interval time.Duration) {
	defer r.swept.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	var buf []*Entry
	for {
		select {
		case <-r.stopSweep:
			return
		case <-t.C:
		}
		buf = r.sweepExpired(buf)
	}
}

// sweepExpired deletes every entry expired by the store's clock. buf is
// scratch space, returned for reuse.
func (r *Ristretto) sweepExpired(buf []*Entry) []*Entry {
	now := r.now()
	for i := range r.idx.shards {
		buf = r.idx.shards[i].snapshot(buf[:0])
		for _, e := range buf {
			if e.Expires != 0 && e.Expired(now) {
				r.c.Del(e.Key)
				r.evictions.Add(1)
			}
		}
		clear(buf)
	}
	return buf[:0]
}

// onEvict runs for entries removed to make room or because they expired.
// onExit follows it for the index.
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
	r.idx.remove(keyHash(e.Key), e)
}

// index maps key hash to entry for the entries ristretto holds (and, for
// the length of a Set, the one being set).
type index struct {
	shards       [indexShards]indexShard
	bytes, items atomic.Int64
}

const indexShards = 64

type indexShard struct {
	mu sync.RWMutex
	m  map[uint64]*Entry
	_  [64]byte // keeps neighbouring shards' locks off one cache line
}

func (x *index) init() {
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		s.m = make(map[uint64]*Entry)
		s.mu.Unlock()
	}
	x.bytes.Store(0)
	x.items.Store(0)
}

func (x *index) shard(h uint64) *indexShard { return &x.shards[h%indexShards] }

// put makes e the entry under h and returns the one it replaced.
func (x *index) put(h uint64, e *Entry, cost int64) (old *Entry) {
	s := x.shard(h)
	s.mu.Lock()
	old = s.m[h]
	s.m[h] = e
	// Counted under the lock, so a remove of e cannot be counted first.
	if old != nil {
		x.bytes.Add(cost - old.Cost())
	} else {
		x.items.Add(1)
		x.bytes.Add(cost)
	}
	s.mu.Unlock()
	return old
}

// remove drops the slot for h only if it still holds e: a newer Set may have
// replaced e before ristretto reported it gone.
func (x *index) remove(h uint64, e *Entry) {
	s := x.shard(h)
	s.mu.Lock()
	if s.m[h] == e {
		delete(s.m, h)
		x.items.Add(-1)
		x.bytes.Add(-e.Cost())
	}
	s.mu.Unlock()
}

func (s *indexShard) snapshot(dst []*Entry) []*Entry {
	s.mu.RLock()
	for _, e := range s.m {
		dst = append(dst, e)
	}
	s.mu.RUnlock()
	return dst
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
