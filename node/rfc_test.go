package node

// The letter of the HTTP caching RFCs, end to end: a real node in front of
// a raw-socket origin, which writes exactly the bytes a test gives it, so
// that the framings, dates and fields fasthttp would never produce as a
// server reach the node as they would from a real origin.

import (
	"bufio"
	"compress/gzip"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// startRawNode starts a node in front of a raw origin answering with
// answer.
func startRawNode(t testing.TB, answer testutil.RawAnswer, mutate func(*config.Config)) (*testNode, *testutil.RawOrigin) {
	t.Helper()
	o := testutil.ServeRaw(t, answer)
	tn := startTestNode(t, func(c *config.Config) {
		c.Origin = "http://" + o.Addr
		if mutate != nil {
			mutate(c)
		}
	})
	return tn, o
}

// field is r's field name, whatever the case the client normalised it to.
func field(r testutil.Reply, name string) string {
	for k, v := range r.Header {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// imfDate is t as an IMF-fixdate, the HTTP-date a sender generates.
func imfDate(t time.Time) string { return t.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT") }

// response builds a response of status with the given header lines and
// body, framed by Content-Length.
func response(status string, body string, lines ...string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + status + "\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

// TestInvalidExpiresIsExpired: an Expires that is not an HTTP-date (RFC
// 9110 §5.6.7) is a time in the past (RFC 9111 §5.3): the response is never
// served from the cache as fresh, however far ahead the date it almost
// spells.
func TestInvalidExpiresIsExpired(t *testing.T) {
	// Years ahead: the old parser read every one of them as that date.
	for _, tc := range []struct{ name, expires string }{
		{"UTC instead of GMT", "Fri, 06 Nov 2099 08:49:37 UTC"},
		{"another zone name", "Fri, 06 Nov 2099 08:49:37 PST"},
		{"two spaces between fields", "Fri, 06 Nov 2099  08:49:37 GMT"},
		{"a one-digit hour", "Fri, 06 Nov 2099 8:49:37 GMT"},
		// RFC 9112 §5.2: an obs-fold becomes a space, inside the time here.
		{"folded over two lines", "Fri, 06 Nov 2099 08:49\r\n :37 GMT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, o := startRawNode(t, func(n int64, _ *fasthttp.Request) (string, bool) {
				return response("200 OK", "ok", "Date: "+imfDate(time.Now()), "Expires: "+tc.expires), false
			}, nil)
			for i := range 2 {
				r := tn.get(t, "/expires")
				testutil.ExpectStatus(t, "get", r, 200)
				if strings.Contains(r.CacheStatus(), "hit") {
					t.Fatalf("request %d with Expires %q: Cache-Status %q, want no hit", i+1, tc.expires, r.CacheStatus())
				}
			}
			if n := o.Requests(); n != 2 {
				t.Errorf("origin requests = %d, want 2 (Expires %q must count as expired)", n, tc.expires)
			}
		})
	}
}

// TestHitKeepsOriginDate: through a real node, a miss and the hits after it
// carry the origin's Date (RFC 9110 §6.6.1); the time since is in Age (RFC
// 9111 §4), which covers the response's age before it arrived too.
func TestHitKeepsOriginDate(t *testing.T) {
	made := time.Now().Add(-100 * time.Second)
	date := imfDate(made)
	tn, o := startRawNode(t, func(int64, *fasthttp.Request) (string, bool) {
		return response("200 OK", "dated", "Date: "+date, "Cache-Control: max-age=3600"), false
	}, nil)
	miss := tn.get(t, "/dated")
	testutil.ExpectStatus(t, "miss", miss, 200)
	hit := tn.get(t, "/dated")
	if !strings.Contains(hit.CacheStatus(), "hit") {
		t.Fatalf("second request: Cache-Status %q, want a hit", hit.CacheStatus())
	}
	for _, r := range []testutil.Reply{miss, hit} {
		if r.Header["Date"] != date {
			t.Errorf("%s: Date %q, want the origin's %q", r.CacheStatus(), r.Header["Date"], date)
		}
		if age := ageOf(t, "answer", r); age < 100 || age > 100+int(time.Since(made)/time.Second) {
			t.Errorf("%s: Age %d, want the %s since the origin's Date", r.CacheStatus(), age, time.Since(made).Round(time.Second))
		}
	}
	if n := o.Requests(); n != 1 {
		t.Errorf("origin requests = %d, want 1", n)
	}
}

// TestTargetedCacheControl: a node obeys CDN-Cache-Control over
// Cache-Control (RFC 9213 §2.1, its default target list), ignores one that
// is not a valid Structured Field dictionary (§2.2), passes Cache-Control
// on for the caches after it, and obeys a field of its own first when
// configured, leaving it out of answers to clients.
func TestTargetedCacheControl(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*config.Config)
		fields []string
		hit    bool
		absent string // a field the client must not see
	}{
		{"CDN-Cache-Control stores what Cache-Control forbids", nil,
			[]string{"Cache-Control: no-store", "CDN-Cache-Control: max-age=600"}, true, ""},
		{"an invalid CDN-Cache-Control is ignored", nil,
			[]string{"Cache-Control: no-store", "CDN-Cache-Control: Max-Age=600"}, false, ""},
		{"targeted no-store wins over Cache-Control", nil,
			[]string{"Cache-Control: max-age=600", "CDN-Cache-Control: no-store"}, false, ""},
		{"no target list: Cache-Control alone", func(c *config.Config) { c.TargetedCacheControl = nil },
			[]string{"Cache-Control: no-store", "CDN-Cache-Control: max-age=600"}, false, ""},
		{"a field of the cluster's own, first, stripped", func(c *config.Config) {
			c.TargetedCacheControl = []string{"Ringcache-Cache-Control", "CDN-Cache-Control"}
			c.StripTargetedCacheControl = []string{"Ringcache-Cache-Control"}
		}, []string{"Cache-Control: no-store", "CDN-Cache-Control: no-store", "Ringcache-Cache-Control: max-age=600"}, true, "Ringcache-Cache-Control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, o := startRawNode(t, func(int64, *fasthttp.Request) (string, bool) {
				return response("200 OK", "targeted", append([]string{"Date: " + imfDate(time.Now())}, tc.fields...)...), false
			}, tc.mutate)
			tn.get(t, "/targeted")
			r := tn.get(t, "/targeted")
			testutil.ExpectStatus(t, "second", r, 200)
			if hit := strings.Contains(r.CacheStatus(), "; hit"); hit != tc.hit {
				t.Fatalf("second request: Cache-Status %q, want hit %v", r.CacheStatus(), tc.hit)
			}
			if want := int64(map[bool]int{true: 1, false: 2}[tc.hit]); o.Requests() != want {
				t.Errorf("origin requests = %d, want %d", o.Requests(), want)
			}
			for _, f := range tc.fields {
				k, v, _ := strings.Cut(f, ": ")
				if want := map[bool]string{true: "", false: v}[k == tc.absent]; field(r, k) != want {
					t.Errorf("%s = %q, want %q", k, field(r, k), want)
				}
			}
		})
	}
}

