package cache

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Warm is a Store over another (the inner store) that also holds the
// entries of a snapshot file from the moment it is loaded, before they are
// copied into the inner store.
//
// Copying a large snapshot into the heap takes far longer than reading it:
// every byte lands on memory the process never touched, and on a virtual
// machine each fresh page is a fault the hypervisor serves (on the
// project's VM, several seconds per GiB). Load therefore maps the file,
// which a snapshot written shortly before is still in the page cache, and
// reads only its index: 32 bytes an entry. A Get that misses the inner
// store then takes the entry from the file, checking its block first and
// copying it in, and a background mover copies the rest in file order,
// releasing the mapped pages behind it. Once every entry has moved the
// mapping is gone and Warm only passes calls through.
//
// A Get served from the inner store costs Warm one atomic load and one
// call; only a miss looks at the index. Taking an entry from the file
// copies it (as a fill would). Set, Delete and the moves are ordered by one
// mutex, so a Delete never loses to a copy of the entry on its way in, and
// a Set always wins over the snapshot's older copy.
type Warm struct {
	inner Store
	now   func() int64

	// pending counts the snapshot's live entries not moved in yet. It only
	// falls once Load has returned, so reading zero without the lock is
	// final.
	pending      atomic.Int64
	pendingBytes atomic.Int64  // their cost
	taken        atomic.Uint64 // Gets answered by taking an entry from the file
	moves        MoveStats     // under mu

	mu       sync.RWMutex
	idx      *snapIndex   // nil: no snapshot (any more)
	next     int          // first block not taken by a mover
	busy     int          // blocks taken and not yet done
	released int          // data before this offset is released
	batch    []*Entry     // the mover's, reused
	checked  []blockEntry // checkBlock's, reused
	mapping  *mapping
	onDamage func(error)

	stop     chan struct{}
	stopOnce sync.Once
	moved    chan struct{} // closed once nothing is left to move
	done     sync.WaitGroup
	// manual: no background mover (tests move with moveBlock).
	manual bool
}

// MoveStats count what became of a loaded snapshot's entries.
type MoveStats struct {
	Moved   int64 // copied into the inner store, by the mover or a Get
	Expired int64 // expired before they were asked for or moved
	Damaged int64 // in blocks whose checksum failed when first used
}

var (
	_ Store = (*Warm)(nil)

	osPageSize = os.Getpagesize()
)

// releaseStep is how much of the snapshot the mover copies in before it
// releases those pages of the mapping: each release costs the kernel a TLB
// flush on every CPU, half a millisecond on a VM whatever its length.
const releaseStep = 32 << 20

// NewWarm returns a Warm over inner, holding nothing of a snapshot until
// Load. The only option honoured is WithClock, which decides which
// entries are expired (give it the inner store's clock).
func NewWarm(inner Store, opts ...Option) *Warm {
	o := buildOptions(opts)
	w := &Warm{inner: inner, now: o.now, stop: make(chan struct{}), moved: make(chan struct{}), onDamage: func(error) {}}
	close(w.moved)
	return w
}

// OnDamage sets what hears of a block found damaged after Load, when its
// entries are first used (they are dropped). Call it before Load.
func (w *Warm) OnDamage(fn func(err error)) { w.onDamage = fn }

// Load maps the snapshot file at path and reads its index, leaving out
// entries expired now, then starts moving the entries into the inner
// store in the background. It must be called at most once, before w is
// used. A snapshot whose index or end frame is damaged (cut short, say)
// is scanned in full instead, block by block, up to the damage.
//
// A file that does not exist yields an error wrapping fs.ErrNotExist. A
// file that is not a snapshot of this release is left alone and yields a
// *SnapshotError. Any other snapshot is taken: once mapped it is removed
// (the mapping keeps its contents, and nobody can cut the file short
// under it), so a snapshot is used once and a crash later never brings
// back entries purged since. A damaged snapshot yields a *SnapshotError
// naming the offset, with every entry before the damage loaded. Stats
// count the entries loaded, those left out (Skipped) and the file's
// bytes.
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
	m, err := mapFile(f, int(fi.Size()))
	if err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	idx, s, loadErr := w.load(m)
	s.Bytes = fi.Size()
	var se *SnapshotError
	if errors.As(loadErr, &se) && se.Offset == 0 || loadErr != nil && !errors.As(loadErr, &se) {
		// Not a snapshot this node reads (not ours to remove), or the
		// file changed under the mapping.
		m.unmap()
		return s, loadErr
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		loadErr = errors.Join(loadErr, fmt.Errorf("remove the loaded snapshot: %w", err))
	}
	if s.Entries == 0 {
		m.unmap()
		return s, loadErr
	}
	w.install(idx, s.Entries, m)
	return s, loadErr
}

