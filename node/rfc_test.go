package node

// The letter of the HTTP caching RFCs, end to end: a real node in front of
// a raw-socket origin, which writes exactly the bytes a test gives it, so
// that the framings, dates and fields fasthttp would never produce as a
// server reach the node as they would from a real origin.

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// rawOrigin answers each request with the bytes answer returns for it, on
// as many keep-alive connections as the node opens. close ends the
// connection after that answer (the framing "until the server closes").
type rawOrigin struct {
	addr     string
	requests atomic.Int64 // requests read
	conns    atomic.Int64 // connections accepted
}

type rawAnswer func(n int64, req *fasthttp.Request) (reply string, close bool)

func startRawOrigin(t testing.TB, answer rawAnswer) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.conns.Add(1)
			mu.Lock()
			open[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				br := bufio.NewReader(c)
				// Bounded by the deadline: a connection the node keeps idle
				// is closed by the cleanup below.
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				for {
					req := fasthttp.AcquireRequest()
					if err := req.Read(br); err != nil {
						fasthttp.ReleaseRequest(req)
						return
					}
					reply, closeAfter := answer(o.requests.Add(1), req)
					fasthttp.ReleaseRequest(req)
					if _, err := io.WriteString(c, reply); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return o
}

// startRawNode starts a node in front of a raw origin answering with
// answer.
func startRawNode(t testing.TB, answer rawAnswer, mutate func(*config.Config)) (*testNode, *rawOrigin) {
	t.Helper()
	o := startRawOrigin(t, answer)
	tn := startTestNode(t, func(c *config.Config) {
		c.Origin = "http://" + o.addr
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
			if n := o.requests.Load(); n != 2 {
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
	if n := o.requests.Load(); n != 1 {
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
			if want := int64(map[bool]int{true: 1, false: 2}[tc.hit]); o.requests.Load() != want {
				t.Errorf("origin requests = %d, want %d", o.requests.Load(), want)
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
