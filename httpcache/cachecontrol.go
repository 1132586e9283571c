// Package httpcache holds the HTTP caching rules of a shared cache as pure
// functions: parsing Cache-Control (RFC 9111 §5.2), storability (§3),
// freshness and age (§4.2), reuse of stored responses (§4, RFC 5861) and
// conditional requests (RFC 9110 §13). Nothing here does I/O or keeps state,
// so every rule is table-tested on its own.
package httpcache

import "bytes"

// Absent marks a numeric directive that was not present.
const Absent int32 = -1

// maxDelta caps delta-seconds values: RFC 9111 §1.2.2 asks recipients to use
// 2^31 for anything larger; int32 tops out one below, which is the same
// forever for a cache.
const maxDelta = 1<<31 - 1

// Directives is a parsed Cache-Control field, request or response.
// Numeric directives are in seconds and Absent when missing. Byte slices
// borrow from the parsed header: copy them to keep them.
type Directives struct {
	MaxAge, SMaxAge, MaxStale, MinFresh int32
	StaleWhileRevalidate, StaleIfError  int32

	// MaxStaleAny is max-stale without a value: any staleness is acceptable.
	MaxStaleAny bool

	NoStore, NoCache, Private, Public      bool
	MustRevalidate, ProxyRevalidate        bool
	MustUnderstand, NoTransform, Immutable bool
	OnlyIfCached                           bool

	// NoCacheFields and PrivateFields are the field lists of the qualified
	// forms no-cache="a, b" and private="a, b" (§5.2.2.4, §5.2.2.7).
	NoCacheFields, PrivateFields []byte
}

// Reset sets d to "no directives".
func (d *Directives) Reset() {
	*d = Directives{
		MaxAge: Absent, SMaxAge: Absent, MaxStale: Absent, MinFresh: Absent,
		StaleWhileRevalidate: Absent, StaleIfError: Absent,
	}
}

// Parse adds the directives of one Cache-Control field value to d. Call it
// once per field line (after Reset). Unknown directives are ignored
// (§5.2.3). When a numeric directive repeats, the first occurrence wins;
// an invalid max-age or s-maxage counts as 0, making the response stale,
// as §4.2.1 encourages. Parse does not allocate.
func (d *Directives) Parse(v []byte) {
	for len(v) > 0 {
		var item []byte
		item, v = nextItem(v)
		name, val, hasVal := splitDirective(item)
		if len(name) == 0 {
			continue
		}
		switch {
		case FieldIs(name, "max-age"):
			setDelta(&d.MaxAge, val, hasVal, 0)
		case FieldIs(name, "s-maxage"):
			setDelta(&d.SMaxAge, val, hasVal, 0)
		case FieldIs(name, "max-stale"):
			if !hasVal {
				d.MaxStaleAny = true
			} else {
				setDelta(&d.MaxStale, val, true, Absent)
			}
		case FieldIs(name, "min-fresh"):
			setDelta(&d.MinFresh, val, hasVal, Absent)
		case FieldIs(name, "stale-while-revalidate"):
			setDelta(&d.StaleWhileRevalidate, val, hasVal, Absent)
		case FieldIs(name, "stale-if-error"):
			setDelta(&d.StaleIfError, val, hasVal, Absent)
		case FieldIs(name, "no-store"):
			d.NoStore = true
		case FieldIs(name, "no-cache"):
			if hasVal && len(val) > 0 {
				d.NoCacheFields = val
			} else {
				d.NoCache = true
			}
		case FieldIs(name, "private"):
			if hasVal && len(val) > 0 {
				d.PrivateFields = val
			} else {
				d.Private = true
			}
		case FieldIs(name, "public"):
			d.Public = true
		case FieldIs(name, "must-revalidate"):
			d.MustRevalidate = true
		case FieldIs(name, "proxy-revalidate"):
			d.ProxyRevalidate = true
		case FieldIs(name, "must-understand"):
			d.MustUnderstand = true
		case FieldIs(name, "no-transform"):
			d.NoTransform = true
		case FieldIs(name, "immutable"):
			d.Immutable = true
		case FieldIs(name, "only-if-cached"):
			d.OnlyIfCached = true
		}
	}
}

// setDelta stores a delta-seconds value unless one is already set. A
// missing or malformed value stores bad instead (Absent to ignore it).
func setDelta(dst *int32, val []byte, hasVal bool, bad int32) {
	if *dst != Absent {
		return
	}
	n, ok := parseDelta(val)
	if !hasVal || !ok {
		*dst = bad
		return
	}
	*dst = n
}

// parseDelta parses delta-seconds (§1.2.2): digits only, capped at maxDelta.
func parseDelta(b []byte) (int32, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	if n > maxDelta {
		n = maxDelta
	}
	return int32(n), true
}

// nextItem splits the first comma-separated item off v, honouring quoted
// strings so that no-cache="a, b" stays one item.
func nextItem(v []byte) (item, rest []byte) {
	inQuote := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			return v[:i], v[i+1:]
		}
	}
	return v, nil
}

// splitDirective splits `name[=value]`, trimming space and one level of quotes.
func splitDirective(item []byte) (name, val []byte, hasVal bool) {
	item = trimSpace(item)
	for i, c := range item {
		if c == '=' {
			name, val = trimSpace(item[:i]), trimSpace(item[i+1:])
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return name, val, true
		}
	}
	return item, nil, false
}

// TrimOWS trims the optional white space (spaces and tabs) around a field
// value or list member (RFC 9110 §5.6.3).
func TrimOWS(b []byte) []byte { return trimSpace(b) }

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// FieldIs reports whether name, a header field name or token, equals
// field, ignoring ASCII case on both sides (RFC 9110 §5.1). Rules pass
// field in lower case, which is checked first and cheapest. It does not
// allocate.
func FieldIs(name []byte, field string) bool {
	if len(name) != len(field) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c, d := name[i], field[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// ListContains reports whether the comma-separated list (a Connection or
// qualified no-cache/private value) names field, ignoring case.
func ListContains(list []byte, field []byte) bool {
	for len(list) > 0 {
		var item []byte
		item, list = nextItem(list)
		item = trimSpace(item)
		// Equal lengths keep the match to ASCII case folding: EqualFold
		// alone would also take the Kelvin sign (3 bytes) for a 'k'.
		if len(item) == len(field) && bytes.EqualFold(item, field) {
			return true
		}
	}
	return false
}

// EachListItem calls fn for each trimmed, non-empty item of a
// comma-separated field value.
func EachListItem(list []byte, fn func(item []byte)) {
	for len(list) > 0 {
		var item []byte
		item, list = nextItem(list)
		if item = trimSpace(item); len(item) > 0 {
			fn(item)
		}
	}
}
