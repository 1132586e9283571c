package cache

// A snapshot is the store written to a file, at shutdown or periodically,
// and read back when a node starts, so that a restarted node serves hits
// from its first request instead of refilling from the origin.
//
// The file, all integers little-endian:
//
//	header  magic "\x89RCSNAP\n" (8 bytes); format version (1 byte);
//	        entry encoding version (1 byte); 2 zero bytes; the time the
//	        snapshot was started (int64 unix ns); CRC-32C of the 20 bytes
//	        before it (4 bytes)
//	frame   kind (1 byte); count (uint32); payload length (uint32);
//	        payload; CRC-32C of kind, count, length and payload (4 bytes)
//
// The frames are blocks of entries, then one index, then the end:
//
//	'B'  count entries, each a uvarint length and the entry's AppendBinary
//	     encoding, which carries its times (ResponseTime, Expires,
//	     InitialAge, Lifetime), so Age and freshness stay true across the
//	     downtime. A block is closed once it passes 64 KiB, so it holds at
//	     least one entry and a large entry is a block of its own.
//	'I'  the index of count entries: the number of blocks (uint32), each
//	     block's offset, first entry number and entry count (uint64,
//	     uint32, uint32), then one 32-byte record per entry, sorted by
//	     hash: the xxhash64 of its key, its offset, its Expires, its
//	     number in file order and its Cost (uint64, uint64, int64, uint32,
//	     uint32).
//	'E'  the number of entries and the index's offset (uint64 each): a
//	     file without it was cut short.
//
// The index is what makes a restart fast: a node reads it, 32 bytes an
// entry, instead of the entries themselves, and checks a block only when
// it first uses one of its entries (Warm). Without a sound index and end
// frame, the blocks are scanned in order instead (ScanSnapshot).
//
// Reading trusts nothing a checksum has not covered. A block's entries
// are used only once its checksum matched and every one of them decoded;
// a key read before that is compared, never served. With a sound index a
// damaged block loses its own entries; without one, the scan stops at the
// first frame that is bad, cut short or missing, and the file yields
// exactly the entries before it. Never a wrong entry; the error names the
// offset. One checksum per block rather than per entry costs 4 bytes per
// 64 KiB. (A checksum is no defence against whoever can write the file,
// who could as well write the cache; the file is created mode 0600.)

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

const (
	snapshotMagic   = "\x89RCSNAP\n" // the high byte and the newline catch text-mode mangling, as PNG's do
	snapshotVersion = 1
	headerLen       = 8 + 1 + 1 + 2 + 8 + 4
	frameHeadLen    = 1 + 4 + 4
	frameTailLen    = 4

	frameBlock  = 'B'
	frameIndex  = 'I'
	frameEnd    = 'E'
	endLen      = 16                                   // end frame payload
	endFrameAt  = frameHeadLen + endLen + frameTailLen // its size, from the end of the file
	blockRefLen = 8 + 4 + 4                            // an index's block
	recordLen   = 8 + 8 + 8 + 4 + 4                    // an index's entry

	// blockTarget is the payload size past which a block is closed.
	blockTarget = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli) // hardware-accelerated on amd64 and arm64

// ErrSnapshotCorrupt is wrapped by every error about a snapshot's content
// (as opposed to failing to open or read the file).
var ErrSnapshotCorrupt = errors.New("corrupt snapshot")

// SnapshotError says where a snapshot stops being usable: the entries of
// the frames before Offset were read, none from it on.
type SnapshotError struct {
	Offset int64  // of the frame (or header) at fault
	Reason string // what is wrong with it
}

func (e *SnapshotError) Error() string {
	return fmt.Sprintf("corrupt snapshot at offset %d: %s", e.Offset, e.Reason)
}

func (e *SnapshotError) Unwrap() error { return ErrSnapshotCorrupt }

// SnapshotStats describe one snapshot written or loaded.
type SnapshotStats struct {
	Entries int64     // written; or read (ScanSnapshot), indexed (Warm.Load)
	Skipped int64     // left out: expired, or pass markers (this node's own business)
	Bytes   int64     // of the file written, or checked
	Taken   time.Time // when the snapshot was started (on load: as its header says)
}