// install makes idx, holding live entries, w's snapshot and starts the
// mover.
func (w *Warm) install(idx *snapIndex, live int64, m *mapping) {
	w.mu.Lock()
	w.idx, w.mapping = idx, m
	w.moved = make(chan struct{})
	w.mu.Unlock()
	w.pendingBytes.Store(idx.liveBytes)
	w.pending.Store(live)
	if !w.manual {
		w.done.Add(1)
		go w.mover(m, idx.end)
	}
}

// load reads data's index, or scans it when the index cannot be used.
// Reading a mapped file that shrinks under it would fault: the fault is
// turned into an error.
func (w *Warm) load(m *mapping) (idx *snapIndex, s SnapshotStats, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok {
				idx, err = nil, fmt.Errorf("snapshot changed while it was read: %w", re)
				return
			}
			panic(r)
		}
	}()
	now, data := w.now(), m.data
	idx, s, err = readIndex(data, now, m.populate)
	var se *SnapshotError
	if err == nil || errors.As(err, &se) && se.Offset == 0 {
		return idx, s, err // sound, or not a snapshot at all
	}
	return scanIndex(data, now)
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
// and returns it. The copy is made under the shared lock, so takes and the
// mover copy side by side; only storing it takes the lock. A key no longer
// waiting may have moved in since the inner store was asked: it is asked
// again.
func (w *Warm) take(key []byte) (*Entry, bool) {
	for range 2 { // a second time after checking the entry's block
		w.mu.RLock()
		x := w.idx
		r, ok := x.find(key)
		if !ok {
			w.mu.RUnlock()
			return w.inner.Get(key) // most misses end here, after the shared lock
		}
		b := x.blockOf(r.off)
		if x.state[b] == blockUnchecked {
			w.mu.RUnlock()
			w.mu.Lock()
			if w.idx == x {
				w.checkBlock(b)
			}
			w.mu.Unlock()
			continue
		}
		var e *Entry
		if x.state[b] == blockGood {
			e = x.copyAt(int(r.off), key)
		}
		w.mu.RUnlock()
		return w.store(x, int(r.seq), e, key)
	}
	return nil, false
}

// store puts e, copied from entry seq of x, into the inner store unless
// the entry stopped waiting meanwhile (moved by someone else, or dropped
// by a Set or Delete of its key). A nil e is an entry that turned out
// unusable.
func (w *Warm) store(x *snapIndex, seq int, e *Entry, key []byte) (*Entry, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.idx != x || x.isGone(seq) {
		return w.inner.Get(key)
	}
	w.forget(seq)
	switch {
	case e == nil || !e.Transferable():
		return nil, false // a record its block does not back (cannot happen with a sound index), or a pass marker
	case e.Expired(w.now()):
		w.moves.Expired++
		return nil, false
	}
	// Under the lock: a Delete of key waits until e is in, then takes it
	// out; a Set waits, then replaces it.
	w.inner.Set(e)
	w.moves.Moved++
	w.taken.Add(1)
	return e, true
}

// forget marks entry seq as no longer waiting; the caller holds the lock.
func (w *Warm) forget(seq int) {
	if w.idx.setGone(seq) {
		w.pending.Add(-1)
		w.pendingBytes.Add(-int64(w.idx.costs[seq]))
	}
}

