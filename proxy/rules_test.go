package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/rules"
	"github.com/valyala/fasthttp"
)

func ruleSet(t testing.TB, specs ...rules.Spec) *rules.Set {
	t.Helper()
	s, err := rules.New(specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// echo answers max-age=60 (plus headers) with a body naming the request
// count and the values of the cookie lang and the field X-Tenant, so a
// test sees whose response a client got.
func echo(clk *testutil.Clock, headers ...string) func(*fasthttp.Request, *fasthttp.Response) {
	var n atomic.Int64
	return func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Date", httpDate(clk))
		resp.Header.Set("Cache-Control", "max-age=60")
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			resp.Header.Set(k, strings.TrimSpace(v))
		}
		resp.SetBodyString(fmt.Sprintf("%d lang=%s tenant=%s", n.Add(1), req.Header.Cookie("lang"), req.Header.Peek("X-Tenant")))
	}
}

func TestRuleBypass(t *testing.T) {
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{Cookie: "session", Bypass: true})}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60", `ETag: "v1"`))

	wantStatus(t, n.get("/b"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	// Matched: straight to the origin, every time, whatever is stored.
	for i := range 3 {
		r := n.get("/b", "Cookie: session=1")
		wantStatus(t, r, 200, "ringcache; fwd=bypass; fwd-status=200; detail=rule")
		if want := fmt.Sprintf("body %d", i+2); string(r.Body()) != want {
			t.Fatalf("bypass %d: body %q, want %q", i, r.Body(), want)
		}
	}
	// The request reaches the origin as sent: preconditions included, as
	// the origin, not the cache, answers it.
	n.get("/b", "Cookie: session=1", `If-None-Match: "v1"`)
	if inm := n.origin.lastRequest().Header.Peek("If-None-Match"); string(inm) != `"v1"` {
		t.Errorf("If-None-Match at the origin = %q, want the client's", inm)
	}
	// The stored copy is neither replaced nor dropped.
	r := n.get("/b")
	wantStatus(t, r, 200, "ringcache; hit; ttl=60")
	if string(r.Body()) != "body 1" {
		t.Errorf("hit after bypasses: body %q, want body 1", r.Body())
	}
	// Nothing is stored for a bypassed URL, not even a pass marker.
	n.get("/only-bypassed", "Cookie: session=1")
	if _, ok := n.st.Get([]byte("example.com/only-bypassed")); ok {
		t.Error("a bypassed response was stored")
	}
	wantStatus(t, n.get("/only-bypassed"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
}

// TestRuleBypassNotCoalesced: bypassed requests never wait for each
// other, even for one URL at one time.
func TestRuleBypassNotCoalesced(t *testing.T) {
	const clients = 4
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{PathPrefix: "/live", Bypass: true})}, nil)
	var arrived sync.WaitGroup
	arrived.Add(clients)
	release := make(chan struct{})
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		arrived.Done()
		<-release
		answer(n.clk, 200, "Cache-Control: max-age=60")(req, resp)
	})
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() { defer wg.Done(); n.get("/live") }()
	}
	arrived.Wait() // every request is at the origin at once
	close(release)
	wg.Wait()
	if c := counterValue(n.p.m.coalesced); c != 0 {
		t.Errorf("%v bypassed requests coalesced", c)
	}
}

