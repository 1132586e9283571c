package httpcache

import "github.com/valyala/fasthttp"

// AppendVaryNames appends the field names listed in a Vary value to dst,
// lower-cased, de-duplicated in order of appearance, separated by commas.
// Normalising the list lets two spellings of the same Vary share variants.
func AppendVaryNames(dst, vary []byte) []byte {
	start := len(dst)
	EachListItem(vary, func(item []byte) {
		// Lower-case straight into dst (any length: dropping a name would
		// let requests that differ in it share a variant), then undo the
		// append if the name was already listed.
		mark := len(dst)
		if mark > start {
			dst = append(dst, ',')
		}
		n := len(dst)
		for _, c := range item {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		if ListContains(dst[start:mark], dst[n:]) {
			dst = dst[:mark]
		}
	})
	return dst
}

// AppendVariantKey appends the secondary cache key of a request for the
// normalised Vary names (RFC 9111 §4.1): each name with the request's value,
// whitespace-trimmed; a missing field and an empty one are the same.
// Several lines of one field are combined as "a, b", as §4.1 matches them
// (RFC 9110 §5.3). With codings, Accept-Encoding is keyed by the codings it
// accepts (AppendAcceptedCodings) instead of its text: requests that accept
// the same codings share a variant, which §4.1 allows for values a cache
// knows to be equivalent, provided fills ask for that same set.
func AppendVariantKey(dst, names []byte, h *fasthttp.RequestHeader, codings bool) []byte {
	for len(names) > 0 {
		var name []byte
		name, names = nextItem(names)
		dst = append(dst, 0)
		dst = append(dst, name...)
		dst = append(dst, ':')
		if codings && string(name) == "accept-encoding" { // names are lower-case
			dst = AppendAcceptedCodings(dst, h.PeekAll("Accept-Encoding"))
			continue
		}
		n := len(dst)
		for _, v := range h.PeekAll(string(name)) {
			if v = trimSpace(v); len(v) == 0 {
				continue
			}
			if len(dst) > n {
				dst = append(dst, ',', ' ')
			}
			dst = append(dst, v...)
		}
	}
	return dst
}
