package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// entryVersion is the first byte of an encoded Entry. A node that reads
// another version refuses the entry (ErrVersion) instead of guessing, so
// nodes of different releases can share a cluster.
//
// Version 1 layout, after the version byte: status and flags as uvarints;
// request, response and expiry times as varints; initial age, lifetime,
// stale-while-revalidate and stale-if-error as varints; then the key, the
// header count followed by each field's key and value, and the body, each
// as a uvarint length and the bytes.
const entryVersion = 1

var (
	// ErrVersion: the encoding comes from an unknown format version.
	ErrVersion = errors.New("unknown entry encoding version")
	// ErrMalformed: the encoding is truncated or inconsistent.
	ErrMalformed = errors.New("malformed entry encoding")
)

// AppendBinary appends the encoding of e to dst and returns the extended
// buffer. DecodeEntry reads it back.
func (e *Entry) AppendBinary(dst []byte) []byte {
	// Upper bound of the size: version, two 16-bit and three 64-bit
	// numbers, four 32-bit ones, three lengths, and two lengths per field.
	n := 1 + 2*3 + 3*binary.MaxVarintLen64 + 4*binary.MaxVarintLen32 +
		3*binary.MaxVarintLen64 + len(e.Key) + len(e.Body)
	for i := range e.Header {
		n += 2*binary.MaxVarintLen64 + len(e.Header[i].Key) + len(e.Header[i].Value)
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, entryVersion)
	dst = binary.AppendUvarint(dst, uint64(e.Status))
	dst = binary.AppendUvarint(dst, uint64(e.Flags))
	dst = binary.AppendVarint(dst, e.RequestTime)
	dst = binary.AppendVarint(dst, e.ResponseTime)
	dst = binary.AppendVarint(dst, e.Expires)
	dst = binary.AppendVarint(dst, int64(e.InitialAge))
	dst = binary.AppendVarint(dst, int64(e.Lifetime))
	dst = binary.AppendVarint(dst, int64(e.StaleWhileRevalidate))
	dst = binary.AppendVarint(dst, int64(e.StaleIfError))
	dst = appendBytes(dst, e.Key)
	dst = binary.AppendUvarint(dst, uint64(len(e.Header)))
	for i := range e.Header {
		dst = appendBytes(dst, e.Header[i].Key)
		dst = appendBytes(dst, e.Header[i].Value)
	}
	return appendBytes(dst, e.Body)
}

func appendBytes(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

// DecodeEntry decodes an entry encoded by AppendBinary. The entry does not
// share memory with b: key, header and body are copied into one fresh
// array, so decoding costs three allocations (entry, fields, bytes).
// Malformed input yields an error wrapping ErrVersion or ErrMalformed.
func DecodeEntry(b []byte) (*Entry, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("decode entry: %w: empty input", ErrMalformed)
	}
	if b[0] != entryVersion {
		return nil, fmt.Errorf("decode entry: %w %d (this node reads %d)", ErrVersion, b[0], entryVersion)
	}
	d := decoder{b: b, off: 1}
	e := &Entry{
		Status:               uint16(d.uint(math.MaxUint16, "status")),
		Flags:                Flags(d.uint(math.MaxUint16, "flags")),
		RequestTime:          d.int(math.MinInt64, math.MaxInt64, "request time"),
		ResponseTime:         d.int(math.MinInt64, math.MaxInt64, "response time"),
		Expires:              d.int(math.MinInt64, math.MaxInt64, "expires"),
		InitialAge:           int32(d.int(math.MinInt32, math.MaxInt32, "initial age")),
		Lifetime:             int32(d.int(math.MinInt32, math.MaxInt32, "lifetime")),
		StaleWhileRevalidate: int32(d.int(math.MinInt32, math.MaxInt32, "stale-while-revalidate")),
		StaleIfError:         int32(d.int(math.MinInt32, math.MaxInt32, "stale-if-error")),
	}
	// First pass: slices into b, to learn the total size.
	key := d.bytes("key")
	total := len(key)
	// Every field takes at least two bytes (two lengths), which bounds the
	// count before it sizes an allocation.
	nf := d.uint(uint64(len(b)-d.off)/2, "header count")
	var fields []Field
	if nf > 0 && d.err == nil {
		fields = make([]Field, nf)
		for i := range fields {
			fields[i].Key = d.bytes("header key")
			fields[i].Value = d.bytes("header value")
			total += len(fields[i].Key) + len(fields[i].Value)
		}
	}
	body := d.bytes("body")
	total += len(body)
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("decode entry: %w: %d trailing bytes", ErrMalformed, len(b)-d.off)
	}
	// Second pass: copy into one array. Capacities are clipped so that an
	// append to one slice cannot write over its neighbour.
	a := arena{buf: make([]byte, total)}
	e.Key = a.copy(key)
	for i := range fields {
		fields[i].Key = a.copy(fields[i].Key)
		fields[i].Value = a.copy(fields[i].Value)
	}
	e.Header = fields
	e.Body = a.copy(body)
	return e, nil
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

// bytes returns the next length-prefixed byte string, still inside b.
func (d *decoder) bytes(what string) []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b[d.off:])
	if problem := varintProblem(k); problem != "" {
		d.fail(what+" length", problem) // concatenated only here: no allocation on success
		return nil
	}
	d.off += k
	if left := len(d.b) - d.off; n > uint64(left) {
		d.fail(what, fmt.Sprintf("length %d exceeds the %d bytes left", n, left))
		return nil
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

type arena struct {
	buf []byte
	off int
}

// copy returns s copied into the arena; empty input stays nil rather than
// pointing at the arena.
func (a *arena) copy(s []byte) []byte {
	if len(s) == 0 {
		return nil
	}
	end := a.off + copy(a.buf[a.off:], s)
	r := a.buf[a.off:end:end]
	a.off = end
	return r
}
