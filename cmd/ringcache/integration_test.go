package main

// End-to-end tests of one ringcache node: a real node (startNode) on a
// loopback socket in front of the real demo origin, driven by a fasthttp
// client. The proxy's own unit tests use a fake origin; these check that the
// pieces agree with each other over the wire.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/origin"
	"github.com/valyala/fasthttp"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testOrigin is a demo origin serving on a loopback listener.
type testOrigin struct {
	srv  *origin.Server
	addr string
	done chan struct{}
}

// serveLoopback serves h on a fresh loopback port until the test ends and
// returns the address. It starts the server as a node does (serve), so a
// test that ends at once still stops it.
func serveLoopback(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	serve(srv, ln, func(error) { close(done) })
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func startTestOrigin(t testing.TB, addr string) *testOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("origin listen %s: %v", addr, err)
	}
	o := &testOrigin{srv: origin.NewServer(origin.ServerOptions{}), addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		_ = o.srv.Serve(ln)
	}()
	t.Cleanup(o.stop)
	return o
}

// stop shuts the origin down and waits for Serve to return; idempotent.
func (o *testOrigin) stop() {
	_ = o.srv.Shutdown()
	<-o.done
}

// testNode is a running node, its origin and a client.
type testNode struct {
	n      *node
	cfg    config.Config
	origin *testOrigin // replaced by restartOrigin
	client *fasthttp.Client
	base   string // http://<node addr>
}

