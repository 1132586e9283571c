package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/sniff"
	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/cache"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

// --- helpers shared by the peer protocol tests ---

var testSecret = []byte("0123456789abcdef-peer-secret")

// testTLS is the peer TLS of every test cluster, derived from testSecret.
var testTLS = sync.OnceValue(func() *PeerTLS {
	t, err := SecretPeerTLS(testSecret)
	if err != nil {
		panic(err)
	}
	return t
})

// Generous: the machine is small and shared, and -race slows everything.
const peerTestTimeout = 10 * time.Second

// peerTestLogger sends warnings and errors to the test log.
func peerTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(peerLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type peerLogWriter struct{ t *testing.T }

func (w peerLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func mustSigner(t testing.TB, name string, secret []byte, opts ...SignerOption) *Signer {
	t.Helper()
	s, err := NewSigner(name, secret, opts...)
	if err != nil {
		t.Fatalf("NewSigner(%q): %v", name, err)
	}
	return s
}

func mustPeerSet(t testing.TB, name string, clock *testutil.Clock) *PeerSet {
	t.Helper()
	return NewPeerSet(PeerOptions{
		Self:    name,
		Signer:  mustSigner(t, name, testSecret),
		TLS:     testTLS().Client,
		Timeout: peerTestTimeout,
		// Short, so fasthttp's idle-connection reaper ends soon after Close.
		IdleConnTimeout: 50 * time.Millisecond,
		Clock:           clock.Now,
	})
}

func newTestRing(t testing.TB, nodes ...Node) Ring {
	t.Helper()
	r, err := NewRing(KindRendezvous, nodes, 0)
	if err != nil {
		t.Fatalf("NewRing: %v", err)
	}
	return r
}

// keyOwnedBy returns a URL-like key whose owner on r is name.
func keyOwnedBy(t testing.TB, r Ring, name string) []byte {
	t.Helper()
	for i := range 10000 {
		k := fmt.Appendf(nil, "example.com/owned/%d", i)
		if n, ok := r.Owner(k); ok && n.Name == name {
			return k
		}
	}
	t.Fatalf("no key owned by %s in 10000 tries", name)
	return nil
}

// keyPath returns a key owned on rings[i] by owners[i], for every i.
func keyPath(t testing.TB, rings []Ring, owners ...string) []byte {
	t.Helper()
	for i := range 100000 {
		k := fmt.Appendf(nil, "example.com/moved/%d", i)
		match := true
		for j, r := range rings {
			if n, _ := r.Owner(k); n.Name != owners[j] {
				match = false
				break
			}
		}
		if match {
			return k
		}
	}
	t.Fatalf("no key owned by %v on successive rings in 100000 tries", owners)
	return nil
}

// storeLocal is a Local over an LRU store; reject, if set, refuses entries.
type storeLocal struct {
	st     *cache.LRU
	reject func(*cache.Entry) bool
	purges []cache.Purge
}

func newStoreLocal() *storeLocal { return &storeLocal{st: cache.NewLRU(256 << 20)} }

func (l *storeLocal) Get(key []byte) (*cache.Entry, bool) { return l.st.Get(key) }

func (l *storeLocal) Accept(e *cache.Entry) bool {
	if l.reject != nil && l.reject(e) {
		return false
	}
	return l.st.Set(e)
}

// Purge drops everything for All, else the entries whose key is Host+URL;
// it records what it was asked.
func (l *storeLocal) Purge(p cache.Purge) int {
	l.purges = append(l.purges, p)
	n := 0
	l.st.Range(func(e *cache.Entry) bool {
		if p.All || string(e.Key()) == p.Host+p.URL {
			l.st.Delete(e.Key())
			n++
		}
		return true
	})
	return n
}

// testEntry is a fully populated entry, so a round trip that drops a field
// shows.
func testEntry(key string, bodyLen int, flags cache.Flags) *cache.Entry {
	e := cache.NewEntry([]byte(key), []cache.Field{
		{Key: []byte("Content-Type"), Value: []byte("text/plain")},
		{Key: []byte("Etag"), Value: []byte(`"` + strings.ReplaceAll(key, "\x00", "~") + `"`)},
	}, bytes.Repeat([]byte{'x'}, bodyLen), cache.Stale{WhileRevalidate: 5, IfError: 7})
	e.ResponseTime, e.Expires = time.Now().UnixNano(), time.Now().Add(time.Hour).UnixNano()
	e.InitialAge, e.Lifetime = 3, 60
	e.Status, e.Flags = 200, flags
	return e
}

// testNode is one member: a PeerSet, a store behind a PeerServer, and a
// fake "forwarded request" handler standing in for the proxy.
type testNode struct {
	name  string
	addr  string
	peers *PeerSet
	local *storeLocal
	ps    *PeerServer
	srv   *fasthttp.Server
	done  chan error

	frames     net.Listener // the lookup side of its listener
	framesDone chan struct{}

	draining atomic.Bool // answer forwarded requests 503 + HeaderError

	mu                      sync.Mutex
	lastHost, lastFrom, uri string
	forwarded               int
}

func startTestNode(t *testing.T, name string, clock *testutil.Clock) *testNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, addr: ln.Addr().String(), local: newStoreLocal(), done: make(chan error, 1), framesDone: make(chan struct{})}
	// As a node does: one TLS listener, the handshake's protocol picks the
	// lookup exchange or the HTTP server.
	sides := sniff.Split(ln, 2, sniff.ALPN(testTLS().Server, FramesALPN), sniff.Options{})
	n.frames, ln = sides[0], sides[1]
	n.peers = mustPeerSet(t, name, clock)
	n.ps = NewPeerServer(n.local, n.peers, PeerServerOptions{Logger: peerTestLogger(t), Clock: clock.UnixNano})
	n.srv = &fasthttp.Server{
		Handler: n.handle,
		// The Date header would start fasthttp's process-wide ticker,
		// which never ends (goleak).
		NoDefaultDate:         true,
		NoDefaultServerHeader: true,
		// The worker pool's reaper sleeps this long before it notices a
		// shutdown.
		MaxIdleWorkerDuration: 10 * time.Millisecond,
		MaxRequestBodySize:    8 << 20,
		// The path must reach the handler as sent: it is signed.
		DisablePreParseMultipartForm: true,
	}
	srv := n.srv // stop clears n.srv
	go func() { n.done <- srv.Serve(ln) }()
	go func() { defer close(n.framesDone); n.ps.ServeFrames(n.frames) }()
	return n
}

