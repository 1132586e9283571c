package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/hashicorp/serf/serf"
	"github.com/ringcache/ringcache/cluster/clustertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Generous: the machine is small and shared, and -race slows gossip.
const converge = 10 * time.Second

// fastTimers makes joins, leaves and failures show up in well under a
// second on loopback.
var fastTimers = clustertest.FastTimers

// testLogger sends warnings and errors to the test log (debug, where serf's
// chatter goes, is dropped).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testGossipKey is the gossip key of every test cluster.
var testGossipKey = []byte("ringcache-test-gossip-key-32byte")

func testOptions(t *testing.T, name string, join ...string) Options {
	return Options{
		NodeName:  name,
		GossipKey: testGossipKey,
		BindAddr:  "127.0.0.1:0",
		PeerAddr:  peerAddrOf(name),
		Join:      join,
		Coalesce:  20 * time.Millisecond,
		Logger:    testLogger(t),
		Tune:      fastTimers,
	}
}

func peerAddrOf(name string) string { return name + ".test:8080" }

// startNode starts a Membership and shuts it down when the test ends.
func startNode(t *testing.T, o Options) *Membership {
	t.Helper()
	m, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("Start(%s): %v", o.NodeName, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func ringNames(r Ring) []string {
	var out []string
	for _, n := range r.Members() {
		out = append(out, n.Name)
	}
	return out
}

// waitRings waits until every node's ring holds exactly want.
func waitRings(t *testing.T, nodes []*Membership, want ...string) {
	t.Helper()
	testutil.Eventually(t, converge, func() bool {
		for _, m := range nodes {
			if !slices.Equal(ringNames(m.Ring()), want) {
				return false
			}
		}
		return true
	}, func() string {
		var b strings.Builder
		for _, m := range nodes {
			fmt.Fprintf(&b, "%s sees %v; ", m.Self().Name, ringNames(m.Ring()))
		}
		return b.String() + fmt.Sprintf("want %v", want)
	})
}

func statusOf(m *Membership, name string) string {
	for _, mem := range m.Members() {
		if mem.Name == name {
			return mem.Status
		}
	}
	return "(absent)"
}

func TestClusterConverges(t *testing.T) {
	for _, kind := range ringKinds {
		t.Run(kind, func(t *testing.T) {
			oa := testOptions(t, "node-a")
			oa.RingKind = kind
			a := startNode(t, oa)
			if _, port, _ := net.SplitHostPort(a.GossipAddr()); port == "0" || port == "" {
				t.Fatalf("GossipAddr() = %q, want the bound port", a.GossipAddr())
			}
			ob, oc := testOptions(t, "node-b", a.GossipAddr()), testOptions(t, "node-c", a.GossipAddr())
			ob.RingKind, oc.RingKind = kind, kind
			b, c := startNode(t, ob), startNode(t, oc)
			nodes := []*Membership{a, b, c}
			waitRings(t, nodes, "node-a", "node-b", "node-c")

			// Everyone agrees on owners and on each owner's peer address.
			keys := urlKeys(500)
			for _, k := range keys {
				want, _ := a.Ring().Owner(k)
				if want.Addr != peerAddrOf(want.Name) {
					t.Fatalf("owner %v has the wrong peer address, want %s", want, peerAddrOf(want.Name))
				}
				for _, m := range nodes[1:] {
					if got, _ := m.Ring().Owner(k); got != want {
						t.Fatalf("%s says %q belongs to %v, node-a says %v", m.Self().Name, k, got, want)
					}
				}
			}
			// A member a loaded machine made miss a probe may be suspect
			// for a moment before it refutes it: everyone is alive soon.
			var members []Member
			testutil.Eventually(t, 10*time.Second, func() bool {
				members = c.Members()
				if len(members) != 3 {
					return false
				}
				for _, mem := range members {
					if mem.Status != "alive" {
						return false
					}
				}
				return true
			}, func() string { return fmt.Sprintf("Members() = %+v, want 3 alive", members) })
			for _, mem := range members {
				if mem.PeerAddr != peerAddrOf(mem.Name) || mem.GossipAddr == "" {
					t.Errorf("member %+v: want peer %s and a gossip address", mem, peerAddrOf(mem.Name))
				}
			}
			if s := b.Stats(); !s.Joined || s.JoinAttempts == 0 || s.MemberJoin == 0 {
				t.Errorf("node-b stats = %+v, want joined with member-join events", s)
			}
		})
	}
}

func TestBurstOfJoinsCoalesced(t *testing.T) {
	const n = 8
	oa := testOptions(t, "node-a")
	// A quiet period long enough that a loaded machine starts the next
	// joiner inside it; the cap keeps the test short if it does not.
	oa.Coalesce = 500 * time.Millisecond
	oa.CoalesceMax = 5 * time.Second
	// Failure detection is not under test: lax probes keep a loaded machine
	// from flapping members, which would be real (uncoalescable) changes.
	lax := func(c *serf.Config) {
		fastTimers(c)
		c.MemberlistConfig.ProbeInterval = time.Second
		c.MemberlistConfig.ProbeTimeout = 500 * time.Millisecond
		c.MemberlistConfig.SuspicionMult = 4
	}
	oa.Tune = lax
	a := startNode(t, oa)
	want := []string{"node-a"}
	var changes int
	a.OnChange(func(_, _ Ring) { changes++ }) // loop goroutine only; read after Shutdown
	for i := range n {
		name := fmt.Sprintf("node-b%d", i)
		want = append(want, name)
		o := testOptions(t, name, a.GossipAddr())
		o.Tune = lax
		startNode(t, o)
	}
	waitRings(t, []*Membership{a}, want...)
	s := a.Stats()
	t.Logf("node-a: %d member-join events, %d ring rebuilds (initial included)", s.MemberJoin, s.RingRebuilds)
	if s.MemberJoin < n {
		t.Fatalf("node-a saw %d join events, want >= %d", s.MemberJoin, n)
	}
	if s.RingRebuilds-1 > n/2 {
		t.Fatalf("%d joins caused %d ring rebuilds, want far fewer", n, s.RingRebuilds-1)
	}
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if uint64(changes) != s.RingRebuilds-1 {
		t.Fatalf("listener ran %d times for %d swaps", changes, s.RingRebuilds-1)
	}
}

func TestGracefulLeave(t *testing.T) {
	a := startNode(t, testOptions(t, "node-a"))
	b := startNode(t, testOptions(t, "node-b", a.GossipAddr()))
	c := startNode(t, testOptions(t, "node-c", a.GossipAddr()))
	waitRings(t, []*Membership{a, b, c}, "node-a", "node-b", "node-c")

	if err := c.Leave(); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitRings(t, []*Membership{a, b}, "node-a", "node-b")
	testutil.Eventually(t, converge, func() bool { return statusOf(a, "node-c") == "left" && statusOf(b, "node-c") == "left" },
		func() string {
			return fmt.Sprintf("node-c is %s at node-a and %s at node-b, want left", statusOf(a, "node-c"), statusOf(b, "node-c"))
		})
	if s := a.Stats(); s.MemberLeave == 0 {
		t.Errorf("node-a stats = %+v, want a member-leave event", s)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatalf("Shutdown after Leave: %v", err)
	}
}

func TestCrashDetected(t *testing.T) {
	a := startNode(t, testOptions(t, "node-a"))
	b := startNode(t, testOptions(t, "node-b", a.GossipAddr()))
	c := startNode(t, testOptions(t, "node-c", a.GossipAddr()))
	waitRings(t, []*Membership{a, b, c}, "node-a", "node-b", "node-c")

	var mu sync.Mutex
	var dropped []string
	a.OnChange(func(old, new Ring) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range old.Members() {
			if !slices.Contains(new.Members(), n) {
				dropped = append(dropped, n.Name)
			}
		}
	})
	if err := c.Shutdown(); err != nil { // no Leave: looks like a crash
		t.Fatalf("Shutdown: %v", err)
	}
	waitRings(t, []*Membership{a, b}, "node-a", "node-b")
	testutil.Eventually(t, converge, func() bool { return statusOf(a, "node-c") == "failed" && statusOf(b, "node-c") == "failed" },
		func() string {
			return fmt.Sprintf("node-c is %s at node-a and %s at node-b, want failed", statusOf(a, "node-c"), statusOf(b, "node-c"))
		})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(dropped, "node-c") {
		t.Fatalf("listener saw drops %v, want node-c", dropped)
	}
}

func TestGossipKey(t *testing.T) {
	key := []byte("0123456789abcdef")
	other := []byte("fedcba9876543210")
	oa := testOptions(t, "node-a")
	oa.GossipKey = key
	a := startNode(t, oa)

	ob := testOptions(t, "node-b", a.GossipAddr())
	ob.GossipKey = key
	b := startNode(t, ob)
	waitRings(t, []*Membership{a, b}, "node-a", "node-b")

	for _, tc := range []struct {
		name string
		key  []byte
	}{{"node-x", other}} {
		o := testOptions(t, tc.name, a.GossipAddr())
		o.GossipKey = tc.key
		x := startNode(t, o)
		// Several rejected rounds, not a sleep: each is a real attempt.
		testutil.Eventually(t, converge, func() bool { return x.Stats().JoinFailures >= 2 },
			func() string { return fmt.Sprintf("%s stats %+v, want failed joins", tc.name, x.Stats()) })
		if s := x.Stats(); s.Joined {
			t.Fatalf("%s joined with key %q: %+v", tc.name, tc.key, s)
		}
		if got := ringNames(x.Ring()); !slices.Equal(got, []string{tc.name}) {
			t.Fatalf("%s ring = %v, want only itself", tc.name, got)
		}
		if st := statusOf(a, tc.name); st != "(absent)" {
			t.Fatalf("node-a lists %s as %s", tc.name, st)
		}
	}
	waitRings(t, []*Membership{a, b}, "node-a", "node-b")
}

// TestStrangerCannotJoin is the attack of a host that reaches the gossip
// port without the key: a plain serf agent (no encryption, as a member
// started without gossip_key used to run) asks to join and advertises a
// peer address. It must neither join nor appear in any ring, else it would
// own a share of the keys and receive users' forwarded requests.
func TestStrangerCannotJoin(t *testing.T) {
	a := startNode(t, testOptions(t, "node-a"))
	conf := serf.DefaultConfig()
	conf.NodeName = "stranger"
	conf.Tags = map[string]string{PeerTag: "127.0.0.1:1"}
	conf.MemberlistConfig.BindAddr = "127.0.0.1"
	conf.MemberlistConfig.BindPort = 0
	conf.Logger = log.New(testWriter{t}, "", 0)
	conf.MemberlistConfig.Logger = conf.Logger
	fastTimers(conf)
	x, err := serf.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = x.Shutdown() }()
	if n, err := x.Join([]string{a.GossipAddr()}, true); err == nil {
		t.Errorf("stranger's join reached %d member(s), want an error", n)
	}
	// The join is a synchronous push/pull: refused, the stranger knows no
	// member to gossip with, so one look settles it.
	if st := statusOf(a, "stranger"); st != "(absent)" {
		t.Fatalf("node-a lists the stranger as %s", st)
	}
	if got := ringNames(a.Ring()); !slices.Equal(got, []string{"node-a"}) {
		t.Fatalf("node-a ring = %v, want only itself", got)
	}
	if n := len(x.Members()); n != 1 {
		t.Fatalf("stranger sees %d members", n)
	}
}

