package loadgen

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestBuckets(t *testing.T) {
	tests := []struct {
		v    uint64
		want int
	}{
		{0, 0},
		{255, 255},
		{256, 256},
		{257, 256}, // width 2 from 256 on
		{511, 383},
		{512, 384},
		{maxValue, numBuckets - 1},
		{maxValue + 1, numBuckets - 1}, // clamped
	}
	for _, tt := range tests {
		if got := bucketOf(tt.v); got != tt.want {
			t.Errorf("bucketOf(%d) = %d, want %d", tt.v, got, tt.want)
		}
	}
	// Every value lies in its bucket, whose width is under 1% of it.
	for v := uint64(1); v < 1<<39; v = v*3/2 + 1 {
		i := bucketOf(v)
		hi := bucketHigh(i)
		lo := uint64(0)
		if i > 0 {
			lo = bucketHigh(i-1) + 1
		}
		if v < lo || v > hi {
			t.Fatalf("value %d outside its bucket %d [%d, %d]", v, i, lo, hi)
		}
		if float64(hi-lo) > float64(v)/100 && hi-lo > 1 {
			t.Fatalf("bucket %d [%d, %d] too wide for %d", i, lo, hi, v)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	if h.Quantile(0.5) != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 5000 * time.Microsecond},
		{0.99, 9900 * time.Microsecond},
		{1, 10000 * time.Microsecond},
	}
	for _, tt := range tests {
		got := h.Quantile(tt.q)
		if got < tt.want || float64(got-tt.want) > float64(tt.want)/100 {
			t.Errorf("Quantile(%v) = %v, want %v to +1%%", tt.q, got, tt.want)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Count() != 10000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	if m := h.Mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Errorf("mean %v, want 5000.5µs", m)
	}
}

// testServer serves on loopback with handler and records request URIs.
type testServer struct {
	addr string
	mu   sync.Mutex
	uris []string
}

func startServer(t *testing.T, handler fasthttp.RequestHandler) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ts.mu.Lock()
		ts.uris = append(ts.uris, string(ctx.RequestURI()))
		ts.mu.Unlock()
		handler(ctx)
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ts
}

func (ts *testServer) seen() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.uris...)
}

// hitHandler answers like a cache hit: a 4-byte body and a Cache-Status,
// except for paths that ask for a failure.
func hitHandler(ctx *fasthttp.RequestCtx) {
	switch {
	case strings.HasPrefix(string(ctx.Path()), "/err"):
		ctx.Error("boom", fasthttp.StatusServiceUnavailable)
	case strings.HasPrefix(string(ctx.Path()), "/miss"):
		ctx.Response.Header.Set("Cache-Status", "c; fwd=uri-miss")
		ctx.SetBodyString("body")
	case strings.HasPrefix(string(ctx.Path()), "/long"):
		ctx.SetBodyString("longer body")
	default:
		ctx.Response.Header.Set("Cache-Status", "c; hit; ttl=10")
		ctx.SetBodyString("body")
	}
}

