// Package proxy is a ringcache node's request path: it builds the cache
// key, looks the request up in the store, collapses concurrent misses into
// one origin fetch, stores what RFC 9111 allows, and answers with
// Cache-Status (RFC 9211) and Age.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/ringcache/ringcache/internal/h1"
	"github.com/ringcache/ringcache/internal/reqbody"
	"github.com/ringcache/ringcache/rules"
	"github.com/valyala/fasthttp"
)

// Fetcher fills resp for req: the origin and, in a cluster, the owning
// peer both implement it. req's Host header is the request's one authority,
// the host its cache key names (key_host when set): an origin may pick its
// server by it, as origin.Router picks a virtual host's pool, and whatever
// it picks serves exactly the requests that share the key's host. After a
// nil error resp's body may be a stream (resp.IsBodyStream()); the caller
// reads or closes it.
type Fetcher interface {
	Fetch(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	return f(ctx, req, resp)
}

// Options configure a Proxy. Zero values take the defaults noted.
type Options struct {
	// Name identifies this cache in Cache-Status and Via: a node's name,
	// quoted unless it is a token. Default "ringcache".
	Name string
	Key  cache.KeyOptions
	// Policy holds the caching choices the RFCs leave to the cache.
	Policy httpcache.Policy
	// Rules are the operator's rules: the first that matches a GET or
	// HEAD request may bypass the cache, change how long its response is
	// kept or add request fields to its key. Nil: none.
	Rules *rules.Set
	// MaxObjectSize: larger responses are streamed to the client and never
	// stored. Default 8 MiB.
	MaxObjectSize int64
	// StaleKeep is how long an expired entry is kept for conditional
	// revalidation and for serving stale (stale-if-error, max-stale).
	// Default 1h; <0 drops entries when their freshness and RFC 5861
	// windows end.
	StaleKeep time.Duration
	// PassTTL is how long a URL whose response could not be stored goes
	// straight to the origin, without coalescing. Default 10s; <0 disables.
	PassTTL time.Duration
	// CoalesceTimeout is how long requests wait for an identical in-flight
	// fetch before one of them (one per fetch) fetches again; the others
	// keep waiting for whichever of the two answers first. Default 10s.
	CoalesceTimeout time.Duration
	// OriginTimeout is how long a fetch may take to be answered: waiters
	// give up on a fetch (answering 504, or a stale copy where allowed) this
	// long after CoalesceTimeout, when the fetch started then has had its
	// time too. Set it to the origin client's response timeout. Default 30s.
	OriginTimeout time.Duration
	// Peers is the cluster: keys owned by other members are forwarded to
	// them. Nil runs a single node.
	Peers Peers
	// Hot holds short-lived local copies of popular keys owned by other
	// members. Nil disables the hot cache.
	Hot cache.Store
	// HotTTL caps how long a hot copy is kept (never beyond its freshness).
	// Default 10s.
	HotTTL time.Duration
	// PurgeAllow lists the client networks whose PURGE requests are obeyed
	// (Varnish/Squid style, purging the URL cluster-wide). Default:
	// loopback only. Others get 403.
	PurgeAllow []netip.Prefix
	// TrustedProxies lists the networks of the proxies in front of this
	// node (an ingress, a load balancer). From a connection whose address
	// is in one, X-Forwarded-For gets that address appended and
	// X-Forwarded-Proto, -Host and the other forwarding fields are kept;
	// anyone else's are replaced by what this node saw (see addForwarding).
	// Default: none is trusted.
	TrustedProxies []netip.Prefix
	// Forwarded also sends RFC 7239's Forwarded field (for, host, proto):
	// a trusted proxy's gets this hop's element appended, anyone else's is
	// replaced by it. Off, a trusted proxy's Forwarded is passed on as it
	// is and anyone else's dropped.
	Forwarded bool
	// Tunnels dials the origin for requests that switch protocols (an
	// HTTP/1.1 request with Upgrade and Connection: upgrade, as a
	// WebSocket handshake is): they are tunnelled to the origin after its
	// 101, never cached, coalesced or forwarded to the key's owner. Nil:
	// Upgrade is dropped as any hop-by-hop field and the request served as
	// any other.
	Tunnels Dialer
	// TunnelIdleTimeout ends a tunnel after this long without a byte
	// either way. Default 5m.
	TunnelIdleTimeout time.Duration
	// StatsFullURLs shows top keys with their query strings in Snapshot;
	// by default only host and path, as queries may carry credentials.
	StatsFullURLs bool
	// Metrics receives the proxy's measurements. Default: unregistered.
	Metrics *Metrics
	// Logger for errors; nil discards.
	Logger *slog.Logger
	// Clock returns unix nanoseconds. Default: a Clock of 1ms resolution
	// owned by the proxy.
	Clock func() int64
	// OnPurge, if set, hears every purge applied on this node (from the
	// admin API, a PURGE request or another member), after its entries
	// went: the node drops a snapshot that still holds them.
	OnPurge func(kind string, dropped int)
}

// Proxy is the HTTP handler of one ringcache node.
type Proxy struct {
	opt     Options
	store   cache.Store
	origin  Fetcher
	keys    *cache.Keys
	local   *cache.Local
	flights flightGroup
	m       *Metrics
	log     *slog.Logger
	now     func() int64
	via     []byte // "1.1 <name>"

	hot     cache.Store
	hotTick atomic.Uint64
	hotSeen *hotSeen // keys kept as hot copies lately; nil without Hot
	// Reloadable (SIGHUP): read on every use.
	policy     atomic.Pointer[httpcache.Policy]
	rules      atomic.Pointer[rules.Set]
	purgeAllow atomic.Pointer[[]netip.Prefix]
	top        topKeys
	gen        atomic.Int64 // last Vary marker generation handed out
	states     sync.Pool    // *reqState
	seeds      sync.Pool    // *h1.DateSeed
	bg         sync.WaitGroup
	announced  announcer
	tunnels    tunnelSet
	clock      *Clock // owned, when Options.Clock was nil
	closeOnce  sync.Once
}

// reqState is the per-request scratch space, pooled so that a hit
// allocates nothing.
type reqState struct {
	// host is the request's one authority (requestAuthority), borrowed
	// from the request: the key, the fill, the forwarding fields and a
	// forward to the owner all name this host and no other.
	host      []byte
	key, vkey []byte
	// rule is the operator's rule matching the request, or nil: matched
	// once, when the request is first served.
	rule *rules.Rule
	// rkey is the rule fields of the request's key (cache.KeyFields), read
	// from view; empty when no rule keys it.
	rkey []byte
	view originView
	// fkey is the flight key of a rule-keyed request whose URL has no
	// marker yet (see fill).
	fkey      []byte
	params    [][]byte
	req       httpcache.Request
	marker    *cache.Entry // the URL's Vary marker, if any
	forwarded bool         // sent by an authenticated peer: never forward again
	seed      *h1.DateSeed // writes a hit's Date
	// quiet: interim responses may be written to the client's connection
	// (h1.Quiet, as the request started).
	quiet bool
	// fetched holds entries looked up at other members; its buffer is
	// reused from request to request.
	fetched cache.Fetched
	// outcome is how the request was answered, once counted is set.
	outcome Outcome
	counted bool
}

// New returns a Proxy answering from st and filling from origin.
func New(o Options, st cache.Store, origin Fetcher) *Proxy {
	if o.Name == "" {
		o.Name = "ringcache"
	}
	o.Name = cacheName(o.Name)
	if o.MaxObjectSize <= 0 {
		o.MaxObjectSize = 8 << 20
	}
	if o.StaleKeep == 0 {
		o.StaleKeep = time.Hour
	}
	if o.PassTTL == 0 {
		o.PassTTL = 10 * time.Second
	}
	if o.CoalesceTimeout <= 0 {
		o.CoalesceTimeout = 10 * time.Second
	}
	if o.OriginTimeout <= 0 {
		o.OriginTimeout = 30 * time.Second
	}
	if o.PurgeAllow == nil {
		o.PurgeAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if o.TunnelIdleTimeout <= 0 {
		o.TunnelIdleTimeout = 5 * time.Minute
	}
	if o.HotTTL <= 0 {
		o.HotTTL = 10 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var own *Clock
	if o.Clock == nil {
		own = NewClock(time.Millisecond)
		o.Clock = own.Now
	}
	p := &Proxy{
		opt: o, store: st, origin: origin,
		keys: cache.NewKeys(o.Key), m: o.Metrics, log: o.Logger, now: o.Clock,
		via:   []byte("1.1 " + o.Name),
		clock: own,
		hot:   o.Hot,
	}
	if o.Hot != nil {
		p.hotSeen = newHotSeen()
	}
	onPurge := p.m.observePurge
	if o.OnPurge != nil {
		onPurge = func(kind string, dropped int) {
			p.m.observePurge(kind, dropped)
			o.OnPurge(kind, dropped)
		}
	}
	p.local = cache.NewLocal(st, cache.LocalOptions{Hot: o.Hot, Keys: p.keys, Clock: o.Clock, OnPurge: onPurge})
	p.top.fullURLs = o.StatsFullURLs
	p.SetPolicy(o.Policy)
	p.SetRules(o.Rules)
	p.SetPurgeAllow(o.PurgeAllow)
	p.states.New = func() any {
		return &reqState{key: make([]byte, 0, 256), vkey: make([]byte, 0, 256), seed: h1.NewDateSeed()}
	}
	p.seeds.New = func() any { return h1.NewDateSeed() }
	return p
}

// Cache is the proxy's local cache, for the members' endpoints: lookups,
// handoffs and purges go through it, and so through its tombstones.
func (p *Proxy) Cache() *cache.Local { return p.local }

// SetPolicy replaces the caching policy (default TTL, heuristics, cookie
// handling) for responses fetched from now on.
func (p *Proxy) SetPolicy(pol httpcache.Policy) { p.policy.Store(&pol) }

// SetRules replaces the operator's rules (nil: none) for requests that
// arrive from now on. Entries stored under the old rules keep the TTL and
// stale-if-error they were stored with.
func (p *Proxy) SetRules(s *rules.Set) { p.rules.Store(s) }

// SetPurgeAllow replaces the networks allowed to send PURGE.
func (p *Proxy) SetPurgeAllow(nets []netip.Prefix) { p.purgeAllow.Store(&nets) }

// Close ends the open tunnels and waits for them and for background
// revalidations to finish. It may be called more than once.
func (p *Proxy) Close() {
	p.tunnels.close()
	p.bg.Wait()
	p.closeOnce.Do(func() {
		if p.clock != nil {
			p.clock.Stop()
		}
	})
}

// Handler serves one client request; pass it to the client listener's
// fasthttp.Server.
func (p *Proxy) Handler(ctx *fasthttp.RequestCtx) { p.handle(ctx, false) }

// PeerHandler serves a request another member forwarded: it is answered
// here, as the key's owner, and never forwarded again, so two members that
// briefly disagree on the ring cannot loop; its forwarding fields describe
// the real client. The caller must have authenticated the member (the
// cluster's peer listener does).
func (p *Proxy) PeerHandler(ctx *fasthttp.RequestCtx) { p.handle(ctx, true) }

func (p *Proxy) handle(ctx *fasthttp.RequestCtx, fromPeer bool) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic serving request", "uri", string(ctx.RequestURI()), "panic", r)
			ctx.Response.Reset()
			ctx.Error("internal error\n", fasthttp.StatusInternalServerError)
		}
	}()
	start := time.Now()
	st := p.states.Get().(*reqState)
	defer p.putState(st)

	h := &ctx.Request.Header
	st.forwarded = fromPeer
	// Before the handler reads a body of its own from the connection.
	st.quiet = h.IsHTTP11() && h1.Quiet(ctx.Conn())
	if h.IsConnect() || h.IsTrace() {
		// CONNECT tunnels and TRACE echoes have no place behind a cache
		// (and CONNECT's authority-form target names no resource).
		p.writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed", fwdMethod)
		return
	}
	host, problem := requestAuthority(h, ctx.URI().Host())
	if problem != "" {
		p.writeError(ctx, fasthttp.StatusBadRequest, problem, fwdBypass)
		return
	}
	st.host = host
	switch {
	case p.opt.Tunnels != nil && !fromPeer && upgradeRequested(h):
		p.tunnel(ctx, st)
	case h.IsGet(), h.IsHead():
		p.serveCacheable(ctx, st)
	case bytes.Equal(h.Method(), methodPurge):
		p.purgeMethod(ctx, st)
	case h.IsOptions():
		if n, ok := maxForwards(h); ok && n == 0 {
			// RFC 9110 §7.6.2: not forwarded; answered as the final
			// recipient.
			p.seedDate(&ctx.Response.Header, nil, p.now())
			ctx.Response.Header.SetContentLength(0)
			p.addCacheStatus(&ctx.Response, cacheStatus{})
			return
		}
		p.pass(ctx, st, fwdRequest, detailNone)
	default:
		p.pass(ctx, st, fwdMethod, detailNone)
	}
	if st.counted {
		p.m.durations[st.outcome].Observe(time.Since(start).Seconds())
	}
}

