package httpcache

import (
	"time"

	"github.com/valyala/fasthttp"
)

// Request holds what the caching rules need to know about a client
// request. Byte slices borrow from the parsed header.
type Request struct {
	CC Directives
	// Authorization: the request carries credentials (RFC 9111 §3.5).
	Authorization bool

	// Preconditions and range fields (RFC 9110 §13, §14).
	IfMatch, IfNoneMatch, IfModifiedSince, IfUnmodifiedSince []byte
	Range, IfRange                                           []byte
}

// HasPreconditions reports whether the request carries any precondition
// the cache answers itself (RFC 9110 §13.1).
func (r *Request) HasPreconditions() bool {
	return len(r.IfMatch)+len(r.IfNoneMatch)+len(r.IfModifiedSince)+len(r.IfUnmodifiedSince) > 0
}

// ParseRequest reads the caching-relevant facts of a request header in one
// pass over its fields (fasthttp stores names normalised, so no lookup
// normalises again). Pragma: no-cache counts as Cache-Control: no-cache
// only when there is no Cache-Control field (RFC 9111 §5.4). It does not
// allocate.
func ParseRequest(dst *Request, h *fasthttp.RequestHeader) {
	*dst = Request{}
	dst.CC.Reset()
	var pragma []byte
	seenCC := false
	for k, v := range h.All() {
		if len(k) < 5 {
			continue
		}
		switch k[0] | 0x20 {
		case 'c':
			if FieldIs(k, "cache-control") {
				dst.CC.Parse(v)
				seenCC = true
			}
		case 'p':
			if FieldIs(k, "pragma") {
				pragma = v
			}
		case 'a':
			if FieldIs(k, "authorization") {
				dst.Authorization = len(v) > 0
			}
		case 'r':
			if FieldIs(k, "range") {
				dst.Range = v
			}
		case 'i':
			switch {
			case FieldIs(k, "if-none-match"):
				dst.IfNoneMatch = v
			case FieldIs(k, "if-modified-since"):
				dst.IfModifiedSince = v
			case FieldIs(k, "if-match"):
				dst.IfMatch = v
			case FieldIs(k, "if-unmodified-since"):
				dst.IfUnmodifiedSince = v
			case FieldIs(k, "if-range"):
				dst.IfRange = v
			}
		}
	}
	if !seenCC && ListContains(pragma, noCacheToken) {
		dst.CC.NoCache = true
	}
}

var noCacheToken = []byte("no-cache")

// Response holds what the caching rules need to know about an origin
// response. Times are unix seconds; zero means absent.
type Response struct {
	Status int
	CC     Directives

	Date, LastModified int64
	// Expires is the Expires field; ExpiresInvalid marks one that is present
	// but not a valid HTTP-date, which means "already expired" (§5.3).
	Expires        int64
	ExpiresInvalid bool
	// Age is the Age field in seconds, Absent when missing or invalid.
	Age int64

	ETag      []byte // borrowed from the header
	SetCookie bool
	// Vary is the Vary field value (lines joined); VaryStar marks "*".
	Vary     []byte
	VaryStar bool

	// Target is 1 + the index in the target list of the targeted field
	// that set CC (RFC 9213), 0 when CC is the Cache-Control field.
	Target int
}

// HasValidator reports whether a conditional request can revalidate the response.
func (r *Response) HasValidator() bool { return len(r.ETag) > 0 || r.LastModified != 0 }