// drop forgets key's snapshot copy, if any is still waiting.
func (w *Warm) drop(key []byte) {
	if w.pending.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if r, ok := w.idx.find(key); ok {
		w.forget(int(r.seq))
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
	<-w.Moved() // blocks the mover took are done too
	w.inner.Range(fn)
}

// Stats are the inner store's, plus the entries waiting in the snapshot;
// a Get answered from the snapshot counts as a hit.
func (w *Warm) Stats() Stats {
	s := w.inner.Stats()
	s.Items += w.pending.Load()
	s.Bytes += max(w.pendingBytes.Load(), 0)
	t := w.taken.Load()
	s.Hits += t
	s.Misses -= min(t, s.Misses) // the inner store missed them first
	return s
}

// Moved is closed once every entry of the snapshot has moved into the
// inner store or been dropped (at once without a snapshot).
func (w *Warm) Moved() <-chan struct{} {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.moved
}

// MoveStats tells what became of the snapshot's entries so far.
func (w *Warm) MoveStats() MoveStats {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.moves
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
	if w.idx != nil {
		w.finish()
	}
	w.mu.Unlock()
}

// mover moves the snapshot in, block by block, until it is all in or w
// closes.
//
// Ahead of the blocks it moves, it maps the file's pages populateStep at a
// time: one system call instead of a fault per 64 KiB. Not the whole file
// at once: the kernel holds the process's address-space lock for reading
// while it populates, a heap growth (mmap) by the Go runtime meanwhile
// waits for it, and threads faulting a page queue behind that writer, so
// one populate of a GiB could hold up a restarted node's requests.
func (w *Warm) mover(m *mapping, end int) {
	defer w.done.Done()
	populated := 0
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if at := w.nextBlockAt(); at >= 0 && at+2*blockTarget > populated {
			from := max(at, populated)
			populated = min(from+populateStep, end)
			m.populate(from, populated)
		}
		if !w.moveBlock() {
			return
		}
		runtime.Gosched() // requests first: the mover only fills in behind them
	}
}

// populateStep is how much of the file the mover maps at once.
const populateStep = 8 << 20

// nextBlockAt is the offset of the next block to move, -1 for none.
func (w *Warm) nextBlockAt() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.idx == nil || w.next >= len(w.idx.blocks) {
		return -1
	}
	return int(w.idx.blocks[w.next].off)
}