// startTestNode starts a demo origin and a node in front of it, both on
// 127.0.0.1:0. mutate, if not nil, adjusts the configuration first. Cleanup
// shuts both down.
func startTestNode(t testing.TB, mutate func(*config.Config)) *testNode {
	t.Helper()
	o := startTestOrigin(t, "127.0.0.1:0")
	cfg := config.Default()
	cfg.Origin = "http://" + o.addr
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CacheSize = 64 << 20
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	n, err := startNode(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("startNode: %v", err)
	}
	tn := &testNode{
		n: n, cfg: cfg, origin: o,
		client: &fasthttp.Client{ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second, MaxConnsPerHost: 1024},
		base:   "http://" + n.Addr(),
	}
	// Registered after the origin's cleanup, so it runs first: the node
	// drains before its origin goes away.
	t.Cleanup(func() {
		tn.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	return tn
}

// restartOrigin stops the origin and starts a fresh one (counters at zero)
// on the same address.
func (tn *testNode) restartOrigin(t testing.TB) {
	t.Helper()
	tn.origin.stop()
	tn.origin = startTestOrigin(t, tn.origin.addr)
}

func (tn *testNode) originURL(path string) string { return "http://" + tn.origin.addr + path }
func (tn *testNode) adminURL(path string) string  { return "http://" + tn.n.AdminAddr() + path }

// reply is a response copied out of fasthttp's pooled objects.
type reply struct {
	status        int
	header        map[string]string // canonical name -> value
	body          []byte
	contentLength int
}

func (r reply) cacheStatus() string { return r.header["Cache-Status"] }

// do sends one request; hdr holds name, value pairs. Safe in goroutines.
func do(c *fasthttp.Client, method, url string, body []byte, hdr ...string) (reply, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := c.DoTimeout(req, resp, 20*time.Second); err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	r := reply{status: resp.StatusCode(), header: map[string]string{}, body: bytes.Clone(resp.Body()), contentLength: resp.Header.ContentLength()}
	for k, v := range resp.Header.All() {
		r.header[string(k)] = string(v)
	}
	return r, nil
}

func (tn *testNode) do(t testing.TB, method, url string, body []byte, hdr ...string) reply {
	t.Helper()
	r, err := do(tn.client, method, url, body, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// get requests path from the node.
func (tn *testNode) get(t testing.TB, path string, hdr ...string) reply {
	t.Helper()
	return tn.do(t, fasthttp.MethodGet, tn.base+path, nil, hdr...)
}

// control POSTs to one of the origin's /__origin/ endpoints.
func (tn *testNode) control(t testing.TB, pathAndQuery string) {
	t.Helper()
	r := tn.do(t, fasthttp.MethodPost, tn.originURL("/__origin/"+pathAndQuery), nil)
	if r.status != fasthttp.StatusOK {
		t.Fatalf("origin control %s: status %d: %s", pathAndQuery, r.status, r.body)
	}
}

func expectStatus(t testing.TB, what string, r reply, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d (Cache-Status %q, body %.200q)", what, r.status, want, r.cacheStatus(), r.body)
	}
}

func expectCacheStatus(t testing.TB, what string, r reply, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(r.cacheStatus(), p) {
			t.Errorf("%s: Cache-Status %q lacks %q", what, r.cacheStatus(), p)
		}
	}
}

// ageOf returns a response's Age, failing unless it is a non-negative integer.
func ageOf(t testing.TB, what string, r reply) int {
	t.Helper()
	age, err := strconv.Atoi(r.header["Age"])
	if err != nil || age < 0 {
		t.Fatalf("%s: Age = %q, want a non-negative integer", what, r.header["Age"])
	}
	return age
}

func TestMissThenHit(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/a?cc=max-age=60"
	// ttl is what is left of max-age once Age has passed. Age is 0 unless a
	// second boundary falls between the origin's Date and the answer, so
	// the expected strings are written in terms of Age rather than assumed.
	first := tn.get(t, path)
	expectStatus(t, "miss", first, 200)
	age := ageOf(t, "miss", first)
	if got, want := first.cacheStatus(), fmt.Sprintf("ringcache; fwd=uri-miss; fwd-status=200; ttl=%d; stored", 60-age); got != want {
		t.Errorf("miss Cache-Status = %q, want %q", got, want)
	}
	second := tn.get(t, path)
	expectStatus(t, "hit", second, 200)
	age = ageOf(t, "hit", second)
	if got, want := second.cacheStatus(), fmt.Sprintf("ringcache; hit; ttl=%d", 60-age); got != want {
		t.Errorf("hit Cache-Status = %q, want %q", got, want)
	}
	if !bytes.Equal(first.body, second.body) || len(first.body) == 0 {
		t.Errorf("hit body %q differs from miss body %q", second.body, first.body)
	}
	if n := tn.origin.srv.Requests(); n != 1 {
		t.Errorf("origin requests = %d, want 1", n)
	}
}

func TestThunderingHerdCollapses(t *testing.T) {
	tn := startTestNode(t, nil)
	const clients = 200
	// Open the connections first, so that the herd arrives within the
	// origin's delay even on a slow machine.
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = do(tn.client, fasthttp.MethodGet, fmt.Sprintf("%s/warm%d?cc=no-store", tn.base, i), nil)
		}()
	}
	wg.Wait()
	before := tn.origin.srv.Requests()

	const path = "/herd?delay=300ms&cc=max-age=60"
	replies := make([]reply, clients)
	errs := make([]error, clients)
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i], errs[i] = do(tn.client, fasthttp.MethodGet, tn.base+path, nil)
		}()
	}
	close(start)
	wg.Wait()

	if n := tn.origin.srv.Requests() - before; n != 1 {
		t.Errorf("origin requests for the herd = %d, want 1", n)
	}
	var collapsed, hits, leaders int
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		expectStatus(t, fmt.Sprintf("client %d", i), r, 200)
		if !bytes.Equal(r.body, replies[0].body) {
			t.Errorf("client %d body %q, client 0 body %q", i, r.body, replies[0].body)
		}
		cs := r.cacheStatus()
		switch {
		case strings.Contains(cs, "collapsed"):
			collapsed++
		case strings.Contains(cs, "; hit"):
			hits++ // arrived after the fill
		case strings.Contains(cs, "fwd=uri-miss") && strings.Contains(cs, "stored"):
			leaders++
		default:
			t.Errorf("client %d: unexpected Cache-Status %q", i, cs)
		}
	}
	t.Logf("leaders %d, collapsed %d, hits %d", leaders, collapsed, hits)
	if leaders != 1 {
		t.Errorf("%d clients made the origin fetch, want 1", leaders)
	}
	if collapsed < clients/2 {
		t.Errorf("only %d of %d clients were collapsed onto the fetch", collapsed, clients)
	}
}

