package node

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
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/origin/demo"

	"github.com/ringcache/ringcache/config"
	"github.com/valyala/fasthttp"
)

// testOrigin is a demo origin serving on a loopback listener.
type testOrigin struct {
	srv  *demo.Server
	addr string
	done chan struct{}
}

func startTestOrigin(t testing.TB, addr string) *testOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("origin listen %s: %v", addr, err)
	}
	o := &testOrigin{srv: demo.New(demo.Options{}), addr: ln.Addr().String(), done: make(chan struct{})}
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
	n      *Node
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
	n, err := Start(cfg, Options{})
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

func (tn *testNode) do(t testing.TB, method, url string, body []byte, hdr ...string) testutil.Reply {
	t.Helper()
	r, err := testutil.Do(tn.client, method, url, body, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// get requests path from the node.
func (tn *testNode) get(t testing.TB, path string, hdr ...string) testutil.Reply {
	t.Helper()
	return tn.do(t, fasthttp.MethodGet, tn.base+path, nil, hdr...)
}

// control POSTs to one of the origin's /__origin/ endpoints.
func (tn *testNode) control(t testing.TB, pathAndQuery string) {
	t.Helper()
	r := tn.do(t, fasthttp.MethodPost, tn.originURL("/__origin/"+pathAndQuery), nil)
	if r.Status != fasthttp.StatusOK {
		t.Fatalf("origin control %s: status %d: %s", pathAndQuery, r.Status, r.Body)
	}
}

// ageOf returns a response's Age, failing unless it is a non-negative integer.
func ageOf(t testing.TB, what string, r testutil.Reply) int {
	t.Helper()
	age, err := strconv.Atoi(r.Header["Age"])
	if err != nil || age < 0 {
		t.Fatalf("%s: Age = %q, want a non-negative integer", what, r.Header["Age"])
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
	testutil.ExpectStatus(t, "miss", first, 200)
	age := ageOf(t, "miss", first)
	if got, want := first.CacheStatus(), fmt.Sprintf("ringcache; fwd=uri-miss; fwd-status=200; ttl=%d; stored", 60-age); got != want {
		t.Errorf("miss Cache-Status = %q, want %q", got, want)
	}
	second := tn.get(t, path)
	testutil.ExpectStatus(t, "hit", second, 200)
	age = ageOf(t, "hit", second)
	if got, want := second.CacheStatus(), fmt.Sprintf("ringcache; hit; ttl=%d", 60-age); got != want {
		t.Errorf("hit Cache-Status = %q, want %q", got, want)
	}
	if !bytes.Equal(first.Body, second.Body) || len(first.Body) == 0 {
		t.Errorf("hit body %q differs from miss body %q", second.Body, first.Body)
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
			_, _ = testutil.Do(tn.client, fasthttp.MethodGet, fmt.Sprintf("%s/warm%d?cc=no-store", tn.base, i), nil)
		}()
	}
	wg.Wait()
	before := tn.origin.srv.Requests()

	const path = "/herd?delay=300ms&cc=max-age=60"
	replies := make([]testutil.Reply, clients)
	errs := make([]error, clients)
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i], errs[i] = testutil.Do(tn.client, fasthttp.MethodGet, tn.base+path, nil)
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
		testutil.ExpectStatus(t, fmt.Sprintf("client %d", i), r, 200)
		if !bytes.Equal(r.Body, replies[0].Body) {
			t.Errorf("client %d body %q, client 0 body %q", i, r.Body, replies[0].Body)
		}
		cs := r.CacheStatus()
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
	replies := make([]testutil.Reply, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = testutil.Do(tn.client, fasthttp.MethodGet, tn.base+path, nil)
		}()
	}
	wg.Wait()
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		testutil.ExpectStatus(t, fmt.Sprintf("client %d", i), r, 200)
		if strings.Contains(r.CacheStatus(), "stored") {
			t.Errorf("client %d: a private response was stored: %q", i, r.CacheStatus())
		}
	}
	if n := tn.origin.srv.Requests(); n != clients {
		t.Errorf("origin requests = %d, want %d (a private answer is not shared)", n, clients)
	}
	later := tn.get(t, path)
	testutil.ExpectStatus(t, "later request", later, 200)
	if strings.Contains(later.CacheStatus(), "hit") {
		t.Errorf("later request Cache-Status %q: served from the cache", later.CacheStatus())
	}
	if n := tn.origin.srv.Requests(); n != clients+1 {
		t.Errorf("origin requests after the later request = %d, want %d", n, clients+1)
	}
}

