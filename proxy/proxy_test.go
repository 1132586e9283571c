package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/h1"
	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// httpDate is c's time as an HTTP-date. The fake clock starts on a whole
// second, which keeps Age arithmetic exact.
func httpDate(c *testutil.Clock) string {
	return string(fasthttp.AppendHTTPDate(nil, c.Now()))
}

// setOriginDate gives a fake origin's response a Date field: fasthttp's Set
// drops Date, as it writes its own, so it is parsed in as the proxy's hits
// do. It resets h: call it first.
func setOriginDate(h *fasthttp.ResponseHeader, date string) {
	h1.NewDateSeed().Seed(h, []byte(date), 0, false)
}

// fakeOrigin is an in-process origin: handle decides each answer; calls
// counts fetches; fail makes the transport fail.
type fakeOrigin struct {
	calls  atomic.Int64
	fail   atomic.Pointer[error]
	mu     sync.Mutex
	handle func(req *fasthttp.Request, resp *fasthttp.Response)
	last   *fasthttp.Request // copy of the last request seen
	// interim holds raw interim responses ("HTTP/1.1 103 ...\r\n...\r\n\r\n")
	// sent before each answer, as the origin client hands them on.
	interim []string
}

func (o *fakeOrigin) Fetch(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	o.calls.Add(1)
	if err := o.fail.Load(); err != nil {
		return *err
	}
	o.mu.Lock()
	h := o.handle
	o.last = &fasthttp.Request{}
	req.CopyTo(o.last)
	interim := o.interim
	o.mu.Unlock()
	if f := h1.InterimFrom(ctx); f != nil {
		for _, raw := range interim {
			var ih fasthttp.ResponseHeader
			ih.SetNoDefaultContentType(true)
			if err := ih.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				panic(err)
			}
			f(ih.StatusCode(), &ih)
		}
	}
	h(req, resp)
	return nil
}

func (o *fakeOrigin) set(h func(req *fasthttp.Request, resp *fasthttp.Response)) {
	o.mu.Lock()
	o.handle = h
	o.mu.Unlock()
}

func (o *fakeOrigin) lastRequest() *fasthttp.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "timeout" }
func (timeoutErr) Timeout() bool { return true }

// node is a proxy served on an in-memory listener.
type node struct {
	t      testing.TB
	p      *Proxy
	st     cache.Store
	origin *fakeOrigin
	clk    *testutil.Clock
	client *fasthttp.Client
	peer   *fasthttp.Client // to PeerHandler, as a member's connection
	ln     *fasthttputil.InmemoryListener
}

func newNode(t testing.TB, o Options, handle func(req *fasthttp.Request, resp *fasthttp.Response)) *node {
	t.Helper()
	return newNodeAt(t, testutil.NewClock(), o, handle)
}

// newNodeAt is newNode on a given fake clock.
func newNodeAt(t testing.TB, clk *testutil.Clock, o Options, handle func(req *fasthttp.Request, resp *fasthttp.Response)) *node {
	t.Helper()
	st := cache.NewLRU(64<<20, cache.WithClock(clk.UnixNano))
	org := &fakeOrigin{handle: handle}
	o.Clock = clk.UnixNano
	p := New(o, st, org)
	serveOn := func(h fasthttp.RequestHandler) (*fasthttp.Client, *fasthttputil.InmemoryListener) {
		ln := fasthttputil.NewInmemoryListener()
		// NoDefaultDate, as the node's servers: the proxy writes each Date.
		srv := &fasthttp.Server{Handler: h1.MarkServed(h), NoDefaultContentType: true, NoDefaultServerHeader: true, NoDefaultDate: true, Logger: quietLogger{}}
		testutil.ServeFasthttp(t, srv, h1.TrackServed(ln))
		return &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}, ln
	}
	t.Cleanup(func() { // runs after the servers' cleanups
		p.Close()
		st.Close()
	})
	c, ln := serveOn(p.Handler)
	peer, _ := serveOn(p.PeerHandler)
	return &node{t: t, p: p, st: st, origin: org, clk: clk, client: c, peer: peer, ln: ln}
}

// raw sends a request exactly as written, on a fresh connection, and
// returns the answer: for requests a client library would not send as
// they are (absolute-form targets, odd Host fields, malformed lines).
func (n *node) raw(req string) *fasthttp.Response {
	n.t.Helper()
	c, err := n.ln.Dial()
	if err != nil {
		n.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		n.t.Fatalf("write %q: %v", req, err)
	}
	resp := &fasthttp.Response{SkipBody: strings.HasPrefix(req, "HEAD ")}
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		n.t.Fatalf("%q: reading the answer: %v", req, err)
	}
	return resp
}

