package cache

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// The cache key format, in one place. A primary key names a URL:
//
//	<lower-case host><raw path>[?<query>]
//
// A variant of a URL whose response varies (Vary), or whose request an
// operator's rule keys by some of its fields (KeyFields), is stored under
//
//	<primary key> 0x00 <marker generation, 8 bytes big-endian> <rule fields> <Vary fields>
//
// where each rule field is 'h' (a request field) or 'c' (a cookie), then
// its name and its value, each as uvarint(length) and bytes, and each Vary
// field is 0x00, its lower-case name, ':' and the request's value. A rule
// field never starts with 0x00 and says how long it is, so the two lists
// cannot be confused, whatever the values hold. The generation is the URL's
// Vary marker's ResponseTime: invalidating the URL replaces the marker,
// which orphans every variant at once. Paths never hold a 0 byte, so the
// primary key is everything before the first: the ring places a URL and
// all its variants, rule-keyed ones included, on the same members.

// KeyOptions shape the cache key: host, path and query of the request.
type KeyOptions struct {
	// IgnoreQuery lists query parameter names left out of the key (tracking
	// parameters such as utm_source that do not change the response).
	IgnoreQuery []string
	// SortQuery orders the query parameters so that ?a=1&b=2 and ?b=2&a=1
	// share an entry.
	SortQuery bool
	// Host, when set, stands for every client's Host: in keys, and towards
	// the origin (Host, X-Forwarded-Host), so the origin cannot answer per
	// client Host what the key would share. For clusters reached by node
	// addresses that front one site.
	Host string
	// Codings keys Accept-Encoding, in Vary, by the codings it accepts (br,
	// deflate, gzip, zstd) rather than its text, and fills ask the origin
	// for exactly that set: one variant per set instead of one per browser
	// spelling (what Varnish and most CDNs do).
	Codings bool
}

// Keys builds cache keys. It keeps no per-request state and is safe for
// concurrent use.
type Keys struct {
	ignore [][]byte
	sort   bool
	host   []byte // nil: the request's
	// codings: see KeyOptions.Codings.
	codings bool
}

// NewKeys returns the key builder for o.
func NewKeys(o KeyOptions) *Keys {
	k := &Keys{sort: o.SortQuery, codings: o.Codings}
	if o.Host != "" {
		k.host = []byte(o.Host)
	}
	for _, name := range o.IgnoreQuery {
		k.ignore = append(k.ignore, []byte(name))
	}
	return k
}

// AppendPrimary appends the primary cache key, host + path + "?" + query, to
// dst. The host is lower-cased (RFC 9110 §4.2.3); the path is the raw one
// the origin will see, never a normalised form, so that two URLs the origin
// may tell apart never share an entry. params is scratch space for sorting.
func (k *Keys) AppendPrimary(dst, host, path, query []byte, params [][]byte) ([]byte, [][]byte) {
	if k.host != nil {
		host = k.host
	}
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, path...)
	if len(query) == 0 {
		return dst, params
	}
	if !k.sort && len(k.ignore) == 0 {
		return append(append(dst, '?'), query...), params
	}
	params = params[:0]
	for len(query) > 0 {
		var p []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			p, query = query[:i], query[i+1:]
		} else {
			p, query = query, nil
		}
		if len(p) == 0 || k.ignored(p) {
			continue
		}
		params = append(params, p)
	}
	if k.sort {
		slices.SortStableFunc(params, bytes.Compare)
	}
	for i, p := range params {
		if i == 0 {
			dst = append(dst, '?')
		} else {
			dst = append(dst, '&')
		}
		dst = append(dst, p...)
	}
	return dst, params
}

func (k *Keys) ignored(param []byte) bool {
	name := param
	if i := bytes.IndexByte(param, '='); i >= 0 {
		name = param[:i]
	}
	for _, ig := range k.ignore {
		if bytes.Equal(name, ig) {
			return true
		}
	}
	return false
}

