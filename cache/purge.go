package cache

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ringcache/ringcache/httpcache"
)

// Purge is an invalidation: one URL with all its variants, every entry
// tagged Tag (Surrogate-Key / Cache-Tag), every URL whose path starts with
// Prefix, everything, or a batch of primary Keys. It is what an operator
// asks for, what members send each other, and what Tombstones remember.
type Purge struct {
	// Host and URL name one URL: path and query as a client sends them.
	// An empty Host purges that path and query under every host.
	Host string `json:"host,omitempty"`
	URL  string `json:"url,omitempty"`
	Tag  string `json:"tag,omitempty"`
	// Prefix is a path prefix such as "/img/"; it matches under every host.
	Prefix string `json:"prefix,omitempty"`
	All    bool   `json:"all,omitempty"`
	// Keys are primary cache keys that unsafe requests invalidated on one
	// member (RFC 9111 §4.4); the others drop them, and any hot copy of
	// them, directly. Only members send them.
	Keys [][]byte `json:"keys,omitempty"`
	// At is when the purge was issued (unix nanoseconds). Copies of entries
	// fetched before it, still on their way (a handoff, a takeover), lose.
	At int64 `json:"at"`
}

// Validate reports whether exactly one kind of purge is asked for.
func (p Purge) Validate() error {
	n := 0
	for _, set := range []bool{p.URL != "", p.Tag != "", p.Prefix != "", p.All, len(p.Keys) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("purge: give one of url, tag, prefix, all or keys")
	case n > 1:
		return errors.New("purge: give only one of url, tag, prefix, all or keys")
	case p.URL != "" && p.URL[0] != '/':
		return fmt.Errorf("purge: url %q must start with /", p.URL)
	case p.Prefix != "" && p.Prefix[0] != '/':
		return fmt.Errorf("purge: prefix %q must start with /", p.Prefix)
	}
	return nil
}

// Kind names the purge for logs and metrics: url, tag, prefix, all or
// keys.
func (p Purge) Kind() string {
	switch {
	case len(p.Keys) > 0:
		return "keys"
	case p.URL != "":
		return "url"
	case p.Tag != "":
		return "tag"
	case p.Prefix != "":
		return "prefix"
	}
	return "all"
}

// PurgeReply is the JSON answer to a purge, from the admin API, the PURGE
// method and the peer endpoint alike: how many responses went, and the
// members that could not be reached.
type PurgeReply struct {
	Purged int    `json:"purged"`
	Error  string `json:"error,omitempty"`
}

// NewPurgeReply reports n responses purged and err, if any.
func NewPurgeReply(n int, err error) PurgeReply {
	r := PurgeReply{Purged: n}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// HasTag reports whether a stored response carries tag.
func HasTag(e *Entry, tag string) bool {
	found := false
	eachTag(e, func(t []byte) { found = found || string(t) == tag })
	return found
}

// eachTag calls fn for every tag of a stored response: the values of
// Surrogate-Key (space-separated, Fastly) and Cache-Tag (comma-separated,
// Cloudflare).
func eachTag(e *Entry, fn func(tag []byte)) {
	for f := e.Fields(); f.Next(); {
		var sep string
		switch {
		case httpcache.FieldIs(f.Key(), "surrogate-key"):
			sep = " "
		case httpcache.FieldIs(f.Key(), "cache-tag"):
			sep = ","
		default:
			continue
		}
		for _, t := range strings.Split(string(f.Value()), sep) {
			if t = strings.TrimSpace(t); t != "" {
				fn([]byte(t))
			}
		}
	}
}

// Tombstones remember invalidations and purges, so that a copy fetched
// before one — a handoff in flight, a previous owner's entry, a fill that
// was already on its way — cannot bring the old response back. Bounded:
// the oldest records are forgotten first, which only matters when more
// than maxRecords happen while such a copy travels.
type Tombstones struct {
	any      atomic.Bool // anything recorded; the common case, false, takes no lock
	mu       sync.Mutex
	all      int64
	keys     map[string]int64 // primary keys (invalidations, URL purges)
	suffixes map[string]int64 // path+query under any host
	tags     map[string]int64
	prefixes map[string]int64
	order    []record // insertion order, for forgetting the oldest
}

type record struct {
	m   *map[string]int64
	key string
}

const maxRecords = 1 << 16

// NewTombstones returns an empty record.
func NewTombstones() *Tombstones {
	return &Tombstones{keys: map[string]int64{}, suffixes: map[string]int64{}, tags: map[string]int64{}, prefixes: map[string]int64{}}
}

func (t *Tombstones) markAll(at int64) {
	t.mu.Lock()
	t.all = max(t.all, at)
	t.mu.Unlock()
	t.any.Store(true)
}

func (t *Tombstones) markURL(key []byte, at int64)    { t.mark(&t.keys, string(key), at) }
func (t *Tombstones) markSuffix(s []byte, at int64)   { t.mark(&t.suffixes, string(s), at) }
func (t *Tombstones) markTag(tag string, at int64)    { t.mark(&t.tags, tag, at) }
func (t *Tombstones) markPrefix(pfx string, at int64) { t.mark(&t.prefixes, pfx, at) }

func (t *Tombstones) mark(m *map[string]int64, k string, at int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := (*m)[k]; !ok {
		t.order = append(t.order, record{m, k})
		if len(t.order) > maxRecords {
			old := t.order[0]
			delete(*old.m, old.key)
			t.order = t.order[1:]
		}
	}
	(*m)[k] = max((*m)[k], at)
	t.any.Store(true)
}

// Stale reports whether e, fetched at fetched (unix nanoseconds), was
// invalidated or purged at or after that time.
func (t *Tombstones) Stale(e *Entry, fetched int64) bool {
	if !t.any.Load() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.all >= fetched {
		return true
	}
	primary := PrimaryKey(e.Key())
	path := KeyPath(primary)
	if t.keys[string(primary)] >= fetched || t.suffixes[string(path)] >= fetched {
		return true
	}
	for pfx, at := range t.prefixes {
		if at >= fetched && bytes.HasPrefix(path, []byte(pfx)) {
			return true
		}
	}
	if len(t.tags) == 0 {
		return false
	}
	found := false
	eachTag(e, func(tag []byte) {
		found = found || t.tags[string(tag)] >= fetched
	})
	return found
}