func TestRuleTTL(t *testing.T) {
	n := newNode(t, Options{Rules: ruleSet(t,
		rules.Spec{PathPrefix: "/forced/", TTL: time.Hour},
		rules.Spec{PathPrefix: "/capped/", MaxTTL: time.Minute},
	)}, nil)

	// ttl overrides the origin's lifetime, short or long, or none.
	for _, cc := range []string{"max-age=5", "s-maxage=0", "max-age=86400", ""} {
		n.origin.set(answer(n.clk, 200, "Cache-Control: "+cc))
		uri := "/forced/" + cc
		wantStatus(t, n.get(uri), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=3600; stored")
		n.clk.Advance(30 * time.Minute)
		wantStatus(t, n.get(uri), 200, "ringcache; hit; ttl=1800")
	}
	// ttl counts from arrival: an aged response is fresh for ttl more.
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=600", "Age: 500"))
	wantStatus(t, n.get("/forced/aged"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=3600; stored")
	// It does not make storable what may not be stored.
	n.origin.set(answer(n.clk, 200, "Cache-Control: no-store"))
	wantStatus(t, n.get("/forced/no-store"), 200, "ringcache; fwd=uri-miss; fwd-status=200; detail=no-store")
	n.origin.set(answer(n.clk, 503))
	wantStatus(t, n.get("/forced/error"), 503, "ringcache; fwd=uri-miss; fwd-status=503; detail=status")

	// max_ttl caps a longer lifetime, keeps a shorter one.
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=3600"))
	wantStatus(t, n.get("/capped/long"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=30"))
	wantStatus(t, n.get("/capped/short"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=30; stored")
	// Not matched: the origin's lifetime.
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=3600"))
	wantStatus(t, n.get("/other"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=3600; stored")
}

// TestRuleTTLOnRevalidation: a 304 refreshes a stored response with the
// rule's ttl again.
func TestRuleTTLOnRevalidation(t *testing.T) {
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{TTL: 100 * time.Second})}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=5", `ETag: "v1"`))
	wantStatus(t, n.get("/r"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=100; stored")
	n.clk.Advance(101 * time.Second)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.SetStatusCode(fasthttp.StatusNotModified)
		resp.Header.Set("Date", httpDate(n.clk))
		resp.Header.Set("Cache-Control", "max-age=5")
	})
	wantStatus(t, n.get("/r"), 200, "ringcache; fwd=stale; fwd-status=304; ttl=100; stored")
}

func TestRuleKeyCookies(t *testing.T) {
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{PathPrefix: "/i18n/", KeyCookies: []string{"lang"}})}, nil)
	n.origin.set(echo(n.clk))

	first := map[string]string{}
	for _, c := range []string{"lang=de", "lang=fr", "", "lang=de; sid=1"} {
		r := n.get("/i18n/page", "Cookie: "+c)
		want := strings.TrimPrefix(strings.Split(c, ";")[0], "lang=")
		if !strings.Contains(string(r.Body()), "lang="+want+" ") {
			t.Fatalf("cookie %q got %q", c, r.Body())
		}
		if f, seen := first[want]; seen {
			wantStatus(t, r, 200, "ringcache; hit; ttl=60")
			if string(r.Body()) != f {
				t.Errorf("cookie %q: body %q, want the stored %q", c, r.Body(), f)
			}
		} else {
			// The first fill stores the URL's marker; the others find it.
			fwd := "vary-miss"
			if len(first) == 0 {
				fwd = "uri-miss"
			}
			wantStatus(t, r, 200, "ringcache; fwd="+fwd+"; fwd-status=200; ttl=60; stored")
			first[want] = string(r.Body())
		}
	}
	// Every lang is a hit now; another cookie does not split the entry.
	for _, c := range []string{"lang=fr", "lang=de", "other=1", "lang=fr; theme=dark"} {
		wantStatus(t, n.get("/i18n/page", "Cookie: "+c), 200, "ringcache; hit; ttl=60")
	}
	if got := n.origin.calls.Load(); got != 3 {
		t.Errorf("origin calls = %d, want 3 (de, fr, none)", got)
	}
	// Outside the rule, cookies share one entry.
	n.get("/other", "Cookie: lang=de")
	wantStatus(t, n.get("/other", "Cookie: lang=fr"), 200, "ringcache; hit; ttl=60")

	// Every variant lives under the URL's primary key: a URL purge takes
	// them all, as does an unsafe request to the URL.
	if got := n.p.Cache().Purge(cache.Purge{Host: "example.com", URL: "/i18n/page"}); got != 3 {
		t.Errorf("URL purge dropped %d responses, want 3", got)
	}
	n.clk.Advance(time.Second) // fills after the purge are kept
	wantStatus(t, n.get("/i18n/page", "Cookie: lang=de"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	wantStatus(t, n.get("/i18n/page", "Cookie: lang=fr"), 200, "ringcache; fwd=vary-miss; fwd-status=200; ttl=60; stored")
	n.do("POST", "/i18n/page")
	n.clk.Advance(time.Second)
	for _, c := range []string{"lang=de", "lang=fr"} {
		if cs := csOf(n.get("/i18n/page", "Cookie: "+c)); !strings.Contains(cs, "stored") {
			t.Errorf("after POST, %s: %q, want a refetch", c, cs)
		}
	}
}

// TestRuleKeyHeadersWithVary: rule fields and the origin's Vary together
// select a variant.
func TestRuleKeyHeadersWithVary(t *testing.T) {
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{KeyHeaders: []string{"X-Tenant"}})}, nil)
	n.origin.set(echo(n.clk, "Vary: Accept-Language"))
	reqs := [][]string{
		{"X-Tenant: a", "Accept-Language: de"},
		{"X-Tenant: b", "Accept-Language: de"},
		{"X-Tenant: a", "Accept-Language: fr"},
		{"Accept-Language: de"},
	}
	bodies := map[int]string{}
	for i, h := range reqs {
		r := n.get("/v", h...)
		wantStatus(t, r, 200, "")
		if !strings.Contains(csOf(r), "stored") {
			t.Errorf("%q: %q, want a miss", h, csOf(r))
		}
		bodies[i] = string(r.Body())
	}
	for i, h := range reqs {
		r := n.get("/v", h...)
		wantStatus(t, r, 200, "ringcache; hit; ttl=60")
		if string(r.Body()) != bodies[i] {
			t.Errorf("%q: body %q, want %q", h, r.Body(), bodies[i])
		}
	}
}

// TestRuleKeyedBesideUnkeyed: a rule that keys only some requests of a URL
// (those with a session cookie) leaves the others one shared entry, and
// neither kind pushes the other out.
func TestRuleKeyedBesideUnkeyed(t *testing.T) {
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{Cookie: "lang", KeyCookies: []string{"lang"}})}, nil)
	n.origin.set(echo(n.clk))
	// A plain entry first, then a keyed request: the keyed one must not
	// be answered with the plain entry.
	wantStatus(t, n.get("/m"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	r := n.get("/m", "Cookie: lang=de")
	wantStatus(t, r, 200, "ringcache; fwd=vary-miss; fwd-status=200; ttl=60; stored")
	if !strings.Contains(string(r.Body()), "lang=de") {
		t.Fatalf("keyed request got %q", r.Body())
	}
	// The unkeyed requests refill once under the marker the rule made...
	n.get("/m")
	calls := n.origin.calls.Load()
	// ...and from then on both kinds hit, in any order.
	for range 3 {
		wantStatus(t, n.get("/m"), 200, "ringcache; hit; ttl=60")
		r := n.get("/m", "Cookie: lang=de")
		wantStatus(t, r, 200, "ringcache; hit; ttl=60")
		if !strings.Contains(string(r.Body()), "lang=de") {
			t.Fatalf("keyed hit got %q", r.Body())
		}
	}
	if got := n.origin.calls.Load(); got != calls {
		t.Errorf("origin calls went from %d to %d: the two kinds replace each other", calls, got)
	}
}

// TestRuleKeyedCoalescing: concurrent misses with the same key fields make
// one origin request; with different ones, each gets its own response.
func TestRuleKeyedCoalescing(t *testing.T) {
	const clients = 6
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{KeyCookies: []string{"lang"}})}, nil)
	release := make(chan struct{})
	inner := echo(n.clk)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		<-release
		inner(req, resp)
	})
	var wg sync.WaitGroup
	bodies := make([]string, clients)
	for i := range clients {
		lang := []string{"de", "fr"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i] = string(n.get("/herd", "Cookie: lang="+lang).Body())
		}()
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return counterValue(n.p.m.coalesced) == clients-2 }, "all but one request per lang waiting")
	close(release)
	wg.Wait()
	if got := n.origin.calls.Load(); got != 2 {
		t.Errorf("origin calls = %d, want 2 (one per lang)", got)
	}
	for i, b := range bodies {
		if lang := []string{"de", "fr"}[i%2]; !strings.Contains(b, "lang="+lang+" ") {
			t.Errorf("client %d (lang=%s) got %q", i, lang, b)
		}
	}
}