func (n *testNode) node() Node { return Node{Name: n.name, Addr: n.addr} }

func (n *testNode) handle(ctx *fasthttp.RequestCtx) {
	if bytes.HasPrefix(ctx.Path(), []byte(PathPrefix)) {
		n.ps.Handle(ctx)
		return
	}
	from, ok := n.peers.Authenticate(&ctx.Request)
	if !ok {
		plainError(ctx, fasthttp.StatusUnauthorized, "unauthorized")
		return
	}
	if n.draining.Load() {
		ctx.Response.Header.Set(HeaderError, "1")
		plainError(ctx, fasthttp.StatusServiceUnavailable, "draining")
		return
	}
	n.mu.Lock()
	n.lastHost = string(ctx.Host())
	n.lastFrom = from
	n.uri = string(ctx.Request.Header.RequestURI())
	n.forwarded++
	n.mu.Unlock()
	if string(ctx.Path()) == "/slow" {
		// A body that takes longer than the peer Timeout, with progress
		// well within it.
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for range slowChunks {
				w.WriteString(slowChunk)
				if w.Flush() != nil {
					return
				}
				time.Sleep(slowGap) // pacing the stream is the point, not a wait
			}
		})
		return
	}
	if string(ctx.Path()) == "/origin-down" {
		plainError(ctx, fasthttp.StatusServiceUnavailable, "origin answered 503")
		return
	}
	ctx.SetBodyString("served by " + n.name)
}

// stop shuts the server down and waits for Serve to return.
func (n *testNode) stop(t *testing.T) {
	t.Helper()
	if n.srv == nil {
		return
	}
	defer func() { n.srv = nil }()
	n.frames.Close()
	<-n.framesDone
	deadline := time.After(peerTestTimeout)
	for {
		if err := n.srv.Shutdown(); err != nil {
			t.Errorf("shutdown %s: %v", n.name, err)
		}
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("serve %s: %v", n.name, err)
			}
			return
		case <-time.After(10 * time.Millisecond):
			// A Shutdown that ran before Serve registered its listener
			// did nothing (a test that stops at once): shut down again.
		case <-deadline:
			t.Errorf("serve %s did not return", n.name)
			return
		}
	}
}

// startTestCluster starts the named nodes and gives each the ring of all of
// them. Cleanup closes the clients, then the servers.
func startTestCluster(t *testing.T, clock *testutil.Clock, names ...string) ([]*testNode, Ring) {
	t.Helper()
	return startReplicatedCluster(t, clock, 1, names...)
}

