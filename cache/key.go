package cache

import (
	"bytes"
	"slices"

	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// The cache key format, in one place. A primary key names a URL:
//
//	<lower-case host><raw path>[?<query>]
//
// A variant of a URL whose response varies (Vary) is stored under
//
//	<primary key> 0x00 <marker generation, 8 bytes big-endian> <values of the Vary fields>
//
// The generation is the URL's Vary marker's ResponseTime: invalidating
// the URL replaces the marker, which orphans every variant at once. Paths
// never hold a 0 byte, so the primary key is everything before the first.

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
// request h selects, given the URL's Vary marker.
func (k *Keys) AppendVariant(dst, primary []byte, marker *Entry, h *fasthttp.RequestHeader) []byte {
	dst = append(dst, primary...)
	dst = append(dst, 0)
	g := uint64(marker.ResponseTime)
	for i := 0; i < 8; i++ {
		dst = append(dst, byte(g>>(56-8*i)))
	}
	return httpcache.AppendVariantKey(dst, marker.Body(), h, k.codings)
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
