package httpcache

import "github.com/valyala/fasthttp"

// Conditional outcomes of Evaluate.
const (
	CondNone         = 0   // no precondition decides: send the full response
	CondNotModified  = 304 // RFC 9110 §15.4.5
	CondPrecondition = 412 // RFC 9110 §15.5.13
)

// Validators are what a stored response offers for conditional requests.
// LastModified is unix seconds; when the response had no Last-Modified,
// callers pass its Date, or the time it was received (RFC 9111 §4.3.2).
type Validators struct {
	ETag         []byte
	LastModified int64
}

// Evaluate answers the preconditions of a GET or HEAD request from a stored
// response, in the order of RFC 9110 §13.2.2: If-Match, If-Unmodified-Since
// (only without If-Match), If-None-Match, If-Modified-Since (only without
// If-None-Match). A date that is not a valid HTTP-date makes its field
// ignored (§13.1.3, §13.1.4); now (unix seconds) is for ParseHTTPDate.
func Evaluate(h *fasthttp.RequestHeader, v Validators, now int64) int {
	var r Request
	ParseRequest(&r, h)
	return EvaluateRequest(&r, v, now)
}

// EvaluateRequest is Evaluate for a request already parsed by ParseRequest.
func EvaluateRequest(r *Request, v Validators, now int64) int {
	if im := r.IfMatch; len(im) > 0 {
		if !matchList(im, v.ETag, true) {
			return CondPrecondition
		}
	} else if ius := r.IfUnmodifiedSince; len(ius) > 0 {
		if t, ok := ParseHTTPDate(ius, now); ok && v.LastModified > t {
			return CondPrecondition
		}
	}
	if inm := r.IfNoneMatch; len(inm) > 0 {
		if matchList(inm, v.ETag, false) {
			return CondNotModified
		}
		return CondNone
	}
	if ims := r.IfModifiedSince; len(ims) > 0 && v.LastModified != 0 {
		if t, ok := ParseHTTPDate(ims, now); ok && v.LastModified <= t {
			return CondNotModified
		}
	}
	return CondNone
}

// IfRange reports whether a request's If-Range (RFC 9110 §13.1.5) lets a
// Range be answered with a part of the stored representation, whose
// ETag, Last-Modified and Date fields are given: an entity-tag must match
// the ETag by the strong comparison; a date must be a valid HTTP-date,
// equal to Last-Modified byte for byte, and that Last-Modified must be a
// strong validator, which a cache may deduce only when the stored Date is
// at least one second later (§8.8.2.2). Anything else, an invalid date
// included, means the whole representation. now is for ParseHTTPDate.
func IfRange(ifRange, etag, lastModified, date []byte, now int64) bool {
	ifRange = trimSpace(ifRange)
	if len(ifRange) > 0 && (ifRange[0] == '"' || isWeak(ifRange)) {
		return len(etag) > 0 && ETagEqual(ifRange, etag, true)
	}
	if _, ok := ParseHTTPDate(ifRange, now); !ok || string(ifRange) != string(trimSpace(lastModified)) {
		return false
	}
	lm, ok1 := ParseHTTPDate(lastModified, now)
	d, ok2 := ParseHTTPDate(date, now)
	return ok1 && ok2 && d-lm >= 1
}

// matchList reports whether the If-Match / If-None-Match list matches etag,
// with the strong (If-Match) or weak (If-None-Match) comparison of
// RFC 9110 §8.8.3.2. "*" matches any current representation.
func matchList(list, etag []byte, strong bool) bool {
	if t := trimSpace(list); len(t) == 1 && t[0] == '*' {
		return true
	}
	if len(etag) == 0 {
		return false
	}
	for len(list) > 0 {
		var item []byte
		item, list = nextETag(list)
		if item = trimSpace(item); len(item) > 0 && ETagEqual(item, etag, strong) {
			return true
		}
	}
	return false
}

// nextETag splits the first entity-tag off a list. Unlike nextItem it knows
// no backslash escapes: an entity-tag is not a quoted-string and may hold
// a '\' (RFC 9110 §8.8.3).
func nextETag(v []byte) (item, rest []byte) {
	inQuote := false
	for i, c := range v {
		switch {
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			return v[:i], v[i+1:]
		}
	}
	return v, nil
}

// ETagEqual compares two entity tags (RFC 9110 §8.8.3.2). The strong
// comparison fails if either is weak; the weak one ignores W/.
func ETagEqual(a, b []byte, strong bool) bool {
	aw, bw := isWeak(a), isWeak(b)
	if strong && (aw || bw) {
		return false
	}
	if aw {
		a = a[2:]
	}
	if bw {
		b = b[2:]
	}
	return string(a) == string(b)
}

func isWeak(t []byte) bool { return len(t) >= 2 && t[0] == 'W' && t[1] == '/' }
