package proxy

import (
	"bytes"
	"context"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

var strForwarded = []byte(cluster.HeaderForwarded)

// forwardedBy reports whether the request claims to come from a peer, and
// whether the claim holds: it arrived through the peer listener (fromPeer)
// and carries a member's signature. A claim that fails is refused: only
// members may make a node serve a key it does not own or skip its own ring.
func (p *Proxy) forwardedBy(req *fasthttp.Request, fromPeer bool) (claimed, ok bool) {
	if len(req.Header.PeekBytes(strForwarded)) == 0 {
		return false, false
	}
	if !fromPeer || p.opt.Peers == nil {
		return true, false
	}
	_, ok = p.opt.Peers.Authenticate(req)
	return true, ok
}

// forward hands a request for a key owned by another member to that member
// and relays its answer, appending this node's Cache-Status member after
// the owner's. It reports false when the owner could not answer: the caller
// then serves the request itself, from its own store and the origin.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, st *reqState, peer cluster.Peer) bool {
	if ctx.Request.IsBodyStream() {
		// A streamed body (larger than a few KiB) is not forwarded: the peer
		// signature covers a digest of the body, so the owner would have to
		// hold it whole before trusting the request, and so would this node
		// to sign it. The caller sends it to the origin itself, streaming,
		// and announces the invalidation, which reaches the owner's store
		// too.
		return false
	}
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	out.Header.SetMethodBytes(ctx.Request.Header.Method())
	out.SetRequestURIBytes(ctx.Request.Header.RequestURI())
	// The owner keys the request by this Host alone: it must be the
	// authority this node keyed it by when it picked the owner.
	out.Header.SetHostBytes(p.keys.hostOf(st.host))
	copyRequestHeaders(&out.Header, &ctx.Request.Header, false, false)
	p.addForwarding(out, ctx, st)
	setBody(out, &ctx.Request) // held whole: not a stream
	resp := fasthttp.AcquireResponse()
	start := p.now()
	err := peer.Forward(context.Background(), out, resp)
	p.m.observePeer(p.now()-start, err)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		p.m.peerFallbacks.Inc()
		p.log.Debug("owner unavailable, serving locally", "peer", peer.Name(), "err", err)
		return false
	}
	cs := cacheStatus{fwd: "miss", fwdStatus: resp.StatusCode(), detail: "peer"}
	// Only a GET's answer carries the body a copy must hold: the answer to
	// a HEAD has none (RFC 9110 §9.3.2).
	if p.hot != nil && st.req.Range == nil && ctx.Request.Header.IsGet() {
		e, upstream, err := p.keepHot(st, resp, start)
		if err != nil {
			// The owner's body broke off: answer from here instead.
			p.m.peerFallbacks.Inc()
			return false
		}
		if e != nil {
			p.m.requests[Forwarded].Inc()
			// The copy dropped the owner's Cache-Status member; this
			// answer still went through the owner, so it keeps it.
			if len(upstream) > 0 {
				ctx.Response.Header.SetCanonical(strCacheStatus, upstream)
			}
			p.writeEntry(ctx, &st.req, e, p.now(), cs)
			return true
		}
	}
	p.m.requests[Forwarded].Inc()
	p.relay(ctx, resp, nil, cs)
	return true
}

// keepHot reads the owner's response and, for a sample of cacheable ones,
// keeps a local copy (groupcache's hot cache): a popular key is then served
// by every node instead of pinning its owner. The copy lives no longer than
// the response's own freshness. It returns nil when the response is not
// kept; resp is then untouched and still to be relayed. Otherwise resp is
// released, and upstream is a copy of the owner's Cache-Status. An error
// means the body could not be read: resp is released and nothing is kept.
// sent is when the request left for the owner: an invalidation announced
// since then means the answer may predate it, so it serves this request
// but is not kept. Nor is a body whose length is not the Content-Length:
// it is not the whole response, and a copy would serve it for HotTTL.
func (p *Proxy) keepHot(st *reqState, resp *fasthttp.Response, sent int64) (e *cache.Entry, upstream []byte, err error) {
	if resp.StatusCode() != fasthttp.StatusOK || len(resp.Header.Peek("Vary")) > 0 {
		return nil, nil, nil
	}
	// A hot key is forwarded often, so a one-in-N sample finds it quickly
	// while cold keys rarely take room.
	if p.hotTick.Add(1)%hotSample != 0 {
		return nil, nil, nil
	}
	if cl := resp.Header.ContentLength(); cl < 0 || int64(cl) > p.opt.MaxObjectSize {
		return nil, nil, nil
	}
	var r httpcache.Response
	httpcache.ParseResponse(&r, &resp.Header)
	if httpcache.Storable(true, &st.req, &r, *p.policy.Load()) != httpcache.Stored || r.SetCookie || r.CC.NoCache {
		return nil, nil, nil
	}
	// Content-Length is known and within MaxObjectSize: the whole body is read.
	body, _, err := p.readBody(resp)
	if err != nil {
		closeResponse(resp)
		return nil, nil, err
	}
	complete := len(body) == resp.Header.ContentLength()
	now := p.now()
	e = p.newEntry(st.key, &resp.Header, body, &r, now, now)
	upstream = bytes.Clone(resp.Header.PeekBytes(strCacheStatus))
	closeResponse(resp)
	s := storedResponse(e, now)
	if complete && s.Fresh() && !p.purged.stale(e, sent) {
		e.Expires = now + min(s.TTL()*1e9, int64(p.opt.HotTTL))
		p.hot.Set(e)
	}
	return e, upstream, nil
}

const hotSample = 8

// takeover looks for a key that moved to this node at its previous owner,
// so a membership change costs a peer round trip instead of an origin
// fetch. It stores what it finds and returns the entry that answers the
// request, or nil.
func (p *Proxy) takeover(st *reqState, h *fasthttp.RequestHeader) *cache.Entry {
	if p.opt.Peers == nil {
		return nil
	}
	prev, ok := p.opt.Peers.Previous(st.key)
	if !ok {
		return nil
	}
	ctx := context.Background()
	e, err := prev.Lookup(ctx, st.key)
	if err != nil || e == nil || !p.Accept(e) {
		return nil
	}
	if !e.Has(cache.VaryMarker) {
		return e
	}
	st.marker = e
	st.vkey = p.keys.appendVariantKey(st.vkey[:0], st.key, e, h)
	v, err := prev.Lookup(ctx, st.vkey)
	if err != nil || v == nil || !p.Accept(v) {
		return nil
	}
	return v
}

// Accept stores an entry handed over by another member (at its shutdown,
// or fetched from a key's previous owner) unless it lost meanwhile: this
// node holds a newer copy, or the URL was invalidated or purged after the
// entry was fetched. It implements cluster.Local.
func (p *Proxy) Accept(e *cache.Entry) bool {
	now := p.now()
	if e.Has(cache.Pass) || (e.Expires != 0 && e.Expires <= now) || len(e.Key()) == 0 {
		return false
	}
	if p.purged.stale(e, e.ResponseTime) {
		return false
	}
	if cur, ok := p.store.Get(e.Key()); ok && cur.ResponseTime >= e.ResponseTime && !cur.Has(cache.Pass) {
		return false
	}
	return p.store.Set(e)
}

// Get returns a stored entry for a peer's Lookup. It implements cluster.Local.
func (p *Proxy) Get(key []byte) (*cache.Entry, bool) {
	e, ok := p.store.Get(key)
	if !ok || e.Has(cache.Pass) {
		return nil, false
	}
	return e, true
}

var _ cluster.Local = (*Proxy)(nil)