// do sends a request; headers are "Name: value" strings.
func (n *node) do(method, uri string, headers ...string) *fasthttp.Response {
	n.t.Helper()
	return n.send(n.client, method, uri, headers...)
}

// peerDo sends a request through the peer listener, as a member does.
func (n *node) peerDo(method, uri string, headers ...string) *fasthttp.Response {
	n.t.Helper()
	return n.send(n.peer, method, uri, headers...)
}

func (n *node) send(c *fasthttp.Client, method, uri string, headers ...string) *fasthttp.Response {
	n.t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://example.com" + uri)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp := &fasthttp.Response{}
	if err := c.DoTimeout(req, resp, 20*time.Second); err != nil {
		n.t.Fatalf("%s %s: %v", method, uri, err)
	}
	return resp
}

func (n *node) get(uri string, headers ...string) *fasthttp.Response {
	n.t.Helper()
	return n.do("GET", uri, headers...)
}

func csOf(r *fasthttp.Response) string { return string(r.Header.Peek("Cache-Status")) }

// answer returns an origin handler that sends status, the headers, and a
// body naming the request count.
func answer(clk *testutil.Clock, status int, headers ...string) func(*fasthttp.Request, *fasthttp.Response) {
	var n atomic.Int64
	return func(req *fasthttp.Request, resp *fasthttp.Response) {
		if clk != nil {
			setOriginDate(&resp.Header, httpDate(clk))
		}
		resp.SetStatusCode(status)
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			resp.Header.Add(k, strings.TrimSpace(v))
		}
		resp.SetBodyString(fmt.Sprintf("body %d", n.Add(1)))
	}
}

func wantStatus(t *testing.T, r *fasthttp.Response, code int, cs string) {
	t.Helper()
	if r.StatusCode() != code {
		t.Errorf("status = %d, want %d (body %q)", r.StatusCode(), code, r.Body())
	}
	if cs != "" && csOf(r) != cs {
		t.Errorf("Cache-Status = %q, want %q", csOf(r), cs)
	}
}

func TestMissThenHit(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60", "Content-Type: text/plain"))

	r := n.get("/a")
	wantStatus(t, r, 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	if string(r.Body()) != "body 1" || string(r.Header.Peek("Age")) != "0" {
		t.Fatalf("miss: body %q age %q", r.Body(), r.Header.Peek("Age"))
	}
	n.clk.Advance(23 * time.Second)
	r = n.get("/a")
	wantStatus(t, r, 200, "ringcache; hit; ttl=37")
	if string(r.Body()) != "body 1" || string(r.Header.Peek("Age")) != "23" || string(r.Header.ContentType()) != "text/plain" {
		t.Fatalf("hit: body %q age %q type %q", r.Body(), r.Header.Peek("Age"), r.Header.ContentType())
	}
	if got := n.origin.calls.Load(); got != 1 {
		t.Fatalf("origin calls = %d, want 1", got)
	}
	// RFC 9111 §4.2: expired after 60s; without a validator it is refetched.
	n.clk.Advance(40 * time.Second)
	r = n.get("/a")
	wantStatus(t, r, 200, "ringcache; fwd=stale; fwd-status=200; ttl=60; stored")
	if string(r.Body()) != "body 2" {
		t.Fatalf("refetch body %q", r.Body())
	}
}

// TestRepeatedFieldsFromCache: every line of a repeated field comes back
// from the cache, in order, on a 200 and on a 304 (RFC 9110 §5.3), and a
// stale-while-revalidate window survives storage.
func TestRepeatedFieldsFromCache(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60, stale-while-revalidate=30",
		"Link: </a.css>; rel=preload", "ETag: \"v1\"", "link: </b.js>; rel=preload", "Vary: Accept", "Vary: Accept-Language"))
	n.get("/r")
	links := func(r *fasthttp.Response) []string {
		var vs []string
		for _, v := range r.Header.PeekAll("Link") {
			vs = append(vs, string(v))
		}
		return vs
	}
	want := []string{"</a.css>; rel=preload", "</b.js>; rel=preload"}
	r := n.get("/r")
	wantStatus(t, r, 200, "ringcache; hit; ttl=60")
	if got := links(r); !slices.Equal(got, want) {
		t.Fatalf("Link lines on a hit: %q; want %q", got, want)
	}
	r = n.get("/r", `If-None-Match: "v1"`)
	wantStatus(t, r, 304, "ringcache; hit; ttl=60")
	if got := string(r.Header.Peek("ETag")); got != `"v1"` {
		t.Fatalf("ETag on a 304: %q", got)
	}
	n.clk.Advance(70 * time.Second) // stale, inside the 30 s window: served at once
	r = n.get("/r")
	if r.StatusCode() != 200 || !strings.Contains(csOf(r), "hit") || string(r.Body()) != "body 1" {
		t.Fatalf("stale-while-revalidate: status %d, Cache-Status %q, body %q", r.StatusCode(), csOf(r), r.Body())
	}
}