func TestRevalidationWithETag(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/e?cc=no-cache&etag=1"
	first := tn.get(t, path)
	testutil.ExpectStatus(t, "fill", first, 200)
	testutil.ExpectCacheStatus(t, "fill", first, "stored")
	etag := first.Header["Etag"]
	if etag == "" {
		t.Fatalf("fill has no ETag; headers %v", first.Header)
	}
	for i := range 2 {
		r := tn.get(t, path)
		testutil.ExpectStatus(t, "revalidation", r, 200)
		testutil.ExpectCacheStatus(t, fmt.Sprintf("revalidation %d", i), r, "fwd-status=304")
		if !bytes.Equal(r.Body, first.Body) {
			t.Errorf("revalidated body %q, want %q", r.Body, first.Body)
		}
	}
	st := tn.origin.srv.Stats()
	if st.Requests != 3 || st.NotModified != 2 {
		t.Errorf("origin requests %d, not_modified %d; want 3 and 2", st.Requests, st.NotModified)
	}

	tn.control(t, "bump")
	changed := tn.get(t, path)
	testutil.ExpectStatus(t, "after bump", changed, 200)
	if bytes.Equal(changed.Body, first.Body) || !bytes.Contains(changed.Body, []byte("v=2")) {
		t.Errorf("after bump body %q, want the v=2 representation", changed.Body)
	}
	if changed.Header["Etag"] == etag {
		t.Errorf("after bump ETag still %s", etag)
	}
	if nm := tn.origin.srv.Stats().NotModified; nm != 2 {
		t.Errorf("origin not_modified = %d after bump, want still 2", nm)
	}
	// The new version replaced the stored one.
	again := tn.get(t, path)
	if !bytes.Equal(again.Body, changed.Body) {
		t.Errorf("after bump, next body %q, want %q", again.Body, changed.Body)
	}
	testutil.ExpectCacheStatus(t, "after bump, next", again, "fwd-status=304")
}

