package proxy

import (
	"bytes"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/ringcache/ringcache/internal/h1"
	"github.com/valyala/fasthttp"
)

// hopByHop reports whether a header field is hop-by-hop and must not be
// forwarded (RFC 9110 §7.6.1): the fixed list, any Proxy-* field, and any
// field named in the message's Connection header.
func hopByHop(key, connection []byte) bool {
	switch {
	case httpcache.FieldIs(key, "connection"),
		httpcache.FieldIs(key, "keep-alive"),
		httpcache.FieldIs(key, "te"),
		httpcache.FieldIs(key, "trailer"),
		httpcache.FieldIs(key, "transfer-encoding"),
		httpcache.FieldIs(key, "upgrade"):
		return true
	case len(key) > 6 && httpcache.FieldIs(key[:6], "proxy-"):
		return true
	}
	return len(connection) > 0 && httpcache.ListContains(connection, key)
}

var (
	strUpgradeToken = []byte("upgrade")
	strH2C          = []byte("h2c")
)

// upgradeRequested reports a request to switch protocols (RFC 9110 §7.8):
// HTTP/1.1 (a server ignores Upgrade in HTTP/1.0), an Upgrade field, and
// the "upgrade" connection option that makes the field this hop's. An
// upgrade to cleartext HTTP/2 (h2c, deprecated by RFC 9113 §3.1, which
// curl --http2 still offers) is ignored, as a server may: tunnelled, every
// later request on the connection would bypass the cache. It does not
// allocate: every request asks it.
func upgradeRequested(h *fasthttp.RequestHeader) bool {
	if !h.IsHTTP11() {
		return false
	}
	up := h.Peek("Upgrade")
	return len(up) > 0 && httpcache.ListContains(h.Peek("Connection"), strUpgradeToken) &&
		!httpcache.ListContains(up, strH2C)
}

// setUpgrade puts back on out, a copy of in without its hop-by-hop fields,
// the two that ask the origin to switch protocols: in's Upgrade, and the
// upgrade connection option (alone: in's other options were for this hop).
func setUpgrade(out, in *fasthttp.RequestHeader) {
	out.Set("Connection", "Upgrade")
	out.SetBytesV("Upgrade", in.Peek("Upgrade"))
}

// appendSwitchingHead appends the 101 Switching Protocols this node sends
// its client for the origin's 101 h: h's end-to-end fields, the protocol
// switched to (Upgrade, and the connection option naming it), then Via and
// Cache-Status with this node's member. The targeted fields in strip are
// left out, as from any answer to a client.
func (p *Proxy) appendSwitchingHead(dst []byte, h *fasthttp.ResponseHeader, cs cacheStatus, strip httpcache.Targets) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\n"...)
	connection := h.Peek("Connection")
	var via, status []byte
	for k, v := range h.All() {
		switch {
		case hopByHop(k, connection), httpcache.FieldIs(k, "content-length"), len(strip) > 0 && namedIn(strip, k):
		case httpcache.FieldIs(k, "via"):
			via = v
		case httpcache.FieldIs(k, "cache-status"):
			status = v
		default:
			dst = appendField(dst, k, v)
		}
	}
	dst = appendField(dst, []byte("Connection"), []byte("Upgrade"))
	dst = appendField(dst, []byte("Upgrade"), h.Peek("Upgrade"))
	dst = append(dst, "Via: "...)
	if len(via) > 0 {
		dst = append(append(dst, via...), ", "...)
	}
	dst = append(append(dst, p.via...), "\r\n"...)
	dst = append(dst, "Cache-Status: "...)
	if len(status) > 0 {
		dst = append(append(dst, status...), ", "...)
	}
	dst = p.appendCacheStatus(dst, cs)
	return append(dst, "\r\n\r\n"...)
}

func appendField(dst, k, v []byte) []byte {
	dst = append(append(dst, k...), ": "...)
	return append(append(dst, v...), "\r\n"...)
}

// conditionalOrRange reports request fields that a cache fill must drop:
// the fill wants the full representation to store; the client's own
// preconditions are then answered from the stored copy.
func conditionalOrRange(key []byte) bool {
	return httpcache.FieldIs(key, "if-none-match") ||
		httpcache.FieldIs(key, "if-modified-since") ||
		httpcache.FieldIs(key, "if-match") ||
		httpcache.FieldIs(key, "if-unmodified-since") ||
		httpcache.FieldIs(key, "if-range") ||
		httpcache.FieldIs(key, "range")
}