// gzipBody is s in the gzip coding.
func gzipBody(s string) string {
	var b strings.Builder
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}

// chunked frames s as chunks of at most n bytes and the last chunk.
func chunked(s string, n int) string {
	var b strings.Builder
	for len(s) > 0 {
		c := s[:min(n, len(s))]
		s = s[len(c):]
		b.WriteString(strconv.FormatInt(int64(len(c)), 16) + "\r\n" + c + "\r\n")
	}
	return b.String() + "0\r\n\r\n"
}

// TestResponseFramings: every framing RFC 9112 §6.3 lists, from a raw
// socket through a real node: the body arrives whole and is stored, the
// Transfer-Encoding field is neither stored nor forwarded, and a
// connection whose answer was framed by its end, or whose framing was
// suspect, carries no other request.
func TestResponseFramings(t *testing.T) {
	const body = "a body framed every way HTTP/1.1 allows"
	head := func(lines ...string) string {
		return "HTTP/1.1 200 OK\r\nDate: " + imfDate(time.Now()) + "\r\nCache-Control: max-age=600\r\n" + strings.Join(lines, "") + "\r\n"
	}
	tests := []struct {
		name   string
		reply  string
		close  bool
		status int
		reused bool // the next miss may use the same origin connection
	}{
		{"RFC9112 §6.3 Content-Length", head("Content-Length: 39\r\n") + body, false, 200, true},
		{"RFC9112 §6.3 chunked", head("Transfer-Encoding: chunked\r\n") + chunked(body, 8), false, 200, true},
		{"RFC9112 §6.3 no length: until the server closes", head() + body, true, 200, false},
		{"RFC9112 §6.3 gzip not final: until the server closes", head("Transfer-Encoding: gzip\r\n") + gzipBody(body), true, 200, false},
		{"RFC9112 §6.3 gzip, chunked", head("Transfer-Encoding: gzip, chunked\r\n") + chunked(gzipBody(body), 8), false, 200, false},
		{"RFC9112 §6.3 Transfer-Encoding overrides Content-Length", head("Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n") + chunked(body, 8), false, 200, false},
		{"RFC9112 §6.3 a coding the node cannot undo: 502", head("Transfer-Encoding: compress\r\n") + body, true, 502, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn, o := startRawNode(t, func(int64, *fasthttp.Request) (string, bool) { return tc.reply, tc.close }, nil)
			r := tn.get(t, "/framed")
			testutil.ExpectStatus(t, "miss", r, tc.status)
			if tc.status != 200 {
				testutil.ExpectCacheStatus(t, "miss", r, "detail=origin-error")
				return
			}
			if string(r.Body) != body {
				t.Fatalf("miss body %q, want %q", r.Body, body)
			}
			hit := tn.get(t, "/framed")
			testutil.ExpectCacheStatus(t, "second request", hit, "; hit")
			if string(hit.Body) != body {
				t.Errorf("hit body %q, want %q", hit.Body, body)
			}
			for _, rr := range []testutil.Reply{r, hit} {
				if te := field(rr, "Transfer-Encoding"); te != "" && te != "chunked" {
					t.Errorf("%s: Transfer-Encoding %q forwarded", rr.CacheStatus(), te)
				}
				if cl := field(rr, "Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
					t.Errorf("%s: Content-Length %q, want the body's", rr.CacheStatus(), cl)
				}
			}
			tn.get(t, "/another")
			if want := map[bool]int64{true: 1, false: 2}[tc.reused]; o.Conns() != want {
				t.Errorf("two misses over %d origin connections, want %d", o.Conns(), want)
			}
		})
	}
}