// WriteSnapshot writes every entry of st that is live at now (unix ns) to
// w, in the format above, and returns what it wrote. Pass markers are left
// out. Entries are collected by Range, so serving goes on meanwhile; those
// set or deleted during the write may or may not be in it. ctx is checked
// between blocks; once it ends the write stops with its error, and the
// output is unusable (no end frame).
func WriteSnapshot(ctx context.Context, w io.Writer, st Store, now int64) (SnapshotStats, error) {
	return writeSnapshot(ctx, w, st, now, blockTarget)
}

// writeSnapshot is WriteSnapshot closing blocks past target bytes (tests
// make small files of many blocks with it).
func writeSnapshot(ctx context.Context, w io.Writer, st Store, now int64, target int) (SnapshotStats, error) {
	s := SnapshotStats{Taken: time.Unix(0, now)}
	sw := snapshotWriter{w: w}
	if err := sw.header(now); err != nil {
		return s, err
	}
	// One buffer holds a whole frame, its head reserved, so each block is
	// one Write; entries start at sw.n (the frame's offset) plus their
	// place in it.
	buf := make([]byte, frameHeadLen, frameHeadLen+target+4<<10)
	var count uint32
	var recs []snapRecord
	var blocks []snapBlock
	var err error
	flush := func() error {
		blocks = append(blocks, snapBlock{off: sw.n, first: uint32(len(recs)) - count, count: count})
		err := sw.frame(frameBlock, count, buf)
		buf, count = buf[:frameHeadLen], 0
		return err
	}
	st.Range(func(e *Entry) bool {
		if !e.Transferable() || e.Expired(now) {
			s.Skipped++
			return true
		}
		if len(recs) == math.MaxUint32 {
			err = errors.New("write snapshot: more entries than a snapshot holds")
			return false
		}
		recs = append(recs, snapRecord{hash: xxhash.Sum64(e.Key()), off: sw.n + int64(len(buf)), expires: e.Expires,
			seq: uint32(len(recs)), cost: uint32(min(e.Cost(), math.MaxUint32))})
		buf = binary.AppendUvarint(buf, uint64(e.EncodedSize()))
		buf = e.AppendBinary(buf)
		count++
		s.Entries++
		if len(buf)-frameHeadLen < target {
			return true
		}
		if err = ctx.Err(); err == nil {
			err = flush()
		}
		return err == nil
	})
	if err == nil && count > 0 {
		err = flush()
	}
	if err == nil {
		err = ctx.Err()
	}
	index := sw.n
	if err == nil {
		err = sw.index(recs, blocks)
	}
	if err == nil {
		buf = binary.LittleEndian.AppendUint64(buf[:frameHeadLen], uint64(s.Entries))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(index))
		err = sw.frame(frameEnd, 0, buf)
	}
	s.Bytes = sw.n
	return s, err
}

// snapRecord is an index's entry; snapBlock an index's block.
type snapRecord struct {
	hash    uint64 // xxhash64 of the key
	off     int64  // of the entry's length prefix
	expires int64
	seq     uint32 // the entry's number in file order
	cost    uint32 // Entry.Cost
}

type snapBlock struct {
	off          int64 // of the frame
	first, count uint32
}

// index writes the index frame: the blocks, then the records by hash.
func (sw *snapshotWriter) index(recs []snapRecord, blocks []snapBlock) error {
	slices.SortFunc(recs, func(a, b snapRecord) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	buf := make([]byte, frameHeadLen, frameHeadLen+4+blockRefLen*len(blocks)+recordLen*len(recs)+frameTailLen)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(blocks)))
	for _, b := range blocks {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(b.off))
		buf = binary.LittleEndian.AppendUint32(buf, b.first)
		buf = binary.LittleEndian.AppendUint32(buf, b.count)
	}
	for _, r := range recs {
		buf = binary.LittleEndian.AppendUint64(buf, r.hash)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(r.off))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(r.expires))
		buf = binary.LittleEndian.AppendUint32(buf, r.seq)
		buf = binary.LittleEndian.AppendUint32(buf, r.cost)
	}
	return sw.frame(frameIndex, uint32(len(recs)), buf)
}