func TestRunOutcomes(t *testing.T) {
	ts := startServer(t, hitHandler)
	refused := closedAddr(t)
	check := &Check{Header: "Cache-Status", Contains: []string{"; hit"}}
	tests := []struct {
		name    string
		target  string
		uri     string
		wantErr bool // transport errors
		wantNon bool // non-2xx
		wantBad bool // wrong size
		wantChk bool // header check failed
	}{
		{name: "hits", target: ts.addr, uri: "/hit"},
		{name: "misses fail the check", target: ts.addr, uri: "/miss", wantChk: true},
		{name: "errors are not throughput", target: ts.addr, uri: "/err", wantNon: true},
		{name: "wrong size", target: ts.addr, uri: "/long", wantBad: true},
		{name: "refused", target: refused, uri: "/hit", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), Config{
				Targets:     []string{tt.target},
				Concurrency: 4,
				Duration:    150 * time.Millisecond,
				Keys:        Keys{Mode: KeysFixed, URI: tt.uri},
				Check:       check,
				BodySize:    4,
				Timeout:     5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 {
				t.Fatal("no requests measured")
			}
			if got := res.Errors > 0; got != tt.wantErr {
				t.Errorf("errors = %d", res.Errors)
			}
			if got := res.Non2xx > 0; got != tt.wantNon {
				t.Errorf("non-2xx = %d", res.Non2xx)
			}
			if got := res.BadSize > 0; got != tt.wantBad {
				t.Errorf("bad size = %d", res.BadSize)
			}
			if got := res.CheckFailed > 0; got != tt.wantChk {
				t.Errorf("check failed = %d", res.CheckFailed)
			}
			wantFailed := tt.wantErr || tt.wantNon || tt.wantBad || tt.wantChk
			if res.Failed() != wantFailed {
				t.Errorf("Failed() = %v, want %v (%s)", res.Failed(), wantFailed, res.FailureSummary())
			}
			if wantFailed && (len(res.Samples) == 0 || res.FailureSummary() == "") {
				t.Error("a failed run should say why")
			}
			if !wantFailed && (res.RPS <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99) {
				t.Errorf("implausible stats: %+v", res)
			}
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestWarmupNotCounted(t *testing.T) {
	ts := startServer(t, hitHandler)
	res, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: 2,
		Warmup:      150 * time.Millisecond,
		Duration:    150 * time.Millisecond,
		Keys:        Keys{Mode: KeysFixed, URI: "/hit"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if served := int64(len(ts.seen())); res.Requests == 0 || res.Requests >= served {
		t.Errorf("measured %d of %d served requests; the warm-up should be excluded", res.Requests, served)
	}
}

func TestSweepRequestsEveryKeyOnce(t *testing.T) {
	ts := startServer(t, hitHandler)
	res, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: 4,
		Keys:        Keys{Mode: KeysSweep, URI: "/k/{k}?size=4", N: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.Failed() {
		t.Fatalf("requests %d, failures %s", res.Requests, res.FailureSummary())
	}
	seen := make(map[string]bool)
	for _, u := range ts.seen() {
		seen[u] = true
	}
	for k := range 100 {
		if u := "/k/" + strconv.Itoa(k) + "?size=4"; !seen[u] {
			t.Errorf("%s never requested", u)
		}
	}
	if len(seen) != 100 {
		t.Errorf("%d distinct URIs, want 100", len(seen))
	}
}

func TestRequestsBoundTheRun(t *testing.T) {
	ts := startServer(t, hitHandler)
	res, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: 7,
		Requests:    250,
		Keys:        Keys{Mode: KeysUniform, URI: "/k/{k}", N: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 250 || len(ts.seen()) != 250 {
		t.Errorf("measured %d, served %d; want exactly 250", res.Requests, len(ts.seen()))
	}
}

func TestCycleAsksEveryKeyEquallyOften(t *testing.T) {
	ts := startServer(t, hitHandler)
	res, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: 7,
		Requests:    1000,
		Keys:        Keys{Mode: KeysCycle, URI: "/k/{k}", N: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 1000 || res.Failed() {
		t.Fatalf("requests %d, failures %s", res.Requests, res.FailureSummary())
	}
	count := make(map[string]int)
	for _, u := range ts.seen() {
		count[u]++
	}
	for k := range 100 {
		if u := "/k/" + strconv.Itoa(k); count[u] != 10 {
			t.Errorf("%s requested %d times, want 10", u, count[u])
		}
	}
	if len(count) != 100 {
		t.Errorf("%d distinct URIs, want 100", len(count))
	}
}

func TestRatePacesTheRun(t *testing.T) {
	ts := startServer(t, hitHandler)
	// 400 requests/s for 500 ms: 200 requests are due in the window, and
	// none may start early; late timers may lose a few at the end.
	res, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: 8,
		Duration:    500 * time.Millisecond,
		Rate:        400,
		Keys:        Keys{Mode: KeysFixed, URI: "/hit"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() || res.Requests > 200 || res.Requests < 150 {
		t.Errorf("%d requests at 400/s in 500 ms, want 150 to 200 (failures: %s)", res.Requests, res.FailureSummary())
	}
	if served := len(ts.seen()); served > 200 {
		t.Errorf("the server saw %d requests, more than the 200 scheduled", served)
	}
}

func TestUniqueKeysNeverRepeat(t *testing.T) {
	ts := startServer(t, hitHandler)
	if _, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: 4,
		Duration:    100 * time.Millisecond,
		Warmup:      0,
		Keys:        Keys{Mode: KeysUnique, URI: "/u/{k}"},
	}); err != nil {
		t.Fatal(err)
	}
	uris := ts.seen()
	seen := make(map[string]bool, len(uris))
	for _, u := range uris {
		if seen[u] {
			t.Fatalf("%s requested twice", u)
		}
		seen[u] = true
	}
}

func TestZipfSkew(t *testing.T) {
	ts := startServer(t, hitHandler)
	const n = 1000
	if _, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: 4,
		Duration:    200 * time.Millisecond,
		Keys:        Keys{Mode: KeysZipf, URI: "/z/{k}", N: n, S: 1.1, Seed: 7},
	}); err != nil {
		t.Fatal(err)
	}
	counts := make(map[int]int)
	uris := ts.seen()
	for _, u := range uris {
		k, err := strconv.Atoi(strings.TrimPrefix(u, "/z/"))
		if err != nil || k < 0 || k >= n {
			t.Fatalf("key out of range: %s", u)
		}
		counts[k]++
	}
	if len(uris) < 500 {
		t.Skipf("only %d requests on a loaded machine; too few to judge the skew", len(uris))
	}
	// With s=1.1 the most popular key draws far more than a typical one;
	// ranks 0 > 10 > the median rank hold with overwhelming probability.
	if !(counts[0] > counts[10] && counts[10] > counts[n/2]) {
		t.Errorf("no Zipf skew: key 0: %d, key 10: %d, key %d: %d", counts[0], counts[10], n/2, counts[n/2])
	}
}

func TestBurstSendsAllAtOnce(t *testing.T) {
	const conns = 40
	var inFlight, peak atomic.Int64
	all := make(chan struct{})
	var once sync.Once
	ts := startServer(t, func(ctx *fasthttp.RequestCtx) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == conns {
			once.Do(func() { close(all) })
		}
		// Hold every request until all have arrived (bounded), as an
		// origin fetch shared by a herd would.
		select {
		case <-all:
		case <-time.After(10 * time.Second):
		}
		ctx.SetBodyString("body")
	})
	res, err := Run(context.Background(), Config{
		Targets:     []string{ts.addr},
		Concurrency: conns,
		Burst:       true,
		Keys:        Keys{Mode: KeysFixed, URI: "/herd"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != conns || res.Failed() {
		t.Fatalf("requests %d, failures: %s", res.Requests, res.FailureSummary())
	}
	if p := peak.Load(); p != conns {
		t.Errorf("at most %d requests were in flight together, want %d", p, conns)
	}
}

func TestConfigErrors(t *testing.T) {
	base := Config{Targets: []string{"127.0.0.1:1"}, Concurrency: 1, Duration: time.Second, Keys: Keys{URI: "/"}}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"no targets", func(c *Config) { c.Targets = nil }},
		{"no connections", func(c *Config) { c.Concurrency = 0 }},
		{"no duration", func(c *Config) { c.Duration = 0 }},
		{"relative uri", func(c *Config) { c.Keys.URI = "x" }},
		{"zipf without keys", func(c *Config) { c.Keys.Mode = KeysZipf; c.Keys.S = 1.1 }},
		{"zipf exponent", func(c *Config) { c.Keys.Mode = KeysZipf; c.Keys.N = 10; c.Keys.S = 1 }},
		{"cycle without keys", func(c *Config) { c.Keys.Mode = KeysCycle }},
		{"negative rate", func(c *Config) { c.Rate = -1 }},
		{"burst with a rate", func(c *Config) { c.Burst = true; c.Rate = 100 }},
	}
	for _, tt := range tests {
		cfg := base
		tt.edit(&cfg)
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestParseKeyMode(t *testing.T) {
	for _, s := range []string{"fixed", "zipf", "uniform", "unique", "sweep", "cycle"} {
		if _, err := ParseKeyMode(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseKeyMode("random"); err == nil {
		t.Error("unknown mode accepted")
	}
}