// freeAddr finds a loopback port free for both TCP and UDP, as memberlist
// binds both.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free TCP+UDP port on 127.0.0.1")
	return ""
}

func TestJoinRetriedUntilSeedStarts(t *testing.T) {
	seed := freeAddr(t)
	b := startNode(t, testOptions(t, "node-b", seed))
	testutil.Eventually(t, converge, func() bool { return b.Stats().JoinFailures >= 1 },
		func() string { return fmt.Sprintf("node-b stats %+v, want a failed join", b.Stats()) })

	oa := testOptions(t, "node-a")
	oa.BindAddr = seed
	a := startNode(t, oa)
	if a.GossipAddr() != seed {
		t.Fatalf("node-a gossips on %s, want %s", a.GossipAddr(), seed)
	}
	waitRings(t, []*Membership{a, b}, "node-a", "node-b")
	if s := b.Stats(); !s.Joined || s.JoinAttempts < 2 {
		t.Fatalf("node-b stats %+v, want joined after retries", s)
	}
}

func TestJoinSkipsOwnAddress(t *testing.T) {
	seed := freeAddr(t)
	oa := testOptions(t, "node-a", seed) // a static seed list naming itself
	oa.BindAddr = seed
	a := startNode(t, oa)
	b := startNode(t, testOptions(t, "node-b", seed))
	waitRings(t, []*Membership{a, b}, "node-a", "node-b")
	if s := a.Stats(); s.JoinAttempts != 0 {
		t.Fatalf("node-a tried to join itself: %+v", s)
	}
}

