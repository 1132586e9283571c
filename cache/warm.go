package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Warm is a Store over another (the inner store) that also holds the
// entries of a snapshot file from the moment it is loaded, before they are
// copied into the inner store.
//
// Copying a large snapshot into the heap takes far longer than reading it:
// every byte lands on memory the process never touched, and on a virtual
// machine each fresh page is a fault the hypervisor serves (on the
// project's VM, several seconds per GiB). Load therefore maps the file,
// which a snapshot written shortly before is still in the page cache,
// checks it whole and indexes its keys; a Get that misses the inner store
// then takes the entry from the file, copying it in, and a background
// mover copies the rest in file order, releasing the mapped pages behind
// it. Once every entry has moved the mapping is gone and Warm only passes
// calls through.
//
// A Get served from the inner store costs Warm one call; only a miss
// looks at the index. Taking an entry from the file copies it (as a fill
// would). Set, Delete and the moves are ordered by one mutex, so a Delete
// never loses to a copy of the entry on its way in, and a Set always
// wins over the snapshot's older copy.
type Warm struct {
	inner Store
	now   func() int64

	// pending counts the indexed entries not moved in yet. It only falls
	// once Load has returned, so reading zero without the lock is final.
	pending      atomic.Int64
	pendingBytes atomic.Int64  // their cost
	taken        atomic.Uint64 // Gets answered by taking an entry from the file

	mu       sync.RWMutex
	idx      *snapIndex // the entries still waiting in data; nil: none
	data     []byte     // the mapped snapshot
	blocks   []span     // payloads of the blocks indexed, in file order
	next     int        // first block the mover has not done
	released int        // data before this offset is released
	batch    []*Entry   // the mover's, reused
	release  func(from, to int)
	unmap    func()

	stop     chan struct{}
	stopOnce sync.Once
	moved    chan struct{} // closed once nothing is left to move
	done     sync.WaitGroup
	// manual: no background mover (tests move with moveBlock).
	manual bool
}

type span struct{ from, to int }

var osPageSize = os.Getpagesize()

// releaseStep is how much of the snapshot the mover copies in before it
// releases those pages of the mapping.
const releaseStep = 32 << 20

var _ Store = (*Warm)(nil)

// NewWarm returns a Warm over inner, holding nothing of a snapshot until
// Load. The only option honoured is WithClock, which decides which
// entries are expired (give it the inner store's clock).
func NewWarm(inner Store, opts ...Option) *Warm {
	o := buildOptions(opts)
	w := &Warm{inner: inner, now: o.now, stop: make(chan struct{}), moved: make(chan struct{})}
	close(w.moved)
	return w
}

// Load indexes the snapshot file at path, leaving out entries expired now
// and pass markers, and starts moving its entries into the inner store in
// the background. It must be called at most once, before w is used.
//
// A file that does not exist yields an error wrapping fs.ErrNotExist. A
// file that is not a snapshot of this release is left alone and yields a
// *SnapshotError. Any other snapshot is taken: once mapped and checked it
// is removed (the mapping keeps its contents, and nobody can cut the file
// short under it), so a snapshot is used once and a crash later never
// brings back entries purged since. A corrupt or truncated snapshot
// yields a *SnapshotError after the entries before the fault were
// indexed. Stats count the entries indexed, those left out (Skipped) and
// the bytes checked.
func (w *Warm) Load(path string) (s SnapshotStats, err error) {
	f, err := os.Open(path)
	if err != nil {
		return s, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return s, err
	}
	if !fi.Mode().IsRegular() {
		return s, fmt.Errorf("%s: not a regular file", path)
	}
	if int64(int(fi.Size())) != fi.Size() {
		return s, fmt.Errorf("%s: %d bytes do not fit in memory", path, fi.Size())
	}
	data, release, unmap, err := mapFile(f, int(fi.Size()))
	if err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	idx, blocks, bytes, s, scanErr := w.index(data)
	var se *SnapshotError
	if errors.As(scanErr, &se) && se.Offset == 0 {
		// Not a snapshot this node reads: not ours to remove.
		unmap()
		return s, scanErr
	}
	if scanErr != nil && !errors.As(scanErr, &se) {
		unmap()
		return s, scanErr
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		scanErr = errors.Join(scanErr, fmt.Errorf("remove the loaded snapshot: %w", err))
	}
	if idx.len() == 0 {
		unmap()
		return s, scanErr
	}
	w.mu.Lock()
	w.idx, w.data, w.blocks, w.release, w.unmap = idx, data, blocks, release, unmap
	w.moved = make(chan struct{})
	w.mu.Unlock()
	w.pendingBytes.Store(bytes)
	w.pending.Store(int64(idx.len()))
	if !w.manual {
		w.done.Add(1)
		go w.mover()
	}
	return s, scanErr
}

