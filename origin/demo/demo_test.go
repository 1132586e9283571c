package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/valyala/fasthttp"
)

const (
	testDate = "Thu, 02 Jan 2025 03:04:05 GMT"
	testLM   = "Thu, 02 Jan 2025 02:04:05 GMT" // start - 1h
)

var etagRE = regexp.MustCompile(`^"[0-9a-f]{16}"$`)

func TestServerParams(t *testing.T) {
	_, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())

	line := func(uri string) string { return "origin " + uri + " v=1\n" }
	tests := []struct {
		name    string
		uri     string
		headers []string
		status  int
		want    map[string]string // header -> exact value
		absent  []string
		body    string
	}{
		{
			name: "default", uri: "/a", status: 200,
			want:   map[string]string{"Date": testDate, "Content-Type": "text/plain; charset=utf-8", "Content-Length": "14"},
			absent: []string{"Cache-Control", "ETag", "Last-Modified", "Vary", "Set-Cookie", "Expires", "Age", "Surrogate-Key"},
			body:   line("/a"),
		},
		{name: "query in body", uri: "/a/b?x=1&y=2", status: 200, body: line("/a/b?x=1&y=2")},
		{name: "raw path kept", uri: "/a//b/%2F/../c", status: 200, body: line("/a//b/%2F/../c")},
		{
			name: "cache-control", uri: "/cc?cc=max-age=60,public", status: 200,
			want: map[string]string{"Cache-Control": "max-age=60,public"},
			body: line("/cc?cc=max-age=60,public"),
		},
		{name: "size zero", uri: "/s?size=0", status: 200, want: map[string]string{"Content-Length": "0"}, body: ""},
		{name: "size truncates", uri: "/s?size=10", status: 200, body: line("/s?size=10")[:10]},
		{name: "size repeats", uri: "/s?size=1000", status: 200, want: map[string]string{"Content-Length": "1000"}, body: string(testutil.Repeat(line("/s?size=1000"), 1000))},
		{name: "status", uri: "/st?status=404", status: 404, body: line("/st?status=404")},
		{name: "status 500", uri: "/st?status=500&cc=no-store", status: 500, want: map[string]string{"Cache-Control": "no-store"}},
		{name: "redirect", uri: "/st?status=302", status: 302},
		{name: "tags", uri: "/t?tags=a%20b", status: 200, want: map[string]string{"Surrogate-Key": "a b"}},
		{name: "expires future", uri: "/e?expires=1h", status: 200, want: map[string]string{"Expires": "Thu, 02 Jan 2025 04:04:05 GMT"}},
		{name: "expires past", uri: "/e?expires=-90m", status: 200, want: map[string]string{"Expires": "Thu, 02 Jan 2025 01:34:05 GMT"}},
		{name: "age", uri: "/g?age=30", status: 200, want: map[string]string{"Age": "30"}},
		{name: "last-modified", uri: "/l?lm=1", status: 200, want: map[string]string{"Last-Modified": testLM}},
		{
			name: "vary", uri: "/v?vary=Accept-Encoding,X-Lang", headers: []string{"Accept-Encoding", "gzip", "X-Lang", "fr"}, status: 200,
			want: map[string]string{"Vary": "Accept-Encoding,X-Lang"},
			body: "origin /v?vary=Accept-Encoding,X-Lang v=1 Accept-Encoding=gzip X-Lang=fr\n",
		},
		{name: "vary absent header", uri: "/v?vary=X-None", status: 200, body: "origin /v?vary=X-None v=1 X-None=\n"},
		{name: "delay", uri: "/d?delay=20ms", status: 200, body: line("/d?delay=20ms")},
		{name: "other methods ignore params", uri: "/m?status=404", status: 200},

		{name: "bad size", uri: "/b?size=x", status: 400},
		{name: "negative size", uri: "/b?size=-1", status: 400},
		{name: "size over cap", uri: "/b?size=67108865", status: 400},
		{name: "bad status", uri: "/b?status=abc", status: 400},
		{name: "status too high", uri: "/b?status=600", status: 400},
		{name: "status too low", uri: "/b?status=99", status: 400},
		{name: "bad delay", uri: "/b?delay=soon", status: 400},
		{name: "delay over cap", uri: "/b?delay=61s", status: 400},
		{name: "negative delay", uri: "/b?delay=-1s", status: 400},
		{name: "bad flag", uri: "/b?etag=yes", status: 400},
		{name: "bad age", uri: "/b?age=-1", status: 400},
		{name: "bad expires", uri: "/b?expires=tomorrow", status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			method := fasthttp.MethodGet
			if strings.HasPrefix(tt.name, "other methods") {
				method = fasthttp.MethodPut
				tt.body = "origin PUT /m\n"
			}
			r := c.do(method, tt.uri, tt.headers...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d (body %q)", r.status, tt.status, r.body)
			}
			if tt.name == "delay" && time.Since(start) < 20*time.Millisecond {
				t.Errorf("answered before the 20ms delay")
			}
			if r.header.ConnectionClose() {
				t.Error("answer closes the connection")
			}
			if got := r.get("Date"); got != testDate {
				t.Errorf("Date %q, want %q", got, testDate)
			}
			for k, v := range tt.want {
				if got := r.get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if got := r.get(k); got != "" {
					t.Errorf("%s = %q, want absent", k, got)
				}
			}
			if tt.body != "" || tt.want["Content-Length"] == "0" {
				if string(r.body) != tt.body {
					t.Errorf("body %q, want %q", trim(r.body), trim([]byte(tt.body)))
				}
			}
		})
	}
}