// ParseResponse reads the caching-relevant facts of a response header. now
// (unix seconds) dates the two-digit years of obsolete dates
// (ParseHTTPDate). targets is the cache's target list (RFC 9213 §2.1): the
// first of its fields present with a valid, non-empty value stands in for
// Cache-Control, and Expires is then ignored.
func ParseResponse(dst *Response, h *fasthttp.ResponseHeader, now int64, targets Targets) {
	*dst = Response{Status: h.StatusCode(), Age: int64(Absent)}
	dst.CC.Reset()
	expiresSeen, ageSeen := false, false
	for k, v := range h.All() {
		switch {
		case FieldIs(k, "cache-control"):
			dst.CC.Parse(v)
		case FieldIs(k, "date"):
			if dst.Date == 0 {
				dst.Date, _ = ParseHTTPDate(v, now)
			}
		case FieldIs(k, "last-modified"):
			if dst.LastModified == 0 {
				dst.LastModified, _ = ParseHTTPDate(v, now)
			}
		case FieldIs(k, "expires"):
			// Two Expires lines: use the first (§4.2.1).
			if !expiresSeen {
				expiresSeen = true
				t, ok := ParseHTTPDate(v, now)
				if ok && t == 0 {
					// The epoch ("Thu, 01 Jan 1970 00:00:00 GMT", a common
					// way to say "expired") is a past date, not "absent".
					t = -1
				}
				dst.Expires, dst.ExpiresInvalid = t, !ok
			}
		case FieldIs(k, "age"):
			// Only the first member of the first line counts; if it is
			// invalid the field is ignored (§5.1).
			if !ageSeen {
				ageSeen = true
				first, _ := nextItem(v)
				if n, ok := parseDelta(trimSpace(first)); ok {
					dst.Age = int64(n)
				}
			}
		case FieldIs(k, "etag"):
			dst.ETag = v
		case FieldIs(k, "set-cookie"):
			dst.SetCookie = true
		case FieldIs(k, "vary"):
			EachListItem(v, func(item []byte) {
				if len(item) == 1 && item[0] == '*' {
					dst.VaryStar = true
				}
			})
			if len(dst.Vary) == 0 {
				dst.Vary = v
			} else {
				// Rare: several Vary lines. Join them; this allocates.
				dst.Vary = append(append(append([]byte(nil), dst.Vary...), ','), v...)
			}
		}
	}
	if len(targets) > 0 {
		dst.applyTargets(h, targets)
	}
}

// Policy holds the cache's own choices where the RFCs leave room.
type Policy struct {
	// DefaultTTL is the freshness, in seconds, given to storable responses
	// that state none and allow no heuristic. 0 stores them only when they
	// can be revalidated.
	DefaultTTL int64
	// MaxHeuristic caps heuristic freshness, in seconds (§4.2.2); 0: no cap.
	MaxHeuristic int64
	// NoHeuristic turns the Last-Modified heuristic off.
	NoHeuristic bool
	// StripSetCookie stores responses with Set-Cookie without that field;
	// otherwise such responses are not stored.
	StripSetCookie bool
	// Targets is the target list of targeted cache control (RFC 9213
	// §2.1), for ParseResponse: e.g. CDN-Cache-Control. Nil obeys
	// Cache-Control alone.
	Targets Targets
	// StripTargets are targeted fields of Targets the proxy removes from
	// its answers to clients (RFC 9213 §3 lets a cache remove a field it
	// obeys, e.g. one only this cluster reads); they are stored and pass
	// between members, whose copies must obey them too. Fields not in
	// Targets always pass through (§2.1).
	StripTargets Targets

	// The rest is an operator's rule for one request (zero: none). They
	// change how long a storable response is kept, never whether it may
	// be: no-store, private, Set-Cookie, credentials, Vary: * and status
	// codes that need explicit freshness are decided as without them.

	// TTL, when > 0, replaces the freshness lifetime: the response is
	// fresh for TTL seconds from its arrival, whatever it says (s-maxage,
	// max-age, Expires) or a heuristic or DefaultTTL would give. A
	// response with no-cache is still validated on every use.
	TTL int64
	// MaxTTL, when > 0, caps the freshness a response has left on arrival
	// at MaxTTL seconds.
	MaxTTL int64
	// StaleIfError, when > 0, is the stale-if-error window (RFC 5861 §4),
	// in seconds, of responses that grant a shorter one or none: as if they
	// had said stale-if-error=StaleIfError. must-revalidate,
	// proxy-revalidate and no-cache still forbid serving them stale.
	StaleIfError int64
}

// Reason says why a response is not stored; it doubles as Cache-Status detail.
type Reason uint8

const (
	Stored Reason = iota
	NotGET
	StatusNotCacheable
	NoStore
	Private
	AuthorizationNotShared
	HasSetCookie
	VaryStar
	NoFreshness
)

var reasonText = [...]string{
	Stored:                 "stored",
	NotGET:                 "method",
	StatusNotCacheable:     "status",
	NoStore:                "no-store",
	Private:                "private",
	AuthorizationNotShared: "authorization",
	HasSetCookie:           "set-cookie",
	VaryStar:               "vary-star",
	NoFreshness:            "no-freshness",
}

