package proxy

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/proxy/store"
	"github.com/valyala/fasthttp"
)

// fakePeer answers forwarded requests with forward, and lookups from held.
type fakePeer struct {
	name     string
	forwards atomic.Int64
	forward  func(req *fasthttp.Request, resp *fasthttp.Response) error
	held     map[string]*store.Entry
}

func (f *fakePeer) Name() string { return f.name }
func (f *fakePeer) Forward(_ context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	f.forwards.Add(1)
	return f.forward(req, resp)
}
func (f *fakePeer) Lookup(_ context.Context, key []byte) (*store.Entry, error) {
	return f.held[string(key)], nil
}

// fakePeers says owner owns every key (nil: this node), prev owned them
// before, and accepts forwarded requests signed "ok".
type fakePeers struct {
	owner, prev *fakePeer
}

func (f *fakePeers) Owner([]byte) (cluster.Peer, bool) {
	if f.owner == nil {
		return nil, false
	}
	return f.owner, true
}
func (f *fakePeers) Previous([]byte) (cluster.Peer, bool) {
	if f.prev == nil {
		return nil, false
	}
	return f.prev, true
}
func (f *fakePeers) Authenticate(h *fasthttp.RequestHeader) (string, bool) {
	return "peer", string(h.Peek(cluster.HeaderAuth)) == "ok"
}

// ownerAnswer is an owner's reply: a hit with its own Cache-Status member.
func ownerAnswer(req *fasthttp.Request, resp *fasthttp.Response) error {
	resp.Header.Set("Cache-Control", "max-age=60")
	resp.Header.Set("Cache-Status", "owner; hit; ttl=60")
	resp.SetBodyString("from owner " + string(req.URI().Path()))
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
	r := n.get("/loop", cluster.HeaderForwarded+": peer", cluster.HeaderAuth+": ok", "X-Forwarded-For: 203.0.113.9")
	wantStatus(t, r, 200, "me; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	if owner.forwards.Load() != 0 {
		t.Fatal("forwarded request was forwarded again")
	}
	req := n.origin.lastRequest()
	if v := req.Header.Peek(cluster.HeaderForwarded); len(v) > 0 {
		t.Fatalf("peer header leaked to the origin: %q", v)
	}
	// A trusted peer's forwarding fields describe the real client.
	if got := string(req.Header.Peek("X-Forwarded-For")); got != "203.0.113.9" {
		t.Fatalf("X-Forwarded-For = %q, want the client's, kept from the peer", got)
	}
}

func TestForgedForwardRefused(t *testing.T) {
	for _, peers := range []cluster.Peers{nil, &fakePeers{}} {
		n := newNode(t, Options{Peers: peers}, nil)
		n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
		r := n.get("/x", cluster.HeaderForwarded+": peer", cluster.HeaderAuth+": forged")
		if r.StatusCode() != 403 || string(r.Header.Peek(cluster.HeaderError)) != "1" {
			t.Fatalf("forged forward: %d %q", r.StatusCode(), r.Header.Peek(cluster.HeaderError))
		}
		if n.origin.calls.Load() != 0 {
			t.Fatal("forged forward reached the origin")
		}
	}
}

func TestHotCopies(t *testing.T) {
	owner := &fakePeer{name: "owner", forward: ownerAnswer}
	clk := newClock()
	hot := store.NewLRU(1<<20, store.WithClock(clk.now))
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
	n.clk.advance(31 * time.Second)
	n.get("/popular")
	if owner.forwards.Load() != before+1 {
		t.Fatal("an expired hot copy was served")
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

func TestTakeoverFromPreviousOwner(t *testing.T) {
	// A key that moved here is taken from its previous owner, not the origin.
	clkStart := t0
	e := &store.Entry{
		Key:    []byte("example.com/moved"),
		Status: 200, Body: []byte("kept"),
		Header:      []store.Field{{Key: []byte("Cache-Control"), Value: []byte("max-age=600")}},
		RequestTime: clkStart, ResponseTime: clkStart, Lifetime: 600,
		Expires: clkStart + int64(time.Hour),
	}
	prev := &fakePeer{name: "prev", held: map[string]*store.Entry{"example.com/moved": e}}
	n := newNode(t, Options{Name: "me", Peers: &fakePeers{prev: prev}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	n.clk.advance(10 * time.Second)
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
	entry := func(at int64, body string) *store.Entry {
		return &store.Entry{Key: []byte("example.com/h"), Status: 200, Body: []byte(body),
			RequestTime: at, ResponseTime: at, Lifetime: 600, Expires: at + int64(time.Hour)}
	}
	old := entry(t0, "old")
	n.clk.advance(time.Second)
	n.do("POST", "/h") // invalidates example.com/h now
	if n.p.Accept(old) {
		t.Fatal("a copy fetched before the invalidation was accepted")
	}
	n.clk.advance(time.Second)
	fresh := entry(n.clk.now(), "new")
	if !n.p.Accept(fresh) {
		t.Fatal("a copy fetched after the invalidation was refused")
	}
	if n.p.Accept(entry(n.clk.now()-1, "older")) {
		t.Fatal("an older copy replaced a newer one")
	}
	if r := n.get("/h"); string(r.Body()) != "new" {
		t.Fatalf("served %q", r.Body())
	}
	if n.p.Accept(&store.Entry{Key: []byte("example.com/p"), Flags: store.Pass, ResponseTime: n.clk.now()}) {
		t.Fatal("a pass marker was accepted")
	}
}
