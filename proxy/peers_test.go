package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/cache"
	"github.com/valyala/fasthttp"
)

// fakePeer answers forwarded requests with forward, and lookups from held.
type fakePeer struct {
	name     string
	forwards atomic.Int64
	gets     atomic.Int64
	getErr   error // what Get fails with, if set
	forward  func(req *fasthttp.Request, resp *fasthttp.Response) error
	held     map[string]*cache.Entry
}

func (f *fakePeer) Name() string { return f.name }
func (f *fakePeer) Forward(_ context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	f.forwards.Add(1)
	return f.forward(req, resp)
}

// Get answers from held as the lookup exchange does: the entry encoded,
// then decoded into f borrowing its buffer, if no larger than f.Max.
func (f *fakePeer) Get(_ context.Context, key []byte, fe *cache.Fetched) (bool, error) {
	f.gets.Add(1)
	if f.getErr != nil {
		return false, f.getErr
	}
	e := f.held[string(key)]
	if e == nil || (fe.Max > 0 && e.EncodedSize() > fe.Max) {
		return false, nil
	}
	fe.Buf = e.AppendBinary(fe.Buf[:0])
	return true, cache.DecodeEntryInto(&fe.Entry, fe.Buf)
}

// fakePeers says owner owns every key (nil: this node), prev owned them
// before, and accepts forwarded requests signed "ok".
type fakePeers struct {
	owner, prev *fakePeer
	mu          sync.Mutex
	broadcasts  []cache.Purge
	stored      []string // keys Stored was told of
}

func (f *fakePeers) Lookup(ctx context.Context, key []byte, fe *cache.Fetched) (Peer, bool, error) {
	if f.owner == nil {
		return nil, false, nil
	}
	ok, err := f.owner.Get(ctx, key, fe)
	return f.owner, ok, err
}

func (f *fakePeers) Stored(e *cache.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stored = append(f.stored, string(e.Key()))
}

func (f *fakePeers) storedKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.stored)
}

func (f *fakePeers) Owner([]byte) (Peer, bool) {
	if f.owner == nil {
		return nil, false
	}
	return f.owner, true
}
func (f *fakePeers) Previous([]byte) (Peer, bool) {
	if f.prev == nil {
		return nil, false
	}
	return f.prev, true
}
func (f *fakePeers) Broadcast(_ context.Context, p cache.Purge) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broadcasts = append(f.broadcasts, p)
	return 0, nil
}

func (f *fakePeers) sent() []cache.Purge {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.broadcasts)
}

// ownerAnswer is an owner's reply: a hit with its own Cache-Status member.
// Like a reply read off the wire, it has a Content-Length, and an answer to
// HEAD has that field but no body (RFC 9110 §9.3.2).
func ownerAnswer(req *fasthttp.Request, resp *fasthttp.Response) error {
	body := "from owner " + string(req.URI().Path())
	resp.Header.Set("Cache-Control", "max-age=60")
	resp.Header.Set("Cache-Status", "owner; hit; ttl=60")
	resp.Header.SetContentLength(len(body))
	if !req.Header.IsHead() {
		resp.SetBodyString(body)
	}
	return nil
}