func TestJoinReachingOnlySelfKeepsTrying(t *testing.T) {
	// A seed name that resolves back to this node (a headless service that
	// lists only this pod yet) must not count as joined.
	seed := freeAddr(t)
	_, port, _ := net.SplitHostPort(seed)
	oa := testOptions(t, "node-a", net.JoinHostPort("localhost", port))
	oa.BindAddr = seed
	a := startNode(t, oa)
	testutil.Eventually(t, 20*time.Second, func() bool { return a.Stats().JoinAttempts >= 2 },
		func() string { return fmt.Sprintf("a join retried: %+v", a.Stats()) })
	if s := a.Stats(); s.Joined {
		t.Fatalf("joining only itself counted as joined: %+v", s)
	}
}

func TestStartOptionErrors(t *testing.T) {
	ok := func() Options { return testOptions(t, "node-a") }
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr string
	}{
		{"no name", func(o *Options) { o.NodeName = "" }, "node name is required"},
		{"no peer addr", func(o *Options) { o.PeerAddr = "" }, "peer address"},
		{"bad bind", func(o *Options) { o.BindAddr = "127.0.0.1" }, "bind address"},
		{"bad bind port", func(o *Options) { o.BindAddr = "127.0.0.1:99999" }, "bad port"},
		{"bind host name", func(o *Options) { o.BindAddr = "localhost:0" }, "host must be an IP address"},
		{"advertise without port", func(o *Options) { o.AdvertiseAddr = "10.0.0.1:0" }, "advertise address"},
		{"advertise host name", func(o *Options) { o.AdvertiseAddr = "gw.example:7946" }, "needs an IP address"},
		{"short key", func(o *Options) { o.GossipKey = []byte("short") }, "gossip key must be 16, 24 or 32 bytes (got 5)"},
		{"no key", func(o *Options) { o.GossipKey = nil }, "gossip key is required"},
		{"unknown ring", func(o *Options) { o.RingKind = "maglev" }, "unknown ring kind"},
		{"negative vnodes", func(o *Options) { o.VNodes = -3 }, "vnodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok()
			tt.edit(&o)
			m, err := Start(context.Background(), o)
			if err == nil {
				_ = m.Shutdown()
				t.Fatal("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
	t.Run("context already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if m, err := Start(ctx, ok()); !errors.Is(err, context.Canceled) {
			if m != nil {
				_ = m.Shutdown()
			}
			t.Fatalf("Start = %v, want context.Canceled", err)
		}
	})
	t.Run("errors reported together", func(t *testing.T) {
		_, err := Start(context.Background(), Options{GossipKey: []byte("x")})
		for _, want := range []string{"node name", "peer address", "gossip key"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not mention %q", err, want)
			}
		}
	})
}

