package cluster

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/valyala/fasthttp"
)

func TestNewSignerErrors(t *testing.T) {
	tests := []struct {
		name, self string
		secret     []byte
		want       string
	}{
		{"short secret", "a", []byte("fifteen-bytes!!"), "at least 16 bytes"},
		{"no secret", "a", nil, "at least 16 bytes"},
		{"empty name", "", testSecret, "empty"},
		{"pipe in name", "a|b", testSecret, "contains"},
		{"newline in name", "a\nb", testSecret, "contains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.self, tt.secret)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewSigner error = %v, want one containing %q", err, tt.want)
			}
			if s != nil {
				t.Error("NewSigner returned a Signer with an error")
			}
		})
	}
	if _, err := NewSigner("node:1", testSecret[:16]); err != nil {
		t.Errorf("a 16-byte secret and a name with ':' were refused: %v", err)
	}
}

// signedRequest returns a request for uri with body, signed by s.
func signedRequest(s *Signer, method, uri, body string) *fasthttp.Request {
	var r fasthttp.Request
	r.Header.SetMethod(method)
	r.Header.SetRequestURI(uri)
	r.Header.SetHost("client.example")
	if body != "" {
		r.SetBodyString(body)
	}
	s.Sign(&r)
	return &r
}

func TestSignVerify(t *testing.T) {
	clock := testutil.NewClock()
	signer := mustSigner(t, "node-a", testSecret, SignerClock(clock.Now))
	verifier := mustSigner(t, "node-b", testSecret, SignerClock(clock.Now))
	other := mustSigner(t, "node-a", []byte("a-different-secret-16+"), SignerClock(clock.Now))
	const uri = "/img/a.png?w=100&h=%20x"
	now := clock.Now().Unix()
	good := string(signedRequest(signer, "GET", uri, "").Header.Peek(HeaderAuth))
	mac := good[strings.LastIndexByte(good, ':')+1:]
	stamp := func(name string, ts int64, mac string) string {
		return name + ":" + strconv.FormatInt(ts, 10) + ":" + mac
	}

	tests := []struct {
		name   string
		header func() *fasthttp.Request
		skew   time.Duration // verifier clock offset
		ok     bool
	}{
		{"good", func() *fasthttp.Request { return signedRequest(signer, "GET", uri, "") }, 0, true},
		{"good POST", func() *fasthttp.Request { return signedRequest(signer, "POST", "/__ringcache/handoff", "batch") }, 0, true},
		{"tampered body", func() *fasthttp.Request {
			r := signedRequest(signer, "POST", "/form", "amount=1")
			r.SetBodyString("amount=9")
			return r
		}, 0, false},
		{"body added", func() *fasthttp.Request {
			r := signedRequest(signer, "POST", "/form", "")
			r.SetBodyString("amount=9")
			return r
		}, 0, false},
		{"body removed", func() *fasthttp.Request {
			r := signedRequest(signer, "POST", "/form", "amount=1")
			r.ResetBody()
			return r
		}, 0, false},
		{"tampered Host", func() *fasthttp.Request {
			r := signedRequest(signer, "GET", uri, "")
			r.Header.SetHost("other.example")
			return r
		}, 0, false},
		{"within window (past)", func() *fasthttp.Request { return signedRequest(signer, "GET", uri, "") }, AuthWindow, true},
		{"within window (future)", func() *fasthttp.Request { return signedRequest(signer, "GET", uri, "") }, -AuthWindow, true},
		{"expired", func() *fasthttp.Request { return signedRequest(signer, "GET", uri, "") }, AuthWindow + time.Second, false},
		{"from the future", func() *fasthttp.Request { return signedRequest(signer, "GET", uri, "") }, -AuthWindow - time.Second, false},
		{"wrong secret", func() *fasthttp.Request { return signedRequest(other, "GET", uri, "") }, 0, false},
		{"tampered URI", func() *fasthttp.Request {
			h := signedRequest(signer, "GET", uri, "")
			h.Header.SetRequestURI(uri + "&admin=1")
			return h
		}, 0, false},
		{"tampered method", func() *fasthttp.Request {
			h := signedRequest(signer, "GET", uri, "")
			h.Header.SetMethod("DELETE")
			return h
		}, 0, false},
		{"tampered name in both headers", func() *fasthttp.Request {
			h := signedRequest(signer, "GET", uri, "")
			h.Header.Set(HeaderAuth, stamp("node-c", now, mac))
			h.Header.Set(HeaderForwarded, "node-c")
			return h
		}, 0, false},
		{"tampered timestamp", func() *fasthttp.Request {
			h := signedRequest(signer, "GET", uri, "")
			h.Header.Set(HeaderAuth, stamp("node-a", now+1, mac))
			return h
		}, 0, false},
		{"forwarded names another node", func() *fasthttp.Request {
			h := signedRequest(signer, "GET", uri, "")
			h.Header.Set(HeaderForwarded, "node-c")
			return h
		}, 0, false},
		{"forwarded missing", func() *fasthttp.Request {
			h := signedRequest(signer, "GET", uri, "")
			h.Header.Del(HeaderForwarded)
			return h
		}, 0, false},
	}
	malformed := map[string]string{
		"empty":              "",
		"no colons":          "node-a" + mac,
		"one colon":          "node-a:" + mac,
		"empty name":         stamp("", now, mac),
		"empty timestamp":    "node-a::" + mac,
		"negative timestamp": stamp("node-a", -now, mac),
		"signed timestamp":   "node-a:+" + strconv.FormatInt(now, 10) + ":" + mac,
		"huge timestamp":     "node-a:99999999999999999999999:" + mac,
		"letters timestamp":  "node-a:12ab:" + mac,
		"bad base64":         stamp("node-a", now, strings.Repeat("*", macB64Len)),
		"padded base64":      stamp("node-a", now, mac+"="),
		"short mac":          stamp("node-a", now, mac[:20]),
		"empty mac":          stamp("node-a", now, ""),
		"huge":               stamp(strings.Repeat("n", 4096), now, mac),
		"pipe in name":       stamp("node|a", now, mac),
		"trailing colon":     good + ":",
	}
	for name, v := range malformed {
		tests = append(tests, struct {
			name   string
			header func() *fasthttp.Request
			skew   time.Duration
			ok     bool
		}{"malformed/" + name, func() *fasthttp.Request {
			h := signedRequest(signer, "GET", uri, "")
			h.Header.Set(HeaderAuth, v)
			return h
		}, 0, false})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header()
			clock.Advance(tt.skew)
			defer clock.Advance(-tt.skew)
			from, ok := verifier.Verify(h)
			if ok != tt.ok {
				t.Fatalf("Verify ok = %v, want %v (auth %q)", ok, tt.ok, h.Header.Peek(HeaderAuth))
			}
			if ok && from != "node-a" {
				t.Errorf("Verify from = %q, want node-a", from)
			}
			if !ok && from != "" {
				t.Errorf("failed Verify returned a name %q", from)
			}
		})
	}
}