// Host is the Host a request with authority h is cached under and sent
// upstream with.
func (k *Keys) Host(h []byte) []byte {
	if k.host != nil {
		return k.host
	}
	return h
}

// Codings reports whether Accept-Encoding is keyed by the set of codings
// it accepts (KeyOptions.Codings).
func (k *Keys) Codings() bool { return k.codings }

// AppendVariant appends the store key of the variant of primary that the
// request h selects, given the URL's Vary marker and the rule fields of
// the request (KeyFields.AppendKey; nil: no rule keys it). A nil marker
// stands for generation 0 and no Vary fields, which no stored marker has:
// the key a rule-keyed request's fill is coalesced on before the URL has a
// marker.
func (k *Keys) AppendVariant(dst, primary []byte, marker *Entry, h *fasthttp.RequestHeader, ruleKey []byte) []byte {
	dst = append(dst, primary...)
	dst = append(dst, 0)
	var g uint64
	var names []byte
	if marker != nil {
		g, names = uint64(marker.ResponseTime), marker.Body()
	}
	dst = binary.BigEndian.AppendUint64(dst, g)
	dst = append(dst, ruleKey...)
	return httpcache.AppendVariantKey(dst, names, h, k.codings)
}

// KeyFields are the request fields and cookies an operator's rule adds to
// the cache key. They go into the variant part of the key, behind a
// marker, and never into the primary key: the ring places keys by their
// primary key, so every member sends a URL to the same owner whatever the
// requests' cookies, and invalidating or purging the URL drops every
// variant with its marker.
type KeyFields struct {
	// Headers are request field names, lower-case. A field's lines are
	// combined as for Vary ("a, b"); a missing field and an empty one are
	// the same.
	Headers []string
	// Cookies are cookie names (case-sensitive). A missing cookie and an
	// empty one are the same.
	Cookies []string
}

// Keyed reports whether f adds anything to the key; nil adds nothing.
func (f *KeyFields) Keyed() bool { return f != nil && len(f.Headers)+len(f.Cookies) > 0 }

// FieldSource is the request a key's rule fields are read from: a
// *fasthttp.RequestHeader, or a view of one as the origin receives it.
// Returned values are borrowed.
type FieldSource interface {
	PeekAll(name string) [][]byte
	Cookie(name string) []byte
}

// AppendKey appends the rule fields of the key format for the request h
// to dst: what AppendVariant takes as ruleKey. Nothing is appended when f
// adds nothing to the key, and something always is when it does. It does
// not allocate once h has parsed its cookies.
func (f *KeyFields) AppendKey(dst []byte, h FieldSource) []byte {
	if f == nil {
		return dst
	}
	for _, name := range f.Headers {
		dst = appendKeyString(append(dst, 'h'), name)
		lines := h.PeekAll(name)
		n := 0
		for _, v := range lines {
			if v = httpcache.TrimOWS(v); len(v) > 0 {
				if n > 0 {
					n += 2
				}
				n += len(v)
			}
		}
		dst = binary.AppendUvarint(dst, uint64(n))
		first := true
		for _, v := range lines {
			if v = httpcache.TrimOWS(v); len(v) > 0 {
				if !first {
					dst = append(dst, ',', ' ')
				}
				dst, first = append(dst, v...), false
			}
		}
	}
	for _, name := range f.Cookies {
		dst = appendKeyString(append(dst, 'c'), name)
		v := h.Cookie(name)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

func appendKeyString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// PrimaryKey returns the primary key a store key belongs to: the part the
// ring places, so that variants of a URL live with their URL.
func PrimaryKey(key []byte) []byte {
	if i := bytes.IndexByte(key, 0); i >= 0 {
		return key[:i]
	}
	return key
}

// KeyPath is the path-and-query part of a primary key.
func KeyPath(key []byte) []byte {
	if i := bytes.IndexByte(key, '/'); i >= 0 {
		return key[i:]
	}
	return nil
}
