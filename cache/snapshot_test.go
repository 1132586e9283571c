package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/ringcache/ringcache/internal/testutil"
)

// snapshotEntries are entries of every shape, live for an hour after
// testutil.Start, keyed k00, k01, ...: the encoding cases and some 1 KiB
// ones, and one of 100 KiB that makes a block of its own.
func snapshotEntries() []*Entry {
	now := testutil.Start.UnixNano()
	var es []*Entry
	for i, tc := range encodingCases() {
		e := *tc.e
		fields := fieldsOf(&e)
		c := NewEntry(fmt.Appendf(nil, "k%02d", i), fields, e.Body(), e.Stale())
		c.Status, c.Flags, c.InitialAge, c.Lifetime = e.Status, e.Flags&^Pass, e.InitialAge, e.Lifetime
		c.ResponseTime, c.Expires = now-int64(i)*int64(time.Second), now+int64(time.Hour)
		es = append(es, c)
	}
	for i := range 20 {
		e := testEntry(fmt.Sprintf("k%02d", len(es)), 1<<10)
		e.ResponseTime, e.Expires, e.InitialAge, e.Lifetime = now-int64(i), now+int64(time.Hour), int32(i), 600
		es = append(es, e)
	}
	big := testEntry(fmt.Sprintf("k%02d", len(es)), 100<<10)
	big.Expires = now + int64(time.Hour)
	return append(es, big)
}

// smallEntries is the first n of snapshotEntries under 2 KiB: files that
// a test can cut at every byte.
func smallEntries(n int) []*Entry {
	var es []*Entry
	for _, e := range snapshotEntries() {
		if e.Size() < 2<<10 && len(es) < n {
			es = append(es, e)
		}
	}
	return es
}

// sliceStore ranges over a fixed list, in order: files whose content and
// order the test knows.
type sliceStore struct {
	Store
	es []*Entry
}

func (s sliceStore) Range(fn func(*Entry) bool) {
	for _, e := range s.es {
		if !fn(e) {
			return
		}
	}
}