func trim(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func TestServerBodyDeterminism(t *testing.T) {
	_, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())

	const size = 100_000
	a1 := c.get("/x?size=100000").body
	a2 := c.get("/x?size=100000").body
	b := c.get("/y?size=100000").body
	if len(a1) != size || len(b) != size {
		t.Fatalf("sizes %d, %d, want %d", len(a1), len(b), size)
	}
	if !bytes.Equal(a1, a2) {
		t.Error("same URI gave different bodies")
	}
	if bytes.Equal(a1, b) {
		t.Error("different paths gave the same body")
	}
	if want := testutil.Repeat("origin /x?size=100000 v=1\n", size); !bytes.Equal(a1, want) {
		t.Error("body is not the repeated request line")
	}

	e1 := c.get("/x?etag=1").get("ETag")
	e2 := c.get("/x?etag=1").get("ETag")
	e3 := c.get("/y?etag=1").get("ETag")
	if !etagRE.MatchString(e1) || e1 != e2 || e1 == e3 {
		t.Errorf("etags %q %q %q: want strong, stable per URI, distinct across URIs", e1, e2, e3)
	}
	v1 := c.get("/x?etag=1&vary=Accept-Encoding", "Accept-Encoding", "gzip")
	v2 := c.get("/x?etag=1&vary=Accept-Encoding", "Accept-Encoding", "br")
	if bytes.Equal(v1.body, v2.body) || v1.get("ETag") == v2.get("ETag") {
		t.Error("variants share a body or an ETag")
	}
}