func TestAgeFromUpstream(t *testing.T) {
	// RFC 9111 §4.2.3: the Age a cache sends includes the upstream Age.
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=100", "Age: 30"))
	n.get("/a")
	n.clk.Advance(10 * time.Second)
	r := n.get("/a")
	wantStatus(t, r, 200, "ringcache; hit; ttl=60")
	if got := string(r.Header.Peek("Age")); got != "40" {
		t.Fatalf("Age = %s, want 40", got)
	}
}

func TestNotStoredResponses(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		headers []string
		req     []string
		detail  string
	}{
		{"RFC9111 §5.2.2.5 no-store", 200, []string{"Cache-Control: no-store"}, nil, "no-store"},
		{"RFC9111 §5.2.2.7 private", 200, []string{"Cache-Control: private, max-age=60"}, nil, "private"},
		{"Set-Cookie not shared by default", 200, []string{"Cache-Control: max-age=60", "Set-Cookie: a=b"}, nil, "set-cookie"},
		{"RFC9111 §4.1 Vary: * never served", 200, []string{"Cache-Control: max-age=60", "Vary: *"}, nil, "vary-star"},
		{"RFC9111 §3 no freshness, no validator", 200, nil, nil, "no-freshness"},
		{"RFC9111 §3 500 without explicit freshness", 500, nil, nil, "status"},
		{"RFC9111 §3.5 Authorization without public", 200, []string{"Cache-Control: max-age=60"}, []string{"Authorization: Bearer x"}, "authorization"},
		{"RFC9111 §5.2.1.5 request no-store", 200, []string{"Cache-Control: max-age=60"}, []string{"Cache-Control: no-store"}, "no-store"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, Options{}, nil)
			n.origin.set(answer(n.clk, tc.status, tc.headers...))
			for i := 1; i <= 2; i++ {
				r := n.get("/x", tc.req...)
				if r.StatusCode() != tc.status || string(r.Body()) != fmt.Sprintf("body %d", i) {
					t.Fatalf("request %d: %d %q", i, r.StatusCode(), r.Body())
				}
				if cs := csOf(r); !strings.Contains(cs, "detail="+tc.detail) || strings.Contains(cs, "stored") {
					t.Fatalf("request %d: Cache-Status %q, want detail=%s and not stored", i, cs, tc.detail)
				}
			}
			if n.st.Stats().Items > 1 { // at most a pass marker
				t.Fatalf("store holds %d items", n.st.Stats().Items)
			}
		})
	}
}

func TestSetCookieStripped(t *testing.T) {
	n := newNode(t, Options{Policy: httpcache.Policy{StripSetCookie: true}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60", "Set-Cookie: session=alice"))
	r := n.get("/a")
	if !strings.Contains(string(r.Header.Peek("Set-Cookie")), "alice") {
		t.Fatalf("the requester must still get its cookie, got %q", r.Header.Peek("Set-Cookie"))
	}
	r = n.get("/a")
	wantStatus(t, r, 200, "ringcache; hit; ttl=60")
	if v := r.Header.Peek("Set-Cookie"); len(v) > 0 {
		t.Fatalf("another user got Set-Cookie %q", v)
	}
}

func TestAuthorization(t *testing.T) {
	n := newNode(t, Options{}, nil)
	// RFC 9111 §3.5: public lets a response to an authenticated request be shared.
	n.origin.set(answer(n.clk, 200, "Cache-Control: public, max-age=60"))
	n.get("/pub", "Authorization: Bearer a")
	wantStatus(t, n.get("/pub", "Authorization: Bearer b"), 200, "ringcache; hit; ttl=60")

	// A response stored for anonymous users is not given to a request with
	// credentials unless it allows sharing.
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	n.get("/anon")
	r := n.get("/anon", "Authorization: Bearer a")
	if strings.Contains(csOf(r), "hit") {
		t.Fatalf("credentialed request served from cache: %q", csOf(r))
	}
	if got := n.origin.lastRequest().Header.Peek("Authorization"); string(got) != "Bearer a" {
		t.Fatalf("origin got Authorization %q", got)
	}
}

func TestCoalescing(t *testing.T) {
	const clients = 20
	release := make(chan struct{})
	n := newNode(t, Options{}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		<-release
		answer(n.clk, 200, "Cache-Control: max-age=60")(req, resp)
	})
	var wg sync.WaitGroup
	bodies := make([]string, clients)
	statuses := make([]string, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := n.get("/herd")
			bodies[i], statuses[i] = string(r.Body()), csOf(r)
		}()
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return n.p.m != nil && counterValue(n.p.m.coalesced) == clients-1 }, "all but one request waiting")
	close(release)
	wg.Wait()
	if got := n.origin.calls.Load(); got != 1 {
		t.Fatalf("origin calls = %d, want 1", got)
	}
	collapsed := 0
	for i := range clients {
		if bodies[i] != "body 1" {
			t.Fatalf("client %d got %q", i, bodies[i])
		}
		if strings.Contains(statuses[i], "collapsed") {
			collapsed++
		}
	}
	if collapsed != clients-1 {
		t.Fatalf("%d responses say collapsed, want %d", collapsed, clients-1)
	}
}

