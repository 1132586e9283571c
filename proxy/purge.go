package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// Purge drops, on this node only, what p names: one URL with all its
// variants, every entry carrying a tag, every URL under a path prefix, or
// everything; hot copies too. It returns the number of responses dropped
// (Vary markers and pass markers are not counted). It implements
// cluster.Local.
func (p *Proxy) Purge(cp cluster.Purge) int {
	at := max(cp.At, p.now())
	p.m.purges.WithLabelValues(cp.Kind()).Inc()
	var n int
	switch {
	case cp.All:
		p.purged.markAll(at)
		n = p.dropWhere(func(*cache.Entry) bool { return true })
	case cp.Tag != "":
		p.purged.markTag(cp.Tag, at)
		n = p.dropWhere(func(e *cache.Entry) bool { return hasTag(e, cp.Tag) })
	case cp.Prefix != "":
		p.purged.markPrefix(cp.Prefix, at)
		prefix := []byte(cp.Prefix)
		n = p.dropWhere(func(e *cache.Entry) bool { return bytes.HasPrefix(keyPath(e.Key()), prefix) })
	case cp.URL != "":
		n = p.purgeURL(cp.Host, cp.URL, at)
	case len(cp.Keys) > 0:
		// Not counted: a Get to find out would count as a read of every
		// key, for the admission policy and the hit ratio.
		for _, key := range cp.Keys {
			p.drop(key, at)
		}
	}
	p.m.purgedEntries.Add(float64(n))
	return n
}

// PurgeCluster applies a purge here and on every other member and returns
// the total dropped. Unreachable members are reported in the error; the
// purge stands everywhere else.
func (p *Proxy) PurgeCluster(ctx context.Context, cp cluster.Purge) (int, error) {
	if cp.At == 0 {
		cp.At = p.now()
	}
	n := p.Purge(cp)
	if p.opt.Peers == nil {
		return n, nil
	}
	m, err := p.opt.Peers.Broadcast(ctx, cp)
	return n + m, err
}

// purgeMethod answers a PURGE request: the URL it names is dropped on
// every member, if the client's address is allowed to ask.
func (p *Proxy) purgeMethod(ctx *fasthttp.RequestCtx, st *reqState) {
	ip, _ := netip.AddrFromSlice(ctx.RemoteIP())
	if !p.purgeAllowed(ip.Unmap()) {
		p.writeError(ctx, fasthttp.StatusForbidden, "PURGE is not allowed from "+ip.String(), "")
		return
	}
	uri := ctx.URI()
	u := string(uri.PathOriginal())
	if q := uri.QueryString(); len(q) > 0 {
		u += "?" + string(q)
	}
	n, err := p.PurgeCluster(context.Background(), cluster.Purge{Host: string(bytes.ToLower(st.host)), URL: u})
	body, _ := json.Marshal(purgeReply(n, err))
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}

func (p *Proxy) purgeAllowed(ip netip.Addr) bool {
	for _, pfx := range *p.purgeAllow.Load() {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// PurgeReply is the JSON answer to a purge: how many entries went, and the
// members that could not be reached.
type PurgeReply struct {
	Purged int    `json:"purged"`
	Error  string `json:"error,omitempty"`
}

func purgeReply(n int, err error) PurgeReply {
	r := PurgeReply{Purged: n}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// purgeURL drops one URL: its entry, or its Vary marker and every variant.
// Without a host it matches the path and query under every host.
func (p *Proxy) purgeURL(host, uri string, at int64) int {
	path, query, _ := strings.Cut(uri, "?")
	if host != "" || p.keys.host != nil {
		key, _ := p.keys.appendKey(nil, []byte(host), []byte(path), []byte(query), nil)
		p.purged.markURL(key, at)
		return p.dropWhere(func(e *cache.Entry) bool { return bytes.Equal(cluster.PrimaryKey(e.Key()), key) })
	}
	// Any host: compare what follows the host in each key.
	suffix, _ := p.keys.appendKey(nil, nil, []byte(path), []byte(query), nil)
	p.purged.markSuffix(suffix, at)
	return p.dropWhere(func(e *cache.Entry) bool { return bytes.Equal(keyPath(cluster.PrimaryKey(e.Key())), suffix) })
}

// dropWhere deletes every entry of the store and the hot store that match.
func (p *Proxy) dropWhere(match func(*cache.Entry) bool) int {
	n := 0
	for _, st := range []cache.Store{p.store, p.hot} {
		if st == nil {
			continue
		}
		st.Range(func(e *cache.Entry) bool {
			if match(e) {
				st.Delete(e.Key())
				if !e.Has(cache.VaryMarker) && !e.Has(cache.Pass) {
					n++
				}
			}
			return true
		})
	}
	return n
}

// keyPath is the path-and-query part of a cache key (host + path + query).
func keyPath(key []byte) []byte {
	if i := bytes.IndexByte(key, '/'); i >= 0 {
		return key[i:]
	}
	return nil
}

// hasTag reports whether a stored response carries tag.
func hasTag(e *cache.Entry, tag string) bool {
	found := false
	eachTag(e, func(t []byte) { found = found || string(t) == tag })
	return found
}

// eachTag calls fn for every tag of a stored response: the values of
// Surrogate-Key (space-separated, Fastly) and Cache-Tag (comma-separated,
// Cloudflare).
func eachTag(e *cache.Entry, fn func(tag []byte)) {
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

// purges remember invalidations and purges, so that a copy fetched before
// one — a handoff in flight, a previous owner's entry, a fill that was
// already on its way — cannot bring the old response back. Bounded: the
// oldest records are forgotten first, which only matters when more than
// maxRecords happen while such a copy travels.
type purges struct {
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

func newPurges() *purges {
	return &purges{keys: map[string]int64{}, suffixes: map[string]int64{}, tags: map[string]int64{}, prefixes: map[string]int64{}}
}

func (t *purges) markAll(at int64) {
	t.mu.Lock()
	t.all = max(t.all, at)
	t.mu.Unlock()
	t.any.Store(true)
}

func (t *purges) markURL(key []byte, at int64)    { t.mark(&t.keys, string(key), at) }
func (t *purges) markSuffix(s []byte, at int64)   { t.mark(&t.suffixes, string(s), at) }
func (t *purges) markTag(tag string, at int64)    { t.mark(&t.tags, tag, at) }
func (t *purges) markPrefix(pfx string, at int64) { t.mark(&t.prefixes, pfx, at) }

func (t *purges) mark(m *map[string]int64, k string, at int64) {
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

// stale reports whether e, fetched at fetched (unix nanoseconds), was
// invalidated or purged at or after that time.
func (t *purges) stale(e *cache.Entry, fetched int64) bool {
	if !t.any.Load() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.all >= fetched {
		return true
	}
	primary := cluster.PrimaryKey(e.Key())
	path := keyPath(primary)
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
