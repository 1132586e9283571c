package proxy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/cache"
	"github.com/valyala/fasthttp"
)

// announcedKeys waits until the broadcasts hold want keys in all and
// returns them in order.
func announcedKeys(t *testing.T, peers *fakePeers, want int) []string {
	t.Helper()
	var keys []string
	testutil.WaitFor(t, 10*time.Second, func() bool {
		keys = keys[:0]
		for _, b := range peers.sent() {
			for _, k := range b.Keys {
				keys = append(keys, string(k))
			}
		}
		return len(keys) >= want
	}, "invalidations announced")
	return keys
}

// TestInvalidationAnnounced: the member a client sent an unsafe request to
// tells the others which keys it invalidated (RFC 9111 §4.4), so their hot
// copies go too; the owner, asked by that member, does not repeat it.
func TestInvalidationAnnounced(t *testing.T) {
	owner := &fakePeer{name: "owner", forward: func(req *fasthttp.Request, resp *fasthttp.Response) error {
		resp.Header.Set("Location", "/created/1")
		resp.SetStatusCode(201)
		return nil
	}}
	peers := &fakePeers{owner: owner}
	n := newNode(t, Options{Name: "me", Peers: peers}, nil)
	if r := n.do("POST", "/items"); r.StatusCode() != 201 {
		t.Fatalf("POST through the owner: %d", r.StatusCode())
	}
	got := announcedKeys(t, peers, 2)
	if want := []string{"example.com/items", "example.com/created/1"}; !slices.Equal(got, want) {
		t.Fatalf("announced %q, want %q", got, want)
	}

	// As the owner of a forwarded request: invalidate, announce nothing.
	self := &fakePeers{}
	o := newNode(t, Options{Name: "owner", Peers: self}, nil)
	o.origin.set(answer(o.clk, 204))
	o.peerDo("DELETE", "/by-peer", "X-Ringcache-Forwarded: peer")
	o.do("DELETE", "/by-client")
	got = announcedKeys(t, self, 1)
	if !slices.Equal(got, []string{"example.com/by-client"}) {
		t.Fatalf("owner announced %q; want only the client's own request", got)
	}
	for _, b := range self.sent() {
		if b.Kind() != "keys" || b.At == 0 {
			t.Fatalf("announcement %+v", b)
		}
	}
	// A failed unsafe request changes nothing: nothing to announce.
	o.origin.set(answer(o.clk, 500))
	o.do("PUT", "/failed")
	o.origin.set(answer(o.clk, 204))
	o.do("PUT", "/after")
	got = announcedKeys(t, self, 2)
	if !slices.Equal(got, []string{"example.com/by-client", "example.com/after"}) {
		t.Fatalf("announced %q after a failed PUT", got)
	}
}

// TestAnnouncedKeysDropCopies: an announcement drops the stored entry and
// the hot copy, and a hot copy whose request left before it is not kept.
func TestAnnouncedKeysDropCopies(t *testing.T) {
	release := make(chan struct{})
	owner := &fakePeer{name: "owner", forward: ownerAnswer}
	clk := testutil.NewClock()
	hot := cache.NewLRU(1<<20, cache.WithClock(clk.UnixNano))
	defer hot.Close()
	n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: owner}, Hot: hot, HotTTL: 30 * time.Second}, nil)
	key := []byte("example.com/popular")
	announce := func() {
		n.p.local.Purge(cache.Purge{Keys: [][]byte{key}, At: n.clk.UnixNano()})
	}

	for range hotSample {
		n.get("/popular")
	}
	if _, ok := hot.Get(key); !ok {
		t.Fatal("no hot copy after hotSample forwards")
	}
	announce()
	if _, ok := hot.Get(key); ok {
		t.Fatal("the hot copy survived the announcement")
	}
	if cs := csOf(n.get("/popular")); strings.Contains(cs, "detail=hot") {
		t.Fatalf("served from a dropped hot copy: %q", cs)
	}

	// A sampled forward still on its way when the announcement arrives.
	n.clk.Advance(time.Second)
	owner.forward = func(req *fasthttp.Request, resp *fasthttp.Response) error {
		<-release
		return ownerAnswer(req, resp)
	}
	n.p.hotTick.Store(hotSample - 1) // the next forward is sampled
	before := owner.forwards.Load()
	done := make(chan int, 1)
	go func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://example.com/popular")
		if err := n.client.DoTimeout(req, resp, 20*time.Second); err != nil {
			done <- 0
			return
		}
		done <- resp.StatusCode()
	}()
	testutil.WaitFor(t, 10*time.Second, func() bool { return owner.forwards.Load() > before }, "the forward to start")
	n.clk.Advance(time.Millisecond)
	announce()
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("in-flight request: status %d", code)
	}
	if _, ok := hot.Get(key); ok {
		t.Fatal("an answer fetched before the announcement was kept as a hot copy")
	}
}