type snapshotWriter struct {
	w io.Writer
	n int64
}

func (sw *snapshotWriter) header(now int64) error {
	h := make([]byte, 0, headerLen)
	h = append(h, snapshotMagic...)
	h = append(h, snapshotVersion, entryVersion, 0, 0)
	h = binary.LittleEndian.AppendUint64(h, uint64(now))
	h = binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
	return sw.write(h)
}

// frame fills in the head reserved at the start of buf (buf[frameHeadLen:]
// is the payload), appends the checksum and writes it all.
func (sw *snapshotWriter) frame(kind byte, count uint32, buf []byte) error {
	if len(buf)-frameHeadLen > math.MaxUint32 {
		return fmt.Errorf("write snapshot: a frame of %d bytes is too large", len(buf)-frameHeadLen)
	}
	buf[0] = kind
	binary.LittleEndian.PutUint32(buf[1:], count)
	binary.LittleEndian.PutUint32(buf[5:], uint32(len(buf)-frameHeadLen))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	return sw.write(buf)
}

func (sw *snapshotWriter) write(b []byte) error {
	n, err := sw.w.Write(b)
	sw.n += int64(n)
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// ScanSnapshot checks the snapshot in data frame by frame and calls fn
// with each of its entries, in the order written, until fn returns false.
// e borrows data (DecodeEntryInto) and is valid only during the call; off
// is where the entry (its length prefix) starts in data. Expired entries
// and pass markers are passed too. Stats count the entries passed to fn
// and the bytes checked. A snapshot that is corrupt, truncated or not a
// snapshot at all yields a *SnapshotError (wrapping ErrSnapshotCorrupt)
// after fn has seen every entry of the blocks before the frame at fault,
// and none of that frame's.
func ScanSnapshot(data []byte, fn func(e *Entry, off int) bool) (SnapshotStats, error) {
	return scanSnapshot(data, nil, fn)
}

// scanSnapshot is ScanSnapshot calling block, if set, with each block's
// frame offset and entry count before passing its entries to fn.
func scanSnapshot(data []byte, block func(off, count int), fn func(e *Entry, off int) bool) (SnapshotStats, error) {
	var s SnapshotStats
	sc := snapshotScanner{data: data}
	taken, err := sc.header()
	if err != nil {
		return s, err
	}
	s.Taken = time.Unix(0, taken)
	var entries []blockEntry
	index := -1
	for {
		s.Bytes = int64(sc.off)
		kind, count, payload, err := sc.frame()
		if err != nil {
			return s, err
		}
		switch kind {
		case frameEnd:
			s.Bytes = int64(sc.off)
			return s, sc.end(payload, s.Entries, index)
		case frameIndex:
			if index >= 0 {
				return s, sc.corrupt("a second index")
			}
			index = sc.start // checked against the end frame; read by Warm
			continue
		}
		if index >= 0 {
			return s, sc.corrupt("a block after the index")
		}
		if entries, err = sc.decodeBlock(entries[:0], count, payload); err != nil {
			return s, err
		}
		if block != nil {
			block(sc.start, len(entries))
		}
		for i := range entries {
			s.Entries++
			if !fn(&entries[i].e, entries[i].off) {
				return s, nil
			}
		}
	}
}

// entryAt decodes into e, borrowing data, the entry whose length prefix
// starts at off, and returns where the next entry starts. It checks
// nothing but the entry's own encoding.
func entryAt(e *Entry, data []byte, off int) (next int, err error) {
	if off < 0 || off >= len(data) {
		return 0, fmt.Errorf("snapshot entry at offset %d: %w: outside the file", off, ErrMalformed)
	}
	n, k := binary.Uvarint(data[off:])
	if k <= 0 || n > uint64(len(data)-off-k) {
		return 0, fmt.Errorf("snapshot entry at offset %d: %w: bad length", off, ErrMalformed)
	}
	next = off + k + int(n)
	return next, DecodeEntryInto(e, data[off+k:next])
}

// blockEntry is an entry of the block being scanned and where it starts.
type blockEntry struct {
	e   Entry
	off int
}

// snapshotScanner walks a snapshot's frames, checking each, and keeps the
// offset for errors.
type snapshotScanner struct {
	data  []byte
	off   int // of the next frame
	start int // of the frame being read
}

func (sc *snapshotScanner) corrupt(format string, args ...any) error {
	return &SnapshotError{Offset: int64(sc.start), Reason: fmt.Sprintf(format, args...)}
}

// header checks the snapshot's header and returns the time it records.
func (sc *snapshotScanner) header() (int64, error) {
	h := sc.data
	if len(h) < headerLen {
		if len(h) >= 8 && string(h[:8]) != snapshotMagic {
			return 0, sc.corrupt("not a ringcache snapshot (magic %q)", h[:8])
		}
		return 0, sc.corrupt("truncated: %d bytes, shorter than the %d-byte header", len(h), headerLen)
	}
	if string(h[:8]) != snapshotMagic {
		return 0, sc.corrupt("not a ringcache snapshot (magic %q)", h[:8])
	}
	if sum := binary.LittleEndian.Uint32(h[headerLen-4:]); sum != crc32.Checksum(h[:headerLen-4], castagnoli) {
		return 0, sc.corrupt("header checksum mismatch")
	}
	if h[8] != snapshotVersion || h[9] != entryVersion {
		return 0, sc.corrupt("format version %d with entry version %d; this node reads %d with %d", h[8], h[9], snapshotVersion, entryVersion)
	}
	sc.off = headerLen
	return int64(binary.LittleEndian.Uint64(h[12:])), nil
}

// frame checks the next frame and returns its payload. A missing end
// frame is reported as truncation.
func (sc *snapshotScanner) frame() (kind byte, count uint32, payload []byte, err error) {
	sc.start = sc.off
	rest := sc.data[sc.off:]
	if len(rest) == 0 {
		return 0, 0, nil, sc.corrupt("truncated: the snapshot ends without its end frame")
	}
	if len(rest) < frameHeadLen {
		return 0, 0, nil, sc.corrupt("truncated: the snapshot ends %d bytes into a frame head", len(rest))
	}
	kind, count = rest[0], binary.LittleEndian.Uint32(rest[1:])
	length := binary.LittleEndian.Uint32(rest[5:])
	switch {
	case kind != frameBlock && kind != frameIndex && kind != frameEnd:
		return 0, 0, nil, sc.corrupt("unknown frame kind %#x", kind)
	case kind == frameEnd && (length != endLen || count != 0):
		return 0, 0, nil, sc.corrupt("end frame with %d entries and %d bytes; want 0 and %d", count, length, endLen)
	case kind == frameBlock && (count == 0 || uint64(count) > uint64(length)):
		return 0, 0, nil, sc.corrupt("block of %d entries in %d bytes", count, length)
	case kind == frameIndex && (length < 4 || uint64(count)*recordLen > uint64(length)-4):
		return 0, 0, nil, sc.corrupt("index of %d entries in %d bytes", count, length)
	}
	size := uint64(frameHeadLen) + uint64(length) + frameTailLen
	if size > uint64(len(rest)) {
		return 0, 0, nil, sc.corrupt("truncated: the snapshot ends %d bytes into a frame of %d", len(rest), size)
	}
	body := rest[:frameHeadLen+int(length)]
	if sum := binary.LittleEndian.Uint32(rest[len(body):]); sum != crc32.Checksum(body, castagnoli) {
		return 0, 0, nil, sc.corrupt("checksum mismatch in a frame of %d bytes", size)
	}
	sc.off += int(size)
	return kind, count, body[frameHeadLen:], nil
}

// decodeBlock decodes a block's count entries into dst, borrowing the
// payload. Any entry that does not decode, or a count that does not fill
// the payload exactly, makes the whole block unusable.
func (sc *snapshotScanner) decodeBlock(dst []blockEntry, count uint32, payload []byte) ([]blockEntry, error) {
	at := sc.start + frameHeadLen
	for i := range count {
		n, k := binary.Uvarint(payload)
		if k <= 0 || n > uint64(len(payload)-k) {
			return dst[:0], sc.corrupt("entry %d of %d: bad length", i+1, count)
		}
		dst = append(dst, blockEntry{off: at})
		if err := DecodeEntryInto(&dst[len(dst)-1].e, payload[k:k+int(n)]); err != nil {
			return dst[:0], sc.corrupt("entry %d of %d: %v", i+1, count, err)
		}
		payload = payload[k+int(n):]
		at += k + int(n)
	}
	if len(payload) != 0 {
		return dst[:0], sc.corrupt("%d bytes after the block's %d entries", len(payload), count)
	}
	return dst, nil
}

// end checks the end frame against the entries scanned and the index
// (at offset index, -1 for none), and that nothing follows it.
func (sc *snapshotScanner) end(payload []byte, entries int64, index int) error {
	if want := binary.LittleEndian.Uint64(payload); want != uint64(entries) {
		return sc.corrupt("the end frame counts %d entries; the blocks held %d", want, entries)
	}
	if at := binary.LittleEndian.Uint64(payload[8:]); index < 0 || at != uint64(index) {
		return sc.corrupt("the end frame puts the index at %d; it is at %d", at, index)
	}
	if sc.off != len(sc.data) {
		sc.start = sc.off
		return sc.corrupt("%d bytes after the end frame", len(sc.data)-sc.off)
	}
	return nil
}

// SnapshotFile is a snapshot written and synced to a temporary file beside
// its path, not yet in place: Commit renames it over the path, Discard
// removes it. Either way the file named path is never half-written.
type SnapshotFile struct {
	tmp, path string
}

// CreateSnapshot writes st's live entries at now (unix ns) to a new file
// in the directory of path, as WriteSnapshot does, and syncs it to disk.
// On error nothing is left behind.
func CreateSnapshot(ctx context.Context, path string, st Store, now int64) (*SnapshotFile, SnapshotStats, error) {
	if err := replaceable(path); err != nil {
		return nil, SnapshotStats{}, fmt.Errorf("snapshot %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return nil, SnapshotStats{}, fmt.Errorf("snapshot %s: %w", path, err)
	}
	s, err := WriteSnapshot(ctx, f, st, now)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return nil, s, fmt.Errorf("snapshot %s: %w", path, err)
	}
	return &SnapshotFile{tmp: f.Name(), path: path}, s, nil
}

// replaceable checks that a snapshot may be written over whatever is at
// path: nothing, an empty file or a snapshot (of any version). A path
// naming some other file by mistake must not lose it.
func replaceable(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return errors.New("refusing to replace something that is not a regular file")
	}
	head := make([]byte, len(snapshotMagic))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if string(head[:n]) != snapshotMagic[:n] {
		return errors.New("refusing to replace a file that is not a ringcache snapshot")
	}
	return nil
}

// Commit puts the snapshot in place, replacing any file at its path, and
// syncs the directory so that the rename survives a crash.
func (f *SnapshotFile) Commit() error {
	if err := os.Rename(f.tmp, f.path); err != nil {
		_ = os.Remove(f.tmp)
		return fmt.Errorf("snapshot %s: %w", f.path, err)
	}
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		err = d.Sync()
		_ = d.Close()
		if err != nil {
			return fmt.Errorf("snapshot %s: sync directory: %w", f.path, err)
		}
	}
	return nil
}

// Discard removes the unused snapshot.
func (f *SnapshotFile) Discard() { _ = os.Remove(f.tmp) }

// SaveSnapshot is CreateSnapshot and Commit.
func SaveSnapshot(ctx context.Context, path string, st Store, now int64) (SnapshotStats, error) {
	f, s, err := CreateSnapshot(ctx, path, st, now)
	if err != nil {
		return s, err
	}
	return s, f.Commit()
}