func TestForwardToOwner(t *testing.T) {
	owner := &fakePeer{name: "owner", forward: ownerAnswer}
	n := newNode(t, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	r := n.get("/f")
	if string(r.Body()) != "from owner /f" {
		t.Fatalf("body %q", r.Body())
	}
	// RFC 9211 §2: the owner's member first, then this node's.
	if cs := csOf(r); cs != "owner; hit; ttl=60, me; fwd=miss; fwd-status=200; detail=peer" {
		t.Fatalf("Cache-Status %q", cs)
	}
	if n.origin.calls.Load() != 0 || n.st.Stats().Items != 0 {
		t.Fatalf("a non-owner fetched (%d) or stored (%d)", n.origin.calls.Load(), n.st.Stats().Items)
	}
}

func TestForwardFailureFallsBackToOrigin(t *testing.T) {
	owner := &fakePeer{name: "owner", forward: func(*fasthttp.Request, *fasthttp.Response) error { return errors.New("connection refused") }}
	n := newNode(t, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	r := n.get("/down")
	wantStatus(t, r, 200, "me; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	if got := counterValue(n.p.m.peerFallbacks); got != 1 {
		t.Fatalf("peer fallbacks = %v, want 1", got)
	}
}

func TestForwardedRequestServedLocally(t *testing.T) {
	// A forwarded request is never forwarded again, whatever this node's
	// ring says: two nodes that disagree cannot loop.
	owner := &fakePeer{name: "owner", forward: ownerAnswer}
	n := newNode(t, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	r := n.peerDo("GET", "/loop", "X-Ringcache-Forwarded: peer", "X-Forwarded-For: 203.0.113.9")
	wantStatus(t, r, 200, "me; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	if owner.forwards.Load() != 0 {
		t.Fatal("forwarded request was forwarded again")
	}
	req := n.origin.lastRequest()
	if v := req.Header.Peek("X-Ringcache-Forwarded"); len(v) > 0 {
		t.Fatalf("peer header leaked to the origin: %q", v)
	}
	// A trusted peer's forwarding fields describe the real client.
	if got := string(req.Header.Peek("X-Forwarded-For")); got != "203.0.113.9" {
		t.Fatalf("X-Forwarded-For = %q, want the client's, kept from the peer", got)
	}
}

func TestHotCopies(t *testing.T) {
	owner := &fakePeer{name: "owner", forward: ownerAnswer}
	clk := testutil.NewClock()
	hot := cache.NewLRU(1<<20, cache.WithClock(clk.UnixNano))
	defer hot.Close()
	n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: owner}, Hot: hot, HotTTL: 30 * time.Second}, nil)
	// A popular key is sampled into the hot cache within hotSample forwards.
	for range hotSample {
		n.get("/popular")
	}
	before := owner.forwards.Load()
	r := n.get("/popular")
	if cs := csOf(r); !strings.HasPrefix(cs, "me; hit;") || !strings.Contains(cs, "detail=hot") || string(r.Body()) != "from owner /popular" {
		t.Fatalf("hot hit: %q %q", cs, r.Body())
	}
	if owner.forwards.Load() != before {
		t.Fatal("a hot hit was forwarded")
	}
	// Never beyond HotTTL (and never beyond the response's freshness).
	n.clk.Advance(31 * time.Second)
	n.get("/popular")
	if owner.forwards.Load() != before+1 {
		t.Fatal("an expired hot copy was served")
	}
	// A key kept before is kept again by the lookup after its copy ran
	// out, not after another sample: a key that stays popular costs its
	// owner one lookup per HotTTL.
	if r := n.get("/popular"); !strings.Contains(csOf(r), "detail=hot") || owner.forwards.Load() != before+1 {
		t.Fatalf("after one lookup renewed it: %q, %d lookups; want a hot hit", csOf(r), owner.forwards.Load()-before)
	}
	// A key never kept is still sampled: one lookup does not keep it.
	n.p.hotTick.Store(0)
	n.get("/cold")
	if cs := csOf(n.get("/cold")); strings.Contains(cs, "detail=hot") {
		t.Fatalf("a key looked up once was kept: %q", cs)
	}
	// An unsafe method drops the local hot copy at once.
	for range hotSample {
		n.get("/popular")
	}
	n.do("POST", "/popular")
	before = owner.forwards.Load()
	n.get("/popular")
	if owner.forwards.Load() != before+1 {
		t.Fatal("hot copy survived an invalidation")
	}
}

// TestHotCopyOnlyFromCompleteGet: a hot copy answers every GET on this node
// for up to HotTTL, so it is made only from an owner's complete answer to
// a GET: never from a HEAD's (no body), never from a body shorter or
// longer than its Content-Length.
func TestHotCopyOnlyFromCompleteGet(t *testing.T) {
	const full = "from owner /popular"
	cases := []struct {
		name   string
		method string
		answer func(req *fasthttp.Request, resp *fasthttp.Response) error
	}{
		{name: "RFC 9110 §9.3.2 answers to HEAD have no body", method: "HEAD", answer: ownerAnswer},
		{name: "RFC 9112 §6.3 body shorter than Content-Length", method: "GET", answer: func(req *fasthttp.Request, resp *fasthttp.Response) error {
			_ = ownerAnswer(req, resp)
			resp.Header.SetContentLength(len(full) + 10)
			return nil
		}},
		{name: "RFC 9112 §6.3 body longer than Content-Length", method: "GET", answer: func(req *fasthttp.Request, resp *fasthttp.Response) error {
			_ = ownerAnswer(req, resp)
			resp.Header.SetContentLength(len(full) - 3)
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			owner := &fakePeer{name: "owner", forward: tc.answer}
			clk := testutil.NewClock()
			hot := cache.NewLRU(1<<20, cache.WithClock(clk.UnixNano))
			defer hot.Close()
			n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: owner}, Hot: hot}, nil)
			for range 2 * hotSample {
				n.do(tc.method, "/popular")
			}
			owner.forward = ownerAnswer // complete answers from now on
			before := owner.forwards.Load()
			r := n.get("/popular")
			if cs := csOf(r); strings.Contains(cs, "detail=hot") || string(r.Body()) != full {
				t.Fatalf("GET answered %q with Cache-Status %q, want the owner's whole page", r.Body(), cs)
			}
			if owner.forwards.Load() != before+1 {
				t.Fatal("GET not forwarded to the owner")
			}
		})
	}
}