var methodPurge = []byte("PURGE")

// keyed reports whether a rule adds fields of the request to its key.
func (st *reqState) keyed() bool { return len(st.rkey) > 0 }

// count records how a request was answered: ringcache_requests_total now,
// its duration when the handler returns.
func (p *Proxy) count(st *reqState, o Outcome) {
	p.m.requests[o].Inc()
	st.outcome, st.counted = o, true
}

func (p *Proxy) putState(st *reqState) {
	st.host, st.marker, st.forwarded, st.quiet, st.counted, st.rule = nil, nil, false, false, false, nil
	st.rkey, st.view = st.rkey[:0], originView{}
	st.req.CC.Reset()
	st.fetched.Release()
	if cap(st.fetched.Buf) > 64<<10 {
		st.fetched.Buf = nil // a large entry's buffer: let it go
	}
	if cap(st.key) > 64<<10 || cap(st.vkey) > 64<<10 || cap(st.fkey) > 64<<10 || cap(st.rkey) > 64<<10 {
		return // do not pool buffers grown by a freak request
	}
	p.states.Put(st)
}

// serveCacheable answers a GET or HEAD.
func (p *Proxy) serveCacheable(ctx *fasthttp.RequestCtx, st *reqState) {
	h := &ctx.Request.Header
	// The rule is matched on the host the key names, which is also the
	// one a forward to the owner carries, so the owner matches the same.
	st.rule = p.rules.Load().Match(p.keys.Host(st.host), ctx.URI(), h)
	if st.rule != nil && st.rule.Bypass() {
		p.pass(ctx, st, fwdBypass, detailRule)
		return
	}
	if f := st.rule.Key(); f.Keyed() {
		// Read as the origin will receive the request, as the fill that
		// stores the variant reads them (see originView).
		st.view = originView{p: p, ctx: ctx, st: st}
		st.rkey = f.AppendKey(st.rkey[:0], &st.view)
	}
	now := p.now()
	p.primaryKey(st, ctx.URI())
	httpcache.ParseRequest(&st.req, h)
	if !st.forwarded {
		p.top.observe(st.key)
	}

	if p.opt.Peers != nil && !st.forwarded {
		if e := p.hotHit(st, now); e != nil {
			s := storedResponse(e, now)
			p.count(st, Hit)
			p.writeEntry(ctx, st, e, now, cacheStatus{hit: true, ttl: s.TTL(), hasTTL: true, detail: detailHot})
			return
		}
		if _, ok := p.opt.Peers.Owner(st.key); ok {
			if e := p.replicaHit(st, h, now); e != nil {
				s := storedResponse(e, now)
				p.count(st, Hit)
				p.writeEntry(ctx, st, e, now, cacheStatus{hit: true, ttl: s.TTL(), hasTTL: true, detail: detailReplica})
				return
			}
			switch p.peerHit(ctx, st, now) {
			case peerServed:
				return
			case peerAsk:
				// The member that should fill it now: the owner, or, if the
				// lookup found the owner slow, the next holder.
				if peer, ok := p.opt.Peers.Owner(st.key); ok && p.forward(ctx, st, peer) {
					return
				}
			}
		}
	}
	e, fwd := p.lookup(st, h, now)
	if e != nil && e.Has(cache.Pass) {
		p.fetchAndServe(ctx, st, nil, fwdBypass, detailPass)
		return
	}
	if e != nil && st.req.Authorization && !e.Has(cache.Shared) {
		// RFC 9111 §3.5: credentials are answered from the cache only by
		// responses that said they may be shared.
		e, fwd = nil, fwdRequest
	}
	if e != nil {
		s := storedResponse(e, now)
		switch httpcache.Reuse(&s, &st.req.CC) {
		case httpcache.Serve:
			p.count(st, Hit)
			p.writeEntry(ctx, st, e, now, cacheStatus{hit: true, ttl: s.TTL(), hasTTL: true})
			return
		case httpcache.ServeStale:
			p.count(st, StaleHit)
			p.writeEntry(ctx, st, e, now, cacheStatus{hit: true, ttl: s.TTL(), hasTTL: true, detail: detailMaxStale})
			return
		case httpcache.ServeStaleRevalidate:
			p.count(st, StaleHit)
			p.revalidateAsync(ctx, st, e)
			p.writeEntry(ctx, st, e, now, cacheStatus{hit: true, ttl: s.TTL(), hasTTL: true, detail: detailStaleWhileRevalidate})
			return
		}
		if st.req.CC.OnlyIfCached {
			p.writeError(ctx, fasthttp.StatusGatewayTimeout, "stored response is stale (only-if-cached)", fwdNone)
			return
		}
		fwd = fwdStale
		if st.req.CC.NoCache {
			fwd = fwdRequest
		}
		p.fill(ctx, st, e, fwd)
		return
	}
	if st.req.CC.OnlyIfCached {
		// RFC 9111 §5.2.1.7.
		p.writeError(ctx, fasthttp.StatusGatewayTimeout, "not in cache (only-if-cached)", fwdNone)
		return
	}
	if len(st.req.Range) > 0 {
		// A range of an object we do not hold: relay it, store nothing.
		p.pass(ctx, st, fwdRequest, detailNone)
		return
	}
	if st.req.Authorization {
		// Each user's own fetch: never wait on, or share, another's.
		p.fetchAndServe(ctx, st, nil, fwd, detailNone)
		return
	}
	p.fill(ctx, st, nil, fwd)
}