func TestUncacheableHerd(t *testing.T) {
	tn := startTestNode(t, nil)
	const clients = 20
	const path = "/p?delay=200ms&cc=private"
	var wg sync.WaitGroup
	replies := make([]reply, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = do(tn.client, fasthttp.MethodGet, tn.base+path, nil)
		}()
	}
	wg.Wait()
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		expectStatus(t, fmt.Sprintf("client %d", i), r, 200)
		if strings.Contains(r.cacheStatus(), "stored") {
			t.Errorf("client %d: a private response was stored: %q", i, r.cacheStatus())
		}
	}
	if n := tn.origin.srv.Requests(); n != clients {
		t.Errorf("origin requests = %d, want %d (a private answer is not shared)", n, clients)
	}
	later := tn.get(t, path)
	expectStatus(t, "later request", later, 200)
	if strings.Contains(later.cacheStatus(), "hit") {
		t.Errorf("later request Cache-Status %q: served from the cache", later.cacheStatus())
	}
	if n := tn.origin.srv.Requests(); n != clients+1 {
		t.Errorf("origin requests after the later request = %d, want %d", n, clients+1)
	}
}

func TestRevalidationWithETag(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/e?cc=no-cache&etag=1"
	first := tn.get(t, path)
	expectStatus(t, "fill", first, 200)
	expectCacheStatus(t, "fill", first, "stored")
	etag := first.header["Etag"]
	if etag == "" {
		t.Fatalf("fill has no ETag; headers %v", first.header)
	}
	for i := range 2 {
		r := tn.get(t, path)
		expectStatus(t, "revalidation", r, 200)
		expectCacheStatus(t, fmt.Sprintf("revalidation %d", i), r, "fwd-status=304")
		if !bytes.Equal(r.body, first.body) {
			t.Errorf("revalidated body %q, want %q", r.body, first.body)
		}
	}
	st := tn.origin.srv.Stats()
	if st.Requests != 3 || st.NotModified != 2 {
		t.Errorf("origin requests %d, not_modified %d; want 3 and 2", st.Requests, st.NotModified)
	}

	tn.control(t, "bump")
	changed := tn.get(t, path)
	expectStatus(t, "after bump", changed, 200)
	if bytes.Equal(changed.body, first.body) || !bytes.Contains(changed.body, []byte("v=2")) {
		t.Errorf("after bump body %q, want the v=2 representation", changed.body)
	}
	if changed.header["Etag"] == etag {
		t.Errorf("after bump ETag still %s", etag)
	}
	if nm := tn.origin.srv.Stats().NotModified; nm != 2 {
		t.Errorf("origin not_modified = %d after bump, want still 2", nm)
	}
	// The new version replaced the stored one.
	again := tn.get(t, path)
	if !bytes.Equal(again.body, changed.body) {
		t.Errorf("after bump, next body %q, want %q", again.body, changed.body)
	}
	expectCacheStatus(t, "after bump, next", again, "fwd-status=304")
}

func TestRevalidationWithLastModified(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/l?cc=max-age=0&lm=1"
	first := tn.get(t, path)
	expectStatus(t, "fill", first, 200)
	expectCacheStatus(t, "fill", first, "stored")
	if first.header["Last-Modified"] == "" {
		t.Fatalf("fill has no Last-Modified; headers %v", first.header)
	}
	second := tn.get(t, path)
	expectStatus(t, "revalidation", second, 200)
	expectCacheStatus(t, "revalidation", second, "fwd=stale", "fwd-status=304")
	if !bytes.Equal(second.body, first.body) {
		t.Errorf("revalidated body %q, want %q", second.body, first.body)
	}
	if st := tn.origin.srv.Stats(); st.Requests != 2 || st.NotModified != 1 {
		t.Errorf("origin requests %d, not_modified %d; want 2 and 1", st.Requests, st.NotModified)
	}
}

func TestVary(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/v?cc=max-age=60&vary=Accept-Language"
	for i, lang := range []string{"en", "fr", "en", "fr"} {
		r := tn.get(t, path, "Accept-Language", lang)
		expectStatus(t, lang, r, 200)
		if !bytes.Contains(r.body, []byte("Accept-Language="+lang+"\n")) {
			t.Errorf("request %d (%s): body %q is another variant", i, lang, r.body)
		}
		if i >= 2 {
			expectCacheStatus(t, fmt.Sprintf("request %d (%s)", i, lang), r, "hit")
		}
	}
	if n := tn.origin.srv.Requests(); n != 2 {
		t.Errorf("origin requests = %d, want 2 (one per variant)", n)
	}
}

