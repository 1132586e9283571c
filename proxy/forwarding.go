package proxy

import (
	"net/netip"
	"strings"

	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// The forwarding fields tell the origin who the client is and how it came:
// X-Forwarded-For (the chain of client addresses), X-Forwarded-Proto (its
// scheme), X-Forwarded-Host (the host it asked for), and, with
// Options.Forwarded, RFC 7239's Forwarded, which says the same in one field.
// Who may set them:
//
//   - anyone: the node replaces them with what it saw itself (the
//     connecting address, its own scheme — https when the connection is
//     TLS, as on a node's HTTPS listen, also for tunnels — and the
//     request's authority). A
//     client could otherwise make the origin build a page for a host or
//     scheme of its choosing, which would then be cached for everyone.
//   - a trusted proxy (the connecting address is in Options.TrustedProxies,
//     e.g. the ingress in front of the node): its fields describe the real
//     client, so they are kept, X-Forwarded-For and Forwarded with this
//     hop appended.
//   - another member (PeerHandler): it computed them from the client as
//     above and they reach the origin as it sent them.
//
// None of them is part of the cache key: the key is the request's authority
// (or key_host), path and query, and the fields an origin's Vary names. So
// values a client sends cannot select, or poison, a stored response. An
// origin whose pages depend on X-Forwarded-Host or -Proto must say so with
// Vary; behind a trusted proxy that rewrites Host, the entries of every
// public host it maps to one Host share a key unless it does.

var (
	strXForwardedFor   = []byte("X-Forwarded-For")
	strXForwardedHost  = []byte("X-Forwarded-Host")
	strXForwardedProto = []byte("X-Forwarded-Proto")
	strForwarded       = []byte("Forwarded")
)

// addForwarding adds Via (RFC 9110 §7.6.3) and the forwarding fields to
// out, the request this node sends on for the client's request in ctx;
// copyRequestHeaders has left the client's forwarding fields out, unless the
// request came from a peer.
func (p *Proxy) addForwarding(out *fasthttp.Request, ctx *fasthttp.RequestCtx, st *reqState) {
	in := &ctx.Request.Header
	if via := in.Peek("Via"); len(via) > 0 {
		out.Header.SetBytesV("Via", append(append(append([]byte(nil), via...), ", "...), p.via...))
	} else {
		out.Header.SetBytesV("Via", p.via)
	}
	if st.forwarded {
		return // a peer already set them from the client's connection
	}
	ip, trusted := p.client(ctx)
	proto := string(scheme(ctx))
	h := &out.Header
	var buf [128]byte

	// X-Forwarded-For: the trusted proxy's chain, then the address it
	// connected from.
	xff := buf[:0]
	if trusted {
		for _, v := range in.PeekAll("X-Forwarded-For") {
			if len(v) > 0 {
				xff = append(append(xff, v...), ", "...)
			}
		}
	}
	h.SetCanonical(strXForwardedFor, ip.AppendTo(xff))

	// X-Forwarded-Proto, -Host and the rest: the trusted proxy's as sent,
	// ours where it sent none.
	var sentProto, sentHost bool
	if trusted {
		for k, v := range in.All() {
			switch {
			case !forwarding(k) || httpcache.FieldIs(k, "x-forwarded-for"):
				continue
			case httpcache.FieldIs(k, "forwarded") && p.opt.Forwarded:
				continue // extended below
			}
			sentProto = sentProto || httpcache.FieldIs(k, "x-forwarded-proto")
			sentHost = sentHost || httpcache.FieldIs(k, "x-forwarded-host")
			h.AddBytesKV(k, v)
		}
	}
	if !sentProto {
		h.SetCanonical(strXForwardedProto, []byte(proto))
	}
	if !sentHost {
		h.SetCanonical(strXForwardedHost, p.keys.Host(st.host))
	}

	// Forwarded: the trusted proxy's elements, then one for this hop (RFC
	// 7239 §4: each proxy appends what it received). Its host is the one
	// X-Forwarded-Host names (key_host, when set), so the two agree.
	if p.opt.Forwarded {
		fwd := buf[:0]
		if trusted {
			for _, v := range in.PeekAll("Forwarded") {
				if len(v) > 0 {
					fwd = append(append(fwd, v...), ", "...)
				}
			}
		}
		h.SetCanonical(strForwarded, appendForwardedElement(fwd, ip, p.keys.Host(st.host), proto))
	}
}

// client returns the address ctx's connection came from and whether it is
// a trusted proxy's.
func (p *Proxy) client(ctx *fasthttp.RequestCtx) (ip netip.Addr, trusted bool) {
	ip, _ = netip.AddrFromSlice(ctx.RemoteIP())
	ip = ip.Unmap()
	return ip, p.trusted(ip)
}

// scheme is the scheme the client reached this node by, as
// X-Forwarded-Proto and Forwarded name it.
func scheme(ctx *fasthttp.RequestCtx) []byte {
	if ctx.IsTLS() {
		return strHTTPS
	}
	return strHTTP
}

// originView is a request's fields as the origin will receive them, where
// an operator's rule adds them to the key (cache.FieldSource): the client's
// own, except the forwarding fields, which addForwarding sets for a client
// that is not a trusted proxy. A rule keyed on X-Forwarded-Proto thus
// reads "http" for a client that claims "https" over a clear connection,
// as the origin will, so the lookup meets the variant the fill stores,
// which reads the fill request itself; and a client cannot have a page the
// origin built for one value stored under another. X-Forwarded-For and
// Forwarded, which differ for every client, cannot be keyed on
// (rules.Compile refuses them).
type originView struct {
	p   *Proxy
	ctx *fasthttp.RequestCtx
	st  *reqState
	one [1][]byte
}

func (v *originView) Cookie(name string) []byte { return v.ctx.Request.Header.Cookie(name) }

// PeekAll returns the lines of the field name, lower-case, as the origin
// will receive them.
func (v *originView) PeekAll(name string) [][]byte {
	h := &v.ctx.Request.Header
	if v.st.forwarded || !(name == "forwarded" || strings.HasPrefix(name, "x-forwarded-")) {
		return h.PeekAll(name) // a member's forward carries them as the origin gets them
	}
	if _, trusted := v.p.client(v.ctx); trusted {
		if lines := h.PeekAll(name); len(lines) > 0 {
			return lines
		}
	}
	switch name {
	case "x-forwarded-proto":
		v.one[0] = scheme(v.ctx)
	case "x-forwarded-host":
		v.one[0] = v.p.keys.Host(v.st.host)
	default:
		return nil // a client's other X-Forwarded-* fields are dropped
	}
	return v.one[:]
}

// trusted reports whether ip, a connecting address, is one of
// Options.TrustedProxies.
func (p *Proxy) trusted(ip netip.Addr) bool {
	for _, pfx := range p.opt.TrustedProxies {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// appendForwardedElement appends the forwarded-element (RFC 7239 §4) of a
// request received from ip, for host, over proto: for, host and proto
// parameters. An IPv6 address is bracketed and quoted (§6); an address
// that is not known is "unknown" (§6.2); a host that is not a token (one
// with a port) is a quoted-string.
func appendForwardedElement(dst []byte, ip netip.Addr, host []byte, proto string) []byte {
	dst = append(dst, "for="...)
	switch {
	case !ip.IsValid():
		dst = append(dst, "unknown"...)
	case ip.Is6():
		dst = append(dst, `"[`...)
		dst = ip.AppendTo(dst)
		dst = append(dst, `]"`...)
	default:
		dst = ip.AppendTo(dst)
	}
	if len(host) > 0 {
		dst = append(dst, ";host="...)
		dst = appendTokenOrQuoted(dst, host)
	}
	dst = append(dst, ";proto="...)
	return append(dst, proto...)
}

// appendTokenOrQuoted appends v as a token when it is one, else as a
// quoted-string (RFC 9110 §5.6.2, §5.6.4).
func appendTokenOrQuoted(dst, v []byte) []byte {
	token := true
	for _, c := range v {
		token = token && isTchar(c)
	}
	if token {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// isTchar reports a token character (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