func TestServerConditional(t *testing.T) {
	s, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())
	etag := c.get("/c?etag=1&lm=1&cc=max-age=5").get("ETag")
	if !etagRE.MatchString(etag) {
		t.Fatalf("ETag %q", etag)
	}
	lm, _ := time.Parse(time.RFC1123, testLM)

	tests := []struct {
		name    string
		uri     string
		headers []string
		status  int
	}{
		{"inm exact", "/c?etag=1&lm=1&cc=max-age=5", []string{"If-None-Match", etag}, 304},
		{"inm weak", "/c?etag=1&lm=1&cc=max-age=5", []string{"If-None-Match", "W/" + etag}, 304},
		{"inm list", "/c?etag=1&lm=1&cc=max-age=5", []string{"If-None-Match", `"nope", ` + etag}, 304},
		{"inm star", "/c?etag=1&lm=1&cc=max-age=5", []string{"If-None-Match", "*"}, 304},
		{"inm other", "/c?etag=1&lm=1&cc=max-age=5", []string{"If-None-Match", `"nope"`}, 200},
		{"inm beats ims", "/c?etag=1&lm=1&cc=max-age=5", []string{"If-None-Match", `"nope"`, "If-Modified-Since", testDate}, 200},
		{"inm without etag", "/c?lm=1", []string{"If-None-Match", etag}, 200},
		{"ims equal", "/c?lm=1", []string{"If-Modified-Since", testLM}, 304},
		{"ims later", "/c?lm=1", []string{"If-Modified-Since", lm.Add(time.Hour).Format(time.RFC1123)}, 304},
		{"ims earlier", "/c?lm=1", []string{"If-Modified-Since", lm.Add(-time.Second).Format(time.RFC1123)}, 200},
		{"ims invalid", "/c?lm=1", []string{"If-Modified-Since", "yesterday"}, 200},
		{"ims without lm", "/c", []string{"If-Modified-Since", testDate}, 200},
		{"not for non-2xx", "/c?etag=1&lm=1&cc=max-age=5&status=404", []string{"If-None-Match", "*"}, 404},
	}
	var want304 int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.get(tt.uri, tt.headers...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d", r.status, tt.status)
			}
			if tt.status != 304 {
				return
			}
			want304++
			if len(r.body) != 0 {
				t.Errorf("304 with body %q", r.body)
			}
			// RFC 9110 §15.4.5: the 304 repeats the validators and cache headers.
			if strings.Contains(tt.uri, "etag=1") && r.get("ETag") != etag {
				t.Errorf("304 ETag %q, want %q", r.get("ETag"), etag)
			}
			if strings.Contains(tt.uri, "cc=") && r.get("Cache-Control") != "max-age=5" {
				t.Errorf("304 Cache-Control %q", r.get("Cache-Control"))
			}
			if r.get("Date") != testDate {
				t.Errorf("304 Date %q", r.get("Date"))
			}
		})
	}
	if got := s.Stats().NotModified; got != want304 {
		t.Errorf("not_modified %d, want %d", got, want304)
	}
}

func TestServerCookieCounter(t *testing.T) {
	_, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())
	for i, want := range []string{"session=1; Path=/", "session=2; Path=/"} {
		if got := c.get("/k?cookie=1").get("Set-Cookie"); got != want {
			t.Errorf("response %d Set-Cookie %q, want %q", i, got, want)
		}
	}
	c.post("/__origin/reset")
	if got := c.get("/k?cookie=1").get("Set-Cookie"); got != "session=1; Path=/" {
		t.Errorf("after reset Set-Cookie %q", got)
	}
}

func TestServerChunked(t *testing.T) {
	_, ln := startServer(t)
	addr := ln.Addr().String()

	// Read the wire: the header block must announce chunked and no length.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	const uri = "/ch?chunked=1&size=100000"
	if _, err := io.WriteString(conn, "GET "+uri+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var head strings.Builder
	for i := 0; i < 100; i++ {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
		head.WriteString(l)
	}
	h := strings.ToLower(head.String())
	if !strings.Contains(h, "transfer-encoding: chunked") || strings.Contains(h, "content-length") {
		t.Fatalf("want chunked without Content-Length, got:\n%s", head.String())
	}
	var resp fasthttp.Response
	resp.Header.SetContentLength(-1)
	if err := resp.ReadBody(br, 0); err != nil {
		t.Fatal(err)
	}
	if want := testutil.Repeat("origin "+uri+" v=1\n", 100000); !bytes.Equal(resp.Body(), want) {
		t.Errorf("chunked body of %d bytes differs from the expected %d", len(resp.Body()), len(want))
	}

	c := newHTTPClient(t, addr)
	if r := c.get("/ch?chunked=1"); string(r.body) != "origin /ch?chunked=1 v=1\n" {
		t.Errorf("chunked default body %q", r.body)
	}
}

func TestServerHead(t *testing.T) {
	_, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())
	for _, uri := range []string{"/h?size=100&cc=max-age=9", "/h?chunked=1&size=100&cc=max-age=9"} {
		r := c.do(fasthttp.MethodHead, uri)
		if r.status != 200 || len(r.body) != 0 || r.get("Cache-Control") != "max-age=9" {
			t.Errorf("HEAD %s: status %d body %q Cache-Control %q", uri, r.status, r.body, r.get("Cache-Control"))
		}
		if !strings.Contains(uri, "chunked") && r.header.ContentLength() != 100 {
			t.Errorf("HEAD %s: Content-Length %d, want the GET's 100", uri, r.header.ContentLength())
		}
	}
	// The connection is still usable: no body bytes were left on it.
	if r := c.get("/h"); string(r.body) != "origin /h v=1\n" {
		t.Errorf("GET after HEAD: %q", r.body)
	}
}