func TestTakeoverFromPreviousOwner(t *testing.T) {
	// A key that moved here is taken from its previous owner, not the origin.
	clkStart := testutil.Start.UnixNano()
	e := cache.NewEntry([]byte("example.com/moved"),
		[]cache.Field{{Key: []byte("Cache-Control"), Value: []byte("max-age=600")}}, []byte("kept"), cache.Stale{})
	e.Status, e.ResponseTime, e.Lifetime, e.Expires = 200, clkStart, 600, clkStart+int64(time.Hour)
	prev := &fakePeer{name: "prev", held: map[string]*cache.Entry{"example.com/moved": e}}
	n := newNode(t, Options{Name: "me", Peers: &fakePeers{prev: prev}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	n.clk.Advance(10 * time.Second)
	r := n.get("/moved")
	wantStatus(t, r, 200, "me; hit; ttl=590; detail=previous-owner")
	if string(r.Body()) != "kept" || n.origin.calls.Load() != 0 {
		t.Fatalf("body %q, origin calls %d", r.Body(), n.origin.calls.Load())
	}
	wantStatus(t, n.get("/moved"), 200, "me; hit; ttl=590")
}

func TestAcceptLosesToInvalidation(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	entry := func(at int64, body string) *cache.Entry {
		e := cache.NewEntry([]byte("example.com/h"), nil, []byte(body), cache.Stale{})
		e.Status, e.ResponseTime, e.Lifetime, e.Expires = 200, at, 600, at+int64(time.Hour)
		return e
	}
	old := entry(testutil.Start.UnixNano(), "old")
	n.clk.Advance(time.Second)
	n.do("POST", "/h") // invalidates example.com/h now
	if n.p.local.Accept(old) {
		t.Fatal("a copy fetched before the invalidation was accepted")
	}
	n.clk.Advance(time.Second)
	fresh := entry(n.clk.UnixNano(), "new")
	if !n.p.local.Accept(fresh) {
		t.Fatal("a copy fetched after the invalidation was refused")
	}
	if n.p.local.Accept(entry(n.clk.UnixNano()-1, "older")) {
		t.Fatal("an older copy replaced a newer one")
	}
	if r := n.get("/h"); string(r.Body()) != "new" {
		t.Fatalf("served %q", r.Body())
	}
	pass := cache.NewEntry([]byte("example.com/p"), nil, nil, cache.Stale{})
	pass.Flags, pass.ResponseTime = cache.Pass, n.clk.UnixNano()
	if n.p.local.Accept(pass) {
		t.Fatal("a pass marker was accepted")
	}
}

func TestPurgeKinds(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		resp.Header.Set("Cache-Control", "max-age=600")
		if tags := req.URI().QueryArgs().Peek("tags"); len(tags) > 0 {
			resp.Header.Set("Surrogate-Key", string(tags))
		}
		if v := req.URI().QueryArgs().Peek("vary"); len(v) > 0 {
			resp.Header.Set("Vary", string(v))
		}
		resp.SetBodyString("x")
	})
	fill := func() {
		for _, u := range []string{"/a", "/img/1", "/img/2", "/t?tags=red%20blue", "/u?tags=blue", "/v?vary=Accept"} {
			n.get(u)
			n.get(u, "Accept: text/plain")
		}
	}
	cases := []struct {
		purge cache.Purge
		want  int      // responses dropped
		gone  []string // now misses
		kept  []string // still hits
	}{
		{cache.Purge{Host: "example.com", URL: "/a"}, 1, []string{"/a"}, []string{"/img/1"}},
		{cache.Purge{URL: "/a"}, 1, []string{"/a"}, []string{"/img/1"}}, // any host
		{cache.Purge{Host: "example.com", URL: "/v?vary=Accept"}, 2, []string{"/v?vary=Accept"}, []string{"/a"}},
		{cache.Purge{Tag: "blue"}, 2, []string{"/t?tags=red%20blue", "/u?tags=blue"}, []string{"/a"}},
		{cache.Purge{Tag: "red"}, 1, []string{"/t?tags=red%20blue"}, []string{"/u?tags=blue"}},
		{cache.Purge{Prefix: "/img/"}, 2, []string{"/img/1", "/img/2"}, []string{"/a"}},
		{cache.Purge{All: true}, 7, []string{"/a", "/img/1", "/u?tags=blue"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.purge.Kind()+" "+tc.purge.URL+tc.purge.Tag+tc.purge.Prefix, func(t *testing.T) {
			n.clk.Advance(time.Second)
			fill()
			if got := n.p.local.Purge(tc.purge); got != tc.want {
				t.Fatalf("purged %d, want %d", got, tc.want)
			}
			n.clk.Advance(time.Second)
			for _, u := range tc.gone {
				if cs := csOf(n.get(u)); strings.Contains(cs, "hit") {
					t.Errorf("%s still served from cache: %q", u, cs)
				}
			}
			for _, u := range tc.kept {
				if cs := csOf(n.get(u)); !strings.Contains(cs, "hit") {
					t.Errorf("%s lost: %q", u, cs)
				}
			}
		})
	}
}

func TestPurgeMethod(t *testing.T) {
	peers := &fakePeers{}
	n := newNode(t, Options{Peers: peers}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=600"))
	n.get("/p?x=1")
	// The in-memory listener's clients are not on loopback: refused.
	if r := n.do("PURGE", "/p?x=1"); r.StatusCode() != 403 {
		t.Fatalf("PURGE from a foreign address: %d, want 403", r.StatusCode())
	}
	if len(peers.sent()) != 0 {
		t.Fatal("a refused PURGE was broadcast")
	}
	n.p.SetPurgeAllow([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")})
	r := n.do("PURGE", "/p?x=1")
	if r.StatusCode() != 200 || !strings.Contains(string(r.Body()), `"purged":1`) {
		t.Fatalf("PURGE: %d %s", r.StatusCode(), r.Body())
	}
	if b := peers.sent(); len(b) != 1 || b[0].URL != "/p?x=1" || b[0].At == 0 {
		t.Fatalf("broadcast %+v, want the URL to every member", b)
	}
	n.clk.Advance(time.Second)
	if cs := csOf(n.get("/p?x=1")); !strings.Contains(cs, "uri-miss") {
		t.Fatalf("after PURGE: %q", cs)
	}
}

func TestPurgeBeatsFillInFlight(t *testing.T) {
	// A purge that lands while a fill is on its way: the answer is served
	// to whoever asked but not stored.
	n := newNode(t, Options{}, nil)
	release, started := make(chan struct{}), make(chan struct{})
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		close(started)
		<-release
		resp.Header.Set("Cache-Control", "max-age=600")
		resp.SetBodyString("old")
	})
	done := make(chan *fasthttp.Response)
	go func() { done <- n.get("/race") }()
	<-started
	n.clk.Advance(time.Second)
	n.p.local.Purge(cache.Purge{Tag: "any"}) // unrelated: must not matter
	n.p.local.Purge(cache.Purge{Host: "example.com", URL: "/race"})
	close(release)
	if r := <-done; string(r.Body()) != "old" || strings.Contains(csOf(r), "stored") {
		t.Fatalf("in-flight answer: %q %q", r.Body(), csOf(r))
	}
	if n.st.Stats().Items != 0 {
		t.Fatal("the overtaken answer was stored")
	}
}

// TestTopKeysHideQueries: /stats shows the top keys to whoever reaches the
// admin port, so query strings (tokens, session ids) are cut unless
// StatsFullURLs is on.
func TestTopKeysHideQueries(t *testing.T) {
	for _, full := range []bool{false, true} {
		n := newNode(t, Options{StatsFullURLs: full}, nil)
		n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=600"))
		for range 4 * topSample {
			n.get("/account?token=s3cr3t")
		}
		s := n.p.Snapshot()
		if len(s.TopKeys) != 1 {
			t.Fatalf("full=%v: top keys %+v", full, s.TopKeys)
		}
		want := "example.com/account"
		if full {
			want += "?token=s3cr3t"
		}
		if got := s.TopKeys[0].Key; got != want {
			t.Fatalf("full=%v: top key %q, want %q", full, got, want)
		}
	}
}

func TestSnapshotTopKeys(t *testing.T) {
	n := newNode(t, Options{}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=600"))
	for i := range 20 * topSample {
		n.get("/hot")
		if i%4 == 0 {
			n.get(fmt.Sprintf("/cold%d", i))
		}
	}
	s := n.p.Snapshot()
	if len(s.TopKeys) == 0 || s.TopKeys[0].Key != "example.com/hot" {
		t.Fatalf("top keys %+v, want example.com/hot first", s.TopKeys)
	}
	if s.Requests["hit"] != 20*topSample-1 || s.HitRatio < 0.5 {
		t.Fatalf("snapshot %+v", s)
	}
	if n := testing.AllocsPerRun(100, func() { n.p.top.observe([]byte("example.com/x")) }); n != 0 {
		t.Fatalf("observe allocates %.1f", n)
	}
}