// exchangeRaw writes req to addr on a fresh connection and returns the
// interim heads before the answer, and the answer.
func exchangeRaw(t *testing.T, addr, req string) ([]string, *fasthttp.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return exchangeOn(t, c, req)
}

// exchangeOn is exchangeRaw on the connection c, which it closes.
func exchangeOn(t *testing.T, c net.Conn, req string) ([]string, *fasthttp.Response) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var heads []string
	for {
		first, err := br.Peek(12)
		if err != nil {
			t.Fatalf("reading the answer to %.40q: %v", req, err)
		}
		if first[9] != '1' {
			break
		}
		var head strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == "\r\n" {
				break
			}
			head.WriteString(l)
		}
		heads = append(heads, head.String())
	}
	resp := &fasthttp.Response{}
	if err := resp.Read(br); err != nil {
		t.Fatalf("reading the answer to %.40q: %v", req, err)
	}
	return heads, resp
}

// earlyAnswer is an origin that sends 103 Early Hints before each answer.
func earlyAnswer(int64, *fasthttp.Request) (string, bool) {
	return "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n" +
		response("200 OK", "hinted", "Date: "+imfDate(time.Now()), "Cache-Control: max-age=600"), false
}

// TestInterimThroughNode: a 103 from the origin reaches the client of a
// miss before the answer, through a real node (RFC 9110 §15.2); the hit
// after it, from the cache, has none, nor has an HTTP/1.0 client.
func TestInterimThroughNode(t *testing.T) {
	tn, _ := startRawNode(t, earlyAnswer, nil)
	req := func(path, proto string) string { return "GET " + path + " " + proto + "\r\nHost: site.test\r\n\r\n" }
	heads, resp := exchangeRaw(t, tn.n.Addr(), req("/hinted", "HTTP/1.1"))
	if len(heads) != 1 || !strings.HasPrefix(heads[0], "HTTP/1.1 103 Early Hints\r\n") || !strings.Contains(heads[0], "Link: </app.css>; rel=preload\r\n") {
		t.Fatalf("miss: interim %q, want the origin's 103", heads)
	}
	if resp.StatusCode() != 200 || string(resp.Body()) != "hinted" {
		t.Fatalf("miss: %d %q", resp.StatusCode(), resp.Body())
	}
	heads, resp = exchangeRaw(t, tn.n.Addr(), req("/hinted", "HTTP/1.1"))
	if len(heads) != 0 || !strings.Contains(string(resp.Header.Peek("Cache-Status")), "hit") {
		t.Errorf("hit: interim %q, Cache-Status %q", heads, resp.Header.Peek("Cache-Status"))
	}
	heads, resp = exchangeRaw(t, tn.n.Addr(), req("/other", "HTTP/1.0"))
	if len(heads) != 0 || resp.StatusCode() != 200 {
		t.Errorf("HTTP/1.0 miss: interim %q, status %d", heads, resp.StatusCode())
	}
}

