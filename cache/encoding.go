package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"
)

// entryVersion is the first byte of an encoded Entry. A node that reads
// another version refuses the entry (ErrVersion) instead of guessing, so
// nodes of different releases can share a cluster.
//
// Version 2 layout, after the version byte: status and flags as uvarints;
// response and expiry times, initial age and lifetime as varints; the key
// and body lengths as uvarints; then the entry's array as it is held in
// memory (key, stale windows, field block, body), which must end the
// input. Decoding checks the array and copies it once.
const entryVersion = 2

var (
	// ErrVersion: the encoding comes from an unknown format version.
	ErrVersion = errors.New("unknown entry encoding version")
	// ErrMalformed: the encoding is truncated or inconsistent.
	ErrMalformed = errors.New("malformed entry encoding")
)

// AppendBinary appends the encoding of e to dst and returns the extended
// buffer. DecodeEntry reads it back.
func (e *Entry) AppendBinary(dst []byte) []byte {
	// Upper bound of the size: version, two 16-bit and two 64-bit numbers,
	// two 32-bit ones and two lengths.
	dst = slices.Grow(dst, 1+2*3+2*binary.MaxVarintLen64+4*binary.MaxVarintLen32+len(e.data))
	dst = append(dst, entryVersion)
	dst = binary.AppendUvarint(dst, uint64(e.Status))
	dst = binary.AppendUvarint(dst, uint64(e.Flags))
	dst = binary.AppendVarint(dst, e.ResponseTime)
	dst = binary.AppendVarint(dst, e.Expires)
	dst = binary.AppendVarint(dst, int64(e.InitialAge))
	dst = binary.AppendVarint(dst, int64(e.Lifetime))
	dst = binary.AppendUvarint(dst, uint64(e.keyLen))
	dst = binary.AppendUvarint(dst, uint64(len(e.Body())))
	if e.data == "" {
		return append(dst, 0, 0, 0) // the zero Entry: no key, windows or fields
	}
	return append(dst, e.data...)
}

// EncodedSize is the length of e's encoding by AppendBinary.
func (e *Entry) EncodedSize() int {
	n := 1 + uvarintLen(uint64(e.Status)) + uvarintLen(uint64(e.Flags)) +
		varint64Len(e.ResponseTime) + varint64Len(e.Expires) +
		varint64Len(int64(e.InitialAge)) + varint64Len(int64(e.Lifetime)) +
		uvarintLen(uint64(e.keyLen)) + uvarintLen(uint64(len(e.Body())))
	if e.data == "" {
		return n + 3
	}
	return n + len(e.data)
}

func varint64Len(v int64) int { return uvarintLen(uint64(v)<<1 ^ uint64(v>>63)) } // zigzag, as AppendVarint

// Fetched is an entry read off the wire for one answer. Entry borrows a
// buffer — Buf, reused from one fetch to the next, or the transport's own,
// held by Borrowed until Release — so a forwarded hit decodes without
// allocating. Keep an entry beyond the answer with Entry.Clone.
type Fetched struct {
	Entry Entry
	Buf   []byte
	// Borrowed, when set, holds the buffer Entry borrows: Release gives it
	// back.
	Borrowed interface{ Release() }
	// Max is the largest encoding to take; a larger entry is not fetched
	// (the request is forwarded instead, and streamed).
	Max int
}

// Release ends the use of Entry: it gives back the buffer it borrows, if
// the transport lent one. Entry must not be used after it.
func (f *Fetched) Release() {
	if f.Borrowed != nil {
		f.Borrowed.Release()
		f.Borrowed = nil
	}
	f.Entry = Entry{}
}

// Clone returns a copy of e that shares nothing with it: for keeping an
// entry that borrows a buffer.
func (e *Entry) Clone() *Entry {
	c := *e
	c.data = strings.Clone(e.data)
	return &c
}

// Rebase moves e's times by skew nanoseconds: an entry from another member,
// stamped on its clock, read on this one (skew = here minus there). A Vary
// marker's ResponseTime is a generation that names its variants, not a
// time, so it stays.
func (e *Entry) Rebase(skew int64) {
	if !e.Has(VaryMarker) {
		e.ResponseTime += skew
	}
	if e.Expires != 0 {
		e.Expires += skew
	}
}

