package httpcache

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// base is the origin's Date in most cases: 2023-11-14T22:13:20Z.
const base int64 = 1_700_000_000

func httpDate(sec int64) string {
	return time.Unix(sec, 0).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")
}

// respOf parses a raw response header with the given status and lines.
func respOf(t testing.TB, status int, lines ...string) *Response {
	t.Helper()
	return respOfTargets(t, nil, status, lines...)
}

// respOfTargets is respOf for a cache with a target list (RFC 9213).
func respOfTargets(t testing.TB, targets Targets, status int, lines ...string) *Response {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d Whatever\r\n", status)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	h := new(fasthttp.ResponseHeader)
	if err := h.Read(bufio.NewReader(strings.NewReader(b.String()))); err != nil {
		t.Fatalf("parsing response header %d %q: %v", status, lines, err)
	}
	r := new(Response)
	ParseResponse(r, h, base, targets)
	return r
}

var (
	dateBase = "Date: " + httpDate(base)
	lmOld    = "Last-Modified: " + httpDate(base-1000)
	etagA    = `ETag: "a"`
)

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		check func(r *Response) error
	}{
		{"RFC9110 §6.6.1 Date and §8.8.2 Last-Modified parsed", []string{dateBase, lmOld}, func(r *Response) error {
			if r.Date != base || r.LastModified != base-1000 {
				return fmt.Errorf("date %d lm %d", r.Date, r.LastModified)
			}
			return nil
		}},
		{"RFC9111 §5.3 Expires parsed", []string{"Expires: " + httpDate(base+60)}, func(r *Response) error {
			if r.Expires != base+60 || r.ExpiresInvalid {
				return fmt.Errorf("expires %d invalid %v", r.Expires, r.ExpiresInvalid)
			}
			return nil
		}},
		{"RFC9111 §5.3 invalid Expires is marked", []string{"Expires: 0"}, func(r *Response) error {
			if !r.ExpiresInvalid {
				return fmt.Errorf("expires %d invalid %v", r.Expires, r.ExpiresInvalid)
			}
			return nil
		}},
		{"RFC9111 §5.3 Expires at the epoch is a past date, not absent", []string{"Expires: Thu, 01 Jan 1970 00:00:00 GMT"}, func(r *Response) error {
			if r.Expires == 0 || r.Expires > 0 || r.ExpiresInvalid {
				return fmt.Errorf("expires %d invalid %v", r.Expires, r.ExpiresInvalid)
			}
			return nil
		}},
		{"RFC9111 §5.3 Expires in UTC is invalid, not a date", []string{"Expires: " + httpDate(base + 60)[:26] + "UTC"}, func(r *Response) error {
			if !r.ExpiresInvalid {
				return fmt.Errorf("expires %d invalid %v", r.Expires, r.ExpiresInvalid)
			}
			return nil
		}},
		{"RFC9110 §6.6.1 a Date that is not an HTTP-date is absent", []string{"Date: " + httpDate(base)[:26] + "UTC", "Last-Modified: 2023-11-14"}, func(r *Response) error {
			if r.Date != 0 || r.LastModified != 0 {
				return fmt.Errorf("date %d lm %d", r.Date, r.LastModified)
			}
			return nil
		}},
		{"RFC9111 §4.2.1 two Expires lines: first used", []string{"Expires: " + httpDate(base+60), "Expires: " + httpDate(base+600)}, func(r *Response) error {
			if r.Expires != base+60 {
				return fmt.Errorf("expires %d", r.Expires)
			}
			return nil
		}},
		{"RFC9111 §5.1 Age parsed", []string{"Age: 42"}, func(r *Response) error {
			if r.Age != 42 {
				return fmt.Errorf("age %d", r.Age)
			}
			return nil
		}},
		{"RFC9111 §5.1 missing Age is Absent", nil, func(r *Response) error {
			if r.Age != int64(Absent) {
				return fmt.Errorf("age %d", r.Age)
			}
			return nil
		}},
		{"RFC9111 §5.1 list-based Age uses the first member", []string{"Age: 10, 20"}, func(r *Response) error {
			if r.Age != 10 {
				return fmt.Errorf("age %d", r.Age)
			}
			return nil
		}},
		{"RFC9111 §5.1 invalid Age is ignored", []string{"Age: -5"}, func(r *Response) error {
			if r.Age != int64(Absent) {
				return fmt.Errorf("age %d", r.Age)
			}
			return nil
		}},
		{"RFC9111 §5.1 invalid first Age line ignores the field", []string{"Age: soon", "Age: 7"}, func(r *Response) error {
			if r.Age != int64(Absent) {
				return fmt.Errorf("age %d", r.Age)
			}
			return nil
		}},
		{"RFC9111 §1.2.2 huge Age is capped", []string{"Age: 99999999999999"}, func(r *Response) error {
			if r.Age != maxDelta {
				return fmt.Errorf("age %d", r.Age)
			}
			return nil
		}},
		{"RFC9110 §8.8.3 ETag and validator", []string{`ETag: W/"v1"`}, func(r *Response) error {
			if string(r.ETag) != `W/"v1"` || !r.HasValidator() {
				return fmt.Errorf("etag %q validator %v", r.ETag, r.HasValidator())
			}
			return nil
		}},
		{"RFC9111 §4.3.1 no validator", []string{dateBase}, func(r *Response) error {
			if r.HasValidator() {
				return fmt.Errorf("validator without ETag or Last-Modified")
			}
			return nil
		}},
		{"RFC6265 §3 Set-Cookie noted", []string{"Set-Cookie: a=b"}, func(r *Response) error {
			if !r.SetCookie {
				return fmt.Errorf("set-cookie not seen")
			}
			return nil
		}},
		{"RFC9110 §5.3 Vary lines joined, §4.1 star detected", []string{"Vary: Accept-Encoding", "Vary: *"}, func(r *Response) error {
			if string(r.Vary) != "Accept-Encoding,*" || !r.VaryStar {
				return fmt.Errorf("vary %q star %v", r.Vary, r.VaryStar)
			}
			return nil
		}},
		{"RFC9111 §4.1 Vary without star", []string{"Vary: Accept-Encoding, User-Agent"}, func(r *Response) error {
			if string(r.Vary) != "Accept-Encoding, User-Agent" || r.VaryStar {
				return fmt.Errorf("vary %q star %v", r.Vary, r.VaryStar)
			}
			return nil
		}},
		{"RFC9110 §5.3 Cache-Control lines combined", []string{"Cache-Control: max-age=5", "Cache-Control: public"}, func(r *Response) error {
			if r.CC.MaxAge != 5 || !r.CC.Public || r.Status != 200 {
				return fmt.Errorf("%d %s", r.Status, showCC(r.CC))
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(respOf(t, 200, tc.lines...)); err != nil {
				t.Errorf("ParseResponse(%q): %v", tc.lines, err)
			}
		})
	}
}

