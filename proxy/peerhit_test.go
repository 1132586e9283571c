package proxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// ownerEntry is what an owner stores for the URL uri after a 200 with
// Cache-Control cc, fetched now on clk.
func ownerEntry(t *testing.T, clk *testutil.Clock, uri, cc string) *cache.Entry {
	t.Helper()
	n := newNodeAt(t, clk, Options{Name: "owner"}, nil)
	n.origin.set(answer(clk, 200, "Cache-Control: "+cc, "ETag: \"v1\"", "Via: 1.1 origin-gw"))
	n.get(uri)
	e, ok := n.st.Get([]byte("example.com" + uri))
	if !ok {
		t.Fatalf("owner stored nothing for %s", uri)
	}
	return e
}

// TestPeerHitServedLocally: a hit the key's owner holds is served by the
// node the client asked, from the owner's entry, reading exactly as the
// owner's relayed answer did: both Cache-Status members, both Via hops,
// fwd-status the status written (a 304 for a matching If-None-Match, a 206
// for a range).
func TestPeerHitServedLocally(t *testing.T) {
	clk := testutil.NewClock()
	e := ownerEntry(t, clk, "/p", "max-age=60")
	owner := &fakePeer{name: "owner", forward: ownerAnswer, held: map[string]*cache.Entry{"example.com/p": e}}
	n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
		cs     string
	}{
		{"plain", nil, 200, "owner; hit; ttl=60, me; fwd=miss; fwd-status=200; detail=peer"},
		{"If-None-Match", []string{`If-None-Match: "v1"`}, 304, "owner; hit; ttl=60, me; fwd=miss; fwd-status=304; detail=peer"},
		{"Range", []string{"Range: bytes=0-3"}, 206, "owner; hit; ttl=60, me; fwd=miss; fwd-status=206; detail=peer"},
	} {
		r := n.get("/p", tc.hdr...)
		if r.StatusCode() != tc.status || csOf(r) != tc.cs {
			t.Errorf("%s: %d %q, want %d %q", tc.name, r.StatusCode(), csOf(r), tc.status, tc.cs)
		}
		want := "1.1 origin-gw, 1.1 owner, 1.1 me"
		if tc.status == 304 {
			want = "1.1 me" // the owner's 304 had none
		}
		if via := string(r.Header.Peek("Via")); via != want {
			t.Errorf("%s: Via %q, want %q", tc.name, via, want)
		}
	}
	if got := owner.forwards.Load(); got != 0 {
		t.Fatalf("%d requests forwarded; the owner's entry should have answered them", got)
	}
	if n.origin.calls.Load() != 0 || n.st.Stats().Items != 0 {
		t.Fatalf("a non-owner fetched (%d) or stored (%d)", n.origin.calls.Load(), n.st.Stats().Items)
	}
	if got := counterValue(n.p.m.requests[Forwarded]); got != 3 {
		t.Fatalf("forwarded outcome counted %v times, want 3", got)
	}
	if got := sampleCount(n.p.m.durations[Forwarded]); got != 3 {
		t.Fatalf("forwarded outcome timed %d times, want 3 (as counted)", got)
	}
}

// TestPeerHitForwardsWhatTheOwnerDecides: what only the owner may decide —
// a stale entry (it revalidates once), credentials on an unshared entry, a
// key it does not hold — is forwarded, not served from the lookup.
func TestPeerHitForwardsWhatTheOwnerDecides(t *testing.T) {
	clk := testutil.NewClock()
	stale := ownerEntry(t, clk, "/stale", "max-age=10")
	private := ownerEntry(t, clk, "/unshared", "max-age=600")
	clk.Advance(time.Minute)
	owner := &fakePeer{name: "owner", forward: ownerAnswer, held: map[string]*cache.Entry{
		"example.com/stale": stale, "example.com/unshared": private,
	}}
	n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	for _, tc := range []struct {
		uri string
		hdr []string
	}{
		{"/stale", nil},
		{"/unshared", []string{"Authorization: Bearer x"}},
		{"/unknown", nil},
	} {
		before := owner.forwards.Load()
		r := n.get(tc.uri, tc.hdr...)
		if owner.forwards.Load() != before+1 || !strings.Contains(csOf(r), "detail=peer") {
			t.Errorf("%s: not forwarded (Cache-Status %q)", tc.uri, csOf(r))
		}
	}
}