// DecodeEntry decodes an entry encoded by AppendBinary. The entry does not
// share memory with b: its array is a fresh copy, so decoding costs two
// allocations. Malformed input yields an error wrapping ErrVersion or
// ErrMalformed.
func DecodeEntry(b []byte) (*Entry, error) {
	e := new(Entry)
	if err := DecodeEntryInto(e, b); err != nil {
		return nil, err
	}
	e.data = strings.Clone(e.data)
	return e, nil
}

// DecodeEntryInto decodes an entry encoded by AppendBinary into e without
// copying or allocating: e borrows b, and is valid only while b is neither
// changed nor reused. For an entry read off the wire and answered at once
// (a hit forwarded from its owner); keep one with DecodeEntry. On error e
// is left unusable.
func DecodeEntryInto(e *Entry, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("decode entry: %w: empty input", ErrMalformed)
	}
	if b[0] != entryVersion {
		return fmt.Errorf("decode entry: %w %d (this node reads %d)", ErrVersion, b[0], entryVersion)
	}
	d := decoder{b: b, off: 1}
	*e = Entry{
		Status:       uint16(d.uint(math.MaxUint16, "status")),
		Flags:        Flags(d.uint(math.MaxUint16, "flags")),
		ResponseTime: d.int(math.MinInt64, math.MaxInt64, "response time"),
		Expires:      d.int(math.MinInt64, math.MaxInt64, "expires"),
		InitialAge:   int32(d.int(math.MinInt32, math.MaxInt32, "initial age")),
		Lifetime:     int32(d.int(math.MinInt32, math.MaxInt32, "lifetime")),
	}
	e.keyLen = uint32(d.uint(math.MaxUint32, "key length"))
	body := d.uint(uint64(len(b)), "body length")
	if d.err != nil {
		return d.err
	}
	arr := d.b[d.off:]
	if uint64(e.keyLen)+body > uint64(len(arr)) {
		return fmt.Errorf("decode entry: %w: key and body lengths %d+%d exceed the %d bytes left", ErrMalformed, e.keyLen, body, len(arr))
	}
	d.off += int(e.keyLen)
	d.int(math.MinInt32, math.MaxInt32, "stale-while-revalidate")
	d.int(math.MinInt32, math.MaxInt32, "stale-if-error")
	d.fields(len(b) - int(body))
	if d.err != nil {
		return d.err
	}
	e.data = unsafe.String(unsafe.SliceData(arr), len(arr))
	return nil
}

// fields checks the field block at off: its length, which must take it to
// end (where the body starts), then fields that fill it exactly.
func (d *decoder) fields(end int) {
	n := d.uint(uint64(len(d.b)), "field block length")
	if d.err != nil {
		return
	}
	switch left := end - d.off; {
	case left < 0:
		d.fail("field block", fmt.Sprintf("length %d; the body length reaches %d bytes into it", n, -left))
		return
	case int(n) != left:
		d.fail("field block", fmt.Sprintf("length %d; the key and body lengths leave %d bytes for it", n, left))
		return
	}
	for d.err == nil && d.off < end {
		name := d.uint(math.MaxUint32, "header name length")
		d.skip(int(name>>1), end, "header name")
		vlen := d.uint(math.MaxUint32, "header value length")
		d.skip(int(vlen), end, "header value")
	}
}

// skip moves past n bytes that must end by limit.
func (d *decoder) skip(n, limit int, what string) {
	if d.err != nil {
		return
	}
	if n > limit-d.off {
		d.fail(what, fmt.Sprintf("length %d runs past the field block's end by %d bytes", n, n-(limit-d.off)))
		return
	}
	d.off += n
}

// decoder reads from b at off. After the first error it reads nothing and
// returns zeros, so DecodeEntry checks err once.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(what, problem string) {
	if d.err == nil {
		d.err = fmt.Errorf("decode entry: %w: %s at offset %d: %s", ErrMalformed, what, d.off, problem)
	}
}

func (d *decoder) uint(limit uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if problem := varintProblem(n); problem != "" {
		d.fail(what, problem)
		return 0
	}
	if v > limit {
		d.fail(what, fmt.Sprintf("%d exceeds %d", v, limit))
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) int(lo, hi int64, what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if problem := varintProblem(n); problem != "" {
		d.fail(what, problem)
		return 0
	}
	if v < lo || v > hi {
		d.fail(what, fmt.Sprintf("%d out of range [%d, %d]", v, lo, hi))
		return 0
	}
	d.off += n
	return v
}

func varintProblem(n int) string {
	switch {
	case n == 0:
		return "truncated"
	case n < 0:
		return "varint overflows 64 bits"
	}
	return ""
}