func TestRevalidationWithLastModified(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/l?cc=max-age=0&lm=1"
	first := tn.get(t, path)
	testutil.ExpectStatus(t, "fill", first, 200)
	testutil.ExpectCacheStatus(t, "fill", first, "stored")
	if first.Header["Last-Modified"] == "" {
		t.Fatalf("fill has no Last-Modified; headers %v", first.Header)
	}
	second := tn.get(t, path)
	testutil.ExpectStatus(t, "revalidation", second, 200)
	testutil.ExpectCacheStatus(t, "revalidation", second, "fwd=stale", "fwd-status=304")
	if !bytes.Equal(second.Body, first.Body) {
		t.Errorf("revalidated body %q, want %q", second.Body, first.Body)
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
		testutil.ExpectStatus(t, lang, r, 200)
		if !bytes.Contains(r.Body, []byte("Accept-Language="+lang+"\n")) {
			t.Errorf("request %d (%s): body %q is another variant", i, lang, r.Body)
		}
		if i >= 2 {
			testutil.ExpectCacheStatus(t, fmt.Sprintf("request %d (%s)", i, lang), r, "hit")
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
	testutil.ExpectStatus(t, "fill", fill, 200)
	testutil.ExpectCacheStatus(t, "fill", fill, "stored")

	tn.control(t, "mode?status=503")
	r := tn.get(t, path)
	testutil.ExpectStatus(t, "origin 503", r, 200)
	testutil.ExpectCacheStatus(t, "origin 503", r, "fwd=stale", "fwd-status=503", "detail=stale-if-error")
	if !bytes.Equal(r.Body, fill.Body) {
		t.Errorf("origin 503: body %q, want the stored %q", r.Body, fill.Body)
	}

	tn.origin.stop()
	r = tn.get(t, path)
	testutil.ExpectStatus(t, "origin down", r, 200)
	testutil.ExpectCacheStatus(t, "origin down", r, "fwd=stale", "detail=stale-if-error")
	if !bytes.Equal(r.Body, fill.Body) {
		t.Errorf("origin down: body %q, want the stored %q", r.Body, fill.Body)
	}
}

func TestOriginFailureWithoutStale(t *testing.T) {
	t.Run("origin down gives 502, not cached", func(t *testing.T) {
		tn := startTestNode(t, nil)
		const path = "/down?cc=max-age=60"
		tn.origin.stop()
		r := tn.get(t, path)
		testutil.ExpectStatus(t, "origin down", r, fasthttp.StatusBadGateway)
		testutil.ExpectCacheStatus(t, "origin down", r, "detail=origin-error")

		tn.restartOrigin(t)
		r = tn.get(t, path)
		testutil.ExpectStatus(t, "origin back", r, 200)
		testutil.ExpectCacheStatus(t, "origin back", r, "fwd=uri-miss", "stored")
		if n := tn.origin.srv.Requests(); n != 1 {
			t.Errorf("restarted origin requests = %d, want 1", n)
		}
	})
	t.Run("slow origin gives 504, not cached", func(t *testing.T) {
		tn := startTestNode(t, func(c *config.Config) { c.OriginTimeout = 500 * time.Millisecond })
		r := tn.get(t, "/slow?delay=3s&cc=max-age=60")
		testutil.ExpectStatus(t, "delay=3s", r, fasthttp.StatusGatewayTimeout)
		testutil.ExpectCacheStatus(t, "delay=3s", r, "detail=origin-timeout")

		// The same URL, slow then fast again: the error was not kept.
		const path = "/t?cc=max-age=60"
		tn.control(t, "mode?delay=3s")
		r = tn.get(t, path)
		testutil.ExpectStatus(t, "forced delay", r, fasthttp.StatusGatewayTimeout)
		testutil.ExpectCacheStatus(t, "forced delay", r, "detail=origin-timeout")
		tn.control(t, "mode")
		r = tn.get(t, path)
		testutil.ExpectStatus(t, "origin recovered", r, 200)
		testutil.ExpectCacheStatus(t, "origin recovered", r, "fwd=uri-miss", "stored")
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
			testutil.ExpectStatus(t, "direct", direct, 200)
			if len(direct.Body) != 5_000_000 {
				t.Fatalf("origin sent %d bytes, want 5000000", len(direct.Body))
			}
			for i := range 2 {
				r := tn.get(t, path)
				what := fmt.Sprintf("request %d", i)
				testutil.ExpectStatus(t, what, r, 200)
				testutil.ExpectCacheStatus(t, what, r, "detail=too-large")
				if strings.Contains(r.CacheStatus(), "hit") || strings.Contains(r.CacheStatus(), "stored") {
					t.Errorf("%s: Cache-Status %q: a too-large object was cached", what, r.CacheStatus())
				}
				if len(r.Body) != len(direct.Body) || !bytes.Equal(r.Body, direct.Body) {
					t.Errorf("%s: body of %d bytes differs from the origin's %d", what, len(r.Body), len(direct.Body))
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
	testutil.ExpectCacheStatus(t, "fill", tn.get(t, path), "stored")
	testutil.ExpectCacheStatus(t, "hit", tn.get(t, path), "hit")

	post := tn.do(t, fasthttp.MethodPost, tn.base+path, []byte("x=1"))
	testutil.ExpectStatus(t, "POST", post, 200)
	testutil.ExpectCacheStatus(t, "POST", post, "fwd=method")
	if !bytes.HasPrefix(post.Body, []byte("origin POST /u")) {
		t.Errorf("POST body %q: the origin did not see a POST", post.Body)
	}
	after := tn.get(t, path)
	testutil.ExpectStatus(t, "GET after POST", after, 200)
	testutil.ExpectCacheStatus(t, "GET after POST", after, "fwd=uri-miss")
	if n := tn.origin.srv.Requests(); n != 3 {
		t.Errorf("origin requests = %d, want 3 (GET, POST, GET)", n)
	}
}

func TestHeadFromCachedGet(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/head?cc=max-age=60&size=1234"
	get := tn.get(t, path)
	testutil.ExpectStatus(t, "GET", get, 200)
	head := tn.do(t, fasthttp.MethodHead, tn.base+path, nil)
	testutil.ExpectStatus(t, "HEAD", head, 200)
	testutil.ExpectCacheStatus(t, "HEAD", head, "hit")
	if len(head.Body) != 0 {
		t.Errorf("HEAD answered with a %d-byte body", len(head.Body))
	}
	if head.ContentLength != len(get.Body) || len(get.Body) != 1234 {
		t.Errorf("HEAD Content-Length %d, GET body %d bytes, want both 1234", head.ContentLength, len(get.Body))
	}
	if n := tn.origin.srv.Requests(); n != 1 {
		t.Errorf("origin requests = %d, want 1", n)
	}
}

func TestClientConditionalFromCache(t *testing.T) {
	tn := startTestNode(t, nil)
	const path = "/c?cc=max-age=60&etag=1"
	fill := tn.get(t, path)
	testutil.ExpectStatus(t, "fill", fill, 200)
	etag := fill.Header["Etag"]
	if etag == "" {
		t.Fatalf("fill has no ETag")
	}
	r := tn.get(t, path, "If-None-Match", etag)
	testutil.ExpectStatus(t, "If-None-Match", r, fasthttp.StatusNotModified)
	testutil.ExpectCacheStatus(t, "If-None-Match", r, "hit")
	if r.Header["Etag"] != etag {
		t.Errorf("304 ETag %q, want %q", r.Header["Etag"], etag)
	}
	r = tn.get(t, path, "If-None-Match", `"other"`)
	testutil.ExpectStatus(t, "non-matching If-None-Match", r, 200)
	if !bytes.Equal(r.Body, fill.Body) {
		t.Errorf("non-matching If-None-Match body %q, want %q", r.Body, fill.Body)
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
	testutil.ExpectStatus(t, "normal request after the malformed ones", r, 200)
	if n := tn.origin.srv.Requests(); n != 1 {
		t.Errorf("origin requests = %d, want 1 (no malformed request reached it)", n)
	}
}

// metricValue returns the value of the sample named series (name plus
// labels, exactly as exposed) in a Prometheus text exposition.
func TestAdminEndpoints(t *testing.T) {
	tn := startTestNode(t, nil)
	health := tn.do(t, fasthttp.MethodGet, tn.adminURL("/healthz"), nil)
	testutil.ExpectStatus(t, "/healthz", health, 200)
	if string(health.Body) != "ok\n" {
		t.Errorf("/healthz body %q, want \"ok\\n\"", health.Body)
	}
	if r := tn.do(t, fasthttp.MethodGet, tn.adminURL("/nope"), nil); r.Status != fasthttp.StatusNotFound {
		t.Errorf("unknown admin path: status %d, want 404", r.Status)
	}

	const hits = `ringcache_requests_total{outcome="hit"}`
	scrape := func() []byte {
		r := tn.do(t, fasthttp.MethodGet, tn.adminURL("/metrics"), nil)
		testutil.ExpectStatus(t, "/metrics", r, 200)
		return r.Body
	}
	tn.get(t, "/m?cc=max-age=60&size=1000")
	before := scrape()
	h0, ok := testutil.MetricValue(before, hits)
	if !ok {
		t.Fatalf("/metrics lacks %s:\n%s", hits, before)
	}
	tn.get(t, "/m?cc=max-age=60&size=1000")
	after := scrape()
	h1, _ := testutil.MetricValue(after, hits)
	if h1 != h0+1 {
		t.Errorf("%s went from %v to %v after one hit, want +1", hits, h0, h1)
	}
	if items, ok := testutil.MetricValue(after, "ringcache_store_items"); !ok || items < 1 {
		t.Errorf("ringcache_store_items = %v (present %v), want >= 1", items, ok)
	}
	if b, ok := testutil.MetricValue(after, "ringcache_store_bytes"); !ok || b < 1000 {
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
		testutil.ExpectStatus(t, "Connection: X-Foo", r, 200)
		if !bytes.HasSuffix(r.Body, []byte(" X-Foo=\n")) {
			t.Errorf("origin saw X-Foo although Connection named it: body %q", r.Body)
		}
		// Control: without the Connection token the field goes through.
		r = tn.get(t, "/h?vary=X-Foo&cc=no-store", "X-Foo", "1")
		if !bytes.HasSuffix(r.Body, []byte(" X-Foo=1\n")) {
			t.Errorf("origin did not see an end-to-end X-Foo: body %q", r.Body)
		}
	})
	t.Run("forwarding fields are replaced", func(t *testing.T) {
		r := tn.get(t, "/f?vary=X-Forwarded-For,X-Forwarded-Proto,Via&cc=no-store",
			"X-Forwarded-For", "6.6.6.6", "Via", "1.0 client-proxy")
		testutil.ExpectStatus(t, "forwarding", r, 200)
		for _, want := range []string{" X-Forwarded-For=127.0.0.1 ", " X-Forwarded-Proto=http ", " Via=1.0 client-proxy, 1.1 ringcache\n"} {
			if !bytes.Contains(r.Body, []byte(want)) {
				t.Errorf("origin body %q lacks %q", r.Body, want)
			}
		}
	})
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
		n, err := Start(cfg, Options{})
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

// TestStartFailsCleanly: a node that cannot start returns an error naming
// what failed, panics nowhere and leaves nothing listening.
func TestStartFailsCleanly(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, mutate := range map[string]func(*config.Config){
		"listen in use": func(c *config.Config) { c.Listen = busy.Addr().String() },
		"admin in use":  func(c *config.Config) { c.Admin = busy.Addr().String() },
		"peer TLS file missing": func(c *config.Config) {
			c.Gossip, c.PeerSecret = "127.0.0.1:0", "start-fails-cleanly-secret"
			c.PeerTLSCert, c.PeerTLSKey, c.PeerTLSCA = "/nonexistent/cert.pem", "/nonexistent/key.pem", "/nonexistent/ca.pem"
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Origin, cfg.Listen, cfg.Admin = "http://127.0.0.1:1", "127.0.0.1:0", "127.0.0.1:0"
			mutate(&cfg)
			n, err := Start(cfg, Options{})
			if err == nil {
				_ = n.Shutdown(context.Background())
				t.Fatal("Start succeeded")
			}
			for _, want := range []string{busy.Addr().String(), "/nonexistent/cert.pem"} {
				if strings.Contains(err.Error(), want) {
					return
				}
			}
			t.Fatalf("error %q names neither the address nor the file", err)
		})
	}
}