// A busy port is an error, and (goleak in TestMain) leaks nothing.
func TestStartPortInUse(t *testing.T) {
	a := startNode(t, testOptions(t, "node-a"))
	o := testOptions(t, "node-b")
	o.BindAddr = a.GossipAddr()
	m, err := Start(context.Background(), o)
	if err == nil {
		_ = m.Shutdown()
		t.Fatal("Start on a busy port succeeded")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %q, want address already in use", err)
	}
}

func TestContextCancelShutsDown(t *testing.T) {
	// Goroutines of earlier tests' members may still be winding down
	// (a memberlist probe waits out its timeout): only this test's count.
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	seed := freeAddr(t) // nobody there: the joiner is mid-backoff when ctx ends
	m, err := Start(ctx, testOptions(t, "node-a", seed))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, converge, func() bool { return m.Stats().JoinFailures >= 1 },
		func() string { return fmt.Sprintf("stats %+v", m.Stats()) })
	cancel()
	testutil.Eventually(t, converge, func() bool {
		select {
		case <-m.stop:
			return true
		default:
			return false
		}
	}, func() string { return "membership still running after ctx was cancelled" })
	for range 2 { // idempotent, and waits for the loops
		if err := m.Shutdown(); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	goleak.VerifyNone(t, before)
}

func TestNoGoroutinesLeft(t *testing.T) {
	// Goroutines of earlier tests' members may still be winding down
	// (a memberlist probe waits out its timeout): only this test's count.
	before := goleak.IgnoreCurrent()
	a, err := Start(context.Background(), testOptions(t, "node-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(context.Background(), testOptions(t, "node-b", a.GossipAddr()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(context.Background(), testOptions(t, "node-c", a.GossipAddr()))
	if err != nil {
		t.Fatal(err)
	}
	waitRings(t, []*Membership{a, b, c}, "node-a", "node-b", "node-c")
	if err := c.Leave(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Membership{c, b, a} {
		if err := m.Shutdown(); err != nil {
			t.Fatalf("Shutdown %s: %v", m.Self().Name, err)
		}
	}
	goleak.VerifyNone(t, before)
}

// --- event loop, driven without serf ---

// fakeMembers is a member source the test edits while the loop reads it.
type fakeMembers struct {
	mu      sync.Mutex
	members []serf.Member
}

func (f *fakeMembers) set(ms ...serf.Member) {
	f.mu.Lock()
	f.members = ms
	f.mu.Unlock()
}

func (f *fakeMembers) get() []serf.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

func member(name string, status serf.MemberStatus, peer string) serf.Member {
	tags := map[string]string{}
	if peer != "" {
		tags[PeerTag] = peer
	}
	return serf.Member{Name: name, Addr: net.IPv4(127, 0, 0, 1), Port: 7946, Tags: tags, Status: status}
}

// startLoop runs the event loop of a serf-less Membership over src.
func startLoop(t *testing.T, o Options, src *fakeMembers) *Membership {
	t.Helper()
	m := newMembership(o, testLogger(t))
	m.members = src.get
	m.rebuild()
	m.wg.Add(1)
	go m.loop()
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func joinEvent(names ...string) serf.MemberEvent {
	e := serf.MemberEvent{Type: serf.EventMemberJoin}
	for _, n := range names {
		e.Members = append(e.Members, serf.Member{Name: n})
	}
	return e
}

func TestLoopCoalescesAndFilters(t *testing.T) {
	src := &fakeMembers{}
	self := member("node-a", serf.StatusAlive, "127.0.0.1:8001")
	src.set(self)
	m := startLoop(t, Options{NodeName: "node-a", PeerAddr: "127.0.0.1:8001", Coalesce: 50 * time.Millisecond}, src)

	src.set(self,
		member("node-b", serf.StatusAlive, "127.0.0.1:8002"),
		member("node-c", serf.StatusAlive, "127.0.0.1:8003"),
		member("node-d", serf.StatusLeaving, "127.0.0.1:8004"),
		member("node-e", serf.StatusLeft, "127.0.0.1:8005"),
		member("node-f", serf.StatusFailed, "127.0.0.1:8006"),
		member("node-g", serf.StatusAlive, ""), // gossips, serves no keys
	)
	const events = 100
	for i := range events {
		m.events <- joinEvent(fmt.Sprintf("n%d", i))
	}
	m.events <- serf.UserEvent{Name: "ignored"}
	testutil.Eventually(t, converge, func() bool { return len(m.Ring().Members()) == 3 },
		func() string { return fmt.Sprintf("ring %v", m.Ring().Members()) })

	want := []Node{{"node-a", "127.0.0.1:8001"}, {"node-b", "127.0.0.1:8002"}, {"node-c", "127.0.0.1:8003"}}
	if got := m.Ring().Members(); !slices.Equal(got, want) {
		t.Fatalf("ring = %v, want %v", got, want)
	}
	s := m.Stats()
	if s.MemberJoin != events || s.UserEvents != 1 || s.MembersWithoutPeer != 1 {
		t.Fatalf("stats = %+v", s)
	}
	if rebuilt := s.RingRebuilds - 1; rebuilt > 5 {
		t.Fatalf("%d events caused %d rebuilds, want a handful", events, rebuilt)
	}
}

// Self stays in the ring whatever serf reports about it (e.g. while leaving).
func TestLoopKeepsSelf(t *testing.T) {
	src := &fakeMembers{}
	src.set(member("node-a", serf.StatusLeaving, "127.0.0.1:8001"), member("node-b", serf.StatusAlive, "127.0.0.1:8002"))
	m := startLoop(t, Options{NodeName: "node-a", PeerAddr: "127.0.0.1:8001"}, src)
	if got := ringNames(m.Ring()); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Fatalf("ring = %v, want node-a and node-b", got)
	}
}

func TestLoopListeners(t *testing.T) {
	src := &fakeMembers{}
	self := member("node-a", serf.StatusAlive, "127.0.0.1:8001")
	src.set(self)
	m := startLoop(t, Options{NodeName: "node-a", PeerAddr: "127.0.0.1:8001", Coalesce: 10 * time.Millisecond}, src)

	calls := make(chan string, 16)
	m.OnChange(func(_, _ Ring) { calls <- "first"; panic("listener bug") })
	m.OnChange(func(old, new Ring) {
		calls <- fmt.Sprintf("second %v -> %v", ringNames(old), ringNames(new))
	})

	src.set(self, member("node-b", serf.StatusAlive, "127.0.0.1:8002"))
	m.events <- joinEvent("node-b")
	for _, want := range []string{"first", "second [node-a] -> [node-a node-b]"} {
		select {
		case got := <-calls:
			if got != want {
				t.Fatalf("listener call %q, want %q", got, want)
			}
		case <-time.After(converge):
			t.Fatalf("listener %q not called", want)
		}
	}
	if s := m.Stats(); s.ListenerPanics != 1 {
		t.Fatalf("ListenerPanics = %d, want 1", s.ListenerPanics)
	}

	// An event that changes nothing swaps nothing and calls no listener.
	m.events <- serf.MemberEvent{Type: serf.EventMemberUpdate, Members: []serf.Member{{Name: "node-b"}}}
	testutil.Eventually(t, converge, func() bool { return m.Stats().RingUnchanged >= 1 },
		func() string { return fmt.Sprintf("stats %+v", m.Stats()) })
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 {
		t.Fatalf("listener called for an unchanged ring: %q", <-calls)
	}
}

// A steady stream of events still gets a rebuild once CoalesceMax passes.
func TestLoopQuantumCapsDelay(t *testing.T) {
	src := &fakeMembers{}
	self := member("node-a", serf.StatusAlive, "127.0.0.1:8001")
	src.set(self)
	m := startLoop(t, Options{
		NodeName: "node-a", PeerAddr: "127.0.0.1:8001",
		Coalesce: 500 * time.Millisecond, CoalesceMax: 600 * time.Millisecond,
	}, src)
	src.set(self, member("node-b", serf.StatusAlive, "127.0.0.1:8002"))
	deadline := time.Now().Add(converge)
	sent := 0
	for m.Stats().RingRebuilds < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no rebuild after %d events over %v", sent, converge)
		}
		m.events <- joinEvent("node-b")
		sent++
		time.Sleep(20 * time.Millisecond) // the event rate, shorter than Coalesce
	}
	if got := ringNames(m.Ring()); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Fatalf("ring = %v", got)
	}
	t.Logf("rebuilt after %d events", sent)
}