// TestSignedMessageUnambiguous: moving bytes between the Host and the URI,
// or between the body digest and the URI, changes the MAC.
func TestSignedMessageUnambiguous(t *testing.T) {
	s := mustSigner(t, "node-a", testSecret)
	m := s.macs.New().(*macState)
	mac := func(host, body, uri string) string {
		return string(m.compute([]byte("node-a"), 1, []byte("GET"), []byte(host), []byte(body), []byte(uri)))
	}
	pairs := [][2][3]string{
		{{"a|b", "", "/c"}, {"a", "", "b|/c"}},
		{{"a", "", "|/c"}, {"a|", "", "/c"}},
		{{"3|abc", "", "/"}, {"3", "", "abc|/"}},
		{{"h", "", "/x"}, {"h", "x", "/x"}},
	}
	for _, p := range pairs {
		if mac(p[0][0], p[0][1], p[0][2]) == mac(p[1][0], p[1][1], p[1][2]) {
			t.Errorf("%q and %q sign alike", p[0], p[1])
		}
	}
}

// Signing again replaces the stamp rather than adding a second one.
func TestSignReplaces(t *testing.T) {
	clock := testutil.NewClock()
	s := mustSigner(t, "node-a", testSecret, SignerClock(clock.Now))
	h := signedRequest(s, "GET", "/x", "")
	clock.Advance(time.Hour)
	s.Sign(h)
	if n := len(h.Header.PeekAll(HeaderAuth)); n != 1 {
		t.Fatalf("%d %s headers after signing twice, want 1", n, HeaderAuth)
	}
	if _, ok := s.Verify(h); !ok {
		t.Fatal("re-signed request does not verify")
	}
}