// moveBlock checks the next block and moves its entries that are still
// waiting into the inner store, then releases the pages behind them. It
// reports whether blocks remain to be taken. The lock is held only to
// take the block and check it, and to store its entries; they are copied
// one by one under the shared lock, so Gets wait at most for one.
func (w *Warm) moveBlock() bool {
	w.mu.Lock()
	x := w.idx
	if x == nil || w.next >= len(x.blocks) {
		w.mu.Unlock()
		return false
	}
	b := w.next
	w.next++
	w.busy++
	var todo []int // entries of b still waiting, as seq, offset pairs
	if w.checkBlock(b) {
		var scratch Entry
		seq := int(x.blocks[b].first)
		for off, end := x.payload(b); off < end; seq++ {
			if !x.isGone(seq) {
				todo = append(todo, seq, off)
			}
			next, err := entryAt(&scratch, x.data, off) // checked with the block: cannot fail
			if err != nil {
				break
			}
			off = next
		}
	}
	w.mu.Unlock()

	copies := make([]*Entry, len(todo)/2)
	for i := range copies {
		w.mu.RLock()
		if w.idx == x && !x.isGone(todo[2*i]) {
			copies[i] = x.copyAt(todo[2*i+1], nil)
		}
		w.mu.RUnlock()
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	for i, e := range copies {
		if seq := todo[2*i]; e != nil && w.idx == x && !x.isGone(seq) {
			w.forget(seq)
			if e.Expired(now) || !e.Transferable() {
				w.moves.Expired++
			} else {
				w.batch = append(w.batch, e)
			}
		}
	}
	w.moves.Moved += int64(len(w.batch))
	setMany(w.inner, w.batch)
	clear(w.batch)
	w.batch = w.batch[:0]
	w.busy--
	if w.idx != x {
		return false
	}
	if w.next == len(x.blocks) {
		if w.busy == 0 {
			w.finish()
		}
		return false
	}
	if to := x.payloadEnd(b) &^ (osPageSize - 1); to-w.released >= releaseStep {
		w.mapping.release(w.released, to)
		w.released = to
	}
	return true
}

// checkBlock checks block b the first time it is used (its frame, its
// checksum, every entry's encoding) and reports whether it is sound. A
// damaged block's entries are dropped and OnDamage hears of it. The
// caller holds the lock.
func (w *Warm) checkBlock(b int) bool {
	x := w.idx
	if x.state[b] != blockUnchecked {
		return x.state[b] == blockGood
	}
	blk := x.blocks[b]
	sc := snapshotScanner{data: x.data, off: int(blk.off)}
	kind, count, payload, err := sc.frame()
	if err == nil && (kind != frameBlock || count != blk.count) {
		err = sc.corrupt("the index calls it a block of %d entries", blk.count)
	}
	if err == nil {
		// Decoded into a slice kept for the next check: a block is checked
		// per Get of a new block's entry while the snapshot moves in.
		w.checked, err = sc.decodeBlock(w.checked[:0], count, payload)
	}
	if err == nil {
		x.state[b] = blockGood
		return true
	}
	x.state[b] = blockBad
	for seq := int(blk.first); seq < int(blk.first+blk.count); seq++ {
		if !x.isGone(seq) {
			w.forget(seq)
			w.moves.Damaged++
		}
	}
	w.onDamage(err)
	return false
}

// finish drops the mapping and the index; the caller holds the lock.
func (w *Warm) finish() {
	w.mapping.unmap()
	w.idx, w.batch, w.checked, w.next = nil, nil, nil, 0
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

// snapIndex is a loaded snapshot: where its entries are, by key hash and
// by block, and which are still waiting. A nil index holds nothing.
type snapIndex struct {
	data   []byte
	recs   []byte      // records (recordLen bytes each) sorted by key hash
	blocks []snapBlock // in file order
	costs  []uint32    // by entry number
	gone   []uint64    // bitmap by entry number: moved, taken, dropped, or never live
	state  []uint8     // by block
	end    int         // where the last block ends (the index starts)
	// liveBytes is the cost of the entries live at the load.
	liveBytes int64
}

// Block states.
const (
	blockUnchecked uint8 = iota
	blockGood
	blockBad
)

func (x *snapIndex) records() int { return len(x.recs) / recordLen }

func (x *snapIndex) record(i int) snapRecord {
	r := x.recs[i*recordLen : (i+1)*recordLen]
	le := binary.LittleEndian
	return snapRecord{hash: le.Uint64(r), off: int64(le.Uint64(r[8:])), expires: int64(le.Uint64(r[16:])),
		seq: le.Uint32(r[24:]), cost: le.Uint32(r[28:])}
}

func (x *snapIndex) isGone(seq int) bool { return x.gone[seq/64]&(1<<(seq%64)) != 0 }

// setGone marks seq gone and reports whether it was waiting.
func (x *snapIndex) setGone(seq int) bool {
	w, bit := &x.gone[seq/64], uint64(1)<<(seq%64)
	was := *w&bit == 0
	*w |= bit
	return was
}

// find returns the waiting record of key. Keys are compared as the file
// holds them, checked or not: find only locates.
func (x *snapIndex) find(key []byte) (snapRecord, bool) {
	if x == nil {
		return snapRecord{}, false
	}
	h := xxhash.Sum64(key)
	n := x.records()
	for i := sort.Search(n, func(i int) bool { return binary.LittleEndian.Uint64(x.recs[i*recordLen:]) >= h }); i < n; i++ {
		r := x.record(i)
		if r.hash != h {
			break
		}
		if !x.isGone(int(r.seq)) && bytes.Equal(x.keyAt(int(r.off)), key) {
			return r, true
		}
	}
	return snapRecord{}, false
}

// copyAt returns a copy of its own of the entry at off, in a block
// checked sound, or nil if none decodes there or its key is not key (when
// given).
func (x *snapIndex) copyAt(off int, key []byte) *Entry {
	var e Entry
	if _, err := entryAt(&e, x.data, off); err != nil || key != nil && !bytes.Equal(e.Key(), key) {
		return nil
	}
	return e.Clone()
}

// keyAt is the key of the entry at off, nil if none decodes there.
func (x *snapIndex) keyAt(off int) []byte {
	var e Entry
	if _, err := entryAt(&e, x.data, off); err != nil {
		return nil
	}
	return e.Key()
}

// blockOf is the block holding offset off.
func (x *snapIndex) blockOf(off int64) int {
	return max(sort.Search(len(x.blocks), func(b int) bool { return x.blocks[b].off > off })-1, 0)
}

// payload is where block b's entries start and end, for a block checked
// sound.
func (x *snapIndex) payload(b int) (int, int) {
	off := int(x.blocks[b].off)
	return off + frameHeadLen, off + frameHeadLen + int(binary.LittleEndian.Uint32(x.data[off+5:]))
}

// payloadEnd is where block b ends as far as the index knows.
func (x *snapIndex) payloadEnd(b int) int {
	if b+1 < len(x.blocks) {
		return int(x.blocks[b+1].off)
	}
	return x.end
}

// readIndex reads data's header, end frame and index, and checks that
// they agree; the blocks are left for checkBlock. The entries live at now
// are those Stats count; a duplicate key (which WriteSnapshot never
// writes) keeps its first copy.
func readIndex(data []byte, now int64, populate func(from, to int)) (*snapIndex, SnapshotStats, error) {
	var s SnapshotStats
	sc := snapshotScanner{data: data}
	taken, err := sc.header()
	if err != nil {
		return nil, s, err
	}
	s.Taken = time.Unix(0, taken)
	if len(data) < headerLen+endFrameAt {
		return nil, s, sc.corrupt("truncated: no end frame")
	}
	sc.off = len(data) - endFrameAt
	kind, _, end, err := sc.frame()
	if err != nil || kind != frameEnd {
		return nil, s, cmp.Or(err, sc.corrupt("no end frame"))
	}
	total, at := binary.LittleEndian.Uint64(end), binary.LittleEndian.Uint64(end[8:])
	if at < headerLen || at >= uint64(len(data)-endFrameAt) {
		return nil, s, sc.corrupt("the end frame puts the index at %d", at)
	}
	populate(int(at), len(data)) // read whole, and looked up at random
	sc.off = int(at)
	kind, count, payload, err := sc.frame()
	switch {
	case err != nil:
		return nil, s, err
	case kind != frameIndex || uint64(count) != total || sc.off != len(data)-endFrameAt:
		return nil, s, sc.corrupt("no index where the end frame puts it")
	}
	nb := binary.LittleEndian.Uint32(payload)
	if uint64(len(payload)) != 4+uint64(nb)*blockRefLen+uint64(count)*recordLen {
		return nil, s, sc.corrupt("index of %d blocks and %d entries in %d bytes", nb, count, len(payload))
	}
	x := &snapIndex{data: data, end: int(at), recs: payload[4+int(nb)*blockRefLen:],
		blocks: make([]snapBlock, nb), state: make([]uint8, nb)}
	var seqs uint64
	for b := range x.blocks {
		ref := payload[4+b*blockRefLen:]
		blk := snapBlock{off: int64(binary.LittleEndian.Uint64(ref)), first: binary.LittleEndian.Uint32(ref[8:]), count: binary.LittleEndian.Uint32(ref[12:])}
		if blk.off < headerLen || blk.off >= int64(at) || b > 0 && blk.off <= x.blocks[b-1].off || uint64(blk.first) != seqs || blk.count == 0 {
			return nil, s, sc.corrupt("index: block %d is out of order", b)
		}
		seqs += uint64(blk.count)
		x.blocks[b] = blk
	}
	if seqs != total {
		return nil, s, sc.corrupt("index: the blocks hold %d entries, not %d", seqs, total)
	}
	if err := x.account(now, int64(at), &s); err != nil {
		return nil, s, sc.corrupt("index: %v", err)
	}
	s.Bytes = int64(len(data))
	return x, s, nil
}

// scanIndex builds the index of data by scanning its blocks in order (a
// snapshot whose own index cannot be used), up to the first damage.
func scanIndex(data []byte, now int64) (*snapIndex, SnapshotStats, error) {
	x := &snapIndex{data: data}
	var recs []snapRecord
	s, err := scanSnapshot(data, func(off, count int) {
		x.blocks = append(x.blocks, snapBlock{off: int64(off), first: uint32(len(recs)), count: uint32(count)})
	}, func(e *Entry, off int) bool {
		expires := e.Expires
		if !e.Transferable() {
			expires = now // pass markers are this node's own: left out as expired
		}
		recs = append(recs, snapRecord{hash: xxhash.Sum64(e.Key()), off: int64(off), expires: expires, seq: uint32(len(recs)), cost: uint32(min(e.Cost(), 1<<32-1))})
		return true
	})
	x.end = int(s.Bytes) // where the scan stopped: past the last sound block
	slices.SortFunc(recs, func(a, b snapRecord) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.seq, b.seq))
	})
	x.recs = make([]byte, 0, len(recs)*recordLen)
	for _, r := range recs {
		x.recs = binary.LittleEndian.AppendUint64(x.recs, r.hash)
		x.recs = binary.LittleEndian.AppendUint64(x.recs, uint64(r.off))
		x.recs = binary.LittleEndian.AppendUint64(x.recs, uint64(r.expires))
		x.recs = binary.LittleEndian.AppendUint32(x.recs, r.seq)
		x.recs = binary.LittleEndian.AppendUint32(x.recs, r.cost)
	}
	x.state = make([]uint8, len(x.blocks))
	for b := range x.state {
		x.state[b] = blockGood // checked by the scan
	}
	stats := s
	if aerr := x.account(now, int64(len(data)), &stats); aerr != nil {
		return nil, s, aerr // cannot happen: the records are the scan's own
	}
	return x, stats, err
}