func TestParseResponseResets(t *testing.T) {
	// RFC9111 §3: facts of a previous response must not leak into the next.
	r := respOf(t, 200, dateBase, lmOld, etagA, "Set-Cookie: a=b", "Vary: *", "Age: 3", "Expires: 0", "Cache-Control: no-store")
	h := new(fasthttp.ResponseHeader)
	h.SetStatusCode(404)
	ParseResponse(r, h, base, nil)
	if r.Status != 404 || r.Date != 0 || r.LastModified != 0 || r.ETag != nil || r.SetCookie || r.VaryStar ||
		r.Vary != nil || r.Age != int64(Absent) || r.ExpiresInvalid || r.Expires != 0 || r.CC.NoStore || r.CC.MaxAge != Absent {
		t.Fatalf("ParseResponse kept old state: %+v", *r)
	}
}

func TestStorable(t *testing.T) {
	tests := []struct {
		name   string
		post   bool // request method is not GET
		req    []string
		status int
		resp   []string
		policy Policy
		want   Reason
	}{
		{"RFC9111 §3 GET 200 with max-age is stored", false, nil, 200, []string{dateBase, "Cache-Control: max-age=60"}, Policy{}, Stored},
		{"RFC9111 §3 non-GET is not stored", true, nil, 200, []string{dateBase, "Cache-Control: max-age=60"}, Policy{}, NotGET},
		{"RFC9111 §3 206 not stored: partial content unsupported", false, nil, 206, []string{"Cache-Control: max-age=60", etagA}, Policy{}, StatusNotCacheable},
		{"RFC9111 §3 304 not stored", false, nil, 304, []string{"Cache-Control: max-age=60", etagA}, Policy{}, StatusNotCacheable},
		{"RFC9111 §3 status above 599 is not understood", false, nil, 600, []string{"Cache-Control: max-age=60"}, Policy{}, StatusNotCacheable},
		{"RFC9111 §3 302 without explicit freshness is not stored", false, nil, 302, []string{dateBase, lmOld, etagA}, Policy{}, StatusNotCacheable},
		{"RFC9111 §3 302 with max-age is stored", false, nil, 302, []string{"Cache-Control: max-age=60"}, Policy{}, Stored},
		{"RFC9111 §3 500 without explicit freshness is not stored", false, nil, 500, []string{dateBase, lmOld}, Policy{}, StatusNotCacheable},
		{"RFC9111 §3 500 with Expires is stored", false, nil, 500, []string{dateBase, "Expires: " + httpDate(base+60)}, Policy{}, Stored},
		{"RFC9111 §3 500 with s-maxage is stored", false, nil, 500, []string{"Cache-Control: s-maxage=60"}, Policy{}, Stored},
		{"RFC9111 §3 public makes a non-heuristic status storable", false, nil, 500, []string{dateBase, lmOld, "Cache-Control: public"}, Policy{}, Stored},
		{"RFC9111 §3 must-understand alone gives no permission", false, nil, 302, []string{etagA, "Cache-Control: must-understand"}, Policy{}, StatusNotCacheable},
		{"RFC9111 §5.2.2.5 no-store response", false, nil, 200, []string{"Cache-Control: no-store, max-age=60"}, Policy{}, NoStore},
		{"RFC9111 §5.2.1.5 no-store request", false, []string{"Cache-Control: no-store"}, 200, []string{"Cache-Control: max-age=60"}, Policy{}, NoStore},
		{"RFC9111 §5.2.2.3 must-understand with understood status overrides no-store", false, nil, 200, []string{"Cache-Control: no-store, must-understand, max-age=60"}, Policy{}, Stored},
		{"RFC9111 §5.2.2.3 must-understand with understood 302", false, nil, 302, []string{"Cache-Control: must-understand, no-store, max-age=60"}, Policy{}, Stored},
		{"RFC9111 §5.2.2.3 must-understand with non-understood status", false, nil, 418, []string{"Cache-Control: must-understand, no-store, max-age=60"}, Policy{}, StatusNotCacheable},
		{"RFC9111 §5.2.2.3 must-understand with non-understood 5xx", false, nil, 500, []string{"Cache-Control: must-understand, max-age=60"}, Policy{}, StatusNotCacheable},
		{"RFC9111 §5.2.2.3 must-understand does not override request no-store", false, []string{"Cache-Control: no-store"}, 200, []string{"Cache-Control: must-understand, no-store, max-age=60"}, Policy{}, NoStore},
		{"RFC9111 §5.2.2.7 private is not stored by a shared cache", false, nil, 200, []string{"Cache-Control: private, max-age=60"}, Policy{}, Private},
		{"RFC9111 §5.2.2.7 qualified private: the rest may be stored", false, nil, 200, []string{`Cache-Control: private="X-User", max-age=60`}, Policy{}, Stored},
		{"RFC9111 §3 qualified private alone gives a shared cache no permission", false, nil, 302, []string{`Cache-Control: private="X-User"`, etagA}, Policy{}, StatusNotCacheable},
		{"RFC9111 §3.5 Authorization without explicit permission", false, []string{"Authorization: Basic YTpi"}, 200, []string{"Cache-Control: max-age=60"}, Policy{}, AuthorizationNotShared},
		{"RFC9111 §3.5 Authorization with public", false, []string{"Authorization: Basic YTpi"}, 200, []string{"Cache-Control: public, max-age=60"}, Policy{}, Stored},
		{"RFC9111 §3.5 Authorization with s-maxage", false, []string{"Authorization: Basic YTpi"}, 200, []string{"Cache-Control: s-maxage=60"}, Policy{}, Stored},
		{"RFC9111 §3.5 Authorization with must-revalidate", false, []string{"Authorization: Basic YTpi"}, 200, []string{"Cache-Control: must-revalidate, max-age=60"}, Policy{}, Stored},
		{"RFC9111 §3.5 proxy-revalidate is not among the permissions", false, []string{"Authorization: Basic YTpi"}, 200, []string{"Cache-Control: proxy-revalidate, max-age=60"}, Policy{}, AuthorizationNotShared},
		{"RFC9111 §3.5 Authorization with private stays private", false, []string{"Authorization: Basic YTpi"}, 200, []string{"Cache-Control: private, public, max-age=60"}, Policy{}, Private},
		{"RFC9111 §7.3 Set-Cookie not stored without StripSetCookie", false, nil, 200, []string{"Cache-Control: max-age=60", "Set-Cookie: s=1"}, Policy{}, HasSetCookie},
		{"RFC9111 §7.3 Set-Cookie stored with StripSetCookie", false, nil, 200, []string{"Cache-Control: max-age=60", "Set-Cookie: s=1"}, Policy{StripSetCookie: true}, Stored},
		{"RFC9111 §4.1 Vary: * always fails to match", false, nil, 200, []string{"Cache-Control: max-age=60", "Vary: *"}, Policy{}, VaryStar},
		{"RFC9111 §4.1 Vary with * among names", false, nil, 200, []string{"Cache-Control: max-age=60", "Vary: Accept-Encoding, *"}, Policy{}, VaryStar},
		{"RFC9111 §4.1 ordinary Vary is stored", false, nil, 200, []string{"Cache-Control: max-age=60", "Vary: Accept-Encoding"}, Policy{}, Stored},
		{"RFC9111 §4.2.1 max-age=0 without validator or stale window", false, nil, 200, []string{"Cache-Control: max-age=0"}, Policy{}, NoFreshness},
		{"RFC9111 §4.3 max-age=0 with ETag can be revalidated", false, nil, 200, []string{"Cache-Control: max-age=0", etagA}, Policy{}, Stored},
		{"RFC9111 §4.3 max-age=0 with Last-Modified can be revalidated", false, nil, 200, []string{"Cache-Control: max-age=0", dateBase, lmOld}, Policy{}, Stored},
		{"RFC5861 §3 max-age=0 with stale-while-revalidate", false, nil, 200, []string{"Cache-Control: max-age=0, stale-while-revalidate=30"}, Policy{}, Stored},
		{"RFC5861 §4 max-age=0 with stale-if-error", false, nil, 200, []string{"Cache-Control: max-age=0, stale-if-error=60"}, Policy{}, Stored},
		{"RFC9111 §5.3 invalid Expires without validator", false, nil, 200, []string{dateBase, "Expires: 0"}, Policy{}, NoFreshness},
		{"RFC9111 §5.3 invalid Expires with validator", false, nil, 200, []string{dateBase, "Expires: 0", etagA}, Policy{}, Stored},
		{"RFC9111 §5.3 invalid Expires is explicit: storable for 500", false, nil, 500, []string{dateBase, "Expires: -1", etagA}, Policy{}, Stored},
		{"RFC9111 §4.2.1 Expires before Date without validator", false, nil, 200, []string{dateBase, "Expires: " + httpDate(base-60)}, Policy{}, NoFreshness},
		{"RFC9111 §5.3 Expires at the epoch: no heuristic freshness, no validator", false, nil, 200, []string{dateBase, "Expires: Thu, 01 Jan 1970 00:00:00 GMT"}, Policy{DefaultTTL: 60}, NoFreshness},
		{"RFC9111 §5.2.2.4 no-cache without validator", false, nil, 200, []string{"Cache-Control: no-cache, max-age=60"}, Policy{}, NoFreshness},
		{"RFC9111 §5.2.2.4 no-cache with validator", false, nil, 200, []string{"Cache-Control: no-cache", etagA}, Policy{}, Stored},
		{"RFC9111 §4.2.2 heuristic freshness from Last-Modified", false, nil, 200, []string{dateBase, lmOld}, Policy{}, Stored},
		{"RFC9111 §4.2.2 no freshness, no validator, no default", false, nil, 200, []string{dateBase}, Policy{}, NoFreshness},
		{"RFC9111 §4.2.2 policy DefaultTTL for a heuristic status", false, nil, 200, []string{dateBase}, Policy{DefaultTTL: 60}, Stored},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req Request
			ParseRequest(&req, reqHeader(t, tc.req...))
			resp := respOf(t, tc.status, tc.resp...)
			if got := Storable(!tc.post, &req, resp, tc.policy); got != tc.want {
				t.Errorf("Storable(req %q, %d %q, %+v) = %v, want %v", tc.req, tc.status, tc.resp, tc.policy, got, tc.want)
			}
		})
	}
}