// primaryKey builds st.key from the request's authority and u's path and
// query: u is the request's URI, or a same-host URI it invalidates.
func (p *Proxy) primaryKey(st *reqState, u *fasthttp.URI) {
	path := u.PathOriginal()
	if len(path) == 0 {
		// "http://h?q": the fill asks for "/?q" (RFC 9112 §3.2.1), so
		// that is the resource cached.
		path = strSlash
	}
	st.key, st.params = p.keys.AppendPrimary(st.key[:0], st.host, path, u.QueryString(), st.params)
}

var strSlash = []byte("/")

// lookup finds the stored response for the request, resolving Vary
// markers. It returns nil and the Cache-Status fwd reason on a miss.
func (p *Proxy) lookup(st *reqState, h *fasthttp.RequestHeader, now int64) (*cache.Entry, fwdReason) {
	e, ok := p.store.Get(st.key)
	if !ok {
		return nil, fwdURIMiss
	}
	if e.Has(cache.Pass) && e.Expires != 0 && e.Expires < now {
		return nil, fwdURIMiss
	}
	if !e.Has(cache.VaryMarker) {
		if st.keyed() && !e.Has(cache.Pass) {
			// Stored for requests no rule keyed: not this request's.
			return nil, fwdVaryMiss
		}
		return e, fwdNone
	}
	st.marker = e
	st.vkey = p.keys.AppendVariant(st.vkey[:0], st.key, e, h, st.rkey)
	v, ok := p.store.Get(st.vkey)
	if !ok {
		return nil, fwdVaryMiss
	}
	return v, fwdNone
}

