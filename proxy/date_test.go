package proxy

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

func dateOf(r *fasthttp.Response) string { return string(r.Header.Peek("Date")) }

func ageHeader(t *testing.T, r *fasthttp.Response) int {
	t.Helper()
	age, err := strconv.Atoi(string(r.Header.Peek("Age")))
	if err != nil {
		t.Fatalf("Age = %q", r.Header.Peek("Age"))
	}
	return age
}

// TestHitKeepsStoredDate: a hit carries the Date the response was stored
// with, the time the origin made it (RFC 9110 §6.6.1), and its age in Age
// (RFC 9111 §4, §5.1), never the time of the hit.
func TestHitKeepsStoredDate(t *testing.T) {
	n := newNode(t, Options{}, nil)
	made := httpDate(n.clk)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	miss := n.get("/d")
	if dateOf(miss) != made {
		t.Fatalf("miss Date = %q, want the origin's %q", dateOf(miss), made)
	}
	n.clk.Advance(30 * time.Second)
	hit := n.get("/d")
	wantStatus(t, hit, 200, "ringcache; hit; ttl=30")
	if dateOf(hit) != made {
		t.Errorf("hit Date = %q, want the stored %q (now is %q)", dateOf(hit), made, httpDate(n.clk))
	}
	if age := ageHeader(t, hit); age != 30 {
		t.Errorf("hit Age = %d, want 30", age)
	}
	// A 304 from the cache carries the Date a 200 would (RFC 9110 §15.4.5).
	nm := n.get("/d", "If-None-Match: *")
	if nm.StatusCode() != 304 || dateOf(nm) != made {
		t.Errorf("304 from cache: status %d Date %q, want 304 with %q", nm.StatusCode(), dateOf(nm), made)
	}
	// A 412 is made here and now.
	pf := n.get("/d", `If-Match: "other"`)
	if pf.StatusCode() != 412 || dateOf(pf) != httpDate(n.clk) {
		t.Errorf("412: status %d Date %q, want 412 with %q", pf.StatusCode(), dateOf(pf), httpDate(n.clk))
	}
}

// TestDateAddedWhereMissing: a response stored or forwarded without a Date,
// or with one that is not an HTTP-date, gets the time it was received
// (RFC 9110 §6.6.1), and keeps it on hits.
func TestDateAddedWhereMissing(t *testing.T) {
	for _, tc := range []struct {
		name, date string
	}{
		{"none", ""},
		{"not an HTTP-date", "Fri, 02 Jan 2026 03:04:05 UTC"},
		{"garbage", "yesterday"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, Options{}, nil)
			received := httpDate(n.clk)
			n.origin.set(func(_ *fasthttp.Request, resp *fasthttp.Response) {
				if tc.date != "" {
					setOriginDate(&resp.Header, tc.date)
				}
				resp.Header.Set("Cache-Control", "max-age=60")
				resp.SetBodyString("x")
			})
			if miss := n.get("/d"); dateOf(miss) != received {
				t.Fatalf("miss Date = %q, want the time received %q", dateOf(miss), received)
			}
			n.clk.Advance(10 * time.Second)
			hit := n.get("/d")
			if dateOf(hit) != received || ageHeader(t, hit) != 10 {
				t.Errorf("hit Date %q Age %s, want %q and 10", dateOf(hit), hit.Header.Peek("Age"), received)
			}
		})
	}
}

// TestRevalidatedDate: a 304 that freshens a stored response brings its
// own Date (RFC 9111 §4.3.4), or the time it was received when it has none;
// the old Date would make the fresh copy look as old as the first.
func TestRevalidatedDate(t *testing.T) {
	for _, with := range []bool{true, false} {
		t.Run("304 with Date "+strconv.FormatBool(with), func(t *testing.T) {
			n := newNode(t, Options{}, nil)
			first := httpDate(n.clk)
			n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
				if len(req.Header.Peek("If-None-Match")) > 0 {
					if with {
						setOriginDate(&resp.Header, httpDate(n.clk))
					}
					resp.SetStatusCode(304)
				} else {
					setOriginDate(&resp.Header, httpDate(n.clk))
					resp.SetBodyString("x")
				}
				resp.Header.Set("Cache-Control", "max-age=10")
				resp.Header.Set("ETag", `"v1"`)
			})
			n.get("/d")
			n.clk.Advance(15 * time.Second)
			revalidated := httpDate(n.clk)
			r := n.get("/d")
			wantStatus(t, r, 200, "ringcache; fwd=stale; fwd-status=304; ttl=10; stored")
			if dateOf(r) != revalidated || revalidated == first {
				t.Fatalf("revalidated Date = %q, want %q", dateOf(r), revalidated)
			}
			n.clk.Advance(4 * time.Second)
			hit := n.get("/d")
			wantStatus(t, hit, 200, "ringcache; hit; ttl=6")
			if dateOf(hit) != revalidated {
				t.Errorf("hit after revalidation: Date %q, want %q", dateOf(hit), revalidated)
			}
		})
	}
}

// TestRelayedDate: answers passed through keep the origin's Date; one
// without gets the time it was received; answers made here carry a Date.
func TestRelayedDate(t *testing.T) {
	n := newNode(t, Options{}, nil)
	old := string(fasthttp.AppendHTTPDate(nil, n.clk.Now().Add(-time.Hour)))
	var withDate atomic.Bool
	withDate.Store(true)
	n.origin.set(func(_ *fasthttp.Request, resp *fasthttp.Response) {
		if withDate.Load() {
			setOriginDate(&resp.Header, old)
		}
		resp.Header.Set("Cache-Control", "no-store")
		resp.SetBodyString("x")
	})
	if r := n.get("/p"); dateOf(r) != old {
		t.Errorf("unstored answer: Date %q, want the origin's %q", dateOf(r), old)
	}
	if r := n.do("POST", "/p"); dateOf(r) != old {
		t.Errorf("POST answer: Date %q, want the origin's %q", dateOf(r), old)
	}
	withDate.Store(false)
	if r := n.do("POST", "/p"); dateOf(r) != httpDate(n.clk) {
		t.Errorf("POST answer without Date: Date %q, want %q", dateOf(r), httpDate(n.clk))
	}
	r := n.get("/never", "Cache-Control: only-if-cached")
	if _, ok := httpcache.ParseHTTPDate(r.Header.Peek("Date"), n.clk.Now().Unix()); r.StatusCode() != 504 || !ok {
		t.Errorf("only-if-cached miss: status %d Date %q, want 504 with a date", r.StatusCode(), r.Header.Peek("Date"))
	}
}
