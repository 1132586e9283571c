package proxy

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/ringcache/ringcache/internal/h1"
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
	// upstream is the Cache-Status of the caches nearer the origin, when
	// the answer's header does not hold it (a hot copy dropped it).
	upstream []byte
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
// single byte range, else the full response. The answer carries the stored
// Date, as the origin sent it (a 412, made here, the current one), and the
// entry's current age in Age (RFC 9111 §4). It does not allocate on the
// common paths: the body is shared, not copied.
func (p *Proxy) writeEntry(ctx *fasthttp.RequestCtx, st *reqState, e *cache.Entry, now int64, cs cacheStatus) {
	p.answerEntry(ctx, st, e, now, cs, nil)
}

// writeEntryFrom answers from an entry the key's owner holds, borrowed for
// this answer, exactly as the owner's answer relayed here would read: the
// owner's Via hop and Cache-Status member ("owner; hit; ttl=N") before
// this node's ("fwd=miss; fwd-status=<status>; detail=peer"), and the
// stored Date. The body is copied: the entry's buffer is reused after the
// handler returns.
func (p *Proxy) writeEntryFrom(ctx *fasthttp.RequestCtx, st *reqState, e *cache.Entry, now int64, owner string, ttl int64) {
	var scratch [128]byte
	name := appendCacheName(scratch[:0], owner)
	via := append(append(scratch[len(name):len(name)], "1.1 "...), name...)
	member := append(append(via[len(via):len(via)], name...), "; hit; ttl="...)
	member = strconv.AppendInt(member, ttl, 10)
	p.answerEntry(ctx, st, e, now, cacheStatus{fwd: fwdMiss, detail: detailPeer}, &ownerHop{via: via, status: member})
}

// ownerHop is what the key's owner adds to an answer it makes: its Via
// entry and its Cache-Status member.
type ownerHop struct{ via, status []byte }