// snapshotOf writes es to a snapshot in memory, closing blocks past
// target bytes.
func snapshotOf(t testing.TB, es []*Entry, target int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := writeSnapshot(context.Background(), &buf, sliceStore{es: es}, testutil.Start.UnixNano(), target); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawSnapshot is a snapshot of es in one block, whatever they are, with
// the index the writer would give it.
func rawSnapshot(t testing.TB, es ...*Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	sw := snapshotWriter{w: &buf}
	if err := sw.header(testutil.Start.UnixNano()); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, frameHeadLen)
	var recs []snapRecord
	for i, e := range es {
		recs = append(recs, snapRecord{hash: xxhash.Sum64(e.Key()), off: sw.n + int64(len(frame)), expires: e.Expires, seq: uint32(i), cost: uint32(e.Cost())})
		frame = binary.AppendUvarint(frame, uint64(e.EncodedSize()))
		frame = e.AppendBinary(frame)
	}
	blocks := []snapBlock{{off: sw.n, count: uint32(len(es))}}
	if err := sw.frame(frameBlock, uint32(len(es)), frame); err != nil {
		t.Fatal(err)
	}
	index := sw.n
	if err := sw.index(recs, blocks); err != nil {
		t.Fatal(err)
	}
	frame = binary.LittleEndian.AppendUint64(frame[:frameHeadLen], uint64(len(es)))
	frame = binary.LittleEndian.AppendUint64(frame, uint64(index))
	if err := sw.frame(frameEnd, 0, frame); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// blocksOf lists data's blocks: where each ends (checksum included), and
// how many entries each holds.
func blocksOf(t testing.TB, data []byte) []struct{ start, end, entries int } {
	t.Helper()
	var blocks []struct{ start, end, entries int }
	if _, err := scanSnapshot(data, func(off, count int) {
		length := int(binary.LittleEndian.Uint32(data[off+5:]))
		blocks = append(blocks, struct{ start, end, entries int }{off, off + frameHeadLen + length + frameTailLen, count})
	}, func(*Entry, int) bool { return true }); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// scanAll returns copies of the entries ScanSnapshot passes, and its error.
func scanAll(data []byte) ([]*Entry, SnapshotStats, error) {
	var got []*Entry
	s, err := ScanSnapshot(data, func(e *Entry, _ int) bool {
		got = append(got, e.Clone())
		return true
	})
	return got, s, err
}

// checkPrefix fails unless got is want's first len(got) entries.
func checkPrefix(t *testing.T, what string, got, want []*Entry) {
	t.Helper()
	if len(got) > len(want) {
		t.Fatalf("%s: %d entries from a file of %d", what, len(got), len(want))
	}
	for i, e := range got {
		if !sameEntry(e, want[i]) {
			t.Fatalf("%s: entry %d is %q, not the %q written", what, i, e.Key(), want[i].Key())
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		clk := testutil.NewClock()
		src := k.new(t, 1<<30, WithClock(clk.UnixNano))
		want := snapshotEntries()
		for _, e := range want {
			if !src.Set(e) {
				t.Fatalf("Set(%q) refused", e.Key())
			}
		}
		pass := testEntry("pass", 10)
		pass.Flags, pass.Expires = Pass, clk.UnixNano()+int64(time.Minute)
		src.Set(pass)

		path := filepath.Join(t.TempDir(), "snap")
		ws, err := SaveSnapshot(context.Background(), path, src, clk.UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Entries != int64(len(want)) || ws.Skipped != 1 || ws.Bytes != fi.Size() {
			t.Fatalf("write stats %+v; want %d entries, 1 skipped (the pass marker), %d bytes", ws, len(want), fi.Size())
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot mode %v; want 0600: it holds responses", fi.Mode().Perm())
		}

		clk.Advance(10 * time.Minute) // the downtime
		w := NewWarm(k.new(t, 1<<30, WithClock(clk.UnixNano)), WithClock(clk.UnixNano))
		t.Cleanup(w.shutdown) // k.new closes the inner store
		ls, err := w.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if ls.Entries != int64(len(want)) || ls.Skipped != 0 || ls.Bytes != fi.Size() || !ls.Taken.Equal(testutil.Start) {
			t.Fatalf("load stats %+v; want %d entries, %d bytes, taken at %v", ls, len(want), fi.Size(), testutil.Start)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the loaded snapshot is still there (%v): a crash later would load it again", err)
		}
		if st := w.Stats(); st.Items != int64(len(want)) {
			t.Errorf("Stats().Items = %d right after Load; want %d", st.Items, len(want))
		}
		// Half the entries asked for while the mover runs, the rest after.
		for _, e := range want[:len(want)/2] {
			got, ok := w.Get(e.Key())
			if !ok || !sameEntry(got, e) {
				t.Fatalf("Get(%q) = %v, %v; want the entry written", e.Key(), got, ok)
			}
		}
		select {
		case <-w.Moved():
		case <-time.After(20 * time.Second):
			t.Fatal("the snapshot was not moved in within 20s")
		}
		seen := rangeAll(t, w)
		if len(seen) != len(want) {
			t.Fatalf("Range saw %d entries; want %d", len(seen), len(want))
		}
		for _, e := range want {
			if got := seen[string(e.Key())]; got == nil || !sameEntry(got, e) {
				t.Fatalf("after the move, %q is %v; want the entry written", e.Key(), got)
			}
		}
		checkConsistent(t, w, 1<<30)
	})
}

// TestSnapshotSkipsExpired: what expired during the downtime is not
// loaded; what never expires is.
func TestSnapshotSkipsExpired(t *testing.T) {
	clk := testutil.NewClock()
	now := clk.UnixNano()
	soon, later, never := testEntry("soon", 10), testEntry("later", 10), testEntry("never", 10)
	soon.Expires, later.Expires = now+int64(time.Hour), now+int64(3*time.Hour)
	path := filepath.Join(t.TempDir(), "snap")
	if _, err := SaveSnapshot(context.Background(), path, sliceStore{es: []*Entry{soon, later, never}}, now); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	w := NewWarm(NewLRU(1<<20, WithClock(clk.UnixNano)), WithClock(clk.UnixNano))
	defer w.Close()
	s, err := w.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Entries != 2 || s.Skipped != 1 {
		t.Fatalf("load stats %+v; want 2 entries (later, never), 1 skipped (soon)", s)
	}
	mustMiss(t, w, "soon")
	for _, k := range []string{"later", "never"} {
		if _, ok := w.Get([]byte(k)); !ok {
			t.Errorf("%s not loaded", k)
		}
	}
}

// TestWarmLeavesPassMarkers: a pass marker in a file (which WriteSnapshot
// never writes) is neither served nor moved in, by either index.
func TestWarmLeavesPassMarkers(t *testing.T) {
	pass, kept := testEntry("pass", 10), testEntry("kept", 10)
	pass.Flags = Pass
	data := rawSnapshot(t, pass, kept)
	for name, cut := range map[string]int{"index": len(data), "scan": len(data) - 1} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap")
			if err := os.WriteFile(path, data[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			w := NewWarm(NewLRU(1 << 20))
			defer w.Close()
			if _, err := w.Load(path); (err != nil) != (name == "scan") {
				t.Fatalf("Load: %v", err)
			}
			mustMiss(t, w, "pass")
			if seen := rangeAll(t, w); len(seen) != 1 || seen["kept"] == nil {
				t.Fatalf("after the move the store holds %v; want only kept", seen)
			}
		})
	}
}

// TestScanSnapshotTruncated cuts a file of many blocks at every byte: each
// cut yields a corrupt-snapshot error and exactly the entries of the
// blocks before the frame it cuts, never a wrong or partial one.
func TestScanSnapshotTruncated(t *testing.T) {
	want := smallEntries(12)
	data := snapshotOf(t, want, 100) // a block per entry or two
	blocks := blocksOf(t, data)
	if len(blocks) < 5 {
		t.Fatalf("%d blocks; the test wants several", len(blocks))
	}
	for cut := range len(data) {
		got, s, err := scanAll(data[:cut])
		var se *SnapshotError
		if !errors.As(err, &se) || !errors.Is(err, ErrSnapshotCorrupt) {
			t.Fatalf("cut at %d of %d: error %v; want a *SnapshotError", cut, len(data), err)
		}
		checkPrefix(t, fmt.Sprintf("cut at %d", cut), got, want)
		if se.Offset > int64(cut) || s.Bytes != se.Offset {
			t.Fatalf("cut at %d: error at offset %d, %d bytes scanned", cut, se.Offset, s.Bytes)
		}
		// Every block that ends before the cut is used.
		n := 0
		for _, b := range blocks {
			if b.end <= cut {
				n += b.entries
			}
		}
		if len(got) != n {
			t.Fatalf("cut at %d: %d entries; the blocks before the cut hold %d", cut, len(got), n)
		}
	}
	got, s, err := scanAll(data)
	if err != nil || len(got) != len(want) || s.Bytes != int64(len(data)) {
		t.Fatalf("whole file: %d entries, %+v, %v", len(got), s, err)
	}
	checkPrefix(t, "whole file", got, want)
}

// TestScanSnapshotBitFlips flips every bit of a small file: each flip is
// detected, and what comes before it is still read, unchanged.
func TestScanSnapshotBitFlips(t *testing.T) {
	want := smallEntries(6)
	data := snapshotOf(t, want, 100)
	for i := range len(data) * 8 {
		bad := bytes.Clone(data)
		bad[i/8] ^= 1 << (i % 8)
		got, _, err := scanAll(bad)
		if !errors.Is(err, ErrSnapshotCorrupt) {
			t.Fatalf("bit %d of byte %d flipped: error %v; want the corruption found", i%8, i/8, err)
		}
		checkPrefix(t, fmt.Sprintf("bit %d of byte %d flipped", i%8, i/8), got, want)
	}
}

// TestWarmBitFlips flips every bit of a small file and loads it as a
// restart does: whether the damage is found by the index's checksum at
// Load or by a block's when the block is first used, by a Get or by the
// mover, nothing served or moved in differs from the entry written.
func TestWarmBitFlips(t *testing.T) {
	want := smallEntries(6)
	byKey := make(map[string]*Entry)
	for _, e := range want {
		byKey[string(e.Key())] = e
	}
	data := snapshotOf(t, want, 100)
	clk := testutil.NewClock()
	for i := range len(data) * 8 {
		bad := bytes.Clone(data)
		bad[i/8] ^= 1 << (i % 8)
		inner := NewLRU(1<<30, WithClock(clk.UnixNano))
		w := NewWarm(inner, WithClock(clk.UnixNano))
		w.manual = true
		m := &mapping{data: bad} // not mapped: its methods leave the memory alone
		if idx, s, _ := w.load(m); idx != nil && s.Entries > 0 {
			w.install(idx, s.Entries, m)
		}
		for _, e := range want[:len(want)/2] { // taken by Gets, the rest moved
			if got, ok := w.Get(e.Key()); ok && !sameEntry(got, e) {
				t.Fatalf("bit %d flipped: Get(%q) served an entry other than the one written", i, e.Key())
			}
		}
		for w.moveBlock() {
		}
		inner.Range(func(e *Entry) bool {
			if orig := byKey[string(e.Key())]; orig == nil || !sameEntry(e, orig) {
				t.Fatalf("bit %d flipped: %q moved in, differing from the entry written", i, e.Key())
			}
			return true
		})
		w.Close()
	}
}

// TestWarmLoadCorrupt: a snapshot without a sound index and end frame is
// scanned up to its first damage, which Load reports by offset; with a
// sound index, a damaged block loses its own entries when first used,
// and OnDamage hears of it. Every other entry is loaded, unchanged.
func TestWarmLoadCorrupt(t *testing.T) {
	want := snapshotEntries()[:10]
	data := snapshotOf(t, want, 100)
	blocks := blocksOf(t, data)
	mid := blocks[len(blocks)/2]
	flip := func(at int) []byte { b := bytes.Clone(data); b[at] ^= 0x10; return b }
	indexAt := blocks[len(blocks)-1].end
	for _, tc := range []struct {
		name    string
		data    []byte
		loadErr bool // Load reports the damage
		lost    func(i int) bool
	}{
		{"truncated", data[:mid.start+1], true, func(i int) bool { return i >= blockEntriesBefore(blocks, mid.start) }},
		{"no end frame", data[:len(data)-endFrameAt], true, func(int) bool { return false }},
		{"trailing bytes", append(bytes.Clone(data), 0), true, func(int) bool { return false }},
		{"index flipped", flip(indexAt + frameHeadLen + 10), true, func(int) bool { return false }},
		{"block flipped", flip(mid.start + frameHeadLen + 3), false, func(i int) bool {
			first := blockEntriesBefore(blocks, mid.start)
			return i >= first && i < first+mid.entries
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			clk := testutil.NewClock()
			w := NewWarm(NewLRU(1<<20, WithClock(clk.UnixNano)), WithClock(clk.UnixNano))
			defer w.Close()
			var damage []error
			w.OnDamage(func(err error) { damage = append(damage, err) })
			s, err := w.Load(path)
			var se *SnapshotError
			if tc.loadErr != errors.As(err, &se) {
				t.Fatalf("Load: %v; want a *SnapshotError: %v", err, tc.loadErr)
			}
			if se != nil && (se.Offset <= 0 || !strings.Contains(err.Error(), fmt.Sprint(se.Offset))) {
				t.Fatalf("error %q: want the offset of the bad frame", err)
			}
			lost := 0
			for i := range want {
				if tc.lost(i) {
					lost++
				}
			}
			if !tc.loadErr {
				lost = 0 // found only when the block is first used
			}
			if s.Entries != int64(len(want)-lost) {
				t.Fatalf("loaded %d entries; want %d", s.Entries, len(want)-lost)
			}
			seen := rangeAll(t, w)
			<-w.Moved()
			for i, e := range want {
				g, ok := seen[string(e.Key())]
				if ok == tc.lost(i) || ok && !sameEntry(g, e) {
					t.Fatalf("entry %d (%q): loaded %v; want it exactly when its block is sound", i, e.Key(), ok)
				}
			}
			var de *SnapshotError
			if tc.loadErr != (len(damage) == 0) || len(damage) > 0 && (!errors.As(damage[0], &de) || de.Offset != int64(mid.start)) {
				t.Fatalf("OnDamage heard %v; want the block at %d exactly when Load did not report it", damage, mid.start)
			}
		})
	}
}

// blockEntriesBefore counts the entries of the blocks before offset at.
func blockEntriesBefore(blocks []struct{ start, end, entries int }, at int) int {
	n := 0
	for _, b := range blocks {
		if b.start < at {
			n += b.entries
		}
	}
	return n
}

// TestWarmLoadLeavesOtherFiles: a path naming something that is not a
// snapshot is neither loaded nor removed, nor overwritten later.
func TestWarmLoadLeavesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(path, []byte("precious notes, not a snapshot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := NewWarm(NewLRU(1 << 20))
	defer w.Close()
	if _, err := w.Load(path); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("Load: %v; want a corrupt-snapshot error", err)
	}
	if _, err := SaveSnapshot(context.Background(), path, w, 0); err == nil || !strings.Contains(err.Error(), "not a ringcache snapshot") {
		t.Fatalf("SaveSnapshot over another file: %v; want a refusal", err)
	}
	if b, err := os.ReadFile(path); err != nil || !strings.HasPrefix(string(b), "precious") {
		t.Fatalf("the file changed: %q, %v", b, err)
	}
	if _, err := w.Load(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v; want fs.ErrNotExist", err)
	}
	if _, err := w.Load(dir); err == nil {
		t.Fatal("Load of a directory succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the directory holds %d files; want only the notes (no temporary file left)", len(ents))
	}
}

// TestCreateSnapshotCancelled: a write stopped by its context leaves the
// previous snapshot as it was and no temporary file.
func TestCreateSnapshotCancelled(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snap")
	es := snapshotEntries()
	if _, err := SaveSnapshot(context.Background(), path, sliceStore{es: es[:3]}, 1); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := CreateSnapshot(ctx, path, sliceStore{es: es}, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateSnapshot with a cancelled context: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the previous snapshot changed")
	}
	f, _, err := CreateSnapshot(context.Background(), path, sliceStore{es: es}, 3)
	if err != nil {
		t.Fatal(err)
	}
	f.Discard()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the directory holds %d files; want the snapshot only", len(ents))
	}
}

// newManualWarm loads es into a Warm over an LRU whose mover only runs
// when the test calls moveBlock.
func newManualWarm(t *testing.T, es []*Entry) *Warm {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(path, snapshotOf(t, es, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := testutil.NewClock()
	w := NewWarm(NewLRU(1<<30, WithClock(clk.UnixNano)), WithClock(clk.UnixNano))
	w.manual = true
	t.Cleanup(w.Close)
	if _, err := w.Load(path); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestWarmSetAndDeleteWin: a Set replaces the snapshot's copy and a Delete
// removes it, whether the copy was taken, moved or still waiting.
func TestWarmSetAndDeleteWin(t *testing.T) {
	es := snapshotEntries()[:8]
	w := newManualWarm(t, es)
	var cost int64
	for _, e := range es {
		cost += e.Cost()
	}
	if st := w.Stats(); st.Items != int64(len(es)) || st.Bytes != cost {
		t.Fatalf("Stats before any move: %+v; want %d items costing %d", st, len(es), cost)
	}
	fresh := testEntry(string(es[0].Key()), 5)
	w.Set(fresh)
	mustGet(t, w, string(es[0].Key()), fresh)
	w.Delete(es[1].Key())
	mustMiss(t, w, string(es[1].Key()))
	if e, ok := w.Get(es[2].Key()); !ok || !sameEntry(e, es[2]) {
		t.Fatalf("Get(%q) from the snapshot: %v, %v", es[2].Key(), e, ok)
	}
	w.Delete(es[2].Key()) // after it was taken
	mustMiss(t, w, string(es[2].Key()))
	if st := w.Stats(); st.Hits != 2 || st.Items != int64(len(es)-2) {
		t.Fatalf("Stats: %+v; want 2 hits (one taken from the snapshot) and %d items", st, len(es)-2)
	}
	for w.moveBlock() {
	}
	<-w.Moved()
	mustGet(t, w, string(es[0].Key()), fresh)
	mustMiss(t, w, string(es[1].Key()))
	mustMiss(t, w, string(es[2].Key()))
	seen := rangeAll(t, w)
	if len(seen) != len(es)-2 {
		t.Fatalf("Range saw %d entries; want %d", len(seen), len(es)-2)
	}
	checkConsistent(t, w, 1<<30)
}

// TestWarmRangeMovesFirst: Range during the move sees every entry once,
// and an entry it deletes stays deleted.
func TestWarmRangeMovesFirst(t *testing.T) {
	es := snapshotEntries()
	w := newManualWarm(t, es)
	w.moveBlock()
	n := 0
	w.Range(func(e *Entry) bool {
		n++
		if bytes.HasSuffix(e.Key(), []byte("3")) {
			w.Delete(e.Key())
		}
		return true
	})
	if n != len(es) {
		t.Fatalf("Range saw %d entries; want %d", n, len(es))
	}
	for _, e := range es {
		_, ok := w.Get(e.Key())
		if want := !bytes.HasSuffix(e.Key(), []byte("3")); ok != want {
			t.Fatalf("Get(%q): %v; want %v", e.Key(), ok, want)
		}
	}
}

// TestWarmConcurrent deletes half the snapshot's keys while the mover
// runs and readers take entries: none of them comes back.
func TestWarmConcurrent(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		var es []*Entry
		for i := range 2000 {
			es = append(es, testEntry(fmt.Sprintf("key-%04d", i), 100))
		}
		path := filepath.Join(t.TempDir(), "snap")
		if err := os.WriteFile(path, snapshotOf(t, es, 4<<10), 0o600); err != nil {
			t.Fatal(err)
		}
		w := NewWarm(k.new(t, 1<<30))
		t.Cleanup(w.shutdown)
		if _, err := w.Load(path); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := len(es) - 1; i >= 0; i-- {
				w.Get(es[(i*7919)%len(es)].Key())
			}
		}()
		for i := 0; i < len(es); i += 2 {
			w.Delete(es[i].Key())
		}
		<-done
		select {
		case <-w.Moved():
		case <-time.After(20 * time.Second):
			t.Fatal("not moved within 20s")
		}
		for i, e := range es {
			if _, ok := w.Get(e.Key()); ok != (i%2 == 1) {
				t.Fatalf("Get(%q) = %v after deleting the even keys", e.Key(), ok)
			}
		}
		checkConsistent(t, w, 1<<30)
	})
}

// TestWarmIndexAgreesWithScan: the index read from the file and the one
// a scan builds hold the same live entries.
func TestWarmIndexAgreesWithScan(t *testing.T) {
	es := snapshotEntries()
	es[3].Expires = testutil.Start.UnixNano() + 1 // live when written, expired at the load
	data := snapshotOf(t, es, 100)
	now := testutil.Start.UnixNano() + 2
	read, rs, err := readIndex(data, now, func(int, int) {})
	if err != nil {
		t.Fatal(err)
	}
	scanned, ss, err := scanIndex(data, now)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Entries != ss.Entries || rs.Skipped != ss.Skipped || rs.Entries != int64(len(es)-1) || rs.Skipped != 1 {
		t.Fatalf("read %+v, scanned %+v; want %d entries and 1 skipped", rs, ss, len(es)-1)
	}
	for i, e := range es {
		r1, ok1 := read.find(e.Key())
		r2, ok2 := scanned.find(e.Key())
		if ok1 != (i != 3) || ok1 != ok2 || r1 != r2 {
			t.Fatalf("%q: read %v %+v, scanned %v %+v", e.Key(), ok1, r1, ok2, r2)
		}
	}
}

// checkLoad loads data as Warm does, moves everything in and checks that
// each entry stored is byte for byte an entry of the file.
func checkLoad(t *testing.T, data []byte) {
	t.Helper()
	inner := NewLRU(1<<30, WithClock(testutil.NewClock().UnixNano))
	w := NewWarm(inner, WithClock(testutil.NewClock().UnixNano))
	w.manual = true
	defer w.Close()
	m := &mapping{data: data} // not mapped: its methods leave the memory alone
	idx, s, _ := w.load(m)
	if idx == nil || s.Entries == 0 {
		return
	}
	w.install(idx, s.Entries, m)
	for w.moveBlock() {
	}
	inner.Range(func(e *Entry) bool {
		if !bytes.Contains(data, e.AppendBinary(nil)) {
			t.Fatalf("stored %q, which the file does not hold", e.Key())
		}
		return true
	})
}

// FuzzSnapshotScan: any input is either read as a snapshot or refused
// with a corrupt-snapshot error; nothing panics, every entry read
// re-encodes to itself, and the index agrees with the scan.
func FuzzSnapshotScan(f *testing.F) {
	data := snapshotOf(f, snapshotEntries()[:5], 100)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add(data[:headerLen+3])
	f.Add([]byte(snapshotMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, s, err := scanAll(b)
		if err != nil && !errors.Is(err, ErrSnapshotCorrupt) {
			t.Fatalf("error %v is not a corrupt-snapshot error", err)
		}
		if err == nil && s.Bytes != int64(len(b)) {
			t.Fatalf("sound, but %d of %d bytes scanned", s.Bytes, len(b))
		}
		for _, e := range got {
			again, err := DecodeEntry(e.AppendBinary(nil))
			if err != nil || !sameEntry(e, again) {
				t.Fatalf("entry %q does not survive re-encoding: %v", e.Key(), err)
			}
		}
		checkLoad(t, b)
	})
}

// TestWarmDuplicateKeys: a key twice in a file (which WriteSnapshot never
// writes) loads its first copy only.
func TestWarmDuplicateKeys(t *testing.T) {
	first, second := testEntry("k", 10), testEntry("k", 20)
	path := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(path, rawSnapshot(t, first, second, testEntry("other", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	w := NewWarm(NewLRU(1 << 20))
	defer w.Close()
	s, err := w.Load(path)
	if err != nil || s.Entries != 2 || s.Skipped != 1 {
		t.Fatalf("Load: %+v, %v; want 2 entries and 1 skipped", s, err)
	}
	if e, ok := w.Get([]byte("k")); !ok || !sameEntry(e, first) {
		t.Fatalf("Get(k) = %v, %v; want the first copy", e, ok)
	}
}