func TestStorableStatus(t *testing.T) {
	// A response with a validator and no explicit freshness: storable only
	// for the heuristically cacheable statuses of RFC9110 §15.1.
	heuristicStatuses := map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true,
		404: true, 405: true, 410: true, 414: true, 501: true}
	for _, st := range []int{200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308,
		400, 401, 403, 404, 405, 410, 414, 418, 429, 500, 501, 502, 503, 504} {
		want := StatusNotCacheable
		if heuristicStatuses[st] {
			want = Stored
		}
		t.Run(fmt.Sprintf("RFC9110 §15.1 status %d", st), func(t *testing.T) {
			var req Request
			req.CC.Reset()
			if got := Storable(true, &req, respOf(t, st, dateBase, lmOld), Policy{}); got != want {
				t.Errorf("Storable(%d) = %v, want %v", st, got, want)
			}
		})
	}
	t.Run("RFC9110 §15.2 1xx is not final", func(t *testing.T) {
		var req Request
		req.CC.Reset()
		resp := respOf(t, 200, "Cache-Control: max-age=60", etagA)
		for _, st := range []int{100, 103, 199, 0} {
			resp.Status = st
			if got := Storable(true, &req, resp, Policy{}); got != StatusNotCacheable {
				t.Errorf("Storable(%d) = %v, want %v", st, got, StatusNotCacheable)
			}
		}
	})
}

