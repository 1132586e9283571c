package proxy

import (
	"bytes"
	"io"
	"strconv"
	"strings"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// fwdReason is the fwd parameter of this cache's Cache-Status member: why
// the request went forward, to the origin or to the key's owner
// (RFC 9211 §2.2). The zero value, fwdNone, leaves the parameter out: the
// answer came from the cache, or is an error made here.
type fwdReason uint8

const (
	fwdNone     fwdReason = iota
	fwdBypass             // the URL holds a pass marker (recently unstorable), a rule bypasses the cache, or the request is malformed
	fwdMethod             // the method is never answered from the cache
	fwdURIMiss            // nothing stored for the URL
	fwdVaryMiss           // the URL is stored, but not the request's variant
	fwdMiss               // sent to the key's owner, another member, without a lookup here
	fwdRequest            // the request rules out a stored answer (no-cache, credentials, OPTIONS, a range not held)
	fwdStale              // the stored answer is stale: revalidated
	numFwdReasons
)

// fwdText spells each fwdReason as it goes in the header; appending a
// string to the header buffer does not allocate.
var fwdText = [numFwdReasons]string{
	fwdBypass:   "bypass",
	fwdMethod:   "method",
	fwdURIMiss:  "uri-miss",
	fwdVaryMiss: "vary-miss",
	fwdMiss:     "miss",
	fwdRequest:  "request",
	fwdStale:    "stale",
}

// String returns the parameter's value, "" for fwdNone.
func (r fwdReason) String() string {
	if r < numFwdReasons {
		return fwdText[r]
	}
	return "unknown"
}

// detail is the detail parameter of this cache's Cache-Status member
// (RFC 9211 §2.8), whose values the RFC leaves to each cache. The zero
// value, detailNone, leaves the parameter out. From detailNotStored on, a
// detail carries the httpcache.Reason a response was not stored for (see
// notStored), spelled by Reason.String alone.
type detail uint8

const (
	detailNone                 detail = iota
	detailHot                         // a hit on this node's copy of a key another member owns
	detailReplica                     // a hit on the replica this node holds of a key another member owns
	detailMaxStale                    // a stale hit the request allowed with max-stale
	detailStaleWhileRevalidate        // a stale hit while the entry revalidates (RFC 5861 §3)
	detailStaleIfError                // a stale answer as the origin failed (RFC 5861 §4)
	detailPass                        // the URL holds a pass marker: fetched without coalescing
	detailTooLarge                    // over MaxObjectSize: streamed, never stored
	detailPeer                        // answered by the key's owner
	detailPreviousOwner               // the copy held by the key's previous owner
	detailOriginTimeout               // the origin did not answer in time (504)
	detailOriginError                 // the origin could not answer (502)
	detailRule                        // an operator's rule bypasses the cache for the request
	detailNotStored                   // + an httpcache.Reason; must stay last
)

// detailText spells each detail below detailNotStored as it goes in the
// header; appending a string to the header buffer does not allocate.
var detailText = [detailNotStored]string{
	detailHot:                  "hot",
	detailReplica:              "replica",
	detailMaxStale:             "max-stale",
	detailStaleWhileRevalidate: "stale-while-revalidate",
	detailStaleIfError:         "stale-if-error",
	detailPass:                 "pass",
	detailTooLarge:             "too-large",
	detailPeer:                 "peer",
	detailPreviousOwner:        "previous-owner",
	detailOriginTimeout:        "origin-timeout",
	detailOriginError:          "origin-error",
	detailRule:                 "rule",
}

// notStored is the detail of a response that was not stored for reason r
// (never httpcache.Stored). Reason has a handful of values, so the sum
// cannot wrap.
func notStored(r httpcache.Reason) detail { return detailNotStored + detail(r) }

// String returns the parameter's value, "" for detailNone.
func (d detail) String() string {
	if d >= detailNotStored {
		return httpcache.Reason(d - detailNotStored).String()
	}
	return detailText[d]
}

// cacheStatus is this cache's member of the Cache-Status field (RFC 9211).
type cacheStatus struct {
	hit       bool
	fwd       fwdReason
	fwdStatus int
	ttl       int64
	hasTTL    bool
	stored    bool
	collapsed bool
	detail    detail
}

func (p *Proxy) appendCacheStatus(dst []byte, cs cacheStatus) []byte {
	dst = append(dst, p.opt.Name...)
	if cs.hit {
		dst = append(dst, "; hit"...)
	} else if cs.fwd != fwdNone {
		dst = append(dst, "; fwd="...)
		dst = append(dst, cs.fwd.String()...)
		if cs.fwdStatus != 0 {
			dst = append(dst, "; fwd-status="...)
			dst = strconv.AppendInt(dst, int64(cs.fwdStatus), 10)
		}
	}
	if cs.hasTTL {
		dst = append(dst, "; ttl="...)
		dst = strconv.AppendInt(dst, cs.ttl, 10)
	}
	if cs.stored {
		dst = append(dst, "; stored"...)
	}
	if cs.collapsed {
		dst = append(dst, "; collapsed"...)
	}
	if cs.detail != detailNone {
		dst = append(dst, "; detail="...)
		dst = append(dst, cs.detail.String()...)
	}
	return dst
}

var (
	strCacheStatus  = []byte("Cache-Status")
	strVia          = []byte("Via")
	strAge          = []byte("Age")
	strDate         = []byte("Date")
	strContentRange = []byte("Content-Range")
)

// writeEntry answers from a stored (or just fetched) response: a 304 or
// 412 when the client's preconditions say so, a 206 for a satisfiable
// single byte range, else the full response. It does not allocate on the
// common paths: the body is shared, not copied.
func (p *Proxy) writeEntry(ctx *fasthttp.RequestCtx, req *httpcache.Request, e *cache.Entry, now int64, cs cacheStatus) {
	p.answerEntry(ctx, req, e, now, cs, nil)
}

// writeEntryFrom answers from an entry the key's owner holds, borrowed for
// this answer, exactly as the owner's answer relayed here would read: the
// owner's Via hop and Cache-Status member ("owner; hit; ttl=N") before
// this node's ("fwd=miss; fwd-status=<status>; detail=peer"). The body is
// copied: the entry's buffer is reused after the handler returns.
func (p *Proxy) writeEntryFrom(ctx *fasthttp.RequestCtx, req *httpcache.Request, e *cache.Entry, now int64, owner string, ttl int64) {
	var scratch [128]byte
	name := appendCacheName(scratch[:0], owner)
	via := append(append(scratch[len(name):len(name)], "1.1 "...), name...)
	member := append(append(via[len(via):len(via)], name...), "; hit; ttl="...)
	member = strconv.AppendInt(member, ttl, 10)
	p.answerEntry(ctx, req, e, now, cacheStatus{fwd: fwdMiss, detail: detailPeer}, &ownerHop{via: via, status: member})
}

// ownerHop is what the key's owner adds to an answer it makes: its Via
// entry and its Cache-Status member.
type ownerHop struct{ via, status []byte }

// answerEntry is writeEntry, with the owner's hop when the entry came from
// another member (then fwd-status is the status written, as the owner's
// would have been).
func (p *Proxy) answerEntry(ctx *fasthttp.RequestCtx, req *httpcache.Request, e *cache.Entry, now int64, cs cacheStatus, hop *ownerHop) {
	resp := &ctx.Response
	status := int(e.Status)
	cond := httpcache.CondNone
	if status == fasthttp.StatusOK && req.HasPreconditions() {
		cond = httpcache.EvaluateRequest(req, validators(e))
	}
	resp.Header.DisableNormalizing()
	switch cond {
	case httpcache.CondNotModified:
		resp.SetStatusCode(fasthttp.StatusNotModified)
		for f := e.Fields(); f.Next(); {
			if notModifiedField(f.Key()) {
				setField(&resp.Header, &f)
			}
		}
	case httpcache.CondPrecondition:
		resp.SetStatusCode(fasthttp.StatusPreconditionFailed)
	default:
		resp.SetStatusCode(status)
		var upstreamVia []byte
		for f := e.Fields(); f.Next(); {
			if bytes.EqualFold(f.Key(), strVia) {
				upstreamVia = f.Value()
			} else {
				setField(&resp.Header, &f)
			}
		}
		if hop != nil {
			p.setVia(resp, upstreamVia, hop.via)
		} else {
			p.setListField(resp, strVia, upstreamVia, p.via)
		}
		body := e.Body()
		if status == fasthttp.StatusOK && len(req.Range) > 0 {
			body = p.byteRange(ctx, req, e, body)
		}
		if hop != nil {
			resp.SetBody(body)
		} else {
			resp.SetBodyRaw(body)
		}
	}
	var age [20]byte
	resp.Header.SetCanonical(strAge, strconv.AppendInt(age[:0], max(0, int64(e.InitialAge)+max(0, now-e.ResponseTime)/1e9), 10))
	if hop != nil {
		if cond != httpcache.CondNone {
			// The owner's 304 or 412 carries no Via; relayed, it got ours.
			resp.Header.SetCanonical(strVia, p.via)
		}
		resp.Header.SetCanonical(strCacheStatus, hop.status)
		cs.fwdStatus = resp.StatusCode()
	}
	p.addCacheStatus(resp, cs)
}

// setVia sets Via to the stored hops, the owner's, then this node's.
func (p *Proxy) setVia(resp *fasthttp.Response, upstream, owner []byte) {
	var scratch [256]byte
	v := scratch[:0]
	if len(upstream) > 0 {
		v = append(append(v, upstream...), ", "...)
	}
	v = append(append(append(v, owner...), ", "...), p.via...)
	resp.Header.SetCanonical(strVia, v)
}

// setListField sets a list-valued field (Via) to upstream + ", " + ours.
func (p *Proxy) setListField(resp *fasthttp.Response, key, upstream, ours []byte) {
	switch {
	case len(upstream) == 0:
		resp.Header.SetCanonical(key, ours)
	default:
		v := append(append(append(make([]byte, 0, len(upstream)+2+len(ours)), upstream...), ", "...), ours...)
		resp.Header.SetCanonical(key, v)
	}
}

// addCacheStatus appends this cache's member to the Cache-Status field;
// members of caches nearer the origin come first (RFC 9211 §2).
func (p *Proxy) addCacheStatus(resp *fasthttp.Response, cs cacheStatus) {
	var scratch [160]byte
	v := scratch[:0]
	if prev := resp.Header.PeekBytes(strCacheStatus); len(prev) > 0 {
		v = append(append(v, prev...), ", "...)
	}
	v = p.appendCacheStatus(v, cs)
	resp.Header.SetCanonical(strCacheStatus, v)
}

// setField writes the current stored field. Stored names are already
// canonical, so SetCanonical skips fasthttp's normalisation; a name seen
// earlier in the entry is added instead, keeping every line of a repeated
// field.
func setField(h *fasthttp.ResponseHeader, f *cache.FieldIter) {
	if f.Repeat() {
		h.AddBytesKV(f.Key(), f.Value())
		return
	}
	h.SetCanonical(f.Key(), f.Value())
}

// validators of a stored response; Last-Modified falls back to Date, then
// to the time it was received (RFC 9111 §4.3.2).
func validators(e *cache.Entry) httpcache.Validators {
	v := httpcache.Validators{ETag: e.Get("etag")}
	if lm, ok := httpcache.ParseHTTPDate(e.Get("last-modified")); ok {
		v.LastModified = lm
	} else if d, ok := httpcache.ParseHTTPDate(e.Get("date")); ok {
		v.LastModified = d
	} else {
		v.LastModified = e.ResponseTime / 1e9
	}
	return v
}

// byteRange answers a single byte range from a stored 200 (RFC 9110 §14).
// Multiple ranges, or an If-Range that does not match, get the full body,
// which the RFC allows.
func (p *Proxy) byteRange(ctx *fasthttp.RequestCtx, req *httpcache.Request, e *cache.Entry, body []byte) []byte {
	if ifRange := req.IfRange; len(ifRange) > 0 {
		etag := e.Get("etag")
		if !(len(etag) > 0 && httpcache.ETagEqual(ifRange, etag, true)) && !bytes.Equal(ifRange, e.Get("last-modified")) {
			return body
		}
	}
	r := req.Range
	if bytes.IndexByte(r, ',') >= 0 {
		return body
	}
	start, end, err := fasthttp.ParseByteRange(r, len(body))
	if err != nil {
		ctx.Response.SetStatusCode(fasthttp.StatusRequestedRangeNotSatisfiable)
		var buf [32]byte
		ctx.Response.Header.SetCanonical(strContentRange, strconv.AppendInt(append(buf[:0], "bytes */"...), int64(len(body)), 10))
		return nil
	}
	ctx.Response.SetStatusCode(fasthttp.StatusPartialContent)
	ctx.Response.Header.SetContentRange(start, end, len(body))
	return body[start : end+1]
}

// writeError answers with a generated error response.
func (p *Proxy) writeError(ctx *fasthttp.RequestCtx, status int, msg string, fwd fwdReason) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.Header.Set("Cache-Control", "no-store")
	resp.SetBodyString(msg + "\n")
	cs := cacheStatus{fwd: fwd}
	switch status {
	case fasthttp.StatusGatewayTimeout:
		cs.detail = detailOriginTimeout
	case fasthttp.StatusBadGateway:
		cs.detail = detailOriginError
	}
	p.addCacheStatus(resp, cs)
}