// index checks data and indexes the live entries of its sound blocks.
// The checksums are checked on another core while the index is built
// without them; unless both find the file sound, the index is built
// again the slow way, which stops at the first bad frame. Reading a
// mapped file that shrinks under it would fault: the fault is turned
// into an error.
func (w *Warm) index(data []byte) (idx *snapIndex, blocks []span, bytes int64, s SnapshotStats, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok {
				idx, blocks, err = nil, nil, fmt.Errorf("snapshot changed while it was read: %w", re)
				return
			}
			panic(r)
		}
	}()
	sums := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				sums <- fmt.Errorf("snapshot changed while it was read: %v", r)
			}
		}()
		debug.SetPanicOnFault(true) // this goroutine's own setting, gone with it
		sums <- checkSums(data)
	}()
	idx, blocks, bytes, s, err = w.indexScan(data, true)
	if sumErr := <-sums; sumErr != nil || err != nil {
		idx, blocks, bytes, s, err = w.indexScan(data, false)
	}
	return idx, blocks, bytes, s, err
}

// indexScan builds the index in one scan; noSum as scanSnapshot's.
func (w *Warm) indexScan(data []byte, noSum bool) (idx *snapIndex, blocks []span, bytes int64, s SnapshotStats, err error) {
	now := w.now()
	idx = newSnapIndex(data, expectedEntries(data))
	var skipped int64
	s, err = scanSnapshot(data, noSum, func(from, to int) { blocks = append(blocks, span{from, to}) }, func(e *Entry, off int) bool {
		// A duplicate key would be a writer's bug: the first copy stays.
		if !e.Transferable() || e.Expired(now) || !idx.add(e.Key(), off) {
			skipped++
			return true
		}
		bytes += e.Cost()
		return true
	})
	s.Entries, s.Skipped = int64(idx.len()), skipped
	return idx, blocks, bytes, s, err
}

// expectedEntries guesses how many entries a snapshot holds from its end
// frame, to size the index once; a guess, not trusted beyond that.
func expectedEntries(data []byte) int {
	if len(data) < headerLen+frameHeadLen+8+frameTailLen {
		return 0
	}
	n := int64(0)
	for i := 7; i >= 0; i-- {
		n = n<<8 | int64(data[len(data)-frameTailLen-8+i])
	}
	return int(min(max(n, 0), int64(len(data)/16)))
}

// Get returns the entry under key from the inner store or, while the
// snapshot is being moved in, takes it from the snapshot.
func (w *Warm) Get(key []byte) (*Entry, bool) {
	// Read before looking: if nothing was waiting then, nothing can move
	// in while the inner store is asked.
	waiting := w.pending.Load() > 0
	if e, ok := w.inner.Get(key); ok || !waiting {
		return e, ok
	}
	return w.take(key)
}

// take moves the entry under key from the snapshot into the inner store
// and returns it. A key no longer in the index may have moved in since the
// inner store was asked: it is asked again.
func (w *Warm) take(key []byte) (*Entry, bool) {
	w.mu.RLock()
	_, ok := w.idx.get(key)
	w.mu.RUnlock()
	if !ok {
		return w.inner.Get(key) // most misses end here, after the shared lock
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	off, ok := w.idx.get(key)
	if !ok {
		return w.inner.Get(key)
	}
	var b Entry
	if _, err := entryAt(&b, w.data, off); err != nil {
		return nil, false // cannot happen: the scan decoded it
	}
	w.forget(b.Key(), b.Cost())
	if b.Expired(w.now()) {
		return nil, false
	}
	e := b.Clone()
	// Under the lock: a Delete of key waits until e is in, then takes it
	// out; a Set waits, then replaces it.
	w.inner.Set(e)
	w.taken.Add(1)
	return e, true
}

// forget drops key from the index; the caller holds the lock.
func (w *Warm) forget(key []byte, cost int64) {
	w.idx.remove(key)
	w.pending.Add(-1)
	w.pendingBytes.Add(-cost)
}

// drop removes key's snapshot copy, if any is still waiting.
func (w *Warm) drop(key []byte) {
	if w.pending.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if off, ok := w.idx.get(key); ok {
		var b Entry
		if _, err := entryAt(&b, w.data, off); err == nil {
			w.forget(key, b.Cost())
		}
	}
}

// Set stores e in the inner store; the snapshot's copy of its key, if
// still waiting, is dropped first.
func (w *Warm) Set(e *Entry) bool {
	w.drop(e.Key())
	return w.inner.Set(e)
}

// Delete removes the entry under key, from the snapshot too.
func (w *Warm) Delete(key []byte) {
	w.drop(key)
	w.inner.Delete(key)
}

// Range first moves whatever of the snapshot is still waiting (the work
// the mover would do), so that every entry is seen exactly once and an
// entry deleted during Range cannot come back; then it ranges over the
// inner store.
func (w *Warm) Range(fn func(e *Entry) bool) {
	for w.moveBlock() {
	}
	w.inner.Range(fn)
}

// Stats are the inner store's, plus the entries waiting in the snapshot;
// a Get answered from the snapshot counts as a hit.
func (w *Warm) Stats() Stats {
	s := w.inner.Stats()
	s.Items += w.pending.Load()
	s.Bytes += w.pendingBytes.Load()
	t := w.taken.Load()
	s.Hits += t
	s.Misses -= min(t, s.Misses) // the inner store missed them first
	return s
}

// Moved is closed once every entry of the snapshot has moved into the
// inner store (at once without a snapshot).
func (w *Warm) Moved() <-chan struct{} {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.moved
}

// Close stops the mover, drops the snapshot and closes the inner store.
func (w *Warm) Close() {
	w.shutdown()
	w.inner.Close()
}

// shutdown stops the mover and drops what is left of the snapshot.
func (w *Warm) shutdown() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.done.Wait()
	w.mu.Lock()
	if w.data != nil {
		w.finish()
	}
	w.mu.Unlock()
}