func storedResponse(e *cache.Entry, now int64) httpcache.StoredResponse {
	stale := e.Stale()
	return httpcache.StoredResponse{
		Age:                  int64(e.InitialAge) + max(0, now-e.ResponseTime)/1e9,
		Lifetime:             int64(e.Lifetime),
		StaleWhileRevalidate: int64(stale.WhileRevalidate),
		StaleIfError:         int64(stale.IfError),
		NoCache:              e.Has(cache.NoCache),
		MustRevalidate:       e.Has(cache.MustRevalidate),
	}
}

// result is the outcome of one origin fetch, shared read-only between the
// request that made it and those that waited for it.
type result struct {
	entry     *cache.Entry // what to answer with; nil on error or stream
	shareable bool         // waiters may answer with entry
	stored    bool
	outcome   Outcome
	hit       bool // answered from a stored copy without the origin
	fwd       fwdReason
	fwdStatus int
	detail    detail
	err       error
	errStatus int
	// stream is an origin response too large to store, relayed to the
	// leader's client only; prefix is the part of its body already read.
	stream *fasthttp.Response
	prefix []byte
	// cookies are the Set-Cookie values stripped from a stored response:
	// they go to the request that fetched it, never to anyone else.
	cookies [][]byte
	// marker is the Vary marker entry was filed under (nil for a URL's one
	// response). Waiters match their variant against it, not against the
	// store's: a concurrent fill of another variant may have replaced the
	// marker, or the store not show it yet.
	marker *cache.Entry
}