// forwarding reports the forwarding fields: Forwarded and X-Forwarded-*.
// A client's are replaced, a trusted proxy's extended (see addForwarding).
func forwarding(key []byte) bool {
	return httpcache.FieldIs(key, "forwarded") ||
		(len(key) > 12 && httpcache.FieldIs(key[:12], "x-forwarded-"))
}

// peerField reports the peer protocol's own fields (X-Ringcache-*): set by
// a node for the next hop only.
func peerField(key []byte) bool {
	return len(key) > 12 && httpcache.FieldIs(key[:12], "x-ringcache-")
}

// notModifiedField lists the fields a 304 carries (RFC 9110 §15.4.5).
func notModifiedField(key []byte) bool {
	return httpcache.FieldIs(key, "cache-control") ||
		httpcache.FieldIs(key, "content-location") ||
		httpcache.FieldIs(key, "date") ||
		httpcache.FieldIs(key, "etag") ||
		httpcache.FieldIs(key, "expires") ||
		httpcache.FieldIs(key, "vary")
}

// storedField reports whether a response field is kept in the cache.
func (p *Proxy) storedField(key, connection []byte, r *httpcache.Response) bool {
	switch {
	case hopByHop(key, connection),
		httpcache.FieldIs(key, "content-length"), // derived from the stored body
		httpcache.FieldIs(key, "age"),            // recomputed on every hit (RFC 9111 §5.1)
		httpcache.FieldIs(key, "cache-status"):   // describes the fetch, not later hits (RFC 9211 §2)
		return false
	case httpcache.FieldIs(key, "set-cookie"):
		return false // only stored responses reach here, so this is the strip policy
	}
	// Qualified private/no-cache name fields a shared cache must not keep
	// (RFC 9111 §5.2.2.4, §5.2.2.7).
	return !httpcache.ListContains(r.CC.PrivateFields, key) &&
		!httpcache.ListContains(r.CC.NoCacheFields, key)
}

// newEntry copies the stored part of an origin response into one Entry,
// kept as pol says (the node's policy with the request's rule applied).
func (p *Proxy) newEntry(key []byte, h *fasthttp.ResponseHeader, body []byte, r *httpcache.Response, pol httpcache.Policy, reqTime, respTime int64) *cache.Entry {
	connection := h.Peek("Connection")
	// The Date goes first, where a hit finds it before the other fields
	// (writeEntry): one Date, a valid one, the first as ParseResponse took
	// it. A cache that stores or forwards a response without a Date adds
	// the time it was received (RFC 9110 §6.6.1); one that is not an
	// HTTP-date counts as none.
	fields := make([]cache.Field, 1, 32) // on the stack unless a response has more
	fields[0] = cache.Field{Key: strDate}
	for k, v := range h.All() {
		if httpcache.FieldIs(k, "date") {
			if _, ok := httpcache.ParseHTTPDate(v, respTime/1e9); ok && fields[0].Value == nil {
				fields[0].Value = v
			}
			continue
		}
		if p.storedField(k, connection, r) {
			fields = append(fields, cache.Field{Key: k, Value: v})
		}
	}
	if fields[0].Value == nil {
		fields[0].Value = fasthttp.AppendHTTPDate(nil, time.Unix(0, respTime))
	}
	// A rule's stale_if_error counts as if the response had said it.
	stale := cache.Stale{
		WhileRevalidate: max(0, r.CC.StaleWhileRevalidate),
		IfError:         max(0, r.CC.StaleIfError, clamp32(pol.StaleIfError)),
	}
	e := cache.NewEntry(key, fields, body, stale)

	age := httpcache.InitialAge(r, reqTime, respTime)
	lifetime, heuristic := httpcache.StoredLifetime(r, age, respTime/1e9, pol)
	e.Status = uint16(r.Status)
	e.ResponseTime = respTime
	e.InitialAge, e.Lifetime = clamp32(age), clamp32(lifetime)
	if r.CC.NoCache {
		e.Flags |= cache.NoCache
	}
	// s-maxage implies proxy-revalidate (§5.2.2.10) unless the same response
	// grants RFC 5861 stale windows explicitly: that common CDN pairing is
	// honoured, explicit must-revalidate / proxy-revalidate never are.
	if r.CC.MustRevalidate || r.CC.ProxyRevalidate ||
		(r.CC.SMaxAge != httpcache.Absent && stale == cache.Stale{}) {
		e.Flags |= cache.MustRevalidate
	}
	if r.CC.Public || r.CC.SMaxAge != httpcache.Absent || r.CC.MustRevalidate {
		e.Flags |= cache.Shared
	}
	if heuristic {
		e.Flags |= cache.Heuristic
	}
	keep := max(int64(max(stale.WhileRevalidate, stale.IfError))*1e9, int64(p.opt.StaleKeep))
	e.Expires = respTime - int64(e.InitialAge)*1e9 + int64(e.Lifetime)*1e9 + keep
	return e
}