// TestPeerHitVariant: for a URL that varies, the lookup finds the owner's
// Vary marker and then the request's variant.
func TestPeerHitVariant(t *testing.T) {
	clk := testutil.NewClock()
	owner := newNodeAt(t, clk, Options{Name: "owner"}, nil)
	owner.origin.set(answer(clk, 200, "Cache-Control: max-age=60", "Vary: Accept-Language"))
	owner.get("/v", "Accept-Language: fr")
	held := map[string]*cache.Entry{}
	owner.st.Range(func(e *cache.Entry) bool { held[string(e.Key())] = e; return true })
	if len(held) != 2 {
		t.Fatalf("owner holds %d entries, want a marker and a variant", len(held))
	}
	peer := &fakePeer{name: "owner", forward: ownerAnswer, held: held}
	n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: peer}}, nil)
	r := n.get("/v", "Accept-Language: fr")
	if !strings.HasPrefix(csOf(r), "owner; hit") || peer.forwards.Load() != 0 || peer.gets.Load() != 2 {
		t.Fatalf("variant hit: %q, %d forwards, %d lookups", csOf(r), peer.forwards.Load(), peer.gets.Load())
	}
	r = n.get("/v", "Accept-Language: de")
	if peer.forwards.Load() != 1 {
		t.Fatalf("a variant the owner lacks was not forwarded: %q", csOf(r))
	}
}

// TestPeerHitOwnerDown: a lookup that fails is the owner failing: the
// request is served here, from the origin, and not forwarded to wait again.
func TestPeerHitOwnerDown(t *testing.T) {
	owner := &fakePeer{name: "owner", forward: ownerAnswer, getErr: errors.New("connection refused")}
	n := newNode(t, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	r := n.get("/down")
	wantStatus(t, r, 200, "me; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	if owner.forwards.Load() != 0 {
		t.Fatal("forwarded to an owner whose lookup just failed")
	}
}

// TestPeerHitAllocs: a hit served from the owner's entry allocates nothing
// on this node (the lookup's buffer is the request state's, reused).
func TestPeerHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	st, clk := clockedStore(t, "ristretto", 64<<20)
	held := hitProxy(t, st, 1024, clk)
	e, ok := held.store.Get([]byte("example.com/obj"))
	if !ok {
		t.Fatal("no entry to hold")
	}
	owner := &fakePeer{name: "owner", held: map[string]*cache.Entry{"example.com/obj": e}}
	mine, _ := clockedStore(t, "ristretto", 64<<20) // holds no replica: every hit is a lookup
	p := New(Options{Name: "me", Clock: clk.Now, Peers: &fakePeers{owner: owner}}, mine, FetcherFunc(func(context.Context, *fasthttp.Request, *fasthttp.Response) error {
		return errors.New("no origin here")
	}))
	t.Cleanup(p.Close)
	wantNoAllocs(t, p, "/obj", "a forwarded hit", func(cs string) bool { return strings.HasPrefix(cs, "owner; hit; ttl=") })
}