// startReplicatedCluster is startTestCluster with each entry on replicas
// members, and rebalancing from each node's store.
func startReplicatedCluster(t *testing.T, clock *testutil.Clock, replicas int, names ...string) ([]*testNode, Ring) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	nodes := make([]*testNode, len(names))
	ringNodes := make([]Node, len(names))
	for i, name := range names {
		nodes[i] = startTestNode(t, name, clock)
		nodes[i].peers.replicas = replicas // before the first ring, as NewPeerSet would
		nodes[i].peers.store = nodes[i].local.st
		ringNodes[i] = nodes[i].node()
	}
	r := newTestRing(t, ringNodes...)
	for _, n := range nodes {
		n.peers.Update(nil, r)
	}
	t.Cleanup(func() {
		stopTestCluster(t, nodes)
		// Wait for fasthttp's reapers and workers to notice: a later test
		// checking for leaks (membership's) must not see ours.
		var leak error
		testutil.Eventually(t, peerTestTimeout, func() bool { leak = goleak.Find(before); return leak == nil },
			func() string { return leak.Error() })
	})
	return nodes, r
}

func stopTestCluster(t *testing.T, nodes []*testNode) {
	for _, n := range nodes {
		n.peers.Close()
	}
	for _, n := range nodes {
		n.stop(t)
	}
}

// memberClient is a raw HTTP client to addr holding the cluster's TLS, as
// a member's connection does; requests to it need the https scheme.
func memberClient(addr string) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr: addr,
		// Not fasthttp's default dialer, whose DNS cache goroutine never
		// ends; and a short idle time, so its reaper ends soon (goleak).
		Dial:                func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) },
		MaxIdleConnDuration: 50 * time.Millisecond,
		IsTLS:               true,
		TLSConfig:           testTLS().Client,
	}
}

// forward sends a client-like GET for uri with Host host and the header
// name, value pairs hdr through p and returns status and body.
func forward(t *testing.T, p Peer, host, uri string, hdr ...string) (int, string, error) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetRequestURI(uri)
	req.Header.SetHost(host)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerTestTimeout)
	defer cancel()
	if err := p.Forward(ctx, req, resp); err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), string(resp.Body()), nil // Body reads and closes the stream
}

// --- PeerSet without a network ---

func TestNewPeerSetWiring(t *testing.T) {
	signer := mustSigner(t, "a", testSecret)
	ps := NewPeerSet(PeerOptions{Signer: signer, TLS: testTLS().Client, Timeout: -1, MaxConns: -1, MaxEntryBytes: -1})
	if ps.self != "a" || ps.timeout != DefaultPeerTimeout || ps.maxConns != DefaultPeerMaxConns || ps.maxEntry != DefaultMaxEntryBytes {
		t.Errorf("defaults not applied: self %q timeout %v conns %d entry %d", ps.self, ps.timeout, ps.maxConns, ps.maxEntry)
	}
	ps = NewPeerSet(PeerOptions{Signer: signer, TLS: testTLS().Client, FailBackoff: 20 * time.Second})
	if ps.maxBackoff != 20*time.Second {
		t.Errorf("max backoff %v below the backoff", ps.maxBackoff)
	}
	for name, o := range map[string]PeerOptions{
		"no signer":   {Self: "a", TLS: testTLS().Client},
		"no TLS":      {Self: "a", Signer: signer},
		"signer of b": {Self: "b", Signer: signer, TLS: testTLS().Client},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewPeerSet did not panic")
				}
			}()
			NewPeerSet(o)
		})
	}
}

func nodesABC() (a, b, c Node) {
	return Node{Name: "a", Addr: "127.0.0.1:1001"}, Node{Name: "b", Addr: "127.0.0.1:1002"}, Node{Name: "c", Addr: "127.0.0.1:1003"}
}

func TestOwner(t *testing.T) {
	clock := testutil.NewClock()
	ps := mustPeerSet(t, "a", clock)
	a, b, c := nodesABC()
	r := newTestRing(t, a, b, c)
	kb := keyOwnedBy(t, r, "b")
	ka := keyOwnedBy(t, r, "a")

	if p, ok := ps.Owner(kb); ok {
		t.Fatalf("Owner before any ring = %s, want none", p.Name())
	}
	ps.Update(nil, r)
	if p, ok := ps.Owner(kb); !ok || p.Name() != "b" {
		t.Fatalf("Owner(key of b) = %v, %v; want b", p, ok)
	}
	if p, ok := ps.Owner(ka); ok {
		t.Fatalf("Owner(key of self) = %s, want none", p.Name())
	}
	// An initial ring arriving after a real change must not undo it.
	r2 := newTestRing(t, a, c)
	ps.Update(r, r2)
	ps.Update(nil, r)
	if p, ok := ps.Owner(kb); ok && p.Name() == "b" {
		t.Fatal("Update(nil, old ring) replaced the current ring")
	}
	// An empty ring: every key is ours.
	ps.Update(r2, newTestRing(t))
	if p, ok := ps.Owner(kb); ok {
		t.Fatalf("Owner on an empty ring = %s", p.Name())
	}
}

