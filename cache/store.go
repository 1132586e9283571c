// Package cache is the floor every layer of a node stands on: the cached
// response (Entry) and its encoding, the byte-bounded Store that holds
// entries, the cache key format, and purge records. The cache algorithm
// sits behind the Store interface so it can be chosen by configuration:
// ristretto (TinyLFU admission, sampled LFU eviction) by default, or a
// plain LRU. The request path (proxy) and the cluster both build on it;
// it knows neither.
package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"github.com/ringcache/ringcache/httpcache"
)

// Field is one response header line.
type Field struct{ Key, Value []byte }

// Flags describe how a stored response may be reused.
type Flags uint16

const (
	// NoCache: the response said no-cache, so every reuse must be validated
	// with the origin first (RFC 9111 §5.2.2.4).
	NoCache Flags = 1 << iota
	// MustRevalidate: never served stale, not even on origin error
	// (must-revalidate or proxy-revalidate, RFC 9111 §5.2.2.2, §5.2.2.8).
	MustRevalidate
	// Shared: the response carried public, s-maxage or must-revalidate, so it
	// may answer requests that carry Authorization (RFC 9111 §3.5).
	Shared
	// Heuristic: the freshness lifetime was computed heuristically (§4.2.2).
	Heuristic
	// VaryMarker: this entry holds no response, only the Vary header of the
	// URL; the variants are stored under secondary keys.
	VaryMarker
	// Pass: the origin's last answer for this URL was not storable; requests
	// go straight to the origin without coalescing until the entry expires.
	Pass
)

// Entry is one cached response, immutable once stored: a hit shares it
// between goroutines without locking or copying. Anything that changes it
// (a 304 merging new headers) builds a new Entry.
//
// The key, the header fields and the body live in one array, so an entry
// costs two allocations and a 48-byte struct: the header of a small
// response is most of its memory, and a slice header per field would cost
// more than the field itself.
type Entry struct {
	// data is the key (keyLen bytes); the RFC 5861 windows, stale-while-
	// revalidate then stale-if-error, as varints; the field block's length
	// as a uvarint and the block; the body. Each field is
	// uvarint(len(name)<<1 | repeat), name, uvarint(len(value)), value,
	// where repeat marks a name that an earlier field already had. A string
	// because it never changes; Key, Body and the fields view it as bytes.
	data string

	// Timing (RFC 9111 §4.2.3).
	ResponseTime int64 // unix nanoseconds: response received
	Expires      int64 // unix nanoseconds after which the store may drop it; 0: never

	InitialAge int32 // corrected_initial_age, seconds
	Lifetime   int32 // freshness_lifetime, seconds

	keyLen uint32
	Status uint16
	Flags  Flags
}

// Stale holds a response's RFC 5861 windows, in seconds; 0 when absent.
// They are read only once a response is stale, so they live in the
// entry's array rather than its struct.
type Stale struct{ WhileRevalidate, IfError int32 }

// NewEntry returns an entry holding copies of key, fields (in order; names
// as given), the stale windows and body in one array. The caller sets the
// other members before storing it.
func NewEntry(key []byte, fields []Field, body []byte, stale Stale) *Entry {
	block := 0
	for i := range fields {
		block += fieldLen(&fields[i])
	}
	n := len(key) + varintLen(stale.WhileRevalidate) + varintLen(stale.IfError) + uvarintLen(uint64(block)) + block + len(body)
	buf := make([]byte, 0, n) // exactly: the array is most of a small entry
	buf = append(buf, key...)
	buf = binary.AppendVarint(buf, int64(stale.WhileRevalidate))
	buf = binary.AppendVarint(buf, int64(stale.IfError))
	buf = binary.AppendUvarint(buf, uint64(block))
	for i := range fields {
		f := &fields[i]
		name := uint64(len(f.Key)) << 1
		if repeated(fields[:i], f.Key) {
			name |= 1
		}
		buf = binary.AppendUvarint(buf, name)
		buf = append(buf, f.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(f.Value)))
		buf = append(buf, f.Value...)
	}
	buf = append(buf, body...)
	return &Entry{data: unsafe.String(unsafe.SliceData(buf), len(buf)), keyLen: uint32(len(key))}
}