func (r Reason) String() string {
	if int(r) < len(reasonText) {
		return reasonText[r]
	}
	return "unknown"
}

// heuristic reports whether a status code is cacheable by default
// (RFC 9110 §15.1), which allows heuristic freshness.
func heuristic(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understood lists the final status codes whose caching semantics this
// cache implements, for must-understand (§5.2.2.3). 206 is left out: partial
// content is never stored here.
func understood(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// Storable reports whether a shared cache may store resp, the response to a
// GET request req (RFC 9111 §3). get is false for other methods.
func Storable(get bool, req *Request, resp *Response, p Policy) Reason {
	if !get {
		return NotGET
	}
	st := resp.Status
	if st < 200 || st == 206 || st == 304 || st >= 600 {
		return StatusNotCacheable
	}
	if resp.CC.MustUnderstand {
		// must-understand overrides no-store for understood codes only.
		if !understood(st) {
			return StatusNotCacheable
		}
	} else if resp.CC.NoStore {
		return NoStore
	}
	if req.CC.NoStore {
		return NoStore
	}
	if resp.CC.Private {
		return Private
	}
	if req.Authorization && !(resp.CC.Public || resp.CC.SMaxAge != Absent || resp.CC.MustRevalidate) {
		return AuthorizationNotShared
	}
	if resp.SetCookie && !p.StripSetCookie {
		return HasSetCookie
	}
	if resp.VaryStar {
		return VaryStar
	}
	explicit := resp.CC.SMaxAge != Absent || resp.CC.MaxAge != Absent || resp.Expires != 0 || resp.ExpiresInvalid
	if !explicit && !resp.CC.Public && !heuristic(st) {
		return StatusNotCacheable
	}
	// A response that is stale on arrival is worth keeping only if it can
	// be revalidated or served stale (RFC 5861).
	lifetime, _ := StoredLifetime(resp, 0, 0, p)
	if (lifetime <= 0 || resp.CC.NoCache) && !resp.HasValidator() &&
		resp.CC.StaleIfError <= 0 && resp.CC.StaleWhileRevalidate <= 0 && p.StaleIfError <= 0 {
		return NoFreshness
	}
	return Stored
}

// StoredLifetime is the freshness lifetime, in seconds, a response is
// stored with: Lifetime, then the policy's TTL or MaxTTL, which count from
// the response's arrival, when it was age seconds old (InitialAge).
func StoredLifetime(resp *Response, age, responseTime int64, p Policy) (seconds int64, heuristicUsed bool) {
	seconds, heuristicUsed = Lifetime(resp, responseTime, p)
	switch {
	case p.TTL > 0:
		return age + p.TTL, false
	case p.MaxTTL > 0 && seconds-age > p.MaxTTL:
		return age + p.MaxTTL, heuristicUsed
	}
	return seconds, heuristicUsed
}

// Lifetime computes the freshness lifetime in seconds (§4.2.1): s-maxage,
// then max-age, then Expires minus Date, then a heuristic (§4.2.2) of 10% of
// the time since Last-Modified, capped, for responses that allow one; then
// the policy's default. responseTime (unix seconds) stands in for a missing
// Date. heuristic reports whether the lifetime is heuristic.
func Lifetime(resp *Response, responseTime int64, p Policy) (seconds int64, heuristicUsed bool) {
	switch {
	case resp.CC.SMaxAge != Absent:
		return int64(resp.CC.SMaxAge), false
	case resp.CC.MaxAge != Absent:
		return int64(resp.CC.MaxAge), false
	case resp.ExpiresInvalid:
		return 0, false
	case resp.Expires != 0:
		date := resp.Date
		if date == 0 {
			date = responseTime
		}
		return max(0, resp.Expires-date), false
	}
	if !heuristic(resp.Status) && !resp.CC.Public {
		return 0, false
	}
	if resp.LastModified != 0 && !p.NoHeuristic {
		date := resp.Date
		if date == 0 {
			date = responseTime
		}
		if d := date - resp.LastModified; d > 0 {
			h := d / 10
			if p.MaxHeuristic > 0 && h > p.MaxHeuristic {
				h = p.MaxHeuristic
			}
			return h, true
		}
	}
	if p.DefaultTTL > 0 {
		return p.DefaultTTL, true
	}
	return 0, false
}

// InitialAge computes corrected_initial_age in seconds (§4.2.3) from the
// response's Age and Date and the times, in unix nanoseconds, at which the
// request was sent and the response received.
func InitialAge(resp *Response, requestTime, responseTime int64) int64 {
	respSec := responseTime / int64(time.Second)
	apparent := int64(0)
	if resp.Date != 0 {
		apparent = max(0, respSec-resp.Date)
	}
	delay := max(0, (responseTime-requestTime)/int64(time.Second))
	corrected := delay
	if resp.Age != int64(Absent) {
		corrected += resp.Age
	}
	return max(apparent, corrected)
}

// StoredResponse describes a stored response for reuse decisions. Ages and windows
// are in seconds.
type StoredResponse struct {
	Age      int64 // current_age
	Lifetime int64 // freshness_lifetime
	// StaleWhileRevalidate and StaleIfError are the response's RFC 5861
	// windows; 0 when absent.
	StaleWhileRevalidate, StaleIfError int64
	NoCache                            bool // response no-cache: validate every reuse
	MustRevalidate                     bool // never serve stale without validation
}

// Fresh reports whether the stored response is fresh (§4.2).
func (s *StoredResponse) Fresh() bool { return s.Lifetime > s.Age }

// TTL is the remaining freshness in seconds; negative when stale. It is
// Cache-Status's ttl parameter (RFC 9211 §2.4).
func (s *StoredResponse) TTL() int64 { return s.Lifetime - s.Age }

// Action is what to do with a stored response for a request.
type Action uint8

const (
	// Serve: fresh and acceptable; answer from the cache.
	Serve Action = iota
	// ServeStale: stale, but the request accepts it (max-stale).
	ServeStale
	// ServeStaleRevalidate: stale within stale-while-revalidate: answer
	// from the cache and refresh in the background (RFC 5861 §3).
	ServeStaleRevalidate
	// Validate: send a conditional request to the origin first.
	Validate
)

var actionText = [...]string{"serve", "serve-stale", "serve-stale-revalidate", "validate"}

func (a Action) String() string {
	if int(a) < len(actionText) {
		return actionText[a]
	}
	return "unknown"
}

// Reuse decides how a stored response may answer a request (RFC 9111 §4,
// §4.2.4, §5.2.1; RFC 5861).
func Reuse(s *StoredResponse, req *Directives) Action {
	if req.NoCache || s.NoCache {
		return Validate
	}
	// max-age bounds the age even when max-stale allows staleness (§5.2.1.1).
	if req.MaxAge != Absent && s.Age > int64(req.MaxAge) {
		return Validate
	}
	if req.MinFresh != Absent && s.TTL() < int64(req.MinFresh) {
		return Validate
	}
	if s.Fresh() {
		return Serve
	}
	if s.MustRevalidate {
		return Validate
	}
	stale := s.Age - s.Lifetime
	if req.MaxStaleAny || (req.MaxStale != Absent && stale <= int64(req.MaxStale)) {
		return ServeStale
	}
	if s.StaleWhileRevalidate > 0 && stale <= s.StaleWhileRevalidate {
		return ServeStaleRevalidate
	}
	return Validate
}

// ErrorStatus reports the statuses an origin answer may be replaced by a
// stale response for, as an error (RFC 5861 §4): 500, 502, 503 and 504.
// Any other answer, 501 or 505 included, is the answer: serving stale
// instead is permitted by nothing (RFC 9111 §4.2.4).
func ErrorStatus(status int) bool {
	switch status {
	case 500, 502, 503, 504:
		return true
	}
	return false
}

// StaleOnError reports whether the stored response may answer the request
// when the origin fails or answers with an ErrorStatus (RFC 5861 §4; RFC
// 9111 §4.2.4).
func StaleOnError(s *StoredResponse, req *Directives) bool {
	// Response no-cache and must-revalidate forbid stale use (§4.2.4).
	if s.MustRevalidate || s.NoCache {
		return false
	}
	stale := max(0, s.Age-s.Lifetime)
	if s.StaleIfError > 0 && stale <= s.StaleIfError {
		return true
	}
	if req.StaleIfError != Absent && req.StaleIfError > 0 && stale <= int64(req.StaleIfError) {
		return true
	}
	return req.MaxStaleAny || (req.MaxStale != Absent && stale <= int64(req.MaxStale))
}