// mover moves the snapshot in, block by block, until it is all in or w
// closes.
func (w *Warm) mover() {
	defer w.done.Done()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if !w.moveBlock() {
			return
		}
	}
}

// moveBlock moves the entries of the next block that are still indexed
// into the inner store and releases the pages behind them. It reports
// whether blocks remain. The lock is held for one block (64 KiB), so
// Gets taking entries wait at most that long.
func (w *Warm) moveBlock() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next >= len(w.blocks) {
		return false
	}
	b := w.blocks[w.next]
	w.next++
	now := w.now()
	for off := b.from; off < b.to; {
		var e Entry
		next, err := entryAt(&e, w.data, off)
		if err != nil {
			break // cannot happen: the scan decoded it
		}
		if cur, ok := w.idx.get(e.Key()); ok && cur == off {
			w.forget(e.Key(), e.Cost())
			if !e.Expired(now) {
				w.batch = append(w.batch, e.Clone())
			}
		}
		off = next
	}
	setMany(w.inner, w.batch)
	clear(w.batch)
	w.batch = w.batch[:0]
	if w.next == len(w.blocks) {
		w.finish()
		return false
	}
	// Everything before this block's end has moved (a page it shares
	// with the next block stays). Released in large steps: each call
	// costs the kernel a TLB flush on every CPU, half a millisecond on a
	// VM whatever its length.
	if to := b.to &^ (osPageSize - 1); to-w.released >= releaseStep {
		w.release(w.released, to)
		w.released = to
	}
	return true
}

// finish drops the mapping and the index; the caller holds the lock.
func (w *Warm) finish() {
	w.unmap()
	w.idx, w.data, w.blocks, w.batch = nil, nil, nil, nil
	w.next = 0
	w.pending.Store(0)
	w.pendingBytes.Store(0)
	close(w.moved)
}

// setMany stores es (distinct keys) and returns how many were kept, with
// one wait per batch where the store allows it.
func setMany(st Store, es []*Entry) int {
	r, ok := st.(*Ristretto)
	kept := 0
	for len(es) > 0 {
		n := min(len(es), maxSetBatch)
		if ok {
			kept += r.setBatch(es[:n])
		} else {
			for _, e := range es[:n] {
				if st.Set(e) {
					kept++
				}
			}
		}
		es = es[n:]
	}
	return kept
}

// snapIndex maps the keys of a snapshot's entries to where the entries
// start in it. It is keyed by the keys' hashes, which for millions of
// keys builds in about half the time a map of strings takes, and compares
// the key in the snapshot on lookup; a key whose hash an earlier one
// holds goes to a second map (with 64-bit hashes, a million keys collide
// with odds of one in thirty million). A nil index holds nothing.
type snapIndex struct {
	data   []byte
	byHash map[uint64]int
	more   map[string]int // keys viewing data
}

func newSnapIndex(data []byte, hint int) *snapIndex {
	return &snapIndex{data: data, byHash: make(map[uint64]int, hint)}
}

func (x *snapIndex) len() int {
	if x == nil {
		return 0
	}
	return len(x.byHash) + len(x.more)
}

// keyAt is the key of the entry at off.
func (x *snapIndex) keyAt(off int) []byte {
	var e Entry
	if _, err := entryAt(&e, x.data, off); err != nil {
		return nil // cannot happen: the scan decoded it
	}
	return e.Key()
}

// get returns where key's entry starts.
func (x *snapIndex) get(key []byte) (int, bool) {
	if x == nil {
		return 0, false
	}
	if off, ok := x.byHash[keyHash(key)]; ok && bytes.Equal(x.keyAt(off), key) {
		return off, true
	}
	off, ok := x.more[string(key)]
	return off, ok
}

// add indexes the entry of key (viewing data) at off, unless key is
// indexed already.
func (x *snapIndex) add(key []byte, off int) bool {
	h := keyHash(key)
	prev, taken := x.byHash[h]
	if !taken {
		x.byHash[h] = off
		return true
	}
	if bytes.Equal(x.keyAt(prev), key) {
		return false
	}
	k := unsafe.String(unsafe.SliceData(key), len(key))
	if _, dup := x.more[k]; dup {
		return false
	}
	if x.more == nil {
		x.more = make(map[string]int)
	}
	x.more[k] = off
	return true
}

// remove forgets key.
func (x *snapIndex) remove(key []byte) {
	h := keyHash(key)
	if off, ok := x.byHash[h]; ok && bytes.Equal(x.keyAt(off), key) {
		delete(x.byHash, h)
		return
	}
	delete(x.more, string(key))
}