func TestCoalescingUncacheable(t *testing.T) {
	// An uncacheable answer is not shared: each waiter gets its own, none
	// waits for another twice, nothing is stored.
	const clients = 8
	release := make(chan struct{})
	n := newNode(t, Options{}, nil)
	var seq atomic.Int64
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		if seq.Add(1) == 1 {
			<-release
		}
		resp.Header.Set("Cache-Control", "private")
		resp.SetBodyString("user " + string(req.Header.Peek("X-User")))
	})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := strconv.Itoa(i)
			r := n.get("/me", "X-User: "+user)
			if string(r.Body()) != "user "+user {
				t.Errorf("user %s got %q", user, r.Body())
			}
		}()
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return counterValue(n.p.m.coalesced) == clients-1 }, "waiters")
	close(release)
	wg.Wait()
	if got := n.origin.calls.Load(); got != clients {
		t.Fatalf("origin calls = %d, want %d", got, clients)
	}
	// The URL is now known uncacheable: the next requests skip coalescing.
	r := n.get("/me", "X-User: z")
	if cs := csOf(r); !strings.Contains(cs, "fwd=bypass") {
		t.Fatalf("Cache-Status %q, want fwd=bypass (hit-for-pass)", cs)
	}
}

func TestCoalescingLeaderPanics(t *testing.T) {
	// A panic in the leader's fetch must not wedge the key.
	n := newNode(t, Options{}, nil)
	var first atomic.Bool
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		if !first.Swap(true) {
			panic("boom")
		}
		answer(n.clk, 200, "Cache-Control: max-age=60")(req, resp)
	})
	if r := n.get("/p"); r.StatusCode() != 500 {
		t.Fatalf("panicking fetch answered %d", r.StatusCode())
	}
	wantStatus(t, n.get("/p"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
}

func TestVary(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.Header.Set("Vary", "Accept-Language")
		resp.SetBodyString("lang=" + string(req.Header.Peek("Accept-Language")))
	})
	wantStatus(t, n.get("/v", "Accept-Language: en"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	wantStatus(t, n.get("/v", "Accept-Language: fr"), 200, "ringcache; fwd=vary-miss; fwd-status=200; ttl=60; stored")
	for _, lang := range []string{"en", "fr"} {
		r := n.get("/v", "Accept-Language: "+lang)
		wantStatus(t, r, 200, "ringcache; hit; ttl=60")
		if string(r.Body()) != "lang="+lang {
			t.Fatalf("%s variant got %q", lang, r.Body())
		}
	}
	r := n.get("/v")
	if string(r.Body()) != "lang=" || !strings.Contains(csOf(r), "vary-miss") {
		t.Fatalf("no Accept-Language: %q %q", r.Body(), csOf(r))
	}
	if got := n.origin.calls.Load(); got != 3 {
		t.Fatalf("origin calls = %d, want 3", got)
	}
	// An unsafe method invalidates every variant (RFC 9111 §4.4), and they
	// do not come back when the URL is cached again.
	n.do("POST", "/v")
	n.clk.Advance(time.Second) // a fill that starts with the invalidation is not stored
	n.get("/v", "Accept-Language: en")
	r = n.get("/v", "Accept-Language: fr")
	if !strings.Contains(csOf(r), "vary-miss") {
		t.Fatalf("fr variant survived invalidation: %q", csOf(r))
	}
}

func TestRevalidation304(t *testing.T) {
	n := newNode(t, Options{StaleKeep: time.Hour}, nil)
	var version atomic.Int64
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		setOriginDate(&resp.Header, httpDate(n.clk))
		resp.Header.Set("ETag", `"v1"`)
		resp.Header.Set("Cache-Control", "max-age=10")
		resp.Header.Set("X-Version", strconv.FormatInt(version.Add(1), 10))
		if string(req.Header.Peek("If-None-Match")) == `"v1"` {
			resp.SetStatusCode(304)
			return
		}
		resp.SetBodyString("payload")
	})
	n.get("/r")
	n.clk.Advance(15 * time.Second)
	r := n.get("/r")
	// RFC 9111 §4.3.4: the 304 freshens the stored response and updates its headers.
	wantStatus(t, r, 200, "ringcache; fwd=stale; fwd-status=304; ttl=10; stored")
	if string(r.Body()) != "payload" || string(r.Header.Peek("X-Version")) != "2" {
		t.Fatalf("after 304: body %q X-Version %q", r.Body(), r.Header.Peek("X-Version"))
	}
	r = n.get("/r")
	wantStatus(t, r, 200, "ringcache; hit; ttl=10")
	if string(r.Header.Peek("X-Version")) != "2" {
		t.Fatalf("merged header not stored: %q", r.Header.Peek("X-Version"))
	}
}

