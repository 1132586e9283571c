package proxy

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// requestAuthority settles the one authority (host and optional port) a
// request is for. The handler calls it once and keeps the result in
// reqState.host; the cache key, the Host and X-Forwarded-Host sent
// upstream, the request forwarded to a key's owner and a PURGE all read it
// from there. Two readers that each picked a host (the key the target's,
// the fill the Host header's) let one host's answer be cached as
// another's.
//
// parsed is the host fasthttp's URI parser found (ctx.URI().Host()): the
// path and query in the key come from that parse, so it must have found
// the same authority. problem is non-empty when the request is to be
// answered 400; authority is then nil. The result borrows h's bytes.
func requestAuthority(h *fasthttp.RequestHeader, parsed []byte) (authority []byte, problem string) {
	host := h.Host() // fasthttp refuses a second Host field while parsing
	if len(host) > 0 {
		if p := checkAuthority(host); p != "" {
			return nil, "invalid Host header: " + p
		}
	}
	target := h.RequestURI()
	switch scheme, auth, ok := absoluteForm(target); {
	case ok:
		if !httpScheme(scheme) {
			return nil, "request target scheme is not http or https"
		}
		if p := checkAuthority(auth); p != "" {
			return nil, "invalid request target authority: " + p
		}
		// RFC 9112 §3.2.2: the target's authority replaces Host. A client
		// must send both the same (RFC 9112 §3.2); when they differ, the
		// origin (or a proxy before it) may pick the other one, so no
		// choice of ours is safe to cache.
		if len(host) > 0 && !bytes.EqualFold(host, auth) {
			return nil, "Host header differs from the request target's authority"
		}
		host = auth
	case len(target) > 1 && target[0] == '/' && target[1] == '/' && len(host) == 0:
		// Without Host, fasthttp reads "//a/b" as authority a and path /b,
		// but a fill sent with a Host (key_host) reads it as path //a/b:
		// "GET // HTTP/1.0" would store the answer for // as the root page.
		return nil, "ambiguous request target"
	case len(target) > 0 && target[0] == '/', len(target) == 1 && target[0] == '*':
		// origin-form, or asterisk-form (OPTIONS *): Host names the authority.
	default:
		// authority-form belongs to CONNECT, refused anyway; the rest is
		// not a request target (RFC 9112 §3.2).
		return nil, "malformed request target"
	}
	if len(host) == 0 && h.IsHTTP11() {
		// HTTP/1.1 requires Host (RFC 9112 §3.2).
		return nil, "missing Host header"
	}
	if !bytes.EqualFold(host, parsed) {
		// fasthttp read the target otherwise, e.g. "//a/b://c" as host a
		// and path /b://c: key and fill would disagree on what was asked.
		return nil, "ambiguous request target"
	}
	return host, ""
}

// absoluteForm splits an absolute-form request target, scheme "://"
// authority [path-abempty] ["?" query] (RFC 9112 §3.2.2), into its scheme
// and authority. ok is false for any other form.
func absoluteForm(target []byte) (scheme, authority []byte, ok bool) {
	i := bytes.Index(target, strColonSlashSlash)
	if i <= 0 || !validScheme(target[:i]) {
		return nil, nil, false
	}
	rest := target[i+len(strColonSlashSlash):]
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	return target[:i], rest[:end], true
}

var strColonSlashSlash = []byte("://")

// validScheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1).
func validScheme(s []byte) bool {
	for i, c := range s {
		switch {
		case 'a' <= c|0x20 && c|0x20 <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return len(s) > 0
}

// httpScheme: a cache in front of an HTTP origin answers only for http
// and https URIs; schemes are case-insensitive (RFC 3986 §3.1).
func httpScheme(s []byte) bool {
	return bytes.EqualFold(s, strHTTP) || bytes.EqualFold(s, strHTTPS)
}

var strHTTP, strHTTPS = []byte("http"), []byte("https")

// checkAuthority checks host [ ":" port ] (RFC 3986 §3.2.2, §3.2.3) and
// returns what is wrong, or "". It is stricter than the RFC on purpose:
//   - userinfo ("user:password@") is refused (RFC 9110 §4.2.4 says to treat
//     it as an error): fasthttp's clients turn it into an Authorization
//     header the cache never saw, so a private answer would be shared;
//   - percent-encoding is refused: the key uses the bytes as sent, and a
//     host that decodes to another name must not reach the origin as one
//     host and the key as another;
//   - the port, when its colon is present, must be digits.
func checkAuthority(a []byte) string {
	if len(a) == 0 {
		return "empty"
	}
	if bytes.IndexByte(a, '@') >= 0 {
		return "userinfo (credentials) is not allowed"
	}
	host, port := a, []byte(nil)
	if a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 || !ipLiteral(a[1:end]) {
			return "bad IP literal"
		}
		host, port = a[:end+1], a[end+1:]
		if len(port) > 0 && port[0] != ':' {
			return "bad port"
		}
	} else if i := bytes.IndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i:]
	}
	if len(port) > 0 {
		if len(port) == 1 || len(port) > 6 {
			return "bad port"
		}
		for _, c := range port[1:] {
			if c < '0' || c > '9' {
				return "bad port"
			}
		}
	}
	switch {
	case len(host) == 0:
		return "empty host"
	case host[0] == '[':
		return ""
	}
	for _, c := range host {
		if !regNameByte(c) {
			return "bad character in host"
		}
	}
	return ""
}

// regNameByte: unreserved / sub-delims (RFC 3986 §3.2.2), no pct-encoding.
func regNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

// ipLiteral accepts an IPv6 address (RFC 3986 §3.2.2); IPvFuture and zone
// identifiers are refused.
func ipLiteral(s []byte) bool {
	ip, err := netip.ParseAddr(string(s))
	return err == nil && ip.Is6() && ip.Zone() == ""
}