func statsOf(t *testing.T, c *httpClient) Stats {
	t.Helper()
	r := c.get("/__origin/stats")
	if r.status != 200 || r.get("Content-Type") != "application/json" {
		t.Fatalf("stats: status %d type %q", r.status, r.get("Content-Type"))
	}
	var st Stats
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatalf("stats %q: %v", r.body, err)
	}
	return st
}

func TestServerStatsAndReset(t *testing.T) {
	s, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())
	etag := c.get("/a?etag=1").get("ETag")
	c.get("/a?etag=1", "If-None-Match", etag)
	c.get("/a")
	c.get("/a")
	c.post("/a")
	c.get("/b?size=x") // a 400 is still a request
	c.post("/__origin/bump")
	c.get("/__origin/stats")

	st := statsOf(t, c)
	want := map[string]int64{"/a?etag=1": 2, "/a": 3, "/b?size=x": 1}
	if st.Requests != 6 || st.NotModified != 1 || st.Version != 2 {
		t.Errorf("stats %+v, want requests 6, not_modified 1, version 2", st)
	}
	if len(st.ByURI) != len(want) {
		t.Errorf("by_uri %v, want %v", st.ByURI, want)
	}
	for k, n := range want {
		if st.ByURI[k] != n {
			t.Errorf("by_uri[%q] = %d, want %d", k, st.ByURI[k], n)
		}
	}
	if s.Requests() != 6 {
		t.Errorf("Requests() = %d", s.Requests())
	}

	if r := c.post("/__origin/reset"); r.status != 200 {
		t.Fatalf("reset: %d", r.status)
	}
	st = statsOf(t, c)
	if st.Requests != 0 || st.NotModified != 0 || len(st.ByURI) != 0 || st.Version != 2 {
		t.Errorf("after reset %+v, want zero counters and version kept", st)
	}
}

func TestServerControlRouting(t *testing.T) {
	s, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())
	tests := []struct {
		method, uri string
		status      int
	}{
		{"GET", "/__origin/reset", 405},
		{"POST", "/__origin/stats", 405},
		{"GET", "/__origin/bump", 405},
		{"GET", "/__origin/mode", 405},
		{"GET", "/__origin/nope", 404},
		{"POST", "/__origin/mode?status=1000", 400},
		{"POST", "/__origin/mode?delay=forever", 400},
		{"POST", "/__origin/mode?delay=2m", 400},
	}
	for _, tt := range tests {
		if r := c.do(tt.method, tt.uri); r.status != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.uri, r.status, tt.status)
		}
	}
	if s.Requests() != 0 {
		t.Errorf("control requests were counted: %d", s.Requests())
	}
}