// fill fetches a miss or a stale entry's revalidation, collapsing
// concurrent requests for the same key into one origin fetch.
func (p *Proxy) fill(ctx *fasthttp.RequestCtx, st *reqState, stale *cache.Entry, fwd fwdReason) {
	fkey := st.key
	switch {
	case st.marker != nil:
		fkey = st.vkey
	case st.keyed():
		// No marker yet: coalesce with the requests that will share the
		// variant, not with every request for the URL.
		st.fkey = p.keys.AppendVariant(st.fkey[:0], st.key, nil, &ctx.Request.Header, st.rkey)
		fkey = st.fkey
	}
	f, leader := p.flights.join(fkey)
	if !leader {
		p.m.coalesced.Inc()
		res, done := f.wait(p.opt.CoalesceTimeout)
		if !done {
			// The fetch is slow. A fetch per waiter would pile onto an
			// origin that is slow already (a herd of N would become N
			// requests): one waiter fetches again, in case the first fetch
			// is stuck, and the others wait for whichever answers first.
			p.m.coalesceOverdue.Inc()
			if p.flights.hedge(f) {
				p.m.coalesceHedged.Inc()
				res = p.fetch(ctx, st, stale, fwd)
				p.flights.finish(fkey, f, res)
				p.serve(ctx, st, res, false)
				return
			}
			if res, done = f.wait(p.opt.OriginTimeout); !done {
				// Neither answered in time: the origin is failing, and a
				// fetch per waiter would not help it.
				res = p.originFailed(&result{fwd: fwd, outcome: Miss}, errFillTimeout, 0, stale, &st.req, p.now())
				p.serve(ctx, st, res, true)
				return
			}
		}
		if res != nil && res.shareable && p.sameVariant(st, res, &ctx.Request.Header) {
			p.serve(ctx, st, res, true)
			return
		}
		// The answer cannot be shared (uncacheable, another variant, the
		// fetch failed or panicked): fetch our own, without queueing again.
		p.fetchAndServe(ctx, st, stale, fwd, detailNone)
		return
	}
	var res *result
	defer func() { p.flights.finish(fkey, f, res) }()
	if stale == nil {
		if e := p.takeover(st, &ctx.Request.Header); e != nil {
			now := p.now()
			s := storedResponse(e, now)
			if httpcache.Reuse(&s, &st.req.CC) == httpcache.Serve {
				res = &result{entry: e, shareable: true, stored: true, outcome: Takeover, hit: true, detail: detailPreviousOwner}
				p.serve(ctx, st, res, false)
				return
			}
			stale, fwd = e, fwdStale // revalidate the moved copy rather than refetch it
		}
	}
	res = p.fetch(ctx, st, stale, fwd)
	p.serve(ctx, st, res, false)
}

// hotHit returns a fresh hot copy of a key owned by another member.
func (p *Proxy) hotHit(st *reqState, now int64) *cache.Entry {
	if p.hot == nil || st.keyed() {
		return nil // hot copies are kept under the URL's key alone
	}
	e, ok := p.hot.Get(st.key)
	if !ok || (st.req.Authorization && !e.Has(cache.Shared)) {
		return nil
	}
	s := storedResponse(e, now)
	if httpcache.Reuse(&s, &st.req.CC) != httpcache.Serve {
		return nil
	}
	return e
}

// replicaHit returns a fresh entry this node stores for a key another
// member owns: with replicas, each key's next holders keep a copy that the
// owner pushed after its fill, and a purge or an invalidation reaches them
// as it reaches the owner. Serving it here saves the lookup at the owner —
// with two copies on three members, two hits in three. Anything else (a
// stale or revalidating copy, a pass marker, credentials on an unshared
// response) is the owner's to decide, as when nothing is stored here.
func (p *Proxy) replicaHit(st *reqState, h *fasthttp.RequestHeader, now int64) *cache.Entry {
	e, _ := p.lookup(st, h, now)
	if e == nil || e.Has(cache.Pass) || (st.req.Authorization && !e.Has(cache.Shared)) {
		st.marker = nil
		return nil
	}
	s := storedResponse(e, now)
	if httpcache.Reuse(&s, &st.req.CC) != httpcache.Serve {
		st.marker = nil
		return nil
	}
	return e
}

// sameVariant reports whether a shared result answers this request's
// variant (RFC 9111 §4.1).
func (p *Proxy) sameVariant(st *reqState, res *result, h *fasthttp.RequestHeader) bool {
	e := res.entry
	if len(e.Get("vary")) == 0 && !st.keyed() && len(cache.PrimaryKey(e.Key())) == len(e.Key()) {
		return true // the URL's one response
	}
	marker := res.marker
	if marker == nil {
		if st.marker == nil || !bytes.HasPrefix(e.Key(), st.key) {
			// We looked up before the leader stored a marker: find it now.
			m, ok := p.store.Get(st.key)
			if !ok || !m.Has(cache.VaryMarker) {
				return false
			}
			st.marker = m
		}
		marker = st.marker
	}
	st.vkey = p.keys.AppendVariant(st.vkey[:0], st.key, marker, h, st.rkey)
	return bytes.Equal(st.vkey, e.Key())
}

func (p *Proxy) fetchAndServe(ctx *fasthttp.RequestCtx, st *reqState, stale *cache.Entry, fwd fwdReason, d detail) {
	res := p.fetch(ctx, st, stale, fwd)
	if res.detail == detailNone {
		res.detail = d
	}
	p.serve(ctx, st, res, false)
}

// fetch builds the origin request for ctx and runs it.
func (p *Proxy) fetch(ctx *fasthttp.RequestCtx, st *reqState, stale *cache.Entry, fwd fwdReason) *result {
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	p.buildFill(out, ctx, st, stale)
	return p.fetchWith(p.interim(ctx, st), out, st.key, st.marker, &st.req, st.rule, stale, fwd)
}