// relay writes an origin response that is not served from the cache. A
// streamed body is handed to fasthttp, which closes it after writing; the
// origin response is released then.
func (p *Proxy) relay(ctx *fasthttp.RequestCtx, resp *fasthttp.Response, prefix []byte, cs cacheStatus) {
	out := &ctx.Response
	out.Header.DisableNormalizing()
	copyResponseHeaders(&out.Header, &resp.Header)
	via := resp.Header.Peek("Via")
	p.setListField(out, strVia, via, p.via)
	p.addCacheStatus(out, cs)
	if !resp.IsBodyStream() {
		out.SetBody(resp.Body())
		fasthttp.ReleaseResponse(resp)
		return
	}
	size := resp.Header.ContentLength()
	if size < 0 {
		size = -1
	}
	var r io.Reader = resp.BodyStream()
	if len(prefix) > 0 {
		r = io.MultiReader(bytes.NewReader(prefix), r)
	}
	out.SetBodyStream(&streamCloser{Reader: r, resp: resp}, size)
}

// closeResponse returns the origin connection (closing a half-read body
// stream) and releases the response.
func closeResponse(resp *fasthttp.Response) {
	if resp.IsBodyStream() {
		_ = resp.CloseBodyStream()
	}
	fasthttp.ReleaseResponse(resp)
}