func TestStaleIfError(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/s?cc=max-age=0,stale-if-error=300&etag=1"
	fill := tn.get(t, path)
	expectStatus(t, "fill", fill, 200)
	expectCacheStatus(t, "fill", fill, "stored")

	tn.control(t, "mode?status=503")
	r := tn.get(t, path)
	expectStatus(t, "origin 503", r, 200)
	expectCacheStatus(t, "origin 503", r, "fwd=stale", "fwd-status=503", "detail=stale-if-error")
	if !bytes.Equal(r.body, fill.body) {
		t.Errorf("origin 503: body %q, want the stored %q", r.body, fill.body)
	}

	tn.origin.stop()
	r = tn.get(t, path)
	expectStatus(t, "origin down", r, 200)
	expectCacheStatus(t, "origin down", r, "fwd=stale", "detail=stale-if-error")
	if !bytes.Equal(r.body, fill.body) {
		t.Errorf("origin down: body %q, want the stored %q", r.body, fill.body)
	}
}

func TestOriginFailureWithoutStale(t *testing.T) {
	t.Run("origin down gives 502, not cached", func(t *testing.T) {
		tn := startTestNode(t, nil)
		const path = "/down?cc=max-age=60"
		tn.origin.stop()
		r := tn.get(t, path)
		expectStatus(t, "origin down", r, fasthttp.StatusBadGateway)
		expectCacheStatus(t, "origin down", r, "detail=origin-error")

		tn.restartOrigin(t)
		r = tn.get(t, path)
		expectStatus(t, "origin back", r, 200)
		expectCacheStatus(t, "origin back", r, "fwd=uri-miss", "stored")
		if n := tn.origin.srv.Requests(); n != 1 {
			t.Errorf("restarted origin requests = %d, want 1", n)
		}
	})
	t.Run("slow origin gives 504, not cached", func(t *testing.T) {
		tn := startTestNode(t, func(c *config.Config) { c.OriginTimeout = 500 * time.Millisecond })
		r := tn.get(t, "/slow?delay=3s&cc=max-age=60")
		expectStatus(t, "delay=3s", r, fasthttp.StatusGatewayTimeout)
		expectCacheStatus(t, "delay=3s", r, "detail=origin-timeout")

		// The same URL, slow then fast again: the error was not kept.
		const path = "/t?cc=max-age=60"
		tn.control(t, "mode?delay=3s")
		r = tn.get(t, path)
		expectStatus(t, "forced delay", r, fasthttp.StatusGatewayTimeout)
		expectCacheStatus(t, "forced delay", r, "detail=origin-timeout")
		tn.control(t, "mode")
		r = tn.get(t, path)
		expectStatus(t, "origin recovered", r, 200)
		expectCacheStatus(t, "origin recovered", r, "fwd=uri-miss", "stored")
	})
}

func TestLargeObjectsStreamUncached(t *testing.T) {
	tn := startTestNode(t, func(c *config.Config) { c.MaxObjectSize = 1 << 20 })
	for _, path := range []string{
		"/big?size=5000000&cc=max-age=60",
		"/big?size=5000000&cc=max-age=60&chunked=1",
	} {
		t.Run(path, func(t *testing.T) {
			direct := tn.do(t, fasthttp.MethodGet, tn.originURL(path), nil)
			expectStatus(t, "direct", direct, 200)
			if len(direct.body) != 5_000_000 {
				t.Fatalf("origin sent %d bytes, want 5000000", len(direct.body))
			}
			for i := range 2 {
				r := tn.get(t, path)
				what := fmt.Sprintf("request %d", i)
				expectStatus(t, what, r, 200)
				expectCacheStatus(t, what, r, "detail=too-large")
				if strings.Contains(r.cacheStatus(), "hit") || strings.Contains(r.cacheStatus(), "stored") {
					t.Errorf("%s: Cache-Status %q: a too-large object was cached", what, r.cacheStatus())
				}
				if len(r.body) != len(direct.body) || !bytes.Equal(r.body, direct.body) {
					t.Errorf("%s: body of %d bytes differs from the origin's %d", what, len(r.body), len(direct.body))
				}
			}
			// The direct fetch plus both through the node.
			if n := tn.origin.srv.Stats().ByURI[path]; n != 3 {
				t.Errorf("origin saw %s %d times, want 3", path, n)
			}
		})
	}
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/u?cc=max-age=60"
	expectCacheStatus(t, "fill", tn.get(t, path), "stored")
	expectCacheStatus(t, "hit", tn.get(t, path), "hit")

	post := tn.do(t, fasthttp.MethodPost, tn.base+path, []byte("x=1"))
	expectStatus(t, "POST", post, 200)
	expectCacheStatus(t, "POST", post, "fwd=method")
	if !bytes.HasPrefix(post.body, []byte("origin POST /u")) {
		t.Errorf("POST body %q: the origin did not see a POST", post.body)
	}
	after := tn.get(t, path)
	expectStatus(t, "GET after POST", after, 200)
	expectCacheStatus(t, "GET after POST", after, "fwd=uri-miss")
	if n := tn.origin.srv.Requests(); n != 3 {
		t.Errorf("origin requests = %d, want 3 (GET, POST, GET)", n)
	}
}