// TestRuleKeyFromWhatTheOriginSaw: a rule keying on a forwarding field
// files the response under the value the origin received, which the node
// sets itself for a client that is not a trusted proxy: a client cannot
// store a page built for "http" under "https", and its lookups find what
// its fills stored.
func TestRuleKeyFromWhatTheOriginSaw(t *testing.T) {
	n := newNode(t, Options{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Rules:          ruleSet(t, rules.Spec{KeyHeaders: []string{"X-Forwarded-Proto", "X-Forwarded-Host"}}),
	}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.SetBodyString("built for " + string(req.Header.Peek("X-Forwarded-Proto")) + "://" + string(req.Header.Peek("X-Forwarded-Host")))
	})
	client, ingress := n.clientFrom("203.0.113.9"), n.clientFrom("10.0.0.5")

	// Spoofed by a client: replaced by what the node saw.
	r := n.send(client, "GET", "/p", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example")
	wantStatus(t, r, 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	if string(r.Body()) != "built for http://example.com" {
		t.Fatalf("origin got %q", r.Body())
	}
	// An honest client hits it, spoofing or not.
	wantStatus(t, n.send(client, "GET", "/p"), 200, "ringcache; hit; ttl=60")
	wantStatus(t, n.send(client, "GET", "/p", "X-Forwarded-Proto: https"), 200, "ringcache; hit; ttl=60")
	// The ingress's https requests are another variant, filled for https.
	r = n.send(ingress, "GET", "/p", "X-Forwarded-Proto: https", "X-Forwarded-Host: www.example.org")
	wantStatus(t, r, 200, "ringcache; fwd=vary-miss; fwd-status=200; ttl=60; stored")
	if string(r.Body()) != "built for https://www.example.org" {
		t.Fatalf("origin got %q", r.Body())
	}
	wantStatus(t, n.send(ingress, "GET", "/p", "X-Forwarded-Proto: https", "X-Forwarded-Host: www.example.org"), 200, "ringcache; hit; ttl=60")
	// Without the fields, the ingress's request is the node's own view.
	wantStatus(t, n.send(ingress, "GET", "/p"), 200, "ringcache; hit; ttl=60")
}

func TestRuleStaleIfError(t *testing.T) {
	// StaleKeep < 0 keeps entries only through their freshness and RFC
	// 5861 windows: the rule's window must keep the entry itself.
	n := newNode(t, Options{StaleKeep: -1, Rules: ruleSet(t,
		rules.Spec{PathPrefix: "/grace/", StaleIfError: time.Minute},
	)}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10"))
	n.get("/grace/a")
	n.get("/grace/mr") // replaced below by a must-revalidate response
	n.get("/plain")
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10, must-revalidate"))
	n.clk.Advance(11 * time.Second)
	n.get("/grace/mr")
	n.clk.Advance(40 * time.Second) // /grace/a is 41 s stale, /grace/mr 30 s

	// A transport failure and each of the 5xx of RFC 5861 §4.
	down := error(errors.New("connection refused"))
	n.origin.fail.Store(&down)
	r := n.get("/grace/a")
	wantStatus(t, r, 200, "ringcache; fwd=stale; fwd-status=502; ttl=-41; detail=stale-if-error")
	if string(r.Body()) != "body 1" {
		t.Errorf("stale body %q", r.Body())
	}
	timeout := error(timeoutErr{})
	n.origin.fail.Store(&timeout)
	wantStatus(t, n.get("/grace/a"), 200, "ringcache; fwd=stale; fwd-status=504; ttl=-41; detail=stale-if-error")
	n.origin.fail.Store(nil)
	for _, status := range []int{500, 502, 503, 504} {
		n.origin.set(answer(n.clk, status))
		wantStatus(t, n.get("/grace/a"), 200, fmt.Sprintf("ringcache; fwd=stale; fwd-status=%d; ttl=-41; detail=stale-if-error", status))
	}
	// RFC 9111 §5.2.2.2: must-revalidate still forbids it.
	n.origin.set(answer(n.clk, 503))
	wantStatus(t, n.get("/grace/mr"), 503, "")
	// Without the rule, the origin's error goes through.
	wantStatus(t, n.get("/plain"), 503, "")
	// Past the window, too.
	n.clk.Advance(20 * time.Second)
	wantStatus(t, n.get("/grace/a"), 503, "")
	// A working origin is asked first: nothing stale while it answers.
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10"))
	wantStatus(t, n.get("/grace/b"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=10; stored")
	n.clk.Advance(15 * time.Second)
	wantStatus(t, n.get("/grace/b"), 200, "ringcache; fwd=stale; fwd-status=200; ttl=10; stored")
}

func TestSetRules(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	n.get("/s")
	wantStatus(t, n.get("/s"), 200, "ringcache; hit; ttl=60")
	n.p.SetRules(ruleSet(t, rules.Spec{PathPrefix: "/s", Bypass: true}))
	wantStatus(t, n.get("/s"), 200, "ringcache; fwd=bypass; fwd-status=200; detail=rule")
	n.p.SetRules(nil)
	wantStatus(t, n.get("/s"), 200, "ringcache; hit; ttl=60")
}

// TestRuleOnPeerRequest: the owner matches rules on a request a member
// forwarded, as on a client's: the forward carries the same host, path and
// fields.
func TestRuleOnPeerRequest(t *testing.T) {
	n := newNode(t, Options{Rules: ruleSet(t, rules.Spec{KeyCookies: []string{"lang"}, TTL: time.Hour})}, nil)
	n.origin.set(echo(n.clk))
	wantStatus(t, n.peerDo("GET", "/f", "Cookie: lang=de"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=3600; stored")
	wantStatus(t, n.peerDo("GET", "/f", "Cookie: lang=fr"), 200, "ringcache; fwd=vary-miss; fwd-status=200; ttl=3600; stored")
	r := n.get("/f", "Cookie: lang=de")
	wantStatus(t, r, 200, "ringcache; hit; ttl=3600")
	if !strings.Contains(string(r.Body()), "lang=de") {
		t.Errorf("got %q", r.Body())
	}
}

// TestHitAllocsWithRules: rules that do not match cost the hit path no
// allocation, and neither does a hit keyed by a rule's fields.
func TestHitAllocsWithRules(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	set := ruleSet(t,
		rules.Spec{Host: "*.example.org", Bypass: true},
		rules.Spec{PathPrefix: "/admin/", Bypass: true},
		rules.Spec{PathRegex: `\.(css|js)$`, TTL: time.Hour},
		rules.Spec{Header: "Authorization", Bypass: true},
		rules.Spec{Cookie: "session", Bypass: true},
		rules.Spec{PathPrefix: "/keyed", KeyHeaders: []string{"X-Tenant"}, KeyCookies: []string{"lang"}},
	)
	for _, tc := range []struct {
		name, uri string
		lines     []string
		cs        string
	}{
		{"no rule matches", "/obj", []string{"Cookie: lang=de", "X-Tenant: acme"}, "ringcache; hit; ttl=3600"},
		{"key_headers and key_cookies", "/keyed", []string{"Cookie: lang=de; other=1", "X-Tenant: acme"}, "ringcache; hit; ttl=3600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, clk := clockedStore(t, "ristretto", 64<<20)
			origin := FetcherFunc(func(_ context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
				resp.Header.Set("Cache-Control", "max-age=3600")
				resp.SetBody(make([]byte, 1024))
				return nil
			})
			p := New(Options{Clock: clk.Now, Rules: set}, st, origin)
			ctx := newCtx(tc.uri)
			for _, l := range tc.lines {
				k, v, _ := strings.Cut(l, ":")
				ctx.Request.Header.Set(k, strings.TrimSpace(v))
			}
			serve := func() {
				ctx.Response.Reset()
				p.Handler(ctx)
			}
			serve() // the fill
			serve()
			if cs := string(ctx.Response.Header.Peek("Cache-Status")); cs != tc.cs {
				t.Fatalf("not a hit: %q", cs)
			}
			if n := testing.AllocsPerRun(200, serve); n != 0 {
				t.Fatalf("hit path allocates %.1f times per request, want 0", n)
			}
		})
	}
}

// TestPeerHitKeyedRule: a node that does not own a URL looks up the
// variant its rule's fields select at the owner (same key format, same
// rules), never the URL's entry for requests no rule keys; and it keeps no
// hot copy of a keyed answer, as hot copies are kept by URL alone.
func TestPeerHitKeyedRule(t *testing.T) {
	clk := testutil.NewClock()
	set := ruleSet(t, rules.Spec{PathPrefix: "/k", KeyCookies: []string{"lang"}})
	owner := newNodeAt(t, clk, Options{Name: "owner", Rules: set}, nil)
	owner.origin.set(echo(clk))
	owner.get("/k", "Cookie: lang=fr")
	owner.get("/plain", "Cookie: lang=fr")
	held := map[string]*cache.Entry{}
	owner.st.Range(func(e *cache.Entry) bool { held[string(e.Key())] = e; return true })
	if len(held) != 3 {
		t.Fatalf("owner holds %d entries, want a marker, a variant and /plain", len(held))
	}
	peer := &fakePeer{name: "owner", forward: ownerAnswer, held: held}
	hot := cache.NewLRU(1<<20, cache.WithClock(clk.UnixNano))
	t.Cleanup(hot.Close)
	n := newNodeAt(t, clk, Options{Name: "me", Rules: set, Peers: &fakePeers{owner: peer}, Hot: hot}, nil)
	for range 2 * hotSample {
		r := n.get("/k", "Cookie: lang=fr")
		if !strings.HasPrefix(csOf(r), "owner; hit") || !strings.Contains(string(r.Body()), "lang=fr") {
			t.Fatalf("keyed peer hit: %q %q", csOf(r), r.Body())
		}
	}
	if peer.forwards.Load() != 0 {
		t.Fatalf("%d keyed hits forwarded", peer.forwards.Load())
	}
	if hot.Stats().Items != 0 {
		t.Errorf("%d hot copies of keyed answers", hot.Stats().Items)
	}
	// Another lang: the owner lacks the variant, so it decides.
	n.get("/k", "Cookie: lang=de")
	if peer.forwards.Load() != 1 {
		t.Fatalf("a variant the owner lacks was not forwarded")
	}
	// A URL whose entry no rule keyed, asked for by a keyed request: the
	// plain entry is not this request's; forwarded.
	n.p.SetRules(ruleSet(t, rules.Spec{KeyCookies: []string{"lang"}}))
	n.get("/plain", "Cookie: lang=de")
	if peer.forwards.Load() != 2 {
		t.Fatalf("a keyed request was answered with the URL's unkeyed entry")
	}
}

// BenchmarkHitWithRules: a hit without rules, and with six that do not
// match (every kind of condition evaluated), on the same request.
func BenchmarkHitWithRules(b *testing.B) {
	six := ruleSet(b,
		rules.Spec{Host: "*.example.org", Bypass: true},
		rules.Spec{PathPrefix: "/admin/", Bypass: true},
		rules.Spec{PathRegex: `\.(css|js)$`, TTL: time.Hour},
		rules.Spec{Header: "Authorization", Bypass: true},
		rules.Spec{Cookie: "session", Bypass: true},
		rules.Spec{PathPrefix: "/keyed", KeyCookies: []string{"lang"}},
	)
	for _, tc := range []struct {
		name string
		set  *rules.Set
	}{{"none", nil}, {"six", six}} {
		b.Run(tc.name, func(b *testing.B) {
			st, clk := clockedStore(b, "ristretto", 256<<20)
			p := hitProxy(b, st, 1<<10, clk)
			p.SetRules(tc.set)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := newCtx("/obj")
				ctx.Request.Header.Set("Cookie", "lang=de")
				for pb.Next() {
					ctx.Response.Reset()
					p.Handler(ctx)
				}
			})
		})
	}
}