func TestNoCacheResponseRevalidatesEveryTime(t *testing.T) {
	// RFC 9111 §5.2.2.4: no-cache responses are stored but validated before each reuse.
	n := newNode(t, Options{}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Cache-Control", "no-cache")
		resp.Header.Set("ETag", `"e"`)
		if len(req.Header.Peek("If-None-Match")) > 0 {
			resp.SetStatusCode(304)
			return
		}
		resp.SetBodyString("data")
	})
	n.get("/nc")
	r := n.get("/nc")
	if string(r.Body()) != "data" || !strings.Contains(csOf(r), "fwd-status=304") {
		t.Fatalf("got %q %q", r.Body(), csOf(r))
	}
	if got := n.origin.calls.Load(); got != 2 {
		t.Fatalf("origin calls = %d, want 2", got)
	}
}

func TestClientConditionalFromCache(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60", `ETag: "abc"`, "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT"))
	n.get("/c")
	cases := []struct {
		name   string
		header string
		status int
	}{
		{"RFC9110 §13.1.2 If-None-Match match", `If-None-Match: "abc"`, 304},
		{"RFC9110 §13.1.2 weak comparison", `If-None-Match: W/"abc"`, 304},
		{"RFC9110 §13.1.2 no match", `If-None-Match: "zzz"`, 200},
		{"RFC9110 §13.1.3 If-Modified-Since", "If-Modified-Since: Tue, 02 Jan 2024 00:00:00 GMT", 304},
		{"RFC9110 §13.1.3 modified since", "If-Modified-Since: Sun, 31 Dec 2023 00:00:00 GMT", 200},
		{"RFC9110 §13.1.1 If-Match fails", `If-Match: "zzz"`, 412},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := n.get("/c", tc.header)
			if r.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode(), tc.status)
			}
			if tc.status == 304 && (len(r.Body()) != 0 || string(r.Header.Peek("ETag")) != `"abc"`) {
				t.Fatalf("304 body %q ETag %q", r.Body(), r.Header.Peek("ETag"))
			}
		})
	}
	if got := n.origin.calls.Load(); got != 1 {
		t.Fatalf("origin calls = %d, want 1", got)
	}
}

func TestHeadFromGet(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		if !req.Header.IsGet() {
			t.Errorf("origin got %s, want GET fill", req.Header.Method())
		}
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.SetBodyString("0123456789")
	})
	n.get("/h")
	r := n.do("HEAD", "/h")
	wantStatus(t, r, 200, "ringcache; hit; ttl=60")
	if r.Header.ContentLength() != 10 || len(r.Body()) != 0 {
		t.Fatalf("HEAD: Content-Length %d body %q", r.Header.ContentLength(), r.Body())
	}
	// A HEAD miss fills with GET and stores the body for later GETs.
	n.do("HEAD", "/h2")
	r = n.get("/h2")
	wantStatus(t, r, 200, "ringcache; hit; ttl=60")
	if string(r.Body()) != "0123456789" {
		t.Fatalf("GET after HEAD miss: %q", r.Body())
	}
}