func clamp32(n int64) int32 {
	switch {
	case n > 1<<31-1:
		return 1<<31 - 1
	case n < 0:
		return 0
	}
	return int32(n)
}

// copyRequestHeaders copies the end-to-end fields of in to out, leaving out
// hop-by-hop fields, the peer protocol's fields, forwarding fields unless
// the request came from a peer (addForwarding decides what a client's
// become), and, for a cache fill, preconditions.
func copyRequestHeaders(out, in *fasthttp.RequestHeader, fill, fromPeer bool) {
	connection := in.Peek("Connection")
	for k, v := range in.All() {
		if hopByHop(k, connection) || (forwarding(k) && !fromPeer) || peerField(k) ||
			httpcache.FieldIs(k, "host") || httpcache.FieldIs(k, "content-length") ||
			(fill && conditionalOrRange(k)) {
			continue
		}
		out.AddBytesKV(k, v)
	}
}

// copyResponseHeaders copies the end-to-end fields of an origin response
// that is relayed without being stored, but for the targeted fields in
// strip.
func copyResponseHeaders(out, in *fasthttp.ResponseHeader, strip httpcache.Targets) {
	connection := in.Peek("Connection")
	out.SetStatusCode(in.StatusCode())
	for k, v := range in.All() {
		if hopByHop(k, connection) || httpcache.FieldIs(k, "content-length") || httpcache.FieldIs(k, "date") ||
			(len(strip) > 0 && namedIn(strip, k)) {
			continue // Date: seeded by the caller (fasthttp would drop it)
		}
		out.AddBytesKV(k, v)
	}
}

// mergeHeaders builds the header of a stored response freshened by a 304
// (RFC 9111 §3.2, §4.3.4): fields present in the 304 replace the stored
// ones, except Content-Length. The Date is the 304's, or the time it was
// received, respTime, when it has none (RFC 9110 §6.6.1): the stored one
// would make the fresh answer look as old as the first.
func (p *Proxy) mergeHeaders(dst *fasthttp.ResponseHeader, old *cache.Entry, nm *fasthttp.ResponseHeader, respTime int64) {
	p.seedDate(dst, firstDate(nm), respTime)
	dst.DisableNormalizing()
	dst.SetStatusCode(int(old.Status))
	connection := nm.Peek("Connection")
	replaced := func(k []byte) bool {
		for nk := range nm.All() {
			if bytes.EqualFold(nk, k) && !hopByHop(nk, connection) && !httpcache.FieldIs(nk, "content-length") {
				return true
			}
		}
		return false
	}
	for f := old.Fields(); f.Next(); {
		if !replaced(f.Key()) && !httpcache.FieldIs(f.Key(), "date") {
			dst.AddBytesKV(f.Key(), f.Value())
		}
	}
	for k, v := range nm.All() {
		if !hopByHop(k, connection) && !httpcache.FieldIs(k, "content-length") && !httpcache.FieldIs(k, "date") {
			dst.AddBytesKV(k, v)
		}
	}
}

// seedDate resets h to a header holding the Date of date, or of now when
// date is not a valid HTTP-date (RFC 9110 §6.6.1: a recipient adds the
// Date a response lacks).
func (p *Proxy) seedDate(h *fasthttp.ResponseHeader, date []byte, now int64) {
	if _, ok := httpcache.ParseHTTPDate(date, now/1e9); !ok {
		date = nil
	}
	s := p.seeds.Get().(*h1.DateSeed)
	s.Seed(h, date, now, false)
	p.seeds.Put(s)
}

// firstDate is the first Date field of h, or nil.
func firstDate(h *fasthttp.ResponseHeader) []byte {
	for k, v := range h.All() {
		if httpcache.FieldIs(k, "date") {
			return v
		}
	}
	return nil
}