// readBody reads a response body of at most MaxObjectSize bytes. For a
// larger one it reports tooLarge with what it has read so far, so the rest
// can be streamed: a large body is never buffered whole.
func (p *Proxy) readBody(resp *fasthttp.Response) (body []byte, tooLarge bool, err error) {
	limit := p.opt.MaxObjectSize
	if !resp.IsBodyStream() {
		b := resp.Body()
		return b, int64(len(b)) > limit, nil
	}
	r := resp.BodyStream()
	if cl := resp.Header.ContentLength(); cl >= 0 {
		if int64(cl) > limit {
			return nil, true, nil
		}
		body = make([]byte, cl)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, false, errIncomplete
		}
		return body, false, nil
	}
	body, err = io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, false, errIncomplete
	}
	if int64(len(body)) > limit {
		return body, true, nil
	}
	return body, false, nil
}

// cacheName is a cache's identifier in Cache-Status: the name when it is
// a valid token (RFC 8941 §3.3.4), else a quoted string, so the members of
// a forwarded response say which node did what.
func cacheName(name string) string {
	return string(appendCacheName(nil, name))
}

// appendCacheName appends cacheName(name) to dst.
func appendCacheName(dst []byte, name string) []byte {
	token := name != "" && (isAlpha(name[0]) || name[0] == '*')
	for i := 0; token && i < len(name); i++ {
		c := name[i]
		token = isAlpha(c) || ('0' <= c && c <= '9') || strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0
	}
	if token {
		return append(dst, name...)
	}
	return strconv.AppendQuote(dst, name)
}

func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