func TestUnsafeMethodsInvalidate(t *testing.T) {
	for _, method := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		t.Run(method, func(t *testing.T) {
			n := newNode(t, Options{}, nil)
			n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
				if !req.Header.IsGet() {
					if string(req.Body()) != "payload" {
						t.Errorf("origin got body %q", req.Body())
					}
					resp.Header.Set("Location", "/other")
					resp.SetStatusCode(201)
					return
				}
				resp.Header.Set("Cache-Control", "max-age=60")
				resp.SetBodyString("page")
			})
			n.get("/u")
			n.get("/other")
			req := fasthttp.AcquireRequest()
			req.Header.SetMethod(method)
			req.SetRequestURI("http://example.com/u")
			req.SetBodyString("payload")
			resp := &fasthttp.Response{}
			if err := n.client.Do(req, resp); err != nil {
				t.Fatal(err)
			}
			wantStatus(t, resp, 201, "ringcache; fwd=method; fwd-status=201")
			// RFC 9111 §4.4: the target URI and the Location URI are invalidated.
			for _, u := range []string{"/u", "/other"} {
				if cs := csOf(n.get(u)); !strings.Contains(cs, "uri-miss") {
					t.Fatalf("%s after %s: %q", u, method, cs)
				}
			}
		})
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10, stale-while-revalidate=30"))
	n.get("/s")
	n.clk.Advance(15 * time.Second)
	release := make(chan struct{})
	next := answer(n.clk, 200, "Cache-Control: max-age=10, stale-while-revalidate=30")
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		<-release
		next(req, resp)
	})
	for range 5 {
		r := n.get("/s")
		if string(r.Body()) != "body 1" || !strings.Contains(csOf(r), "hit; ttl=-5; detail=stale-while-revalidate") {
			t.Fatalf("stale answer: %q %q", r.Body(), csOf(r))
		}
	}
	close(release)
	n.p.Close() // wait for the background refresh
	if got := n.origin.calls.Load(); got != 2 {
		t.Fatalf("origin calls = %d, want 2 (one background refresh)", got)
	}
	r := n.get("/s")
	wantStatus(t, r, 200, "ringcache; hit; ttl=10")
	if string(r.Body()) != "body 1" {
		t.Fatalf("after refresh: %q", r.Body())
	}
	// Past the window: validated in the foreground.
	n.clk.Advance(50 * time.Second)
	r = n.get("/s")
	if string(r.Body()) != "body 2" || !strings.Contains(csOf(r), "fwd=stale") {
		t.Fatalf("past the window: %q %q", r.Body(), csOf(r))
	}
}

func TestStaleIfError(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10, stale-if-error=60"))
	n.get("/e")
	n.clk.Advance(20 * time.Second)

	// Transport failure.
	down := error(errors.New("connection refused"))
	n.origin.fail.Store(&down)
	r := n.get("/e")
	wantStatus(t, r, 200, "ringcache; fwd=stale; fwd-status=502; ttl=-10; detail=stale-if-error")
	if string(r.Body()) != "body 1" {
		t.Fatalf("stale body %q", r.Body())
	}
	// A 5xx answer is an error too (RFC 5861 §4).
	n.origin.fail.Store(nil)
	n.origin.set(answer(n.clk, 503))
	wantStatus(t, n.get("/e"), 200, "ringcache; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error")
	// Beyond the window the error goes through, and is not stored.
	n.clk.Advance(time.Minute)
	r = n.get("/e")
	if r.StatusCode() != 503 {
		t.Fatalf("past stale-if-error: %d", r.StatusCode())
	}
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10"))
	if r := n.get("/e"); r.StatusCode() != 200 {
		t.Fatalf("error was cached: %d", r.StatusCode())
	}
}

// TestStaleIfErrorStatuses: only 500, 502, 503 and 504 are errors a stale
// response may stand in for (RFC 5861 §4); a 501 or a 505 is the origin's
// answer, relayed (RFC 9111 §4.2.4: nothing permits the stale one).
func TestStaleIfErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		status int
		stale  bool
	}{{500, true}, {501, false}, {502, true}, {503, true}, {504, true}, {505, false}, {599, false}} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			n := newNode(t, Options{}, answer(nil, 200, "Cache-Control: max-age=10, stale-if-error=60"))
			n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10, stale-if-error=60"))
			n.get("/e")
			n.clk.Advance(20 * time.Second)
			n.origin.set(answer(n.clk, tc.status))
			r := n.get("/e")
			if stale := r.StatusCode() == 200; stale != tc.stale {
				t.Errorf("origin %d: answered %d %q, want stale %v", tc.status, r.StatusCode(), csOf(r), tc.stale)
			}
		})
	}
}

// TestAgeOverflow: an age past what the cache holds is sent as 2147483648
// (RFC 9111 §5.1, §1.2.2).
func TestAgeOverflow(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=2147483648, public", "Age: 99999999999"))
	n.get("/old")
	r := n.get("/old")
	if got := string(r.Header.Peek("Age")); got != "2147483648" {
		t.Errorf("Age = %q (%q), want 2147483648", got, csOf(r))
	}
}

func TestMustRevalidateNeverStale(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=10, must-revalidate, stale-if-error=60"))
	n.get("/m")
	n.clk.Advance(20 * time.Second)
	down := error(errors.New("refused"))
	n.origin.fail.Store(&down)
	// RFC 9111 §5.2.2.2: a cache that cannot validate answers with an error.
	if r := n.get("/m", "Cache-Control: max-stale=100"); r.StatusCode() != 502 {
		t.Fatalf("must-revalidate served stale: %d %q", r.StatusCode(), csOf(r))
	}
}