// buildFill makes the origin request of a cache fill: a GET (HEAD misses
// are filled with GET so the body can be stored) without the client's
// preconditions, with the stored validators when revalidating.
func (p *Proxy) buildFill(out *fasthttp.Request, ctx *fasthttp.RequestCtx, st *reqState, stale *cache.Entry) {
	out.Header.SetMethod(fasthttp.MethodGet)
	out.SetRequestURIBytes(ctx.Request.Header.RequestURI())
	out.Header.SetHostBytes(p.keys.Host(st.host))
	copyRequestHeaders(&out.Header, &ctx.Request.Header, true, st.forwarded)
	if p.keys.Codings() {
		// Ask for exactly the codings the variant key stands for, so the
		// response suits every request that shares the variant.
		var buf [32]byte
		set := httpcache.AppendAcceptedCodings(buf[:0], ctx.Request.Header.PeekAll("Accept-Encoding"))
		out.Header.Del("Accept-Encoding")
		if len(set) > 0 {
			out.Header.SetBytesV("Accept-Encoding", set)
		}
	}
	p.addForwarding(out, ctx, st)
	if stale != nil {
		// RFC 9111 §4.3.1.
		if etag := stale.Get("etag"); len(etag) > 0 {
			out.Header.SetBytesV("If-None-Match", etag)
		}
		if lm := stale.Get("last-modified"); len(lm) > 0 {
			out.Header.SetBytesV("If-Modified-Since", lm)
		}
	}
}

// fetchWith sends a fill request to the origin and stores what may be
// stored, as rule (nil: none) says. It does not touch the client's
// request, so background revalidation uses it too; fctx carries the
// client's interim responses (interim), if any.
func (p *Proxy) fetchWith(fctx context.Context, out *fasthttp.Request, key []byte, marker *cache.Entry, req *httpcache.Request, rule *rules.Rule, stale *cache.Entry, fwd fwdReason) *result {
	res := &result{fwd: fwd, outcome: Miss}
	resp := fasthttp.AcquireResponse()
	reqTime := p.now()
	err := p.origin.Fetch(fctx, out, resp)
	respTime := p.now()
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return p.originFailed(res, err, 0, stale, req, respTime)
	}
	status := resp.StatusCode()
	res.fwdStatus = status
	pol := rule.Policy(*p.policy.Load())
	if status == fasthttp.StatusNotModified && stale != nil {
		return p.refresh(res, stale, resp, req, pol, reqTime, respTime)
	}
	if httpcache.ErrorStatus(status) && stale != nil && p.staleOnError(stale, req, respTime) {
		closeResponse(resp)
		return p.originFailed(res, nil, status, stale, req, respTime)
	}

	var r httpcache.Response
	httpcache.ParseResponse(&r, &resp.Header, respTime/1e9, pol.Targets)
	reason := httpcache.Storable(true, req, &r, pol)
	body, tooLarge, err := p.readBody(resp)
	if err != nil {
		closeResponse(resp)
		// Only complete responses are stored, or served as complete.
		return p.originFailed(res, err, 0, stale, req, respTime)
	}
	if tooLarge {
		if stale != nil {
			p.store.Delete(stale.Key())
		}
		p.setPass(key, respTime)
		res.outcome, res.stream, res.prefix, res.detail = Pass, resp, body, detailTooLarge
		return res
	}
	storeKey := key
	var newMarker *cache.Entry
	// A rule-keyed response is stored behind a marker even without Vary;
	// so is every response for a URL whose marker a rule made (one that
	// lists no Vary field), so a request no rule keys does not replace
	// the marker, and with it the variants, by a plain entry.
	if reason == httpcache.Stored && (len(r.Vary) > 0 || rule.Key().Keyed() || (marker != nil && len(marker.Body()) == 0)) {
		// The rule's fields are read from the fill request, as the Vary
		// fields are: what the origin saw (forwarding fields as this node
		// set them), so a client cannot file a response under a value the
		// origin did not answer for.
		storeKey, newMarker = p.variant(key, marker, r.Vary, &out.Header, rule.Key(), respTime)
		res.marker = newMarker
	}
	e := p.newEntry(storeKey, &resp.Header, body, &r, pol, reqTime, respTime)
	if r.SetCookie {
		for _, c := range resp.Header.PeekAll("Set-Cookie") {
			res.cookies = append(res.cookies, bytes.Clone(c))
		}
	}
	closeResponse(resp)
	res.entry = e
	if reason != httpcache.Stored {
		res.outcome, res.detail = Pass, notStored(reason)
		if stale != nil {
			p.store.Delete(stale.Key())
		}
		if passReason(reason, req) {
			p.setPass(key, respTime)
		}
		return res
	}
	res.shareable = true
	if p.local.Stale(e, reqTime) {
		// A purge or invalidation came while this was on its way: serve
		// it to those who asked, but do not keep it.
		return res
	}
	res.stored = p.keep(e)
	if newMarker != nil && res.stored {
		newMarker.Expires = max(newMarker.Expires, e.Expires)
		p.keep(newMarker)
	}
	return res
}

// keep stores a response (or a Vary marker) this node fetched and, in a
// cluster, has the other members holding its key copy it.
func (p *Proxy) keep(e *cache.Entry) bool {
	if !p.store.Set(e) {
		return false
	}
	if p.opt.Peers != nil {
		p.opt.Peers.Stored(e)
	}
	return true
}

// variant returns the store key for a response with Vary, and the marker
// to store for the URL when there is none yet or the Vary list changed.
func (p *Proxy) variant(key []byte, marker *cache.Entry, vary []byte, h *fasthttp.RequestHeader, f *cache.KeyFields, now int64) ([]byte, *cache.Entry) {
	names := httpcache.AppendVaryNames(nil, vary)
	if marker == nil || !bytes.Equal(marker.Body(), names) {
		if m, ok := p.store.Get(key); ok && m.Has(cache.VaryMarker) && bytes.Equal(m.Body(), names) {
			marker = m // another request stored it meanwhile
		} else {
			marker = cache.NewEntry(key, nil, names, cache.Stale{})
			marker.ResponseTime, marker.Flags = p.nextGen(now), cache.VaryMarker
		}
	}
	// Always re-set the marker: its expiry must cover its newest variant.
	m := *marker
	return p.keys.AppendVariant(nil, key, &m, h, f.AppendKey(nil, h)), &m
}