func fieldLen(f *Field) int {
	return uvarintLen(uint64(len(f.Key))<<1) + len(f.Key) + uvarintLen(uint64(len(f.Value))) + len(f.Value)
}

func varintLen(v int32) int { return uvarintLen(uint64(v)<<1 ^ uint64(v>>31)) } // zigzag, as AppendVarint

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func repeated(before []Field, name []byte) bool {
	for i := range before {
		if bytes.EqualFold(before[i].Key, name) {
			return true
		}
	}
	return false
}

// bytesOf views part of an entry's data as bytes, without copying. Callers
// must not modify them.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Key is the full store key (primary, or primary+variant).
func (e *Entry) Key() []byte { return bytesOf(e.data[:e.keyLen]) }

// Body is the stored body. Callers must not modify it.
func (e *Entry) Body() []byte {
	_, at, n := e.layout()
	return bytesOf(e.data[at+n:])
}

// Fields returns an iterator over the stored header fields: end-to-end
// fields only, no hop-by-hop ones and no Age.
func (e *Entry) Fields() FieldIter {
	_, at, n := e.layout()
	return FieldIter{rest: bytesOf(e.data[at : at+n])}
}

// Stale returns the response's RFC 5861 windows.
func (e *Entry) Stale() Stale {
	s, _, _ := e.layout()
	return s
}

// layout decodes what follows the key: the stale windows, and where the
// field block's fields start and how long the block is.
func (e *Entry) layout() (s Stale, at, n int) {
	if e.data == "" {
		return Stale{}, 0, 0 // the zero Entry
	}
	b := bytesOf(e.data[e.keyLen:])
	swr, k1 := binary.Varint(b)
	sie, k2 := binary.Varint(b[k1:])
	block, k3 := binary.Uvarint(b[k1+k2:])
	return Stale{int32(swr), int32(sie)}, int(e.keyLen) + k1 + k2 + k3, int(block)
}

// Size is the number of bytes of key, fields, stale windows and body the
// entry holds.
func (e *Entry) Size() int { return len(e.data) }

// FieldIter walks an entry's fields:
//
//	for f := e.Fields(); f.Next(); {
//		use(f.Key(), f.Value())
//	}
type FieldIter struct {
	rest       []byte
	key, value []byte
	repeat     bool
}

// Next moves to the next field and reports whether there is one.
func (it *FieldIter) Next() bool {
	if len(it.rest) == 0 {
		return false
	}
	name, k := binary.Uvarint(it.rest)
	end := k + int(name>>1)
	it.key, it.repeat = it.rest[k:end:end], name&1 != 0
	vlen, k := binary.Uvarint(it.rest[end:])
	at := end + k
	end = at + int(vlen)
	it.value, it.rest = it.rest[at:end:end], it.rest[end:]
	return true
}

// Key is the current field's name.
func (it *FieldIter) Key() []byte { return it.key }

// Value is the current field's value.
func (it *FieldIter) Value() []byte { return it.value }

// Repeat reports whether an earlier field had the same name (ASCII
// case-insensitive): the current line adds to that field rather than
// replacing it.
func (it *FieldIter) Repeat() bool { return it.repeat }

// EntryOverhead is what an Entry costs beyond its array (key, stale
// windows, fields with their lengths, body), whose allocation Cost counts
// separately: the struct itself and the container's bookkeeping per item.
//
// The bookkeeping is ristretto's: a 48-byte item in a Go map of its store
// and a cost in a map of its policy, 57 and 17 bytes a slot. Swiss tables
// double once 7/8 full, so an item takes 85 to 170 bytes depending on how
// full the tables are; measured with the store tests' measureMemory (50k
// to 400k entries as the node builds them), 105-170. EntryOverhead charges
// the top of that range and a few bytes for the tables' own headers, so
// the budget does not understate the heap whatever the fill; on average it
// overstates a ristretto entry by about 40 bytes, and an LRU entry (59-80
// bytes of bookkeeping) by about 105. Not included: ristretto's admission
// counters, fixed at construction, about 1.2% of the budget.
const EntryOverhead = entryStructSize + 176