func TestOriginFailures(t *testing.T) {
	n := newNode(t, Options{}, nil)
	to := error(timeoutErr{})
	n.origin.fail.Store(&to)
	r := n.get("/t")
	wantStatus(t, r, 504, "ringcache; fwd=uri-miss; detail=origin-timeout")
	refused := error(errors.New("refused"))
	n.origin.fail.Store(&refused)
	wantStatus(t, n.get("/t"), 502, "ringcache; fwd=uri-miss; detail=origin-error")
	// Recovery: nothing bad was stored.
	n.origin.fail.Store(nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	wantStatus(t, n.get("/t"), 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
}

func TestRequestDirectives(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	for i := range 5 {
		n.get(fmt.Sprintf("/q%d", i))
	}
	n.get("/q")
	n.clk.Advance(30 * time.Second)
	cases := []struct {
		name, header, want string
	}{
		{"RFC9111 §5.2.1.4 no-cache", "Cache-Control: no-cache", "fwd=request"},
		{"RFC9111 §5.4 Pragma no-cache", "Pragma: no-cache", "fwd=request"},
		{"RFC9111 §5.2.1.1 max-age exceeded", "Cache-Control: max-age=10", "fwd=stale"},
		{"RFC9111 §5.2.1.1 max-age ok", "Cache-Control: max-age=100", "hit"},
		{"RFC9111 §5.2.1.3 min-fresh unmet", "Cache-Control: min-fresh=40", "fwd=stale"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if cs := csOf(n.get(fmt.Sprintf("/q%d", i), tc.header)); !strings.Contains(cs, tc.want) {
				t.Fatalf("Cache-Status %q, want %s", cs, tc.want)
			}
		})
	}
	// RFC 9111 §5.2.1.2 max-stale; §5.2.1.7 only-if-cached.
	n.clk.Advance(2 * time.Minute)
	if cs := csOf(n.get("/q", "Cache-Control: max-stale")); !strings.Contains(cs, "detail=max-stale") {
		t.Fatalf("max-stale: %q", cs)
	}
	if r := n.get("/nothing", "Cache-Control: only-if-cached"); r.StatusCode() != 504 {
		t.Fatalf("only-if-cached miss: %d", r.StatusCode())
	}
}

func TestHopByHopAndForwarding(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.Header.Set("Connection", "X-Secret-Hop")
		resp.Header.Set("X-Secret-Hop", "1")
		resp.Header.Set("Keep-Alive", "timeout=5")
		resp.Header.Set("Proxy-Authenticate", "Basic")
		resp.Header.Set("Upgrade", "h2c")
		resp.SetBodyString("ok")
	})
	r := n.get("/hop", "Connection: X-Client-Hop", "X-Client-Hop: 1", "Keep-Alive: 300", "TE: trailers",
		"Proxy-Authorization: Basic eA==", "X-Forwarded-Host: evil.example", "X-Forwarded-For: 6.6.6.6", "Via: 1.0 upstream")
	req := n.origin.lastRequest()
	for _, h := range []string{"X-Client-Hop", "Keep-Alive", "TE", "Proxy-Authorization"} {
		if v := req.Header.Peek(h); len(v) > 0 {
			t.Errorf("origin got hop-by-hop %s: %q", h, v)
		}
	}
	if got := string(req.Header.Peek("X-Forwarded-Host")); got != "example.com" {
		t.Errorf("X-Forwarded-Host = %q, want the real Host", got)
	}
	if got := string(req.Header.Peek("X-Forwarded-For")); strings.Contains(got, "6.6.6.6") {
		t.Errorf("spoofed X-Forwarded-For passed: %q", got)
	}
	if got := string(req.Header.Peek("Via")); got != "1.0 upstream, 1.1 ringcache" {
		t.Errorf("Via = %q", got)
	}
	for _, resp := range []*fasthttp.Response{r, n.get("/hop")} {
		for _, h := range []string{"X-Secret-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
			if v := resp.Header.Peek(h); len(v) > 0 {
				t.Errorf("client got hop-by-hop %s: %q", h, v)
			}
		}
		if got := string(resp.Header.Peek("Via")); got != "1.1 ringcache" {
			t.Errorf("response Via = %q", got)
		}
	}
}

func TestLargeObjectStreamedNotStored(t *testing.T) {
	const size = 3 << 20
	n := newNode(t, Options{MaxObjectSize: 1 << 20}, nil)
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Cache-Control", "max-age=60")
		if req.URI().QueryArgs().Has("chunked") {
			resp.SetBodyStream(bytes.NewReader(body), -1)
		} else {
			resp.SetBodyStream(bytes.NewReader(body), len(body))
		}
	})
	for _, uri := range []string{"/big", "/big?chunked=1"} {
		r := n.get(uri)
		if !bytes.Equal(r.Body(), body) {
			t.Fatalf("%s: got %d bytes, want %d intact", uri, len(r.Body()), len(body))
		}
		if cs := csOf(r); !strings.Contains(cs, "detail=too-large") {
			t.Fatalf("%s: Cache-Status %q", uri, cs)
		}
	}
	n.get("/big")
	if got := n.origin.calls.Load(); got != 3 {
		t.Fatalf("origin calls = %d, want 3 (never stored)", got)
	}
}