// nextGen returns a marker generation: the time, made unique so that a
// marker replaced within one clock tick still orphans the old variants.
func (p *Proxy) nextGen(now int64) int64 {
	for {
		old := p.gen.Load()
		g := max(now, old+1)
		if p.gen.CompareAndSwap(old, g) {
			return g
		}
	}
}

// passReason reports whether a refusal to store says something about the
// URL rather than about this request or this moment, so that later
// requests should skip coalescing (Varnish's hit-for-miss). Error statuses
// never do: a herd on a failing origin must stay collapsed.
func passReason(r httpcache.Reason, req *httpcache.Request) bool {
	switch r {
	case httpcache.Private, httpcache.HasSetCookie, httpcache.VaryStar, httpcache.NoFreshness:
		return !req.Authorization
	case httpcache.NoStore:
		return !req.CC.NoStore && !req.Authorization
	}
	return false
}

func (p *Proxy) setPass(key []byte, now int64) {
	if p.opt.PassTTL < 0 {
		return
	}
	e := cache.NewEntry(key, nil, nil, cache.Stale{})
	e.Flags, e.ResponseTime, e.Expires = cache.Pass, now, now+int64(p.opt.PassTTL)
	p.store.Set(e)
}

// refresh merges a 304 into the stored response (RFC 9111 §4.3.4).
func (p *Proxy) refresh(res *result, stale *cache.Entry, nm *fasthttp.Response, req *httpcache.Request, pol httpcache.Policy, reqTime, respTime int64) *result {
	merged := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(merged)
	p.mergeHeaders(&merged.Header, stale, &nm.Header, respTime)
	closeResponse(nm)
	var r httpcache.Response
	httpcache.ParseResponse(&r, &merged.Header, respTime/1e9, pol.Targets)
	e := p.newEntry(stale.Key(), &merged.Header, stale.Body(), &r, pol, reqTime, respTime)
	res.outcome, res.entry, res.shareable = Revalidated, e, true
	if httpcache.Storable(true, req, &r, pol) == httpcache.Stored {
		res.stored = p.keep(e)
	} else {
		p.store.Delete(stale.Key())
	}
	return res
}

// originFailed answers a failed fetch: the stale entry where RFC 5861
// allows it, else an error status. status is the origin's 5xx, or 0 for a
// transport failure err.
func (p *Proxy) originFailed(res *result, err error, status int, stale *cache.Entry, req *httpcache.Request, now int64) *result {
	if stale != nil && p.staleOnError(stale, req, now) {
		res.outcome, res.entry, res.shareable, res.detail = StaleError, stale, true, detailStaleIfError
		res.fwdStatus = status
		if res.fwdStatus == 0 {
			res.fwdStatus = errorStatus(err)
		}
		return res
	}
	if err == nil {
		// A 5xx we may not cover with stale content: the caller relays it.
		err = errOriginStatus
	}
	res.outcome, res.err, res.errStatus = Error, err, errorStatus(err)
	return res
}

var (
	errOriginStatus = errors.New("origin answered with an error status")
	errIncomplete   = errors.New("origin response body incomplete")
	// errFillTimeout: the fetch a request waited for did not end within
	// CoalesceTimeout + OriginTimeout. A timeout, so answered 504.
	errFillTimeout error = fillTimeout{}
)

type fillTimeout struct{}

func (fillTimeout) Error() string { return "the fetch this request waited for is still running" }
func (fillTimeout) Timeout() bool { return true }

func errorStatus(err error) int {
	var te interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &te) && te.Timeout()) {
		return fasthttp.StatusGatewayTimeout
	}
	return fasthttp.StatusBadGateway
}

func (p *Proxy) staleOnError(e *cache.Entry, req *httpcache.Request, now int64) bool {
	s := storedResponse(e, now)
	return httpcache.StaleOnError(&s, &req.CC)
}

// serve writes a fetch result to the client.
func (p *Proxy) serve(ctx *fasthttp.RequestCtx, st *reqState, res *result, collapsed bool) {
	p.count(st, res.outcome)
	cs := cacheStatus{hit: res.hit, fwd: res.fwd, fwdStatus: res.fwdStatus, stored: res.stored && !res.hit, collapsed: collapsed, detail: res.detail}
	switch {
	case res.stream != nil:
		p.relay(ctx, st, res.stream, res.prefix, cs)
	case res.entry != nil:
		now := p.now()
		if res.stored || res.hit || res.outcome == StaleError {
			s := storedResponse(res.entry, now)
			cs.ttl, cs.hasTTL = s.TTL(), true
		}
		p.writeEntry(ctx, st, res.entry, now, cs)
		if !collapsed {
			for _, c := range res.cookies {
				ctx.Response.Header.AddBytesV("Set-Cookie", c)
			}
		}
	default:
		p.log.Warn("origin fetch failed", "uri", string(ctx.RequestURI()), "err", res.err)
		p.writeError(ctx, res.errStatus, "origin unavailable: "+errorText(res.errStatus), res.fwd)
	}
}

func errorText(status int) string {
	if status == fasthttp.StatusGatewayTimeout {
		return "timeout"
	}
	return "bad gateway"
}