func TestLifetime(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		lines     []string
		respTime  int64
		policy    Policy
		want      int64
		heuristic bool
	}{
		{"RFC9111 §4.2.1 s-maxage over max-age and Expires", 200, []string{dateBase, "Cache-Control: max-age=60, s-maxage=30", "Expires: " + httpDate(base+600)}, base, Policy{}, 30, false},
		{"RFC9111 §4.2.1 max-age over Expires", 200, []string{dateBase, "Cache-Control: max-age=60", "Expires: " + httpDate(base+600)}, base, Policy{}, 60, false},
		{"RFC9111 §4.2.1 max-age over invalid Expires", 200, []string{"Cache-Control: max-age=60", "Expires: 0"}, base, Policy{}, 60, false},
		{"RFC9111 §4.2.1 Expires minus Date", 200, []string{dateBase, "Expires: " + httpDate(base+3600)}, base + 10, Policy{}, 3600, false},
		{"RFC9111 §4.2.1 Expires without Date uses the response time", 200, []string{"Expires: " + httpDate(base+100)}, base + 40, Policy{}, 60, false},
		{"RFC9111 §4.2.1 Expires before Date is 0", 200, []string{dateBase, "Expires: " + httpDate(base-100)}, base, Policy{}, 0, false},
		{"RFC9111 §5.3 Expires with UTC instead of GMT is already expired", 200, []string{dateBase, "Expires: Tue, 14 Nov 2023 23:13:20 UTC"}, base, Policy{}, 0, false},
		{"RFC9111 §5.3 Expires with several spaces between fields is already expired", 200, []string{dateBase, "Expires: Tue, 14 Nov 2023  23:13:20 GMT"}, base, Policy{}, 0, false},
		{"RFC9111 §5.3 Expires with a one-digit hour is already expired", 200, []string{dateBase, "Expires: Tue, 14 Nov 2023 3:13:20 GMT"}, base, Policy{}, 0, false},
		{"RFC9111 §5.3 Expires folded inside its time is already expired", 200, []string{dateBase, "Expires: Tue, 14 Nov 2023 23:13\r\n :20 GMT"}, base, Policy{}, 0, false},
		// RFC 9112 §5.2 lets a proxy replace each obs-fold with one space
		// before interpreting the value (fasthttp does): a date folded at a
		// space is then the date it spells.
		{"RFC9112 §5.2 Expires folded at a space is read unfolded", 200, []string{dateBase, "Expires: Tue, 14 Nov 2023\r\n 23:13:20 GMT"}, base, Policy{}, 3600, false},
		{"RFC9111 §5.3 Expires with a numeric zone is already expired", 200, []string{dateBase, "Expires: Tue, 14 Nov 2023 23:13:20 +0000"}, base, Policy{}, 0, false},
		{"RFC9111 §5.3 invalid Expires is 0 even with Last-Modified", 200, []string{dateBase, lmOld, "Expires: 0"}, base, Policy{DefaultTTL: 60}, 0, false},
		{"RFC9111 §5.3 Expires at the epoch is 0, no heuristic", 200, []string{dateBase, lmOld, "Expires: Thu, 01 Jan 1970 00:00:00 GMT"}, base, Policy{}, 0, false},
		{"RFC9111 §4.2.1 invalid max-age is 0, no heuristic", 200, []string{dateBase, lmOld, "Cache-Control: max-age=abc"}, base, Policy{}, 0, false},
		{"RFC9111 §4.2.2 heuristic: 10% of Date minus Last-Modified", 200, []string{dateBase, lmOld}, base + 50, Policy{}, 100, true},
		{"RFC9111 §4.2.2 heuristic capped by MaxHeuristic", 200, []string{dateBase, lmOld}, base, Policy{MaxHeuristic: 50}, 50, true},
		{"RFC9111 §4.2.2 heuristic turned off by policy", 200, []string{dateBase, lmOld}, base, Policy{NoHeuristic: true}, 0, false},
		{"RFC9111 §4.2.2 heuristic below the cap is kept", 200, []string{dateBase, lmOld}, base, Policy{MaxHeuristic: 500}, 100, true},
		{"RFC9111 §4.2.2 heuristic without Date uses the response time", 200, []string{lmOld}, base + 1000, Policy{}, 200, true},
		{"RFC9111 §4.2.2 heuristic for 404", 404, []string{dateBase, lmOld}, base, Policy{}, 100, true},
		{"RFC9111 §4.2.2 no heuristic for non-heuristic status", 302, []string{dateBase, lmOld}, base, Policy{DefaultTTL: 60}, 0, false},
		{"RFC9111 §4.2.2 public allows heuristic for any status", 302, []string{dateBase, lmOld, "Cache-Control: public"}, base, Policy{}, 100, true},
		{"RFC9111 §4.2.2 Last-Modified after Date falls back to DefaultTTL", 200, []string{dateBase, "Last-Modified: " + httpDate(base+10)}, base, Policy{DefaultTTL: 60}, 60, true},
		{"RFC9111 §4.2.2 DefaultTTL when nothing else applies", 200, []string{dateBase}, base, Policy{DefaultTTL: 60}, 60, true},
		{"RFC9111 §4.2.2 DefaultTTL not for a non-heuristic status", 500, []string{dateBase}, base, Policy{DefaultTTL: 60}, 0, false},
		{"RFC9111 §4.2.2 nothing: lifetime 0", 200, []string{dateBase}, base, Policy{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, h := Lifetime(respOf(t, tc.status, tc.lines...), tc.respTime, tc.policy)
			if got != tc.want || h != tc.heuristic {
				t.Errorf("Lifetime(%d %q, %d, %+v) = %d, %v; want %d, %v", tc.status, tc.lines, tc.respTime, tc.policy, got, h, tc.want, tc.heuristic)
			}
		})
	}
}

