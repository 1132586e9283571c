// Package store holds cached responses in a byte-bounded container. The
// cache algorithm sits behind the Store interface so it can be chosen by
// configuration: ristretto (TinyLFU admission, sampled LFU eviction) by
// default, or a plain LRU.
package store

import (
	"fmt"
	"time"
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
type Entry struct {
	Key    []byte  // full store key (primary, or primary+variant)
	Header []Field // end-to-end headers as stored: no hop-by-hop, no Age
	Body   []byte

	// Timing (RFC 9111 §4.2.3).
	RequestTime  int64 // unix nanoseconds: request sent to the origin
	ResponseTime int64 // unix nanoseconds: response received
	Expires      int64 // unix nanoseconds after which the store may drop it; 0: never

	InitialAge           int32 // corrected_initial_age, seconds
	Lifetime             int32 // freshness_lifetime, seconds
	StaleWhileRevalidate int32 // seconds, RFC 5861; 0 when absent
	StaleIfError         int32 // seconds, RFC 5861; 0 when absent

	Status uint16
	Flags  Flags
}

// EntryOverhead is what an Entry costs beyond its key, header and body bytes:
// the struct itself, per-field slice headers are added per field, and the
// container's own bookkeeping per item.
//
// Measured with the store tests' measureMemory (10k to 400k entries as
// DecodeEntry builds them; TestMemoryPerEntry keeps checking 100k): the
// Entry struct takes 128 bytes; the ristretto store's bookkeeping (its map,
// policy and expiry maps, and our index) 151-247 bytes depending on how full
// its hash tables are, 190 on average; the LRU's 67-79. EntryOverhead is the
// ristretto average, rounded up. Not included: ristretto's admission
// counters, fixed at construction, about 1.2% of a 1 GiB budget.
const (
	EntryOverhead = 128 + 192 // Entry struct + ristretto bookkeeping
	FieldOverhead = 48        // two slice headers per Field
)

// Cost is the number of bytes the entry holds, as charged against the
// store's budget.
func (e *Entry) Cost() int64 {
	n := int64(EntryOverhead + len(e.Key) + len(e.Body))
	for i := range e.Header {
		n += int64(FieldOverhead + len(e.Header[i].Key) + len(e.Header[i].Value))
	}
	return n
}

// Expired reports whether the store may drop e at now (unix nanoseconds).
// At now == Expires the entry is already expired: a TTL of zero would mean
// "never" to ristretto, so the boundary has to fall on one side.
func (e *Entry) Expired(now int64) bool { return e.Expires != 0 && now >= e.Expires }

// Has reports whether flag f is set.
func (e *Entry) Has(f Flags) bool { return e.Flags&f != 0 }

// Get returns the value of the first header field named key (ASCII
// case-insensitive), or nil.
func (e *Entry) Get(key string) []byte {
	for i := range e.Header {
		if equalFold(e.Header[i].Key, key) {
			return e.Header[i].Value
		}
	}
	return nil
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
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