// entryStructSize is unsafe.Sizeof(Entry{}), a size class of its own.
const entryStructSize = 48

// Cost is the number of bytes the entry takes in memory, as charged
// against the store's budget: its array as the allocator rounds it, the
// struct and the store's bookkeeping.
func (e *Entry) Cost() int64 { return int64(EntryOverhead + allocSize(len(e.data))) }

// Expired reports whether the store may drop e at now (unix nanoseconds).
// At now == Expires the entry is already expired: a TTL of zero would mean
// "never" to ristretto, so the boundary has to fall on one side.
func (e *Entry) Expired(now int64) bool { return e.Expires != 0 && now >= e.Expires }

// Has reports whether flag f is set.
func (e *Entry) Has(f Flags) bool { return e.Flags&f != 0 }

// Transferable reports whether e means something on another member: a
// response or a Vary marker, never a pass marker (which records this
// node's own recent fetches) nor an entry without a key.
func (e *Entry) Transferable() bool { return !e.Has(Pass) && e.keyLen > 0 }

// Get returns the value of the first header field named key (ASCII
// case-insensitive), or nil.
func (e *Entry) Get(key string) []byte {
	for f := e.Fields(); f.Next(); {
		if httpcache.FieldIs(f.Key(), key) {
			return f.Value()
		}
	}
	return nil
}

// Stats are counters of a store since it was created.
type Stats struct {
	Bytes     int64  // cost of the entries held now
	Items     int64  // entries held now
	Hits      uint64 // Get calls that found an entry
	Misses    uint64 // Get calls that found none
	Sets      uint64 // Set calls accepted
	Rejects   uint64 // Set calls refused (admission policy, too large)
	Evictions uint64 // entries removed to make room or because they expired
}

// Store is a byte-bounded map from cache key to *Entry, safe for concurrent use.
type Store interface {
	// Get returns the entry stored under key. It must not allocate; key is
	// borrowed for the call only.
	Get(key []byte) (*Entry, bool)
	// Set stores e under e.Key, charging e.Cost(). It reports whether the
	// entry was accepted (admission may refuse it); once Set returns true the
	// entry is visible to Get until evicted, expired or deleted.
	Set(e *Entry) bool
	// Delete removes the entry stored under key, if any.
	Delete(key []byte)
	// Range calls fn for every entry held, in no particular order, until fn
	// returns false. Entries set or deleted during Range may or may not be seen.
	Range(fn func(e *Entry) bool)
	// Stats returns the store's counters.
	Stats() Stats
	// Close releases the store's resources; it must not be used afterwards.
	Close()
}

// Store kinds accepted by New.
const (
	KindRistretto = "ristretto" // the default
	KindLRU       = "lru"
)

// New builds the store named by kind ("" means ristretto) holding at most
// maxBytes of entry cost.
func New(kind string, maxBytes int64, opts ...Option) (Store, error) {
	switch kind {
	case "", KindRistretto:
		r, err := NewRistretto(maxBytes, opts...)
		if err != nil {
			return nil, err // not r: a nil *Ristretto would make a non-nil Store
		}
		return r, nil
	case KindLRU:
		if maxBytes <= 0 {
			return nil, fmt.Errorf("lru store: max bytes must be > 0 (got %d)", maxBytes)
		}
		return NewLRU(maxBytes, opts...), nil
	default:
		return nil, fmt.Errorf("unknown store kind %q (valid: %s, %s)", kind, KindRistretto, KindLRU)
	}
}

// Option changes how a store is built.
type Option func(*options)

type options struct {
	now        func() int64
	ownedClock bool // now came from WithClock
}

// WithClock makes the store read the time (unix nanoseconds) from now
// instead of time.Now, so tests can move expiry along deterministically.
func WithClock(now func() int64) Option {
	return func(o *options) { o.now, o.ownedClock = now, true }
}

func buildOptions(opts []Option) options {
	o := options{now: func() int64 { return time.Now().UnixNano() }}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