func TestInitialAge(t *testing.T) {
	sec := int64(time.Second)
	at := func(s int64) int64 { return s * sec }
	tests := []struct {
		name          string
		lines         []string
		reqAt, respAt int64 // unix nanoseconds
		want          int64
	}{
		{"RFC9111 §4.2.3 no Date, no Age, no delay", nil, at(base), at(base), 0},
		{"RFC9111 §4.2.3 apparent age from Date", []string{"Date: " + httpDate(base-10)}, at(base), at(base), 10},
		{"RFC9111 §4.2.3 Date in the future: apparent age 0", []string{"Date: " + httpDate(base+100)}, at(base), at(base), 0},
		{"RFC9111 §4.2.3 Age plus response delay", []string{"Age: 30"}, at(base - 2), at(base), 32},
		{"RFC9111 §4.2.3 max of corrected Age and apparent age: Age wins", []string{"Date: " + httpDate(base-10), "Age: 30"}, at(base - 2), at(base), 32},
		{"RFC9111 §4.2.3 max of corrected Age and apparent age: Date wins", []string{"Date: " + httpDate(base-100), "Age: 5"}, at(base - 1), at(base), 100},
		{"RFC9111 §4.2.3 response delay alone", nil, at(base - 3), at(base), 3},
		{"RFC9111 §4.2.3 sub-second delay rounds down", nil, at(base) - 1500*int64(time.Millisecond), at(base), 1},
		{"RFC9111 §4.2.3 request after response: delay 0", []string{"Age: 4"}, at(base + 5), at(base), 4},
		{"RFC9111 §5.1 invalid Age ignored", []string{"Age: x"}, at(base - 2), at(base), 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := InitialAge(respOf(t, 200, tc.lines...), tc.reqAt, tc.respAt); got != tc.want {
				t.Errorf("InitialAge(%q) = %d, want %d", tc.lines, got, tc.want)
			}
		})
	}
}