func TestHeadFromCachedGet(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/head?cc=max-age=60&size=1234"
	get := tn.get(t, path)
	expectStatus(t, "GET", get, 200)
	head := tn.do(t, fasthttp.MethodHead, tn.base+path, nil)
	expectStatus(t, "HEAD", head, 200)
	expectCacheStatus(t, "HEAD", head, "hit")
	if len(head.body) != 0 {
		t.Errorf("HEAD answered with a %d-byte body", len(head.body))
	}
	if head.contentLength != len(get.body) || len(get.body) != 1234 {
		t.Errorf("HEAD Content-Length %d, GET body %d bytes, want both 1234", head.contentLength, len(get.body))
	}
	if n := tn.origin.srv.Requests(); n != 1 {
		t.Errorf("origin requests = %d, want 1", n)
	}
}

func TestClientConditionalFromCache(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/c?cc=max-age=60&etag=1"
	fill := tn.get(t, path)
	expectStatus(t, "fill", fill, 200)
	etag := fill.header["Etag"]
	if etag == "" {
		t.Fatalf("fill has no ETag")
	}
	r := tn.get(t, path, "If-None-Match", etag)
	expectStatus(t, "If-None-Match", r, fasthttp.StatusNotModified)
	expectCacheStatus(t, "If-None-Match", r, "hit")
	if r.header["Etag"] != etag {
		t.Errorf("304 ETag %q, want %q", r.header["Etag"], etag)
	}
	r = tn.get(t, path, "If-None-Match", `"other"`)
	expectStatus(t, "non-matching If-None-Match", r, 200)
	if !bytes.Equal(r.body, fill.body) {
		t.Errorf("non-matching If-None-Match body %q, want %q", r.body, fill.body)
	}
	if n := tn.origin.srv.Requests(); n != 1 {
		t.Errorf("origin requests = %d, want 1", n)
	}
}

