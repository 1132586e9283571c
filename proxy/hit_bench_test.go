package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/valyala/fasthttp"
)

// hitProxy returns a proxy whose store holds /obj with a body of size bytes.
func hitProxy(tb testing.TB, st cache.Store, size int, clk *Clock) *Proxy {
	body := make([]byte, size)
	origin := FetcherFunc(func(_ context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
		resp.Header.Set("Cache-Control", "max-age=3600")
		resp.Header.Set("Content-Type", "application/octet-stream")
		resp.Header.Set("ETag", `"v1"`)
		resp.SetBody(body)
		return nil
	})
	p := New(Options{Clock: clk.Now}, st, origin)
	ctx := newCtx("/obj")
	p.Handler(ctx)
	if ctx.Response.StatusCode() != 200 {
		tb.Fatalf("fill: %d", ctx.Response.StatusCode())
	}
	return p
}

// clockedStore returns a store of kind and its coarse clock, both closed
// when the test ends.
func clockedStore(tb testing.TB, kind string, maxBytes int64) (cache.Store, *Clock) {
	tb.Helper()
	clk := NewClock(time.Millisecond)
	tb.Cleanup(clk.Stop)
	st, err := cache.New(kind, maxBytes, cache.WithClock(clk.Now))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	return st, clk
}

func newCtx(uri string) *fasthttp.RequestCtx {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.SetRequestURI("http://example.com" + uri)
	return ctx
}

// TestHitAllocs pins the hit path at zero allocations per request.
func TestHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, kind := range []string{"ristretto", "lru"} {
		t.Run(kind, func(t *testing.T) {
			st, clk := clockedStore(t, kind, 64<<20)
			p := hitProxy(t, st, 1024, clk)
			wantNoAllocs(t, p, "/obj", "a hit", func(cs string) bool { return cs == "ringcache; hit; ttl=3600" })
		})
	}
}

// wantNoAllocs serves uri through p once, checks its Cache-Status with
// is (the answer is the kind of hit meant, what), then fails the test if
// serving it again allocates.
func wantNoAllocs(t *testing.T, p *Proxy, uri, what string, is func(cs string) bool) {
	t.Helper()
	ctx := newCtx(uri)
	serve := func() {
		ctx.Response.Reset()
		p.Handler(ctx)
	}
	serve()
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !is(cs) {
		t.Fatalf("not %s: %q", what, cs)
	}
	if n := testing.AllocsPerRun(200, serve); n != 0 {
		t.Fatalf("%s allocates %.1f times per request, want 0", what, n)
	}
}

func BenchmarkHit(b *testing.B) {
	for _, kind := range []string{"ristretto", "lru"} {
		for _, size := range []int{1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%dKiB", kind, size>>10), func(b *testing.B) {
				st, clk := clockedStore(b, kind, 256<<20)
				p := hitProxy(b, st, size, clk)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := newCtx("/obj")
					for pb.Next() {
						ctx.Response.Reset()
						p.Handler(ctx)
					}
				})
			})
		}
	}
}

// TestVaryHitAllocs: a hit on a variant (Vary: Accept-Encoding, keyed by
// the accepted codings) allocates nothing either.
func TestVaryHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	st, clk := clockedStore(t, "ristretto", 64<<20)
	origin := FetcherFunc(func(_ context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
		resp.Header.Set("Cache-Control", "max-age=3600")
		resp.Header.Set("Vary", "Accept-Encoding")
		resp.Header.Set("Content-Encoding", "br")
		resp.SetBody(make([]byte, 1024))
		return nil
	})
	p := New(Options{Clock: clk.Now, Key: cache.KeyOptions{Codings: true}}, st, origin)
	ctx := newCtx("/v")
	ctx.Request.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	serve := func() {
		ctx.Response.Reset()
		p.Handler(ctx)
	}
	serve() // the fill
	serve()
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); cs != "ringcache; hit; ttl=3600" {
		t.Fatalf("not a hit: %q", cs)
	}
	if n := testing.AllocsPerRun(200, serve); n != 0 {
		t.Fatalf("variant hit allocates %.1f times per request, want 0", n)
	}
}
