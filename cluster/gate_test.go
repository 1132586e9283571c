package cluster

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// serveCtx runs h on a request built by prep and returns the response.
func serveCtx(h fasthttp.RequestHandler, prep func(r *fasthttp.Request)) *fasthttp.Response {
	var req fasthttp.Request
	req.Header.SetRequestURI("/x")
	req.Header.SetHost("site.example")
	prep(&req)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	h(&ctx)
	return &ctx.Response
}

// TestClientGate: on a listener clients reach, a request claiming to come
// from a member is refused, even with a member's valid signature (captured
// and replayed with a header of the attacker's), and so are the peer
// endpoints; the refusal tells a member to fall back (HeaderError).
func TestClientGate(t *testing.T) {
	signer := mustSigner(t, "a", testSecret)
	var g ClientGate
	served := 0
	h := g.Handler(func(ctx *fasthttp.RequestCtx) { served++ })
	for name, prep := range map[string]func(r *fasthttp.Request){
		"forged claim": func(r *fasthttp.Request) { r.Header.Set(HeaderForwarded, "a"); r.Header.Set(HeaderAuth, "a:1:AAAA") },
		"valid signature, replayed": func(r *fasthttp.Request) {
			signer.Sign(r)
			r.Header.Set("X-Forwarded-Host", "evil.example")
		},
		"peer endpoint": func(r *fasthttp.Request) { r.Header.SetRequestURI(PathPrefix + "entry?key=eA") },
	} {
		resp := serveCtx(h, prep)
		if resp.StatusCode() != fasthttp.StatusForbidden || string(resp.Header.Peek(HeaderError)) != "1" {
			t.Errorf("%s: %d %q, want 403 with %s", name, resp.StatusCode(), resp.Header.Peek(HeaderError), HeaderError)
		}
		// The node's servers leave Date to handlers (NoDefaultDate); a
		// 4xx carries one (RFC 9110 §6.6.1).
		if len(resp.Header.Peek("Date")) == 0 {
			t.Errorf("%s: no Date", name)
		}
	}
	if served != 0 || g.Refused() != 3 {
		t.Fatalf("served %d, refused %d; want 0 and 3", served, g.Refused())
	}
	if serveCtx(h, func(*fasthttp.Request) {}); served != 1 {
		t.Fatal("a plain client request was not served")
	}
}

// TestPeerServerHandler: on the peer listener a forwarded request must carry
// a member's signature; one without a claim is not a member's at all.
func TestPeerServerHandler(t *testing.T) {
	ps := NewPeerServer(newStoreLocal(), mustSigner(t, "b", testSecret), PeerServerOptions{})
	served := 0
	h := ps.Handler(func(ctx *fasthttp.RequestCtx) { served++ })
	right, wrong := mustSigner(t, "a", testSecret), mustSigner(t, "a", []byte("another-secret-of-16+bytes"))
	for name, tc := range map[string]struct {
		prep    func(r *fasthttp.Request)
		status  int
		served  bool
		errHead bool
	}{
		"no claim":        {func(r *fasthttp.Request) {}, fasthttp.StatusForbidden, false, false},
		"forged claim":    {func(r *fasthttp.Request) { r.Header.Set(HeaderForwarded, "a"); r.Header.Set(HeaderAuth, "forged") }, fasthttp.StatusForbidden, false, true},
		"other secret":    {func(r *fasthttp.Request) { wrong.Sign(r) }, fasthttp.StatusForbidden, false, true},
		"member's":        {func(r *fasthttp.Request) { right.Sign(r) }, fasthttp.StatusOK, true, false},
		"endpoint, no id": {func(r *fasthttp.Request) { r.Header.SetRequestURI(PathPrefix + "entry?key=eA") }, fasthttp.StatusUnauthorized, false, true},
	} {
		before := served
		resp := serveCtx(h, tc.prep)
		if resp.StatusCode() != tc.status || (served > before) != tc.served || (string(resp.Header.Peek(HeaderError)) == "1") != tc.errHead {
			t.Errorf("%s: status %d, served %v, %s %q", name, resp.StatusCode(), served > before, HeaderError, resp.Header.Peek(HeaderError))
		}
	}
	if s := ps.Stats(); s.Refused != 2 || s.Unauthorized != 1 {
		t.Fatalf("stats %+v; want 2 refused forwards and 1 unauthorized endpoint request", s)
	}
}