// TestReplicaHit: a fresh copy this node holds of a key another member owns
// (a replica the owner pushed) is served here without asking the owner; a
// stale one, or a request the copy cannot answer, goes to the owner as if
// nothing were held.
func TestReplicaHit(t *testing.T) {
	clk := testutil.NewClock()
	owner := &fakePeer{name: "owner", forward: ownerAnswer}
	n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	// The replica as the cluster stores it: the owner's fill, pushed here.
	filler := newNodeAt(t, clk, Options{Name: "owner"}, nil)
	filler.origin.set(answer(clk, 200, "Cache-Control: max-age=60"))
	filler.get("/r")
	filler.st.Range(func(e *cache.Entry) bool { n.st.Set(e.Clone()); return true })

	r := n.get("/r")
	wantStatus(t, r, 200, "me; hit; ttl=60; detail=replica")
	if owner.gets.Load() != 0 || owner.forwards.Load() != 0 || n.origin.calls.Load() != 0 {
		t.Fatalf("a replica hit asked the owner (%d lookups, %d forwards) or the origin (%d)", owner.gets.Load(), owner.forwards.Load(), n.origin.calls.Load())
	}

	// RFC 9111 §5.2.1.4: no-cache makes the copy need validation, which is
	// the owner's to do.
	n.get("/r", "Cache-Control: no-cache")
	if owner.gets.Load()+owner.forwards.Load() == 0 {
		t.Fatal("a no-cache request was answered from the replica")
	}

	// Stale: the owner decides (and refreshes once for the cluster).
	clk.Advance(61 * time.Second)
	before := owner.gets.Load() + owner.forwards.Load()
	r = n.get("/r")
	if owner.gets.Load()+owner.forwards.Load() == before || strings.Contains(csOf(r), "detail=replica") {
		t.Fatalf("a stale replica was served here: %q", csOf(r))
	}
}

// TestReplicaHitAllocs: a hit on a replica allocates nothing.
func TestReplicaHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	st, clk := clockedStore(t, "ristretto", 64<<20)
	hitProxy(t, st, 1024, clk) // fills st: the replica
	owner := &fakePeer{name: "owner", getErr: errors.New("not asked")}
	p := New(Options{Name: "me", Clock: clk.Now, Peers: &fakePeers{owner: owner}}, st, FetcherFunc(func(context.Context, *fasthttp.Request, *fasthttp.Response) error {
		return errors.New("no origin here")
	}))
	t.Cleanup(p.Close)
	wantNoAllocs(t, p, "/obj", "a replica hit", func(cs string) bool { return strings.Contains(cs, "detail=replica") })
}

// TestPeerHitKeepsStoredDate: a hit served from the owner's entry carries
// the Date the owner stored, the time the origin made the response (RFC
// 9110 §6.6.1), with its age in Age (RFC 9111 §4), as the owner's own hit
// would; and a targeted field the cluster strips stays out of it (RFC 9213
// §2.1), as from any answer to a client.
func TestPeerHitKeepsStoredDate(t *testing.T) {
	clk := testutil.NewClock()
	made := httpDate(clk)
	pol := httpcache.Policy{Targets: targets("Ringcache-Cache-Control"), StripTargets: targets("Ringcache-Cache-Control")}
	o := newNodeAt(t, clk, Options{Name: "owner", Policy: pol}, nil)
	o.origin.set(answer(clk, 200, "Cache-Control: max-age=60", "Ringcache-Cache-Control: max-age=600"))
	o.get("/p")
	e, ok := o.st.Get([]byte("example.com/p"))
	if !ok {
		t.Fatal("owner stored nothing for /p")
	}
	clk.Advance(20 * time.Second)
	owner := &fakePeer{name: "owner", forward: ownerAnswer, held: map[string]*cache.Entry{"example.com/p": e}}
	n := newNodeAt(t, clk, Options{Name: "me", Peers: &fakePeers{owner: owner}, Policy: pol}, nil)
	r := n.get("/p")
	if want := "owner; hit; ttl=580, me; fwd=miss; fwd-status=200; detail=peer"; csOf(r) != want {
		t.Fatalf("Cache-Status %q, want %q", csOf(r), want)
	}
	if dateOf(r) != made || ageHeader(t, r) != 20 {
		t.Errorf("Date %q Age %s, want the stored %q and 20 (now is %q)", dateOf(r), r.Header.Peek("Age"), made, httpDate(clk))
	}
	if v := r.Header.Peek("Ringcache-Cache-Control"); len(v) > 0 {
		t.Errorf("Ringcache-Cache-Control %q reached the client", v)
	}
}