// rawStatusLine writes req on a fresh connection to addr and returns the
// status line of the answer.
func rawStatusLine(t testing.TB, addr, req string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The server may answer and close before reading everything (the
	// oversized header), so write concurrently and ignore write errors.
	go func() { _, _ = io.WriteString(conn, req) }()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

func TestMalformedRequests(t *testing.T) {
	tn := startTestNode(t, nil)
	bigHeader := "X-Big: " + strings.Repeat("a", 64<<10) + "\r\n"
	for _, tc := range []struct {
		name, req string
		want      int // 0: any 4xx
	}{
		{"missing Host on HTTP/1.1", "GET /x?cc=max-age=60 HTTP/1.1\r\n\r\n", 400},
		{"bad Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400},
		{"negative Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400},
		{"garbage request line", "\x01\x02GARBAGE\r\n\r\n", 400},
		{"header larger than the read buffer", "GET /x HTTP/1.1\r\nHost: a\r\n" + bigHeader + "\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := rawStatusLine(t, tn.n.Addr(), tc.req)
			fields := strings.Fields(line)
			if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/1.") {
				t.Fatalf("answer %q is not a status line", line)
			}
			code, err := strconv.Atoi(fields[1])
			if err != nil || code < 400 || code > 499 || (tc.want != 0 && code != tc.want) {
				t.Errorf("status line %q, want %d", line, tc.want)
			}
		})
	}
	r := tn.get(t, "/after?cc=max-age=60")
	expectStatus(t, "normal request after the malformed ones", r, 200)
	if n := tn.origin.srv.Requests(); n != 1 {
		t.Errorf("origin requests = %d, want 1 (no malformed request reached it)", n)
	}
}

// metricValue returns the value of the sample named series (name plus
// labels, exactly as exposed) in a Prometheus text exposition.
func metricValue(exposition []byte, series string) (float64, bool) {
	for line := range strings.Lines(string(exposition)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

func TestAdminEndpoints(t *testing.T) {
	tn := startTestNode(t, nil)
	health := tn.do(t, fasthttp.MethodGet, tn.adminURL("/healthz"), nil)
	expectStatus(t, "/healthz", health, 200)
	if string(health.body) != "ok\n" {
		t.Errorf("/healthz body %q, want \"ok\\n\"", health.body)
	}
	if r := tn.do(t, fasthttp.MethodGet, tn.adminURL("/nope"), nil); r.status != fasthttp.StatusNotFound {
		t.Errorf("unknown admin path: status %d, want 404", r.status)
	}

	const hits = `ringcache_requests_total{outcome="hit"}`
	scrape := func() []byte {
		r := tn.do(t, fasthttp.MethodGet, tn.adminURL("/metrics"), nil)
		expectStatus(t, "/metrics", r, 200)
		return r.body
	}
	tn.get(t, "/m?cc=max-age=60&size=1000")
	before := scrape()
	h0, ok := metricValue(before, hits)
	if !ok {
		t.Fatalf("/metrics lacks %s:\n%s", hits, before)
	}
	tn.get(t, "/m?cc=max-age=60&size=1000")
	after := scrape()
	h1, _ := metricValue(after, hits)
	if h1 != h0+1 {
		t.Errorf("%s went from %v to %v after one hit, want +1", hits, h0, h1)
	}
	if items, ok := metricValue(after, "ringcache_store_items"); !ok || items < 1 {
		t.Errorf("ringcache_store_items = %v (present %v), want >= 1", items, ok)
	}
	if b, ok := metricValue(after, "ringcache_store_bytes"); !ok || b < 1000 {
		t.Errorf("ringcache_store_bytes = %v (present %v), want >= 1000", b, ok)
	}
	if !bytes.Contains(after, []byte("ringcache_origin_request_duration_seconds_bucket{")) {
		t.Errorf("/metrics lacks ringcache_origin_request_duration_seconds_bucket")
	}
}

// The demo origin echoes the values of the headers named in vary= into the
// body, which shows what reached it. cc=no-store keeps every request a miss.
func TestForwardedRequestHeaders(t *testing.T) {
	tn := startTestNode(t, nil)
	t.Run("Connection-named field is dropped", func(t *testing.T) {
		r := tn.get(t, "/h?vary=X-Foo&cc=no-store", "Connection", "X-Foo", "X-Foo", "1")
		expectStatus(t, "Connection: X-Foo", r, 200)
		if !bytes.HasSuffix(r.body, []byte(" X-Foo=\n")) {
			t.Errorf("origin saw X-Foo although Connection named it: body %q", r.body)
		}
		// Control: without the Connection token the field goes through.
		r = tn.get(t, "/h?vary=X-Foo&cc=no-store", "X-Foo", "1")
		if !bytes.HasSuffix(r.body, []byte(" X-Foo=1\n")) {
			t.Errorf("origin did not see an end-to-end X-Foo: body %q", r.body)
		}
	})
	t.Run("forwarding fields are replaced", func(t *testing.T) {
		r := tn.get(t, "/f?vary=X-Forwarded-For,X-Forwarded-Proto,Via&cc=no-store",
			"X-Forwarded-For", "6.6.6.6", "Via", "1.0 client-proxy")
		expectStatus(t, "forwarding", r, 200)
		for _, want := range []string{" X-Forwarded-For=127.0.0.1 ", " X-Forwarded-Proto=http ", " Via=1.0 client-proxy, 1.1 ringcache\n"} {
			if !bytes.Contains(r.body, []byte(want)) {
				t.Errorf("origin body %q lacks %q", r.body, want)
			}
		}
	})
}

func TestCLIErrors(t *testing.T) {
	yamlFile := filepath.Join(t.TempDir(), "ringcache.yaml")
	if err := os.WriteFile(yamlFile, []byte("store: arc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Listen on port 0 and no admin, so that a case that wrongly starts a
	// node cannot collide with anything; the cancelled context stops it.
	safe := []string{"--listen", "127.0.0.1:0", "--admin="}
	for _, tc := range []struct {
		name       string
		args, env  []string
		code       int
		stdout     []string
		stderr     []string
		safeListen bool
	}{
		{name: "bad cache size flag", args: []string{"serve", "--cache-size", "12XB", "--origin", "http://127.0.0.1:1"},
			code: 2, stderr: []string{"cache_size", "12XB"}, safeListen: true},
		{name: "serve help", args: []string{"serve", "--help"}, code: 0, stdout: []string{"--cache-size"}},
		{name: "unknown subcommand", args: []string{"frobnicate"}, code: 2, stderr: []string{"frobnicate"}},
		{name: "no subcommand", args: nil, code: 2, stderr: []string{"Usage"}},
		{name: "bad store in YAML", args: []string{"serve", "--config", yamlFile, "--origin", "http://127.0.0.1:1"},
			code: 2, stderr: []string{yamlFile, "store", "arc"}, safeListen: true},
		{name: "bad cache size in env", args: []string{"serve", "--origin", "http://127.0.0.1:1"}, env: []string{"RINGCACHE_CACHE_SIZE=bogus"},
			code: 2, stderr: []string{"RINGCACHE_CACHE_SIZE", "bogus"}, safeListen: true},
		// URLs the origin client refuses are configuration errors, named as such.
		{name: "origin with user info", args: []string{"serve", "--origin", "http://user@example.com"},
			code: 2, stderr: []string{`invalid origin "http://user@example.com" (flag --origin): must not have user info`}, safeListen: true},
		{name: "origin with a path in env", args: []string{"serve"}, env: []string{"RINGCACHE_ORIGIN=http://example.com/app"},
			code: 2, stderr: []string{`invalid origin "http://example.com/app" (env RINGCACHE_ORIGIN): must not have a path`}, safeListen: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			args := tc.args
			if tc.safeListen {
				args = append(append([]string(nil), args...), safe...)
			}
			var stdout, stderr bytes.Buffer
			code := run(ctx, args, tc.env, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, &stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, &stderr)
				}
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitMatch waits until re matches the buffer and returns its first group.
func waitMatch(t testing.TB, b *syncBuffer, re *regexp.Regexp, what string) string {
	t.Helper()
	var m []string
	waitFor(t, 15*time.Second, func() bool { m = re.FindStringSubmatch(b.String()); return m != nil }, what)
	return m[1]
}

func TestDemoCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"demo", "--origin-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--gossip", "127.0.0.1:0"}, nil, &stdout, &stderr)
	}()
	addr := waitMatch(t, &stdout, regexp.MustCompile(`cache node\s+http://(\S+)`), "the demo to print the cache node's address")

	c := &fasthttp.Client{ReadTimeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	for i, want := range []string{"fwd=uri-miss", "hit"} {
		r, err := do(c, fasthttp.MethodGet, "http://"+addr+"/hello?cc=max-age=60", nil)
		if err != nil {
			t.Fatal(err)
		}
		expectStatus(t, fmt.Sprintf("request %d", i), r, 200)
		expectCacheStatus(t, fmt.Sprintf("request %d", i), r, want)
	}
	c.CloseIdleConnections()
	cancel()
	select {
	case got := <-code:
		if got != 0 {
			t.Errorf("demo exited %d, want 0; stderr:\n%s", got, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not return after its context was cancelled")
	}
}

// The binary is built once per test run and shared by the process tests.
var bin struct {
	once      sync.Once
	dir, path string
	err       error
	out       []byte
}

// buildBinary builds the ringcache command (once) into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH: cannot build the ringcache binary for the process test")
	}
	bin.once.Do(func() {
		if bin.dir, bin.err = os.MkdirTemp("", "ringcache-test-bin"); bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "ringcache")
		bin.out, bin.err = exec.Command(goTool, "build", "-o", bin.path, ".").CombinedOutput()
	})
	if bin.err != nil {
		t.Fatalf("go build: %v\n%s", bin.err, bin.out)
	}
	return bin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

// child is a process the test started; Cleanup kills it if still running.
type child struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error // valid once exited is closed
}

func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(bin, args...), stderr: &syncBuffer{}, exited: make(chan struct{})}
	c.cmd.Stderr = c.stderr
	c.cmd.Stdout = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", bin, args, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill() // only the PID this test started
			<-c.exited
		}
	})
	return c
}

func TestProcessGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	listenRE := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)

	orig := startChild(t, bin, "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, listenRE, "the origin process to log its address")

	const shutdownTimeout = 10 * time.Second
	srv := startChild(t, bin, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--origin", "http://"+originAddr, "--shutdown-timeout", shutdownTimeout.String())
	addr := waitMatch(t, srv.stderr, listenRE, "the serve process to log its address")
	admin := waitMatch(t, srv.stderr, regexp.MustCompile(`admin=(127\.0\.0\.1:\d+)`), "the serve process to log its admin address")

	c := &fasthttp.Client{ReadTimeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	waitFor(t, 15*time.Second, func() bool {
		r, err := do(c, fasthttp.MethodGet, "http://"+admin+"/healthz", nil)
		return err == nil && r.status == 200
	}, "/healthz of the serve process")

	for i, want := range []string{"fwd=uri-miss", "hit"} {
		r, err := do(c, fasthttp.MethodGet, "http://"+addr+"/a?cc=max-age=60", nil)
		if err != nil {
			t.Fatal(err)
		}
		expectStatus(t, fmt.Sprintf("request %d", i), r, 200)
		expectCacheStatus(t, fmt.Sprintf("request %d", i), r, want)
	}
	requestsRE := regexp.MustCompile(`"requests":(\d+)`)
	originRequests := func() int64 {
		r, err := do(c, fasthttp.MethodGet, "http://"+originAddr+"/__origin/stats", nil)
		if err != nil || r.status != 200 {
			return -1
		}
		m := requestsRE.FindSubmatch(r.body)
		if m == nil {
			return -1
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	if n := originRequests(); n != 1 {
		t.Fatalf("origin process requests = %d after miss+hit, want 1", n)
	}

	// 20 slow requests in flight when SIGTERM arrives. The delay leaves a
	// wide margin for a loaded machine to send the signal in time.
	const inflight = 20
	var wg sync.WaitGroup
	replies := make([]reply, inflight)
	errs := make([]error, inflight)
	done := make([]time.Time, inflight)
	for i := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = do(c, fasthttp.MethodGet, fmt.Sprintf("http://%s/slow%d?delay=1500ms&cc=max-age=60", addr, i), nil)
			done[i] = time.Now()
		}()
	}
	waitFor(t, 10*time.Second, func() bool { return originRequests() == 1+inflight }, "all slow requests to reach the origin")
	signalled := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	wg.Wait()
	for i := range inflight {
		if errs[i] != nil {
			t.Errorf("in-flight request %d: %v", i, errs[i])
			continue
		}
		expectStatus(t, fmt.Sprintf("in-flight request %d", i), replies[i], 200)
		if done[i].Before(signalled) {
			t.Errorf("in-flight request %d finished before SIGTERM: the test did not exercise draining", i)
		}
	}
	select {
	case <-srv.exited:
		if srv.err != nil {
			t.Errorf("serve exited with %v, want status 0; output:\n%s", srv.err, srv.stderr.String())
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatalf("serve did not exit within the shutdown timeout; output:\n%s", srv.stderr.String())
	}
}

// TestShutdownRightAfterStart: a node stopped the moment it has started
// (a SIGTERM during startup) stops every listener and returns, instead of
// serving on: fasthttp's Shutdown does nothing to a listener its Serve has
// not registered yet.
func TestShutdownRightAfterStart(t *testing.T) {
	o := startTestOrigin(t, "127.0.0.1:0")
	for i := range 20 {
		cfg := config.Default()
		cfg.Origin = "http://" + o.addr
		cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
		n, err := startNode(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		addrs := []string{n.Addr(), n.AdminAddr()}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done <- n.Shutdown(ctx)
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: shutdown: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Shutdown did not return", i)
		}
		for _, a := range addrs {
			if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
				c.Close()
				t.Fatalf("round %d: %s still accepts connections after Shutdown", i, a)
			}
		}
	}
}