// Clients survive updates that keep the member's address and are replaced
// when it changes; a paused peer stays paused across an update.
func TestUpdateReusesClients(t *testing.T) {
	clock := testutil.NewClock()
	ps := mustPeerSet(t, "a", clock)
	a, b, c := nodesABC()
	r1 := newTestRing(t, a, b)
	ps.Update(nil, r1)
	kb := keyOwnedBy(t, r1, "b")
	p1, _ := ps.Owner(kb)

	r2 := newTestRing(t, a, b, c)
	ps.Update(r1, r2)
	kb2 := keyOwnedBy(t, r2, "b")
	p2, ok := ps.Owner(kb2)
	if !ok || p2 != p1 {
		t.Fatalf("b's client was replaced although its address did not change")
	}
	moved := Node{Name: "b", Addr: "127.0.0.1:2002"}
	r3 := newTestRing(t, a, moved, c)
	ps.Update(r2, r3)
	p3, ok := ps.Owner(kb2)
	if !ok || p3 == p1 || p3.(*peer).node.Addr != moved.Addr {
		t.Fatalf("b moved to %s but its old client is still used", moved.Addr)
	}
}

func TestPrevious(t *testing.T) {
	clock := testutil.NewClock()
	ps := mustPeerSet(t, "a", clock)
	a, b, c := nodesABC()
	d := Node{Name: "d", Addr: "127.0.0.1:1004"}
	e := Node{Name: "e", Addr: "127.0.0.1:1005"}
	abc := newTestRing(t, a, b, c)
	abcd := newTestRing(t, a, b, c, d)
	abcde := newTestRing(t, a, b, c, d, e)
	acde := newTestRing(t, a, c, d, e)
	pair := []Ring{abc, abcd}

	ps.Update(nil, abc)
	kBtoD := keyPath(t, pair, "b", "d")
	if _, ok := ps.Previous(kBtoD); ok {
		t.Fatal("Previous answered before any membership change")
	}
	ps.Update(abc, abcd) // d joins
	clock.Advance(time.Minute)
	tests := []struct {
		name string
		key  []byte
		want string // "" for none
	}{
		{"moved from b", kBtoD, "b"},
		{"moved from c", keyPath(t, pair, "c", "d"), "c"},
		{"previous owner is self", keyPath(t, pair, "a", "d"), ""},
		{"owner unchanged", keyPath(t, pair, "b", "b"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := ps.Previous(tt.key)
			got := ""
			if ok {
				got = p.Name()
			}
			if got != tt.want {
				t.Errorf("Previous = %q, want %q", got, tt.want)
			}
		})
	}

	// e joins: the ring before this change (abcd) is "previous", not an
	// older one. kOld was c's on abc but d's since; kNew moved c -> e now.
	kOld := keyPath(t, []Ring{abc, abcd, abcde}, "c", "d", "d")
	kNew := keyPath(t, []Ring{abcd, abcde}, "c", "e")
	ps.Update(abcd, abcde)
	if p, ok := ps.Previous(kOld); ok {
		t.Errorf("Previous = %s, answered from a ring older than the last change", p.Name())
	}
	if p, ok := ps.Previous(kNew); !ok || p.Name() != "c" {
		t.Errorf("Previous(key moved c->e) = %v, %v; want c", p, ok)
	}
	// The window ends PreviousWindow after the last change.
	clock.Advance(DefaultPreviousWindow - time.Second)
	if _, ok := ps.Previous(kNew); !ok {
		t.Error("Previous expired before the window ended")
	}
	clock.Advance(2 * time.Second)
	if p, ok := ps.Previous(kNew); ok {
		t.Errorf("Previous = %s after the window", p.Name())
	}

	// b leaves: keys b owned must not be sent to b, which is gone.
	kB := keyPath(t, []Ring{abcde, acde}, "b", "e")
	ps.Update(abcde, acde)
	if p, ok := ps.Previous(kB); ok {
		t.Errorf("Previous = %s for a key whose previous owner left", p.Name())
	}
	// b comes back and takes keys from c; a paused c is not asked.
	kCtoB := keyPath(t, []Ring{acde, abcde}, "c", "b")
	ps.Update(acde, abcde)
	p, ok := ps.Previous(kCtoB)
	if !ok || p.Name() != "c" {
		t.Fatalf("Previous(key moved c->b) = %v, %v; want c", p, ok)
	}
	p.(*peer).failed(errors.New("test failure"))
	if p, ok := ps.Previous(kCtoB); ok {
		t.Errorf("Previous = %s, a paused peer", p.Name())
	}
}

// fakeSource is a RingSource whose Ring may lag behind its last change,
// the worst interleaving Follow has to survive.
type fakeSource struct {
	ring     Ring
	listener func(old, new Ring)
	onChange func() // runs inside OnChange, after registration
}

func (f *fakeSource) Ring() Ring { return f.ring }

func (f *fakeSource) OnChange(fn func(old, new Ring)) {
	f.listener = fn
	if f.onChange != nil {
		f.onChange()
	}
}