// TestInterimThroughCluster: a miss answered by another member, the key's
// owner, still brings the origin's 103 to the client: the owner writes it
// to the member that forwarded the request, which passes it on.
func TestInterimThroughCluster(t *testing.T) {
	o := testutil.ServeRaw(t, earlyAnswer)
	c := startCluster(t, 2, func(cfg *config.Config) { cfg.Origin = "http://" + o.Addr })
	forwarded := 0
	for i := range 8 {
		for _, n := range c.live() {
			path := "/k" + strconv.Itoa(i) + "-" + n.Addr()
			heads, resp := exchangeRaw(t, n.Addr(), "GET "+path+" HTTP/1.1\r\nHost: site.test\r\n\r\n")
			cs := string(resp.Header.Peek("Cache-Status"))
			if resp.StatusCode() != 200 || len(heads) != 1 || !strings.HasPrefix(heads[0], "HTTP/1.1 103 ") {
				t.Fatalf("%s via %s: %d %q, interim %q; want the 103 first", path, n.Addr(), resp.StatusCode(), cs, heads)
			}
			if strings.Contains(cs, "detail=peer") {
				forwarded++
				// Both members are on the way, in order (RFC 9110 §7.6.3).
				if strings.Count(heads[0], "1.1 n") != 2 {
					t.Errorf("forwarded 103 Via: %q, want both members", heads[0])
				}
			}
		}
	}
	if forwarded == 0 {
		t.Fatal("no request was forwarded to its owner; the test proves nothing")
	}
}