// answerEntry is writeEntry, with the owner's hop when the entry came from
// another member (then fwd-status is the status written, as the owner's
// would have been).
func (p *Proxy) answerEntry(ctx *fasthttp.RequestCtx, st *reqState, e *cache.Entry, now int64, cs cacheStatus, hop *ownerHop) {
	resp := &ctx.Response
	req := &st.req
	status := int(e.Status)
	cond := httpcache.CondNone
	if status == fasthttp.StatusOK && req.HasPreconditions() {
		cond = httpcache.EvaluateRequest(req, validators(e, now), now/1e9)
	}
	// Stored names are canonical already: the parser need not normalise.
	resp.Header.DisableNormalizing()
	var upstreamVia []byte
	switch cond {
	case httpcache.CondNotModified:
		upstreamVia = p.writeFields(&resp.Header, st, e, now, notModifiedField, false)
		resp.SetStatusCode(fasthttp.StatusNotModified)
	case httpcache.CondPrecondition:
		st.seed.Seed(&resp.Header, nil, now, true)
		resp.SetStatusCode(fasthttp.StatusPreconditionFailed)
	default:
		upstreamVia = p.writeFields(&resp.Header, st, e, now, nil, true)
		resp.SetStatusCode(status)
		if hop != nil {
			p.setVia(resp, upstreamVia, hop.via)
		} else {
			p.setListField(resp, strVia, upstreamVia, p.via)
		}
		body := e.Body()
		if status == fasthttp.StatusOK && len(req.Range) > 0 {
			body = p.byteRange(ctx, req, e, body, now)
		}
		if hop != nil {
			resp.SetBody(body)
		} else {
			resp.SetBodyRaw(body)
		}
	}
	var age [20]byte
	resp.Header.SetCanonical(strAge, strconv.AppendInt(age[:0], ageValue(e, now), 10))
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

// ageValue is the Age of e at now (RFC 9111 §5.1). An age the entry could
// not hold (InitialAge saturates at 2^31-1) or beyond 2^31 is sent as
// 2147483648, as §5.1 requires of an age calculation that overflows.
func ageValue(e *cache.Entry, now int64) int64 {
	const overflow = 1 << 31
	age := max(0, int64(e.InitialAge)+max(0, now-e.ResponseTime)/1e9)
	if e.InitialAge == overflow-1 || age >= overflow {
		return overflow
	}
	return age
}

// writeFields resets h to the stored fields of e that keep accepts (all
// when nil) and the request may see (strip), Date included, and returns
// the stored Via, which the caller extends. The Date is seeded first (see
// h1.DateSeed); newEntry stores it as the first field, so one pass over the
// fields finds it and sets the rest.
func (p *Proxy) writeFields(h *fasthttp.ResponseHeader, st *reqState, e *cache.Entry, now int64, keep func([]byte) bool, bodied bool) (via []byte) {
	f := e.Fields()
	more := f.Next()
	if more && bytes.EqualFold(f.Key(), strDate) {
		st.seed.Seed(h, f.Value(), now, bodied)
		more = f.Next()
	} else {
		st.seed.Seed(h, e.Get("date"), now, bodied) // an entry from before Date went first
	}
	strip := p.strip(st)
	for ; more; more = f.Next() {
		switch k := f.Key(); {
		case keep != nil && !keep(k):
		case bytes.EqualFold(k, strVia):
			via = f.Value()
		case bytes.EqualFold(k, strDate):
			// Seeded.
		case len(strip) > 0 && namedIn(strip, k):
		default:
			setField(h, &f)
		}
	}
	return via
}

// strip is the targeted fields the answer to st leaves out: those of the
// policy's StripTargets, for clients; a member gets them all, as its copy
// must obey them too.
func (p *Proxy) strip(st *reqState) httpcache.Targets {
	if st.forwarded {
		return nil
	}
	return p.policy.Load().StripTargets
}

// namedIn reports whether names holds k, ignoring case.
func namedIn(names httpcache.Targets, k []byte) bool {
	for _, n := range names {
		if len(n) == len(k) && bytes.EqualFold(n, k) {
			return true
		}
	}
	return false
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
	prev := cs.upstream
	if len(prev) == 0 {
		prev = resp.Header.PeekBytes(strCacheStatus)
	}
	if len(prev) > 0 {
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
// to the time it was received (RFC 9111 §4.3.2). now is unix nanoseconds.
func validators(e *cache.Entry, now int64) httpcache.Validators {
	v := httpcache.Validators{ETag: e.Get("etag")}
	if lm, ok := httpcache.ParseHTTPDate(e.Get("last-modified"), now/1e9); ok {
		v.LastModified = lm
	} else if d, ok := httpcache.ParseHTTPDate(e.Get("date"), now/1e9); ok {
		v.LastModified = d
	} else {
		v.LastModified = e.ResponseTime / 1e9
	}
	return v
}

// byteRange answers a single byte range from a stored 200 (RFC 9110 §14).
// Multiple ranges, or an If-Range that does not match, get the full body,
// which the RFC allows.
func (p *Proxy) byteRange(ctx *fasthttp.RequestCtx, req *httpcache.Request, e *cache.Entry, body []byte, now int64) []byte {
	if len(req.IfRange) > 0 && !httpcache.IfRange(req.IfRange, e.Get("etag"), e.Get("last-modified"), e.Get("date"), now/1e9) {
		return body
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
	p.seedDate(&resp.Header, nil, p.now())
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
func (p *Proxy) relay(ctx *fasthttp.RequestCtx, st *reqState, resp *fasthttp.Response, prefix []byte, cs cacheStatus) {
	out := &ctx.Response
	// The origin's Date, or now if it sent none (RFC 9110 §6.6.1).
	p.seedDate(&out.Header, firstDate(&resp.Header), p.now())
	out.Header.DisableNormalizing()
	copyResponseHeaders(&out.Header, &resp.Header, p.strip(st))
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
// a valid token (RFC 8941 §3.3.4), else a String (§3.3.3), so the members
// of a forwarded response say which node did what. A String holds
// printable ASCII only, with '"' and '\\' escaped: any other byte (a tab,
// UTF-8) becomes '?', as a String has no way to carry it.
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
	dst = append(dst, '"')
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c > 0x7e:
			dst = append(dst, '?')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// interimTimeout bounds writing one interim response to a client: a few
// hundred bytes, which only a client that stopped reading holds up, and
// the fetch that waits for it may have other requests waiting on it.
const interimTimeout = time.Second

// interim returns the context of a fetch made for the client of ctx, which
// passes the origin's interim responses on to it (RFC 9110 §15.2: a proxy
// forwards 1xx responses): with their end-to-end fields and our Via, to an
// HTTP/1.1 client only (an HTTP/1.0 one must get none) and only when no
// earlier answer on its connection is still unsent (st.quiet, h1.Quiet).
// 101 never comes here: h1 takes it as final (a tunnel writes its own).
// They are written as they come, before the final answer; a stored answer
// has none.
func (p *Proxy) interim(ctx *fasthttp.RequestCtx, st *reqState) context.Context {
	if !st.quiet {
		return context.Background()
	}
	broken := false
	return h1.WithInterim(context.Background(), func(status int, h *fasthttp.ResponseHeader) {
		if broken {
			return
		}
		connection := h.Peek("Connection")
		// Via: the upstream's, then ours (RFC 9110 §7.6.3).
		via := append([]byte(nil), "Via: "...)
		keep := func(k, v []byte) bool {
			if bytes.EqualFold(k, strVia) {
				via = append(append(via, v...), ", "...)
				return false
			}
			return !hopByHop(k, connection)
		}
		b := h1.AppendInterim(nil, status, h, keep) // fills via
		b = append(append(append(b, via...), p.via...), "\r\n\r\n"...)
		c := ctx.Conn()
		// The server sets the deadline of the final answer after the
		// handler returns.
		_ = c.SetWriteDeadline(time.Now().Add(interimTimeout))
		if _, err := c.Write(b); err != nil {
			// Part of it may be out: the connection can carry nothing
			// more. The fetch goes on for whoever waits on it.
			broken = true
			_ = c.Close()
			p.log.Debug("interim response not written; connection closed", "status", status, "err", err)
		}
	})
}