func TestSignVerifyAllocs(t *testing.T) {
	if peerRaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	s := mustSigner(t, "node-a", testSecret)
	h := signedRequest(s, "GET", "/img/a.png?w=100", "")
	if got := testing.AllocsPerRun(200, func() { s.Sign(h) }); got != 0 {
		t.Errorf("Sign allocates %.1f times, want 0", got)
	}
	body := signedRequest(s, "POST", "/form", "amount=1")
	if got := testing.AllocsPerRun(200, func() { s.Sign(body) }); got != 0 {
		t.Errorf("Sign with a body allocates %.1f times, want 0", got)
	}
	// The returned name is the one allocation.
	if got := testing.AllocsPerRun(200, func() { s.Verify(h) }); got > 1 {
		t.Errorf("Verify allocates %.1f times, want <= 1", got)
	}
}

func BenchmarkSignVerify(b *testing.B) {
	s := mustSigner(b, "node-a", testSecret)
	v := mustSigner(b, "node-b", testSecret)
	var h fasthttp.Request
	h.Header.SetRequestURI("/cdn/img/photo-12345.jpg?w=640&h=480")
	h.Header.SetHost("client.example")
	b.ReportAllocs()
	for b.Loop() {
		s.Sign(&h)
		if _, ok := v.Verify(&h); !ok {
			b.Fatal("verify failed")
		}
	}
}

func FuzzVerify(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s := mustSigner(f, "node-a", testSecret, SignerClock(clock))
	good := signedRequest(s, "GET", "/x?y=1", "")
	f.Add(string(good.Header.Peek(HeaderAuth)), "node-a", "GET", "/x?y=1", "client.example", "")
	f.Add("node-a:1700000000:", "node-a", "POST", "/", "h", "body")
	f.Add("::", "", "GET", "/", "", "")
	f.Add("a:b:c:d", "a:b", "GE|T", "/|", "a|3|b", "|")
	f.Fuzz(func(t *testing.T, auth, fwd, method, uri, host, body string) {
		var h fasthttp.Request
		h.Header.SetMethod(method)
		h.Header.SetHost(host)
		h.SetBodyString(body)
		h.Header.SetRequestURI(uri)
		h.Header.Set(HeaderAuth, auth)
		h.Header.Set(HeaderForwarded, fwd)
		from, ok := s.Verify(&h)
		if ok && from != string(h.Header.Peek(HeaderForwarded)) {
			t.Fatalf("Verify accepted a name %q that differs from %s %q", from, HeaderForwarded, h.Header.Peek(HeaderForwarded))
		}
		if ok && auth != string(good.Header.Peek(HeaderAuth)) {
			// Only a stamp made with the secret can verify; the fuzzer
			// does not know it, so any success must reuse ours.
			if !strings.HasSuffix(auth, string(good.Header.Peek(HeaderAuth))[len("node-a:1700000000"):]) {
				t.Fatalf("Verify accepted a forged stamp %q", auth)
			}
		}
		// Whatever the method and URI, a request we sign verifies, unless
		// its method holds the separator (refused on purpose).
		s.Sign(&h)
		if _, ok := s.Verify(&h); !ok && !strings.Contains(string(h.Header.Method()), "|") {
			t.Fatalf("signed request (method %q, uri %q) does not verify", h.Header.Method(), h.Header.RequestURI())
		}
	})
}