func TestFollow(t *testing.T) {
	a, b, c := nodesABC()
	ab, abc := newTestRing(t, a, b), newTestRing(t, a, b, c)
	kc := keyOwnedBy(t, abc, "c")

	ps := mustPeerSet(t, "a", testutil.NewClock())
	src := &fakeSource{ring: ab}
	ps.Follow(src)
	if _, ok := ps.Owner(keyOwnedBy(t, ab, "b")); !ok {
		t.Fatal("Follow did not install the current ring")
	}
	src.listener(ab, abc)
	if p, ok := ps.Owner(kc); !ok || p.Name() != "c" {
		t.Fatal("a change after Follow was not applied")
	}

	// A change lands between registration and reading the ring, and the
	// ring read is the stale one: the change must stand.
	ps = mustPeerSet(t, "a", testutil.NewClock())
	src = &fakeSource{ring: ab}
	src.onChange = func() { src.listener(ab, abc) }
	ps.Follow(src)
	if p, ok := ps.Owner(kc); !ok || p.Name() != "c" {
		t.Fatal("the initial ring overwrote a newer change")
	}

	ps.Close()
	src.listener(abc, ab)
	if _, ok := ps.Owner(kc); !ok {
		t.Error("Update applied after Close")
	}
}

func TestRetryIfErr(t *testing.T) {
	ps := mustPeerSet(t, "a", testutil.NewClock())
	tests := []struct {
		method, uri string
		retry       bool
	}{
		{"GET", "/page", true},
		{"HEAD", "/page", true},
		{"POST", "/form", false}, // a client's POST, forwarded: never twice
		{"PATCH", "/x", false},
		{"POST", PathPrefix + "handoff", true},
		{"POST", PathPrefix + "handoff/x", false},
	}
	for _, tt := range tests {
		req := fasthttp.AcquireRequest()
		req.Header.SetMethod(tt.method)
		req.SetRequestURI("http://peer" + tt.uri)
		if _, retry := ps.retryIfErr(req, 1, errors.New("connection reset")); retry != tt.retry {
			t.Errorf("%s %s: retry = %v, want %v", tt.method, tt.uri, retry, tt.retry)
		}
		fasthttp.ReleaseRequest(req)
	}
}

func TestHealthBackoff(t *testing.T) {
	clock := testutil.NewClock()
	h := mustPeerSet(t, "a", clock).newHealth() // defaults: 1s doubling up to 10s
	if !h.Available() {
		t.Fatal("a new peer is not available")
	}
	steps := []struct {
		pause time.Duration // expected after this failure
	}{{time.Second}, {2 * time.Second}, {4 * time.Second}, {8 * time.Second}, {10 * time.Second}, {10 * time.Second}}
	for i, s := range steps {
		d, first := h.Failure()
		if d != s.pause || first != (i == 0) {
			t.Fatalf("failure %d: pause %v first %v, want %v %v", i, d, first, s.pause, i == 0)
		}
		// A failure of a request that was in flight does not extend it.
		if d2, _ := h.Failure(); d2 != s.pause {
			t.Fatalf("failure %d during the pause changed it to %v", i, d2)
		}
		clock.Advance(s.pause - time.Millisecond)
		if h.Available() {
			t.Fatalf("failure %d: available before the %v pause ended", i, s.pause)
		}
		clock.Advance(time.Millisecond)
		if !h.Available() {
			t.Fatalf("failure %d: not available after the %v pause", i, s.pause)
		}
	}
	if !h.Success() {
		t.Fatal("success after failures reported no recovery")
	}
	if h.Success() {
		t.Fatal("second success reported a recovery")
	}
	if d, first := h.Failure(); d != time.Second || !first {
		t.Fatalf("failure after success: pause %v first %v, want 1s, true", d, first)
	}
}

// Owner is on every request's path: it must cost nothing beyond the ring.
func TestPeerSetOwnerAllocs(t *testing.T) {
	if peerRaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items (the preference-list buffers)")
	}
	for _, kind := range ringKinds {
		ps := mustPeerSet(t, "a", testutil.NewClock())
		a, b, c := nodesABC()
		r := mustRing(t, kind, []Node{a, b, c})
		ps.Update(nil, r)
		kb, ka := keyOwnedBy(t, r, "b"), keyOwnedBy(t, r, "a")
		if got := testing.AllocsPerRun(200, func() { ps.Owner(kb); ps.Owner(ka); ps.Previous(kb) }); got != 0 {
			t.Errorf("Owner+Previous on a %s ring allocate %.1f times, want 0", kind, got)
		}
		ps.Close()
	}
}