func TestFreshTTL(t *testing.T) {
	tests := []struct {
		rfc       string
		age, life int64
		fresh     bool
		ttl       int64
	}{
		{"RFC9111 §4.2 lifetime above age is fresh", 10, 60, true, 50},
		{"RFC9111 §4.2 lifetime equal to age is stale", 60, 60, false, 0},
		{"RFC9211 §2.4 negative ttl when stale", 70, 60, false, -10},
		{"RFC9111 §4.2 lifetime 0 is stale at once", 0, 0, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			s := StoredResponse{Age: tc.age, Lifetime: tc.life}
			if s.Fresh() != tc.fresh || s.TTL() != tc.ttl {
				t.Errorf("age %d lifetime %d: fresh %v ttl %d", tc.age, tc.life, s.Fresh(), s.TTL())
			}
		})
	}
}

func TestReuse(t *testing.T) {
	tests := []struct {
		name string
		s    StoredResponse
		req  string // request Cache-Control
		want Action
	}{
		{"RFC9111 §4.2 fresh response is served", StoredResponse{Age: 10, Lifetime: 60}, "", Serve},
		{"RFC9111 §4.2 age equal to lifetime is stale", StoredResponse{Age: 60, Lifetime: 60}, "", Validate},
		{"RFC9111 §4.2.4 stale without permission is validated", StoredResponse{Age: 100, Lifetime: 60}, "", Validate},
		{"RFC9111 §5.2.1.4 request no-cache validates a fresh response", StoredResponse{Age: 10, Lifetime: 60}, "no-cache", Validate},
		{"RFC9111 §5.2.2.4 response no-cache validates a fresh response", StoredResponse{Age: 10, Lifetime: 60, NoCache: true}, "", Validate},
		{"RFC9111 §5.2.2.4 response no-cache beats max-stale", StoredResponse{Age: 100, Lifetime: 60, NoCache: true}, "max-stale", Validate},
		{"RFC9111 §5.2.1.1 request max-age below the age", StoredResponse{Age: 10, Lifetime: 60}, "max-age=5", Validate},
		{"RFC9111 §5.2.1.1 request max-age equal to the age", StoredResponse{Age: 10, Lifetime: 60}, "max-age=10", Serve},
		{"RFC9111 §5.2.1.1 request max-age=0 with age 0", StoredResponse{Age: 0, Lifetime: 60}, "max-age=0", Serve},
		{"RFC9111 §5.2.1.1 request max-age=0 with age 1", StoredResponse{Age: 1, Lifetime: 60}, "max-age=0", Validate},
		{"RFC9111 §5.2.1.1 max-age bounds age even with max-stale", StoredResponse{Age: 100, Lifetime: 60}, "max-age=5, max-stale", Validate},
		{"RFC9111 §5.2.1.1 max-age with max-stale accepts stale within the age bound", StoredResponse{Age: 80, Lifetime: 60}, "max-age=90, max-stale=30", ServeStale},
		{"RFC9111 §5.2.1.1 max-age alone refuses stale", StoredResponse{Age: 80, Lifetime: 60}, "max-age=90", Validate},
		{"RFC9111 §5.2.1.3 min-fresh above the remaining freshness", StoredResponse{Age: 10, Lifetime: 60}, "min-fresh=60", Validate},
		{"RFC9111 §5.2.1.3 min-fresh equal to the remaining freshness", StoredResponse{Age: 10, Lifetime: 60}, "min-fresh=50", Serve},
		{"RFC9111 §5.2.1.3 min-fresh refuses stale even with max-stale", StoredResponse{Age: 70, Lifetime: 60}, "min-fresh=0, max-stale", Validate},
		{"RFC9111 §5.2.1.2 max-stale without value accepts any staleness", StoredResponse{Age: 100000, Lifetime: 60}, "max-stale", ServeStale},
		{"RFC9111 §5.2.1.2 max-stale at its limit", StoredResponse{Age: 70, Lifetime: 60}, "max-stale=10", ServeStale},
		{"RFC9111 §5.2.1.2 max-stale exceeded", StoredResponse{Age: 71, Lifetime: 60}, "max-stale=10", Validate},
		{"RFC9111 §5.2.1.2 max-stale on a fresh response still serves fresh", StoredResponse{Age: 10, Lifetime: 60}, "max-stale=10", Serve},
		{"RFC9111 §5.2.2.2 must-revalidate forbids stale under max-stale", StoredResponse{Age: 70, Lifetime: 60, MustRevalidate: true}, "max-stale", Validate},
		{"RFC9111 §5.2.2.2 must-revalidate serves while fresh", StoredResponse{Age: 10, Lifetime: 60, MustRevalidate: true}, "", Serve},
		{"RFC9111 §4.2.4 must-revalidate forbids stale-while-revalidate", StoredResponse{Age: 70, Lifetime: 60, StaleWhileRevalidate: 30, MustRevalidate: true}, "", Validate},
		{"RFC5861 §3 just stale, inside stale-while-revalidate", StoredResponse{Age: 61, Lifetime: 60, StaleWhileRevalidate: 30}, "", ServeStaleRevalidate},
		{"RFC5861 §3 stale-while-revalidate window edge", StoredResponse{Age: 90, Lifetime: 60, StaleWhileRevalidate: 30}, "", ServeStaleRevalidate},
		{"RFC5861 §3 past the stale-while-revalidate window", StoredResponse{Age: 91, Lifetime: 60, StaleWhileRevalidate: 30}, "", Validate},
		{"RFC5861 §3 stale-while-revalidate=0 gives no window", StoredResponse{Age: 60, Lifetime: 60}, "", Validate},
		{"RFC5861 §3 fresh response ignores the window", StoredResponse{Age: 59, Lifetime: 60, StaleWhileRevalidate: 30}, "", Serve},
		{"RFC9111 §5.2.1.2 max-stale wins over stale-while-revalidate", StoredResponse{Age: 70, Lifetime: 60, StaleWhileRevalidate: 30}, "max-stale=20", ServeStale},
		{"RFC9111 §5.2.1.4 request no-cache beats stale-while-revalidate", StoredResponse{Age: 70, Lifetime: 60, StaleWhileRevalidate: 30}, "no-cache", Validate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := ccOf(tc.req)
			if got := Reuse(&tc.s, &req); got != tc.want {
				t.Errorf("Reuse(%+v, %q) = %v, want %v", tc.s, tc.req, got, tc.want)
			}
		})
	}
}