func TestServerMode(t *testing.T) {
	_, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())

	if r := c.post("/__origin/mode?status=503"); r.status != 200 {
		t.Fatalf("mode: %d %q", r.status, r.body)
	}
	for _, m := range []string{"GET", "HEAD", "POST"} {
		r := c.do(m, "/a?cc=max-age=60&etag=1&lm=1")
		if r.status != 503 {
			t.Errorf("%s forced: status %d", m, r.status)
		}
		for _, h := range []string{"Cache-Control", "ETag", "Last-Modified"} {
			if r.get(h) != "" {
				t.Errorf("%s forced answer has %s", m, h)
			}
		}
	}
	if r := c.get("/a"); string(r.body) != "origin forced status\n" {
		t.Errorf("forced body %q", r.body)
	}

	c.post("/__origin/mode?delay=30ms")
	start := time.Now()
	if r := c.get("/a"); r.status != 200 {
		t.Errorf("delay-only mode: status %d", r.status)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("delay mode answered before its delay")
	}

	c.post("/__origin/mode?status=500")
	c.post("/__origin/mode")
	if r := c.get("/a"); r.status != 200 {
		t.Errorf("after clearing mode: %d", r.status)
	}
	c.post("/__origin/mode?status=500")
	c.post("/__origin/reset")
	if r := c.get("/a"); r.status != 200 {
		t.Errorf("after reset: %d", r.status)
	}
	if st := statsOf(t, c); st.Requests != 1 {
		t.Errorf("requests after reset %d, want 1", st.Requests)
	}
}

func TestServerBump(t *testing.T) {
	_, ln := startServer(t)
	c := newHTTPClient(t, ln.Addr().String())
	before := c.get("/a?etag=1")
	if r := c.post("/__origin/bump"); string(r.body) != "{\"version\":2}\n" {
		t.Errorf("bump answered %q", r.body)
	}
	after := c.get("/a?etag=1")
	if string(after.body) != "origin /a?etag=1 v=2\n" || bytes.Equal(before.body, after.body) {
		t.Errorf("body after bump %q (before %q)", after.body, before.body)
	}
	if after.get("ETag") == before.get("ETag") {
		t.Error("ETag unchanged by bump")
	}
	if r := c.get("/a?etag=1", "If-None-Match", before.get("ETag")); r.status != 200 {
		t.Errorf("stale ETag revalidated with %d, want 200", r.status)
	}
	if r := c.get("/a?etag=1", "If-None-Match", after.get("ETag")); r.status != 304 {
		t.Errorf("fresh ETag revalidated with %d, want 304", r.status)
	}
}

func TestServerShutdownReleasesDelayed(t *testing.T) {
	s := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := newHTTPClient(t, ln.Addr().String())

	got := make(chan int, 1)
	go func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + ln.Addr().String() + "/slow?delay=60s")
		if err := c.hc.DoTimeout(req, resp, 30*time.Second); err != nil {
			got <- -1
			return
		}
		got <- resp.StatusCode()
	}()
	testutil.WaitFor(t, 10*time.Second, func() bool { return s.Requests() == 1 }, "the delayed request to arrive")

	done := make(chan error, 1)
	go func() { done <- s.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown blocked on a delayed request")
	}
	if st := <-got; st != 503 {
		t.Errorf("delayed request got %d, want 503", st)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if err := s.Shutdown(); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln2); err == nil {
		t.Error("serve after shutdown succeeded")
	}
}

// BenchmarkServer runs the demo handler in memory with one reused
// RequestCtx per goroutine.
func BenchmarkServer(b *testing.B) {
	for _, bc := range []struct{ name, uri, inm string }{
		{"default", "/bench/a?cc=max-age=60", ""},
		{"etag", "/bench/a?etag=1&lm=1&cc=max-age=60", ""},
		{"304", "/bench/a?etag=1", "*"},
		{"size16k", "/bench/a?size=16384", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(Options{})
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var ctx fasthttp.RequestCtx
				ctx.Request.SetRequestURI(bc.uri)
				if bc.inm != "" {
					ctx.Request.Header.Set("If-None-Match", bc.inm)
				}
				for pb.Next() {
					ctx.Response.Reset()
					s.Handler(&ctx)
				}
			})
		})
	}
}
