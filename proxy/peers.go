package proxy

import (
	"bytes"
	"context"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// Peers is the cluster as the request path sees it: who owns a key, who
// owned it before the last membership change, and how to tell every other
// member of a purge. The cluster package implements it; a nil Peers is a
// single node.
type Peers interface {
	// Owner returns the peer that owns key, or ok == false when this node
	// owns it (or knows no other member, or the owner is paused by passive
	// health) and must serve it itself, like groupcache's PickPeer. key is
	// a primary cache key; it is borrowed for the call.
	Owner(key []byte) (p Peer, ok bool)
	// Previous returns the peer that owned key before the latest membership
	// change, while that change is recent, so a new owner can take the
	// stored copy instead of refetching it from the origin. ok is false
	// when the previous owner was this node, has left, or nothing changed
	// recently.
	Previous(key []byte) (p Peer, ok bool)
	// Broadcast applies a purge on every other member and returns how many
	// entries they dropped.
	Broadcast(ctx context.Context, p cache.Purge) (int, error)
	// Lookup asks the member that should answer key (as Owner) for its
	// entry, as Peer.Get does, and returns the member that answered: when
	// that member is slow, the key's next holder may be asked too and
	// answer first. f.Release ends the use of the entry. An error means
	// no member answered in time, or the owner is slow and this node holds
	// the key next: the caller serves the request itself.
	Lookup(ctx context.Context, key []byte, f *cache.Fetched) (Peer, bool, error)
	// Stored tells the cluster this node stored e, so that the other
	// members holding its key (replicas) get a copy. It must not block.
	Stored(e *cache.Entry)
}

// Peer is another member.
type Peer interface {
	Name() string
	// Forward sends a client request to the peer, which answers it as the
	// key's owner and never forwards it again; the peer protocol marks and
	// authenticates it. An error means the peer could not answer (down,
	// slow, refused): the caller falls back to the origin. As with the
	// origin, resp's body may be a stream the caller must read or close.
	Forward(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error
	// Get looks up the entry stored under the exact store key on the peer.
	// When the peer holds one no larger than f.Max encoded bytes, it is
	// decoded into f.Entry, on this node's clock, and Get reports true;
	// nothing usable reports false and nil. f.Release ends the use of the
	// entry. An error means the peer could not answer.
	Get(ctx context.Context, key []byte, f *cache.Fetched) (bool, error)
}

// What peerHit did.
const (
	peerServed = iota // answered from the owner's entry
	peerAsk           // the owner has nothing this node may serve: forward the request
	peerFailed        // the owner did not answer: serve the request here
)

// lookupMax is the largest entry a forwarded hit takes from its owner (an
// encoding, so headers included); larger ones are forwarded and streamed,
// so a member never holds more than this per request in flight.
const lookupMax = 1 << 20

// peerHit asks the key's owner (or, when it is slow or down, the key's
// next holder) for its entry and, when it is one this node may serve for
// this request as it stands — fresh, shared as the
// request needs — answers from it here, through the local hit path, as the
// owner would have. Anything the owner must decide (a miss, a stale or
// revalidating entry, a pass marker, a larger object) is forwarded instead,
// so misses still coalesce at the owner. A Vary marker costs a second
// lookup, for the variant.
func (p *Proxy) peerHit(ctx *fasthttp.RequestCtx, st *reqState, now int64) int {
	if !ctx.IsGet() && !ctx.IsHead() {
		return peerAsk
	}
	f := &st.fetched
	f.Max = lookupMax
	sent := now
	from, found, err := p.opt.Peers.Lookup(context.Background(), st.key, f)
	keyed := st.keyed()
	if err == nil && found && f.Entry.Has(cache.VaryMarker) {
		st.vkey = p.keys.AppendVariant(st.vkey[:0], st.key, &f.Entry, &ctx.Request.Header, st.rkey)
		from, found, err = p.opt.Peers.Lookup(context.Background(), st.vkey, f)
		keyed = false // the variant looked up is this request's
	}
	if err != nil {
		p.m.peerFallbacks.Inc()
		p.log.Debug("owner unavailable", "err", err)
		return peerFailed
	}
	if !found {
		return peerAsk
	}
	e := &f.Entry
	if e.Has(cache.VaryMarker) || (st.req.Authorization && !e.Has(cache.Shared)) || keyed {
		// A marker's variant keyed as a marker (a race with a change of
		// Vary); credentials; the URL's entry for requests no rule keys.
		return peerAsk
	}
	s := storedResponse(e, now)
	if httpcache.Reuse(&s, &st.req.CC) != httpcache.Serve {
		return peerAsk // stale or revalidating: the owner decides, and refreshes once
	}
	p.keepHotCopy(st, e, &s, sent)
	p.count(st, Forwarded)
	p.writeEntryFrom(ctx, st, e, now, from.Name(), s.TTL())
	return peerServed
}

// keepHotCopy keeps a sample of the entries forwarded hits fetched, as
// keepHot does for forwarded answers: for no longer than HotTTL nor its
// freshness, and not when an invalidation came since the lookup left.
func (p *Proxy) keepHotCopy(st *reqState, e *cache.Entry, s *httpcache.StoredResponse, sent int64) {
	if p.hot == nil || e.Status != fasthttp.StatusOK || len(e.Get("vary")) > 0 || st.keyed() {
		return // hot copies are kept under the URL's key alone
	}
	if !p.sampleHot(st.key) || e.Has(cache.NoCache) || p.local.Stale(e, sent) {
		return
	}
	c := e.Clone()
	c.Expires = p.now() + min(s.TTL()*1e9, int64(p.opt.HotTTL))
	p.setHot(st.key, c)
}

// sampleHot reports whether a forwarded hit on key should keep a hot copy:
// a key kept before, whose copy ran out, always; others one in hotSample,
// so that a hot key is found quickly while cold keys rarely take room.
func (p *Proxy) sampleHot(key []byte) bool {
	return p.hotSeen.has(key) || p.hotTick.Add(1)%hotSample == 0
}

// setHot keeps e as the hot copy of key and remembers key as hot.
func (p *Proxy) setHot(key []byte, e *cache.Entry) {
	if p.hot.Set(e) {
		p.hotSeen.add(key)
	}
}

// forward hands a request for a key owned by another member to that member
// and relays its answer, appending this node's Cache-Status member after
// the owner's. It reports false when the owner could not answer: the caller
// then serves the request itself, from its own store and the origin.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, st *reqState, peer Peer) bool {
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
	out.Header.SetHostBytes(p.keys.Host(st.host))
	copyRequestHeaders(&out.Header, &ctx.Request.Header, false, false)
	p.addForwarding(out, ctx, st)
	setBody(out, &ctx.Request) // held whole: not a stream
	resp := fasthttp.AcquireResponse()
	start := p.now()
	err := peer.Forward(p.interim(ctx, st), out, resp)
	p.m.observePeer(p.now()-start, err)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		p.m.peerFallbacks.Inc()
		p.log.Debug("owner unavailable, serving locally", "peer", peer.Name(), "err", err)
		return false
	}
	cs := cacheStatus{fwd: fwdMiss, fwdStatus: resp.StatusCode(), detail: detailPeer}
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
			p.count(st, Forwarded)
			// The copy dropped the owner's Cache-Status member; this
			// answer still went through the owner, so it keeps it.
			cs.upstream = upstream
			p.writeEntry(ctx, st, e, p.now(), cs)
			return true
		}
	}
	p.count(st, Forwarded)
	p.relay(ctx, st, resp, nil, cs)
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
	if resp.StatusCode() != fasthttp.StatusOK || len(resp.Header.Peek("Vary")) > 0 || st.keyed() {
		return nil, nil, nil // hot copies are kept under the URL's key alone
	}
	if !p.sampleHot(st.key) {
		return nil, nil, nil
	}
	if cl := resp.Header.ContentLength(); cl < 0 || int64(cl) > p.opt.MaxObjectSize {
		return nil, nil, nil
	}
	var r httpcache.Response
	pol := st.rule.Policy(*p.policy.Load())
	httpcache.ParseResponse(&r, &resp.Header, p.now()/1e9, pol.Targets)
	if httpcache.Storable(true, &st.req, &r, pol) != httpcache.Stored || r.SetCookie || r.CC.NoCache {
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
	e = p.newEntry(st.key, &resp.Header, body, &r, pol, now, now)
	upstream = bytes.Clone(resp.Header.PeekBytes(strCacheStatus))
	closeResponse(resp)
	s := storedResponse(e, now)
	if complete && s.Fresh() && !p.local.Stale(e, sent) {
		e.Expires = now + min(s.TTL()*1e9, int64(p.opt.HotTTL))
		p.setHot(st.key, e)
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
	e := p.fetchFrom(prev, st.key, st)
	if e == nil || !p.local.Accept(e) {
		return nil
	}
	if !e.Has(cache.VaryMarker) {
		if st.keyed() {
			return nil // kept, but for requests no rule keys
		}
		return e
	}
	st.marker = e
	st.vkey = p.keys.AppendVariant(st.vkey[:0], st.key, e, h, st.rkey)
	v := p.fetchFrom(prev, st.vkey, st)
	if v == nil || !p.local.Accept(v) {
		return nil
	}
	return v
}

// fetchFrom returns a copy of the entry peer stores under key, to keep, or
// nil. The entry may be as large as any this node stores.
func (p *Proxy) fetchFrom(peer Peer, key []byte, st *reqState) *cache.Entry {
	f := &st.fetched
	f.Max = 0 // the peer's limit: every storable entry
	if found, err := peer.Get(context.Background(), key, f); err != nil || !found {
		return nil
	}
	defer f.Release()
	return f.Entry.Clone()
}