// revalidateAsync refreshes a stale entry in the background, once per key
// however many requests see it stale (RFC 5861 §3).
func (p *Proxy) revalidateAsync(ctx *fasthttp.RequestCtx, st *reqState, stale *cache.Entry) {
	fkey := st.key
	if st.marker != nil {
		fkey = st.vkey
	}
	if p.flights.busy(fkey) {
		return
	}
	f, leader := p.flights.join(fkey)
	if !leader {
		return
	}
	p.m.revalidations.Inc()
	// Copy everything the request owns: fasthttp recycles ctx on return.
	out := fasthttp.AcquireRequest()
	p.buildFill(out, ctx, st, stale)
	fkey = bytes.Clone(fkey)
	key := bytes.Clone(st.key)
	req := st.req
	req.CC.NoCacheFields, req.CC.PrivateFields = nil, nil
	marker, rule := st.marker, st.rule
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		var res *result
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("panic in background revalidation", "key", string(key), "panic", r)
			}
			p.flights.finish(fkey, f, res)
			fasthttp.ReleaseRequest(out)
		}()
		res = p.fetchWith(context.Background(), out, key, marker, &req, rule, stale, fwdStale)
		if res.stream != nil {
			closeResponse(res.stream)
			res.stream = nil
		}
	}()
}

// pass relays a request the cache does not answer (unsafe methods, ranges
// of objects not held, OPTIONS, requests a rule bypasses) and, for unsafe
// methods (fwd is fwdMethod), invalidates the stored responses it may have
// changed (RFC 9111 §4.4). fwd and d go into Cache-Status.
func (p *Proxy) pass(ctx *fasthttp.RequestCtx, st *reqState, fwd fwdReason, d detail) {
	unsafe := fwd == fwdMethod
	if unsafe && p.opt.Peers != nil && !st.forwarded {
		// The owner invalidates its copy and passes the request on.
		p.primaryKey(st, ctx.URI())
		if peer, ok := p.opt.Peers.Owner(st.key); ok && p.forward(ctx, st, peer) {
			if s := ctx.Response.StatusCode(); s >= 200 && s < 400 {
				p.invalidate(ctx, st, &ctx.Response.Header)
			}
			return
		}
	}
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	out.Header.SetMethodBytes(ctx.Request.Header.Method())
	out.SetRequestURIBytes(ctx.Request.Header.RequestURI())
	out.Header.SetHostBytes(p.keys.Host(st.host))
	copyRequestHeaders(&out.Header, &ctx.Request.Header, false, st.forwarded)
	if n, ok := maxForwards(&ctx.Request.Header); ok && ctx.Request.Header.IsOptions() {
		// RFC 9110 §7.6.2: an intermediary decrements it (0 never
		// gets here).
		out.Header.Set("Max-Forwards", strconv.Itoa(n-1))
	}
	p.addForwarding(out, ctx, st)
	setBody(out, &ctx.Request)
	resp := fasthttp.AcquireResponse()
	if err := p.origin.Fetch(p.interim(ctx, st), out, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		p.count(st, Error)
		if reqbody.FromClient(err) {
			// The client's body broke off or ran past the limit: its fault,
			// and the origin never got a complete request.
			status := reqbody.Status(err)
			p.writeError(ctx, status, "request body: "+fasthttp.StatusMessage(status), fwd)
			ctx.SetConnectionClose()
			return
		}
		p.writeError(ctx, errorStatus(err), "origin unavailable: "+errorText(errorStatus(err)), fwd)
		return
	}
	status := resp.StatusCode()
	if unsafe && status >= 200 && status < 400 {
		p.invalidate(ctx, st, &resp.Header)
	}
	p.count(st, Pass)
	p.relay(ctx, st, resp, nil, cacheStatus{fwd: fwd, fwdStatus: status, detail: d})
}

// setBody gives out the body of the client's request in. A streamed body
// (see internal/reqbody: larger than a few KiB, or chunked) is relayed as it
// arrives, never held whole: with its Content-Length when the client gave
// one, chunked otherwise. The request must be sent before the handler
// returns, and at most once: a stream cannot be replayed.
func setBody(out, in *fasthttp.Request) {
	if in.IsBodyStream() {
		out.SetBodyStream(in.BodyStream(), in.Header.ContentLength())
		return
	}
	if body := in.Body(); len(body) > 0 {
		out.SetBodyRaw(body)
	}
}

// invalidate drops the stored responses for the request's URI and for the
// same-host Location and Content-Location of the response. The member a
// client asked tells the others, whose hot copies would otherwise outlive
// the change.
func (p *Proxy) invalidate(ctx *fasthttp.RequestCtx, st *reqState, rh *fasthttp.ResponseHeader) {
	now := p.now()
	drop := func(key []byte) {
		p.local.Drop(key, now)
		if !st.forwarded {
			p.announce(key)
		}
	}
	uri := ctx.URI()
	p.primaryKey(st, uri)
	drop(st.key)
	for _, name := range [...]string{"Location", "Content-Location"} {
		loc := rh.Peek(name)
		if len(loc) == 0 {
			continue
		}
		u := fasthttp.AcquireURI()
		uri.CopyTo(u)
		u.UpdateBytes(loc)
		if bytes.EqualFold(u.Host(), st.host) {
			p.primaryKey(st, u)
			drop(st.key)
		}
		fasthttp.ReleaseURI(u)
	}
}

// maxForwards returns the request's Max-Forwards (RFC 9110 §7.6.2), if it
// has a valid one.
func maxForwards(h *fasthttp.RequestHeader) (int, bool) {
	v := h.Peek("Max-Forwards")
	if len(v) == 0 || len(v) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
