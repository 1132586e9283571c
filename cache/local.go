package cache

import (
	"bytes"
	"strings"
	"time"
)

// LocalOptions configure a Local. Zero values take the defaults noted.
type LocalOptions struct {
	// Hot holds short-lived copies of keys other members own; purges and
	// invalidations reach it too. Nil: none.
	Hot Store
	// Keys builds the keys a URL purge names. Default: NewKeys of the zero
	// KeyOptions.
	Keys *Keys
	// Clock returns unix nanoseconds. Default time.Now.
	Clock func() int64
	// OnPurge, if set, hears every purge applied here, with its kind and
	// the responses it dropped (for metrics).
	OnPurge func(kind string, dropped int)
}

// Local is this node's cache as every layer uses it: the store, the hot
// store, and the tombstones of invalidations and purges that decide which
// copies arriving late still count. The request path reads and fills it;
// members look entries up in it, hand entries over to it and purge it.
type Local struct {
	store   Store
	hot     Store
	keys    *Keys
	tomb    *Tombstones
	now     func() int64
	onPurge func(string, int)
}

// NewLocal returns the Local over st.
func NewLocal(st Store, o LocalOptions) *Local {
	l := &Local{store: st, hot: o.Hot, keys: o.Keys, tomb: NewTombstones(), now: o.Clock, onPurge: o.OnPurge}
	if l.keys == nil {
		l.keys = NewKeys(KeyOptions{})
	}
	if l.now == nil {
		l.now = func() int64 { return time.Now().UnixNano() }
	}
	return l
}

// Store is the main store.
func (l *Local) Store() Store { return l.store }

// Get returns a stored entry for a member's lookup: pass markers are this
// node's business only.
func (l *Local) Get(key []byte) (*Entry, bool) {
	e, ok := l.store.Get(key)
	if !ok || !e.Transferable() {
		return nil, false
	}
	return e, true
}

// Accept stores an entry from another member (handed over at its
// shutdown, or fetched from a key's previous owner) unless it lost
// meanwhile: it expired, this node holds a newer copy, or the URL was
// invalidated or purged after the entry was fetched. It reports whether
// the entry was kept.
func (l *Local) Accept(e *Entry) bool {
	if !e.Transferable() || e.Expired(l.now()) {
		return false
	}
	if l.tomb.Stale(e, e.ResponseTime) {
		return false
	}
	if cur, ok := l.store.Get(e.Key()); ok && cur.ResponseTime >= e.ResponseTime && cur.Transferable() {
		return false
	}
	return l.store.Set(e)
}

// Stale reports whether e, fetched at fetched (unix nanoseconds), was
// invalidated or purged since: a copy that must not be kept.
func (l *Local) Stale(e *Entry, fetched int64) bool { return l.tomb.Stale(e, fetched) }

// Drop invalidates a primary key at time at: its entry (a Vary marker takes
// every variant with it), any hot copy, and copies still on their way here.
func (l *Local) Drop(key []byte, at int64) {
	l.tomb.markURL(key, at)
	l.store.Delete(key)
	if l.hot != nil {
		l.hot.Delete(key)
	}
}

// Purge drops, on this node only, what p names: one URL with all its
// variants, every entry carrying a tag, every URL under a path prefix,
// everything, or a batch of keys; hot copies too. It returns the number of
// responses dropped (Vary and pass markers are not counted; nor are the
// keys of a batch, which would take a read of each to know).
func (l *Local) Purge(p Purge) int {
	at := max(p.At, l.now())
	var n int
	switch {
	case p.All:
		l.tomb.markAll(at)
		n = l.dropWhere(func(*Entry) bool { return true })
	case p.Tag != "":
		l.tomb.markTag(p.Tag, at)
		n = l.dropWhere(func(e *Entry) bool { return HasTag(e, p.Tag) })
	case p.Prefix != "":
		l.tomb.markPrefix(p.Prefix, at)
		prefix := []byte(p.Prefix)
		n = l.dropWhere(func(e *Entry) bool { return bytes.HasPrefix(KeyPath(e.Key()), prefix) })
	case p.URL != "":
		n = l.purgeURL(p.Host, p.URL, at)
	case len(p.Keys) > 0:
		// Not counted: a Get to find out would count as a read of every
		// key, for the admission policy and the hit ratio.
		for _, key := range p.Keys {
			l.Drop(key, at)
		}
	}
	if l.onPurge != nil {
		l.onPurge(p.Kind(), n)
	}
	return n
}

// purgeURL drops one URL: its entry, or its Vary marker and every variant.
// Without a host it matches the path and query under every host.
func (l *Local) purgeURL(host, uri string, at int64) int {
	path, query, _ := strings.Cut(uri, "?")
	if host != "" || l.keys.host != nil {
		key, _ := l.keys.AppendPrimary(nil, []byte(host), []byte(path), []byte(query), nil)
		l.tomb.markURL(key, at)
		return l.dropWhere(func(e *Entry) bool { return bytes.Equal(PrimaryKey(e.Key()), key) })
	}
	// Any host: compare what follows the host in each key.
	suffix, _ := l.keys.AppendPrimary(nil, nil, []byte(path), []byte(query), nil)
	l.tomb.markSuffix(suffix, at)
	return l.dropWhere(func(e *Entry) bool { return bytes.Equal(KeyPath(PrimaryKey(e.Key())), suffix) })
}

// dropWhere deletes every entry of the store and the hot store that match
// and returns how many of them were responses.
func (l *Local) dropWhere(match func(*Entry) bool) int {
	n := 0
	for _, st := range []Store{l.store, l.hot} {
		if st == nil {
			continue
		}
		st.Range(func(e *Entry) bool {
			if match(e) {
				st.Delete(e.Key())
				if !e.Has(VaryMarker) && !e.Has(Pass) {
					n++
				}
			}
			return true
		})
	}
	return n
}