func BenchmarkPeerSetOwner(b *testing.B) {
	for _, kind := range []string{KindRendezvous, KindHashRing} {
		for _, size := range []int{3, 32} {
			b.Run(fmt.Sprintf("%s/%d", kind, size), func(b *testing.B) {
				ps := mustPeerSet(b, "node-00", testutil.NewClock())
				nodes := make([]Node, size)
				for i := range nodes {
					nodes[i] = Node{Name: fmt.Sprintf("node-%02d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 9000+i)}
				}
				r, err := NewRing(kind, nodes, 0)
				if err != nil {
					b.Fatal(err)
				}
				ps.Update(nil, r)
				keys := make([][]byte, 1024)
				for i := range keys {
					keys[i] = fmt.Appendf(nil, "cdn.example.org/img/%d/photo-%d.jpg", i%97, i)
				}
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for b.Loop() {
					ps.Owner(keys[i&1023])
					i++
				}
			})
		}
	}
}

// --- over the network ---

func TestForward(t *testing.T) {
	clock := testutil.NewClock()
	nodes, r := startTestCluster(t, clock, "a", "b", "c")
	a, b := nodes[0], nodes[1]
	key := keyOwnedBy(t, r, "b")
	p, ok := a.peers.Owner(key)
	if !ok || p.Name() != "b" {
		t.Fatalf("Owner = %v, %v; want b", p, ok)
	}
	// A path normalization would collapse "/x/../y" and decode "%2F": the
	// owner must see (and verify the signature over) the bytes as sent.
	const uri = "/x/../y%2Fz//w?q=1&r=%20s&q=2"
	status, body, err := forward(t, p, "client.example", uri)
	if err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if status != 200 || body != "served by b" {
		t.Fatalf("Forward answered %d %q, want 200 from b", status, body)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lastHost != "client.example" {
		t.Errorf("owner saw Host %q, want the client's", b.lastHost)
	}
	if b.lastFrom != "a" {
		t.Errorf("owner authenticated the sender as %q, want a", b.lastFrom)
	}
	if b.uri != uri {
		t.Errorf("owner saw request URI %q, want %q", b.uri, uri)
	}
	if c := nodes[2]; c.forwarded != 0 {
		t.Errorf("c served %d forwarded requests, want 0", c.forwarded)
	}
}

const (
	slowChunks = 15
	slowChunk  = "0123456789abcdef"
	slowGap    = 100 * time.Millisecond
)

// Without a ctx deadline, Timeout bounds the wait for the headers only: a
// body streamed for longer than Timeout, with progress, arrives whole.
func TestForwardSlowBody(t *testing.T) {
	_, r := startTestCluster(t, testutil.NewClock(), "a", "b")
	ps := NewPeerSet(PeerOptions{
		Signer:          mustSigner(t, "a", testSecret),
		TLS:             testTLS().Client,
		Timeout:         time.Second, // < slowChunks*slowGap
		IdleConnTimeout: 50 * time.Millisecond,
	})
	defer ps.Close()
	ps.Update(nil, r)
	p, ok := ps.Owner(keyOwnedBy(t, r, "b"))
	if !ok {
		t.Fatal("no owner")
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetRequestURI("/slow")
	req.Header.SetHost("client.example")
	if err := p.Forward(context.Background(), req, resp); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if resp.BodyStream() == nil {
		t.Fatal("body not streamed")
	}
	body, err := io.ReadAll(resp.BodyStream())
	if err != nil {
		t.Fatalf("reading the body after %d bytes: %v", len(body), err)
	}
	if want := slowChunks * len(slowChunk); len(body) != want {
		t.Fatalf("body of %d bytes, want %d", len(body), want)
	}
	if err := resp.CloseBodyStream(); err != nil {
		t.Fatal(err)
	}
}

// A 5xx the owner relays from the origin is an answer, not a peer failure.
func TestForwardOrigin5xxIsAnswer(t *testing.T) {
	nodes, r := startTestCluster(t, testutil.NewClock(), "a", "b")
	key := keyOwnedBy(t, r, "b")
	p, _ := nodes[0].peers.Owner(key)
	status, _, err := forward(t, p, "client.example", "/origin-down")
	if err != nil || status != 503 {
		t.Fatalf("Forward = %d, %v; want the 503 answer and no error", status, err)
	}
	if _, ok := nodes[0].peers.Owner(key); !ok {
		t.Fatal("a relayed origin 5xx paused the peer")
	}
}

// A peer that refuses (HeaderError) is skipped for a backoff, then tried
// again; a success clears the backoff.
func TestForwardPeerRefusal(t *testing.T) {
	clock := testutil.NewClock()
	nodes, r := startTestCluster(t, clock, "a", "b")
	a, b := nodes[0], nodes[1]
	key := keyOwnedBy(t, r, "b")
	p, _ := a.peers.Owner(key)

	b.draining.Store(true)
	if _, _, err := forward(t, p, "h", "/1"); !errors.Is(err, errPeerRefused) {
		t.Fatalf("Forward to a draining peer: err = %v, want errPeerRefused", err)
	}
	if _, ok := a.peers.Owner(key); ok {
		t.Fatal("Owner still names a peer that refused")
	}
	clock.Advance(DefaultFailBackoff)
	p, ok := a.peers.Owner(key)
	if !ok {
		t.Fatal("peer still skipped after the backoff")
	}
	b.draining.Store(false)
	if _, body, err := forward(t, p, "h", "/2"); err != nil || body != "served by b" {
		t.Fatalf("Forward after recovery = %q, %v", body, err)
	}
	// The success reset the backoff: the next failure pauses for the
	// minimum again, not twice it.
	b.draining.Store(true)
	if _, _, err := forward(t, p, "h", "/3"); err == nil {
		t.Fatal("Forward to a draining peer succeeded")
	}
	clock.Advance(DefaultFailBackoff)
	if _, ok := a.peers.Owner(key); !ok {
		t.Fatal("backoff was not reset by the success")
	}
}

// A stopped peer fails at the transport; Owner skips it after one failure
// and retries it after the backoff, doubling the backoff while it fails.
func TestPassiveHealthStoppedPeer(t *testing.T) {
	clock := testutil.NewClock()
	nodes, r := startTestCluster(t, clock, "a", "b")
	a, b := nodes[0], nodes[1]
	key := keyOwnedBy(t, r, "b")
	p, _ := a.peers.Owner(key)
	if _, _, err := forward(t, p, "h", "/warm"); err != nil {
		t.Fatalf("Forward before the stop: %v", err)
	}
	b.stop(t)
	if _, _, err := forward(t, p, "h", "/after-stop"); err == nil {
		t.Fatal("Forward to a stopped peer succeeded")
	}
	if _, ok := a.peers.Owner(key); ok {
		t.Fatal("Owner still names the stopped peer")
	}
	clock.Advance(DefaultFailBackoff)
	if _, ok := a.peers.Owner(key); !ok {
		t.Fatal("stopped peer not retried after the backoff")
	}
	if _, _, err := forward(t, p, "h", "/probe"); err == nil {
		t.Fatal("probe to a stopped peer succeeded")
	}
	clock.Advance(DefaultFailBackoff)
	if _, ok := a.peers.Owner(key); ok {
		t.Fatal("second failure did not double the backoff")
	}
	clock.Advance(DefaultFailBackoff)
	if _, ok := a.peers.Owner(key); !ok {
		t.Fatal("stopped peer not retried after the doubled backoff")
	}
	// Lookup failures count too, and report an error rather than a miss.
	ctx, cancel := context.WithTimeout(context.Background(), peerTestTimeout)
	defer cancel()
	var f cache.Fetched
	if found, err := p.Get(ctx, key, &f); err == nil {
		t.Fatalf("Get on a stopped peer = %v, nil", found)
	}
	if _, ok := a.peers.Owner(key); ok {
		t.Fatal("a failed Get did not pause the peer")
	}
}

// TestGet: an entry looked up on its owner over the lookup exchange comes
// back whole (a variant key's binary bytes and a 300 KiB body included),
// decoded into the caller's Entry; a missing key is no error; a larger
// entry than the caller takes is not sent.
func TestGet(t *testing.T) {
	nodes, r := startTestCluster(t, testutil.NewClock(), "a", "b")
	a, b := nodes[0], nodes[1]
	primary := string(keyOwnedBy(t, r, "b"))
	entries := []*cache.Entry{
		testEntry(primary, 1000, cache.Shared|cache.Heuristic),
		testEntry(primary+"\x00gzip", 10, 0), // a variant key: binary bytes in the query
		testEntry(primary+"?big", 300<<10, cache.MustRevalidate),
	}
	for _, e := range entries {
		if !b.local.st.Set(e) {
			t.Fatalf("store refused %q", e.Key())
		}
	}
	p, ok := a.peers.Owner([]byte(primary))
	if !ok {
		t.Fatal("no owner peer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerTestTimeout)
	defer cancel()
	var f cache.Fetched
	for _, want := range entries {
		found, err := p.Get(ctx, want.Key(), &f)
		if err != nil || !found {
			t.Fatalf("Get(%q) = %v, %v", want.Key(), found, err)
		}
		if got := f.Entry.Clone(); !reflect.DeepEqual(got, want) {
			t.Errorf("Get(%q) = %+v, want %+v", want.Key(), got, want)
		}
	}
	if found, err := p.Get(ctx, []byte(primary+"/missing"), &f); found || err != nil {
		t.Fatalf("Get of a missing key = %v, %v; want false, nil", found, err)
	}
	f.Max = 100 << 10
	if found, err := p.Get(ctx, []byte(primary+"?big"), &f); found || err != nil {
		t.Fatalf("Get of an entry over Max = %v, %v; want false, nil", found, err)
	}
	if s := b.ps.Stats(); s.Lookups != 5 || s.LookupHits != 3 {
		t.Errorf("server stats %+v, want 5 lookups, 3 hits", s)
	}
}

// Requests without valid credentials get 401 from both the peer endpoints
// and the forwarded-request path, whatever else they carry.
func TestUnauthorized(t *testing.T) {
	nodes, r := startTestCluster(t, testutil.NewClock(), "a", "b")
	b := nodes[1]
	key := keyOwnedBy(t, r, "b")
	b.local.st.Set(testEntry(string(key), 10, 0))
	// A member's TLS: what is tested here is the signature inside it.
	client := memberClient(b.addr)
	defer client.CloseIdleConnections()

	wrong := mustSigner(t, "a", []byte("another-secret-of-16+bytes"))
	right := mustSigner(t, "a", testSecret)
	entryURI := PathPrefix + "handoff"
	tests := []struct {
		name string
		uri  string
		prep func(r *fasthttp.Request)
	}{
		{"no credentials", entryURI, func(r *fasthttp.Request) {}},
		{"wrong secret", entryURI, func(r *fasthttp.Request) { wrong.Sign(r) }},
		{"forwarded name swapped", entryURI, func(r *fasthttp.Request) { right.Sign(r); r.Header.Set(HeaderForwarded, "c") }},
		{"signed for another URI", entryURI, func(r *fasthttp.Request) {
			r.Header.SetRequestURI(PathPrefix + "purge")
			right.Sign(r)
			r.Header.SetRequestURI(entryURI)
		}},
		{"signed for another Host", entryURI, func(r *fasthttp.Request) {
			host := string(r.Header.Host())
			r.Header.SetHost("elsewhere")
			right.Sign(r)
			r.Header.SetHost(host)
		}},
		{"handoff unsigned", PathPrefix + "handoff", func(r *fasthttp.Request) { r.Header.SetMethod("POST") }},
		{"forwarded request, no credentials", "/page", func(r *fasthttp.Request) { r.Header.Set(HeaderForwarded, "a") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetRequestURI(tt.uri)
			req.Header.SetHost(b.addr)
			req.URI().SetScheme("https")
			tt.prep(req)
			if err := client.DoTimeout(req, resp, peerTestTimeout); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != fasthttp.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode())
			}
		})
	}
	if got := b.ps.Stats().Unauthorized; got != 6 {
		t.Errorf("Unauthorized = %d, want 6 (the peer endpoint requests)", got)
	}
	if s := b.ps.Stats(); s.Lookups != 0 {
		t.Errorf("an unauthorized lookup reached the store: %+v", s)
	}
	// Lookups are authenticated by the connection: a PeerSet holding
	// another secret's TLS gets an error from Get, not a miss.
	other := mustSecretTLS(t, []byte("another-secret-of-16+bytes"))
	ps := NewPeerSet(PeerOptions{Self: "a", Signer: wrong, TLS: other.Client, IdleConnTimeout: 50 * time.Millisecond})
	defer ps.Close()
	ps.Update(nil, r)
	p, _ := ps.Owner(key)
	var f cache.Fetched
	if found, err := p.Get(context.Background(), key, &f); err == nil || found {
		t.Fatalf("Get with another secret = %v, %v; want an error", found, err)
	}
}

// After everything is closed no goroutine of the clients or servers is
// left (fasthttp's reapers wake up within their short test intervals).
func TestPeerGoroutinesLeft(t *testing.T) {
	clock := testutil.NewClock()
	before := goleak.IgnoreCurrent()
	var nodes []*testNode
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startTestNode(t, name, clock))
	}
	ringNodes := []Node{nodes[0].node(), nodes[1].node(), nodes[2].node()}
	r := newTestRing(t, ringNodes...)
	for _, n := range nodes {
		n.peers.Update(nil, r)
	}
	for _, owner := range []string{"b", "c"} {
		key := keyOwnedBy(t, r, owner)
		p, _ := nodes[0].peers.Owner(key)
		if _, _, err := forward(t, p, "h", "/x"); err != nil {
			t.Fatal(err)
		}
		var f cache.Fetched
		if _, err := p.Get(context.Background(), key, &f); err != nil {
			t.Fatal(err)
		}
	}
	nodes[0].local.st.Set(testEntry("example.com/handoff", 10, 0))
	next := newTestRing(t, ringNodes[1:]...)
	if _, err := Handoff(context.Background(), nodes[0].local.st, nil, next, 1, "a", nodes[0].peers.SendHandoff, 1<<20); err != nil {
		t.Fatal(err)
	}
	stopTestCluster(t, nodes)
	goleak.VerifyNone(t, before)
}