func TestRangeFromCache(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.Header.Set("ETag", `"r"`)
		resp.SetBodyString("0123456789")
	})
	// A range miss is relayed, not stored.
	if r := n.get("/rg", "Range: bytes=0-3"); r.StatusCode() != 200 && r.StatusCode() != 206 {
		t.Fatalf("range miss: %d", r.StatusCode())
	}
	n.get("/rg")
	r := n.get("/rg", "Range: bytes=2-5")
	if r.StatusCode() != 206 || string(r.Body()) != "2345" || string(r.Header.Peek("Content-Range")) != "bytes 2-5/10" {
		t.Fatalf("range hit: %d %q %q", r.StatusCode(), r.Body(), r.Header.Peek("Content-Range"))
	}
	if r := n.get("/rg", "Range: bytes=50-60"); r.StatusCode() != 416 {
		t.Fatalf("unsatisfiable range: %d", r.StatusCode())
	}
	if r := n.get("/rg", "Range: bytes=2-5", `If-Range: "other"`); r.StatusCode() != 200 || len(r.Body()) != 10 {
		t.Fatalf("If-Range mismatch must send the full body: %d", r.StatusCode())
	}
}

func TestCacheKeyOptions(t *testing.T) {
	n := newNode(t, Options{Key: cache.KeyOptions{IgnoreQuery: []string{"utm_source"}, SortQuery: true}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	n.get("/k?a=1&b=2")
	for _, u := range []string{"/k?b=2&a=1", "/k?a=1&utm_source=x&b=2"} {
		wantStatus(t, n.get(u), 200, "ringcache; hit; ttl=60")
	}
	if cs := csOf(n.get("/k?a=1&b=3")); !strings.Contains(cs, "uri-miss") {
		t.Fatalf("different query shared an entry: %q", cs)
	}
	// The host is part of the key.
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("http://other.example/k?a=1&b=2")
	resp := &fasthttp.Response{}
	if err := n.client.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if cs := csOf(resp); !strings.Contains(cs, "uri-miss") {
		t.Fatalf("other host shared an entry: %q", cs)
	}
}

func TestBadRequests(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	for _, m := range []string{"CONNECT", "TRACE"} {
		if r := n.do(m, "/x"); r.StatusCode() != 405 {
			t.Errorf("%s: %d, want 405", m, r.StatusCode())
		}
	}
	// RFC 9110 §9.3.6: CONNECT's target is authority-form; refused for its
	// method, whatever it names.
	if r := n.raw("CONNECT victim.com:443 HTTP/1.1\r\nHost: victim.com:443\r\n\r\n"); r.StatusCode() != 405 {
		t.Errorf("CONNECT in authority-form: %d, want 405", r.StatusCode())
	}
	// Raw malformed requests on a real connection get a 4xx, never a crash.
	for _, raw := range []string{
		"GET /x HTTP/1.1\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
		"BLAH\r\n\r\n",
	} {
		if r := n.raw(raw); r.StatusCode() < 400 || r.StatusCode() > 499 {
			t.Errorf("%q answered %d", raw, r.StatusCode())
		}
	}
	if n.origin.calls.Load() != 0 {
		t.Errorf("malformed requests reached the origin %d times", n.origin.calls.Load())
	}
}

// quietLogger drops fasthttp's complaints about the malformed requests
// tests send on purpose.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// TestMaxForwards: an OPTIONS request with Max-Forwards 0 is answered here;
// otherwise the value goes on one less (RFC 9110 §7.6.2).
func TestMaxForwards(t *testing.T) {
	n := newNode(t, Options{}, answer(nil, 200))
	r := n.do("OPTIONS", "/o", "Max-Forwards: 0")
	if r.StatusCode() != 200 || n.origin.calls.Load() != 0 || len(r.Header.Peek("Date")) == 0 {
		t.Fatalf("Max-Forwards 0: %d, origin calls %d, Date %q", r.StatusCode(), n.origin.calls.Load(), r.Header.Peek("Date"))
	}
	n.do("OPTIONS", "/o", "Max-Forwards: 5")
	if got := string(n.origin.lastRequest().Header.Peek("Max-Forwards")); got != "4" {
		t.Errorf("forwarded Max-Forwards %q, want 4", got)
	}
	n.do("OPTIONS", "/o")
	if got := n.origin.lastRequest().Header.Peek("Max-Forwards"); len(got) != 0 {
		t.Errorf("Max-Forwards %q invented", got)
	}
}