// TestUpgradeInterimAndFraming: a request to switch protocols is tunnelled
// (not cached), yet the rules of any request that goes forward hold: the
// origin's 103 before its 101 reaches the client first (RFC 9110 §15.2),
// and an answer other than 101 is read in any framing of RFC 9112 §6.3,
// here gzip until the origin closes, and relayed decoded instead of 502.
// A targeted field the cluster strips is left out of the 101 too.
func TestUpgradeInterimAndFraming(t *testing.T) {
	const refused = "no websocket for you"
	tn, _ := startRawNode(t, func(n int64, req *fasthttp.Request) (string, bool) {
		switch {
		case string(req.URI().Path()) == "/refused":
			return "HTTP/1.1 403 Forbidden\r\nDate: " + imfDate(time.Now()) + "\r\nTransfer-Encoding: gzip\r\n\r\n" + gzipBody(refused), true
		case len(req.Header.Peek("Upgrade")) > 0:
			return "HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n" +
				"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nRingcache-Cache-Control: no-store\r\n\r\n", false
		default:
			// Bytes the client sent through the tunnel, read here as a
			// request: the answer goes back through it.
			return response("200 OK", "through the tunnel "+string(req.URI().Path())), false
		}
	}, func(c *config.Config) {
		c.TargetedCacheControl = []string{"Ringcache-Cache-Control", "CDN-Cache-Control"}
		c.StripTargetedCacheControl = []string{"Ringcache-Cache-Control"}
	})
	upgrade := func(path string) (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", tn.n.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: site.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		return c, bufio.NewReader(c)
	}

	c, br := upgrade("/switch")
	var early, final fasthttp.ResponseHeader
	if err := early.Read(br); err != nil || early.StatusCode() != 103 || string(early.Peek("Link")) != "</app.js>; rel=preload" {
		t.Fatalf("first answer: %d, Link %q, %v; want the origin's 103", early.StatusCode(), early.Peek("Link"), err)
	}
	if err := final.Read(br); err != nil || final.StatusCode() != 101 {
		t.Fatalf("second answer: %d %v; want 101", final.StatusCode(), err)
	}
	if v := final.Peek("Ringcache-Cache-Control"); len(v) > 0 {
		t.Errorf("101: Ringcache-Cache-Control %q, a stripped targeted field, reached the client", v)
	}
	if _, err := io.WriteString(c, "GET /inside HTTP/1.1\r\nHost: site.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var inside fasthttp.Response
	if err := inside.Read(br); err != nil || string(inside.Body()) != "through the tunnel /inside" {
		t.Fatalf("through the tunnel: %q %v", inside.Body(), err)
	}

	_, br = upgrade("/refused")
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 403 || string(resp.Body()) != refused {
		t.Fatalf("refused upgrade: %d %q (Cache-Status %q); want the origin's 403, decoded", resp.StatusCode(), resp.Body(), resp.Header.Peek("Cache-Status"))
	}
	if te := resp.Header.Peek("Transfer-Encoding"); len(te) > 0 && string(te) != "chunked" {
		t.Errorf("refused upgrade: Transfer-Encoding %q forwarded", te)
	}
}

// TestNodeErrorsCarryDate: the answers the node makes itself to requests it
// refuses carry a Date (RFC 9110 §6.6.1: every 4xx from a server with a
// clock), though its servers leave Date to the handlers (NoDefaultDate):
// a request fasthttp cannot parse, one whose header is too large, and one
// whose body is over max_request_body, declared or chunked.
func TestNodeErrorsCarryDate(t *testing.T) {
	tn := startTestNode(t, func(c *config.Config) { c.MaxRequestBody = 1 << 10 })
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"RFC9112 §3 garbage request line", "\x01\x02GARBAGE\r\n\r\n", 400},
		{"RFC6585 §5 header larger than the read buffer", "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"RFC9110 §15.5.14 declared body over the limit", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("y", 2048), 413},
		{"RFC9110 §15.5.14 chunked body over the limit", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("z", 2048) + "\r\n0\r\n\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawExchange(t, tn.n.Addr(), tc.req)
			if r.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode(), tc.status)
			}
			date := r.Header.Peek("Date")
			if d, err := time.Parse(time.RFC1123, string(date)); err != nil || time.Since(d).Abs() > time.Minute {
				t.Errorf("Date %q (%v), want the time of the answer", date, err)
			}
		})
	}
}