// account fills x's per-entry tables from its records, checks that they
// fit (sorted by hash, each entry number once, offsets within
// [headerLen, end)), marks expired entries and duplicate keys gone, and
// counts them in s. It reads the records in place, a million of them at
// every start: no per-record call.
func (x *snapIndex) account(now int64, end int64, s *SnapshotStats) error {
	n := x.records()
	x.costs = make([]uint32, n)
	x.gone = make([]uint64, (n+63)/64)
	seen := make([]uint64, (n+63)/64)
	le := binary.LittleEndian
	recs := x.recs[:n*recordLen]
	var prev uint64
	for i := range n {
		rec := recs[i*recordLen : (i+1)*recordLen]
		hash, off, expires, seq := le.Uint64(rec), le.Uint64(rec[8:]), int64(le.Uint64(rec[16:])), le.Uint32(rec[24:])
		if off < headerLen || off >= uint64(end) || uint64(seq) >= uint64(n) || hash < prev || seen[seq/64]&(1<<(seq%64)) != 0 {
			return fmt.Errorf("entry %d of %d does not fit", i, n)
		}
		seen[seq/64] |= 1 << (seq % 64)
		x.costs[seq] = le.Uint32(rec[28:])
		switch {
		case expires != 0 && now >= expires:
			x.setGone(int(seq))
			s.Skipped++
		case i > 0 && hash == prev && x.duplicate(i):
			x.setGone(int(seq))
			s.Skipped++
		default:
			x.liveBytes += int64(x.costs[seq])
		}
		prev = hash
	}
	s.Entries = int64(n) - s.Skipped
	return nil
}

// duplicate reports whether record i's key is an earlier record's of the
// same hash (records of one hash are in file order).
func (x *snapIndex) duplicate(i int) bool {
	r := x.record(i)
	key := x.keyAt(int(r.off))
	for j := i - 1; j >= 0; j-- {
		p := x.record(j)
		if p.hash != r.hash {
			return false
		}
		if !x.isGone(int(p.seq)) && bytes.Equal(x.keyAt(int(p.off)), key) {
			return true
		}
	}
	return false
}