func TestStaleOnError(t *testing.T) {
	tests := []struct {
		name string
		s    StoredResponse
		req  string
		want bool
	}{
		{"RFC5861 §4 inside the response stale-if-error window", StoredResponse{Age: 900, Lifetime: 600, StaleIfError: 1200}, "", true},
		{"RFC5861 §4 at the response window edge", StoredResponse{Age: 1800, Lifetime: 600, StaleIfError: 1200}, "", true},
		{"RFC5861 §4 past the response window", StoredResponse{Age: 1801, Lifetime: 600, StaleIfError: 1200}, "", false},
		{"RFC5861 §4 fresh response with stale-if-error", StoredResponse{Age: 10, Lifetime: 600, StaleIfError: 1}, "", true},
		{"RFC9111 §4.2.4 no permission: write the error through", StoredResponse{Age: 700, Lifetime: 600}, "", false},
		{"RFC9111 §5.2.2.2 must-revalidate overrides stale-if-error", StoredResponse{Age: 700, Lifetime: 600, StaleIfError: 1200, MustRevalidate: true}, "max-stale", false},
		{"RFC9111 §4.2.4 response no-cache overrides request permission", StoredResponse{Age: 700, Lifetime: 600, NoCache: true}, "max-stale, stale-if-error=1000", false},
		{"RFC5861 §4 request stale-if-error inside its window", StoredResponse{Age: 650, Lifetime: 600}, "stale-if-error=100", true},
		{"RFC5861 §4 request stale-if-error at its edge", StoredResponse{Age: 700, Lifetime: 600}, "stale-if-error=100", true},
		{"RFC5861 §4 request stale-if-error exceeded", StoredResponse{Age: 701, Lifetime: 600}, "stale-if-error=100", false},
		{"RFC5861 §4 request stale-if-error=0 permits nothing stale", StoredResponse{Age: 601, Lifetime: 600}, "stale-if-error=0", false},
		{"RFC5861 §4 either window suffices", StoredResponse{Age: 700, Lifetime: 600, StaleIfError: 10}, "stale-if-error=500", true},
		{"RFC9111 §5.2.1.2 request max-stale without value", StoredResponse{Age: 100000, Lifetime: 600}, "max-stale", true},
		{"RFC9111 §5.2.1.2 request max-stale within its value", StoredResponse{Age: 605, Lifetime: 600}, "max-stale=10", true},
		{"RFC9111 §5.2.1.2 request max-stale exceeded", StoredResponse{Age: 620, Lifetime: 600}, "max-stale=10", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := ccOf(tc.req)
			if got := StaleOnError(&tc.s, &req); got != tc.want {
				t.Errorf("StaleOnError(%+v, %q) = %v, want %v", tc.s, tc.req, got, tc.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		rfc, got, want string
	}{
		{"RFC9211 §2.8 stored", Stored.String(), "stored"},
		{"RFC9211 §2.8 method", NotGET.String(), "method"},
		{"RFC9211 §2.8 status", StatusNotCacheable.String(), "status"},
		{"RFC9211 §2.8 no-store", NoStore.String(), "no-store"},
		{"RFC9211 §2.8 private", Private.String(), "private"},
		{"RFC9211 §2.8 authorization", AuthorizationNotShared.String(), "authorization"},
		{"RFC9211 §2.8 set-cookie", HasSetCookie.String(), "set-cookie"},
		{"RFC9211 §2.8 vary-star", VaryStar.String(), "vary-star"},
		{"RFC9211 §2.8 no-freshness", NoFreshness.String(), "no-freshness"},
		{"RFC9211 §2.8 unknown reason", Reason(200).String(), "unknown"},
		{"RFC9111 §4 serve", Serve.String(), "serve"},
		{"RFC9111 §4.2.4 serve-stale", ServeStale.String(), "serve-stale"},
		{"RFC5861 §3 serve-stale-revalidate", ServeStaleRevalidate.String(), "serve-stale-revalidate"},
		{"RFC9111 §4.3 validate", Validate.String(), "validate"},
		{"RFC9111 §4 unknown action", Action(200).String(), "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestErrorStatus(t *testing.T) {
	// RFC5861 §4: "an error is any situation that would result in a 500,
	// 502, 503, or 504 HTTP response status code being returned".
	for status := 100; status < 600; status++ {
		want := status == 500 || status == 502 || status == 503 || status == 504
		if got := ErrorStatus(status); got != want {
			t.Errorf("RFC5861 §4 ErrorStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

// TestStoredLifetime: an operator's rule replaces or caps the freshness
// a response is stored with, counted from its arrival (its initial age).
func TestStoredLifetime(t *testing.T) {
	tests := []struct {
		name      string
		lines     []string
		age       int64
		policy    Policy
		want      int64
		heuristic bool
	}{
		{"no rule: Lifetime unchanged", []string{dateBase, "Cache-Control: max-age=60"}, 10, Policy{}, 60, false},
		{"ttl replaces max-age", []string{dateBase, "Cache-Control: max-age=60"}, 0, Policy{TTL: 600}, 600, false},
		{"ttl replaces s-maxage=0", []string{dateBase, "Cache-Control: s-maxage=0"}, 0, Policy{TTL: 30}, 30, false},
		{"ttl gives freshness where there is none", []string{dateBase}, 0, Policy{TTL: 30}, 30, false},
		{"ttl replaces a heuristic", []string{dateBase, lmOld}, 0, Policy{TTL: 30}, 30, false},
		{"ttl counts from arrival: an aged response stays fresh ttl more", []string{dateBase, "Age: 100", "Cache-Control: max-age=60"}, 100, Policy{TTL: 30}, 130, false},
		{"max_ttl caps max-age", []string{dateBase, "Cache-Control: max-age=3600"}, 0, Policy{MaxTTL: 60}, 60, false},
		{"max_ttl caps what is left on arrival", []string{dateBase, "Cache-Control: max-age=3600"}, 100, Policy{MaxTTL: 60}, 160, false},
		{"max_ttl leaves a shorter lifetime alone", []string{dateBase, "Cache-Control: max-age=30"}, 0, Policy{MaxTTL: 60}, 30, false},
		{"max_ttl leaves a stale arrival stale", []string{dateBase, "Age: 100", "Cache-Control: max-age=30"}, 100, Policy{MaxTTL: 60}, 30, false},
		{"max_ttl caps a heuristic, which stays heuristic", []string{dateBase, lmOld}, 0, Policy{MaxTTL: 10}, 10, true},
		{"max_ttl caps DefaultTTL", []string{dateBase}, 0, Policy{DefaultTTL: 600, MaxTTL: 60}, 60, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, h := StoredLifetime(respOf(t, 200, tc.lines...), tc.age, base, tc.policy)
			if got != tc.want || h != tc.heuristic {
				t.Errorf("StoredLifetime(%q, %d, %+v) = %d, %v; want %d, %v", tc.lines, tc.age, tc.policy, got, h, tc.want, tc.heuristic)
			}
		})
	}
}

// TestStorableWithRule: a rule's ttl and stale_if_error change how long a
// response is kept, never whether the RFCs let a shared cache store it.
func TestStorableWithRule(t *testing.T) {
	tests := []struct {
		name   string
		req    []string
		status int
		resp   []string
		policy Policy
		want   Reason
	}{
		{"RFC9111 §3 no freshness, no validator: not stored", nil, 200, []string{dateBase}, Policy{}, NoFreshness},
		{"ttl makes it worth storing", nil, 200, []string{dateBase}, Policy{TTL: 60}, Stored},
		{"ttl makes max-age=0 worth storing", nil, 200, []string{dateBase, "Cache-Control: max-age=0"}, Policy{TTL: 60}, Stored},
		{"RFC5861 §4 stale_if_error makes a stale arrival worth storing", nil, 200, []string{dateBase, "Cache-Control: max-age=0"}, Policy{StaleIfError: 60}, Stored},
		{"max_ttl alone does not", nil, 200, []string{dateBase}, Policy{MaxTTL: 60}, NoFreshness},
		{"RFC9111 §5.2.2.5 ttl does not override no-store", nil, 200, []string{"Cache-Control: no-store"}, Policy{TTL: 60}, NoStore},
		{"RFC9111 §5.2.1.5 nor a request's no-store", []string{"Cache-Control: no-store"}, 200, nil, Policy{TTL: 60}, NoStore},
		{"RFC9111 §5.2.2.7 nor private", nil, 200, []string{"Cache-Control: private"}, Policy{TTL: 60}, Private},
		{"RFC9111 §3.5 nor credentials", []string{"Authorization: Basic eDp5"}, 200, []string{dateBase}, Policy{TTL: 60}, AuthorizationNotShared},
		{"RFC9111 §7.3 nor Set-Cookie", nil, 200, []string{"Set-Cookie: a=1"}, Policy{TTL: 60}, HasSetCookie},
		{"RFC9111 §4.1 nor Vary: *", nil, 200, []string{"Vary: *"}, Policy{TTL: 60}, VaryStar},
		{"RFC9111 §3 nor a status that needs explicit freshness", nil, 302, []string{dateBase}, Policy{TTL: 60}, StatusNotCacheable},
		{"RFC9111 §3 nor an error the origin did not say may be stored", nil, 503, []string{dateBase}, Policy{TTL: 60}, StatusNotCacheable},
		{"RFC9110 §15.1 404 is cacheable by default: ttl applies", nil, 404, []string{dateBase}, Policy{TTL: 60}, Stored},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req Request
			ParseRequest(&req, reqHeader(t, tc.req...))
			if got := Storable(true, &req, respOf(t, tc.status, tc.resp...), tc.policy); got != tc.want {
				t.Errorf("Storable(%q → %d %q, %+v) = %v, want %v", tc.req, tc.status, tc.resp, tc.policy, got, tc.want)
			}
		})
	}
}
