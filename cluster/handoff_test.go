package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/cache"
)

// handoffFixture fills a store with n URLs, every third one with a Vary
// marker and two variants, plus a few Pass entries, and returns the store,
// every entry that should move, and the number of Pass entries.
func handoffFixture(t testing.TB, n, bodyLen int) (*cache.LRU, []*cache.Entry, int) {
	t.Helper()
	st := cache.NewLRU(1 << 30)
	var moving []*cache.Entry
	set := func(e *cache.Entry) {
		if !st.Set(e) {
			t.Fatalf("store refused %q", e.Key())
		}
	}
	for i := range n {
		primary := fmt.Sprintf("example.com/page/%d", i)
		if i%3 == 0 {
			marker := cache.NewEntry([]byte(primary), []cache.Field{{Key: []byte("Vary"), Value: []byte("Accept-Encoding")}}, nil, cache.Stale{})
			marker.ResponseTime, marker.Expires = time.Now().UnixNano(), time.Now().Add(time.Hour).UnixNano()
			marker.Status, marker.Flags = 200, cache.VaryMarker
			set(marker)
			moving = append(moving, marker)
			for _, enc := range []string{"gzip", "br"} {
				e := testEntry(primary+"\x00"+enc, bodyLen, 0)
				set(e)
				moving = append(moving, e)
			}
			continue
		}
		e := testEntry(primary, bodyLen, cache.Shared)
		set(e)
		moving = append(moving, e)
	}
	const pass = 5
	for i := range pass {
		set(testEntry(fmt.Sprintf("example.com/pass/%d", i), 0, cache.Pass))
	}
	return st, moving, pass
}

func checkAccounting(t *testing.T, s HandoffStats, total int) {
	t.Helper()
	if got := s.Entries + s.Failed + s.Skipped; got != int64(total) {
		t.Errorf("Entries+Failed+Skipped = %d, want %d entries seen (%+v)", got, total, s)
	}
}

// A leaving node of a 3-ring hands every entry to its owner on the ring
// without it, over the network.
func TestHandoffMovesEntries(t *testing.T) {
	nodes, _ := startTestCluster(t, testutil.NewClock(), "a", "b", "c")
	leaving := nodes[2]
	st, moving, pass := handoffFixture(t, 300, 8<<10) // ~3 MiB: several batches per owner
	next := newTestRing(t, nodes[0].node(), nodes[1].node())

	ctx, cancel := context.WithTimeout(context.Background(), peerTestTimeout)
	defer cancel()
	stats, err := Handoff(ctx, st, nil, next, 1, "c", leaving.peers.SendHandoff, math.MaxInt64)
	if err != nil {
		t.Fatalf("Handoff: %v", err)
	}
	if stats.Entries != int64(len(moving)) || stats.Skipped != int64(pass) || stats.Failed != 0 {
		t.Errorf("stats %+v, want %d entries, %d skipped", stats, len(moving), pass)
	}
	if stats.Batches < 4 {
		t.Errorf("%d batches for ~3 MiB over two owners, want >= 4", stats.Batches)
	}
	byName := map[string]*testNode{"a": nodes[0], "b": nodes[1]}
	perOwner := map[string]int{}
	for _, want := range moving {
		owner, _ := next.Owner(cache.PrimaryKey(want.Key()))
		perOwner[owner.Name]++
		got, ok := byName[owner.Name].local.st.Get(want.Key())
		if !ok {
			t.Errorf("%q missing on its owner %s", want.Key(), owner.Name)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q arrived altered on %s", want.Key(), owner.Name)
		}
	}
	var bytesSeen int64
	for name, n := range byName {
		s := n.ps.Stats()
		if s.Accepted != uint64(perOwner[name]) || s.Malformed != 0 || s.Rejected != 0 {
			t.Errorf("%s stats %+v, want %d accepted", name, s, perOwner[name])
		}
		bytesSeen += n.local.st.Stats().Items
	}
	if bytesSeen != int64(len(moving)) {
		t.Errorf("receivers hold %d entries, want %d", bytesSeen, len(moving))
	}
	if stats.Bytes <= 0 {
		t.Errorf("Bytes = %d", stats.Bytes)
	}
	checkAccounting(t, stats, len(moving)+pass)
}

// recorder is a fake send that decodes what it is given.
type recorder struct {
	mu      sync.Mutex
	order   map[string][]*cache.Entry // per owner, in arrival order
	bodies  int
	bytes   int64
	fail    func(Node) bool
	onSend  func(n int)
	maxBody int
}

func newRecorder() *recorder { return &recorder{order: map[string][]*cache.Entry{}} }

func (r *recorder) send(ctx context.Context, peer Node, body []byte) error {
	if r.fail != nil && r.fail(peer) {
		return fmt.Errorf("peer %s is down", peer.Name)
	}
	var got []*cache.Entry
	for off := 0; off < len(body); {
		n, k := binary.Uvarint(body[off:])
		if k <= 0 || uint64(len(body)-off-k) < n {
			return errors.New("bad framing")
		}
		off += k
		e, err := cache.DecodeEntry(body[off : off+int(n)])
		if err != nil {
			return err
		}
		off += int(n)
		got = append(got, e)
	}
	r.mu.Lock()
	r.order[peer.Name] = append(r.order[peer.Name], got...)
	r.bodies++
	r.bytes += int64(len(body))
	r.maxBody = max(r.maxBody, len(body))
	n := r.bodies
	r.mu.Unlock()
	if r.onSend != nil {
		r.onSend(n)
	}
	return nil
}

func (r *recorder) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, es := range r.order {
		n += len(es)
	}
	return n
}

func smallBatches(ctx context.Context, send HandoffSender, maxBytes int64) *handoffRun {
	return &handoffRun{ctx: ctx, send: send, maxBytes: maxBytes, batchBytes: 4 << 10, maxFrame: DefaultMaxEntryBytes}
}

var (
	nodeA = Node{Name: "a", Addr: "127.0.0.1:1"}
	nodeB = Node{Name: "b", Addr: "127.0.0.1:2"}
	nodeC = Node{Name: "c", Addr: "127.0.0.1:3"}
)

// Every marker reaches its owner before any variant does, across many
// small batches sent concurrently.
func TestHandoffMarkersFirst(t *testing.T) {
	st, moving, pass := handoffFixture(t, 200, 1<<10)
	next := newTestRing(t, nodeA, nodeB)
	rec := newRecorder()
	stats, err := smallBatches(context.Background(), rec.send, math.MaxInt64).run(st, next, "c")
	if err != nil {
		t.Fatal(err)
	}
	if rec.received() != len(moving) || stats.Entries != int64(len(moving)) {
		t.Fatalf("received %d entries (stats %+v), want %d", rec.received(), stats, len(moving))
	}
	if stats.Batches < 20 {
		t.Errorf("only %d batches: the test wants many", stats.Batches)
	}
	if rec.maxBody > 4<<10+2<<10 {
		t.Errorf("a batch of %d bytes, want about 4 KiB", rec.maxBody)
	}
	for owner, es := range rec.order {
		seenVariant := false
		for _, e := range es {
			if e.Has(cache.VaryMarker) && seenVariant {
				t.Fatalf("owner %s got marker %q after a variant", owner, e.Key())
			}
			seenVariant = seenVariant || !e.Has(cache.VaryMarker)
			if o, _ := next.Owner(cache.PrimaryKey(e.Key())); o.Name != owner {
				t.Errorf("%q sent to %s, owner is %s", e.Key(), owner, o.Name)
			}
		}
	}
	checkAccounting(t, stats, len(moving)+pass)
}

func TestHandoffMaxBytes(t *testing.T) {
	st, moving, pass := handoffFixture(t, 100, 1<<10)
	next := newTestRing(t, nodeA, nodeB)
	for _, limit := range []int64{0, -1, 10 << 10, 30 << 10} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			rec := newRecorder()
			stats, err := smallBatches(context.Background(), rec.send, limit).run(st, next, "c")
			if err != nil {
				t.Fatal(err)
			}
			if stats.Bytes > max(limit, 0) || rec.bytes != stats.Bytes {
				t.Errorf("sent %d bytes (stats %d), limit %d", rec.bytes, stats.Bytes, limit)
			}
			if limit <= 0 && stats.Entries != 0 {
				t.Errorf("maxBytes %d sent %d entries, want none", limit, stats.Entries)
			}
			if limit > 0 && (stats.Entries == 0 || stats.Skipped <= int64(pass)) {
				t.Errorf("stats %+v: want some sent and some cut by the budget", stats)
			}
			if int64(rec.received()) != stats.Entries {
				t.Errorf("received %d, stats say %d", rec.received(), stats.Entries)
			}
			checkAccounting(t, stats, len(moving)+pass)
		})
	}
}

func TestHandoffContext(t *testing.T) {
	st, moving, pass := handoffFixture(t, 100, 1<<10)
	next := newTestRing(t, nodeA, nodeB)
	t.Run("deadline already passed", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		rec := newRecorder()
		stats, err := smallBatches(ctx, rec.send, math.MaxInt64).run(st, next, "c")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if stats.Entries != 0 || rec.received() != 0 {
			t.Errorf("sent %d entries after the deadline", rec.received())
		}
	})
	t.Run("cancelled midway", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rec := newRecorder()
		rec.onSend = func(n int) {
			if n == 3 {
				cancel()
			}
		}
		stats, err := smallBatches(ctx, rec.send, math.MaxInt64).run(st, next, "c")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want Canceled", err)
		}
		// Batches already handed to the workers may still go out.
		if stats.Entries == 0 || stats.Entries >= int64(len(moving)) || stats.Batches > 3+HandoffInFlight {
			t.Errorf("stats %+v: want a few batches, then a stop", stats)
		}
		checkAccounting(t, stats, len(moving)+pass)
	})
}

func TestHandoffFailuresAndSelf(t *testing.T) {
	st, moving, pass := handoffFixture(t, 100, 1<<10)
	// c stays on the ring it hands off to: its own keys stay put.
	next := newTestRing(t, nodeA, nodeB, nodeC)
	rec := newRecorder()
	rec.fail = func(n Node) bool { return n.Name == "b" }
	stats, err := smallBatches(context.Background(), rec.send, math.MaxInt64).run(st, next, "c")
	if err == nil {
		t.Fatal("Handoff reported no error although b failed")
	}
	var toA, toB, toC int64
	for _, e := range moving {
		switch o, _ := next.Owner(cache.PrimaryKey(e.Key())); o.Name {
		case "a":
			toA++
		case "b":
			toB++
		case "c":
			toC++
		}
	}
	if stats.Entries != toA || stats.Failed != toB || stats.Skipped != toC+int64(pass) {
		t.Errorf("stats %+v, want %d delivered (a), %d failed (b), %d skipped (c's own + pass)", stats, toA, toB, toC+int64(pass))
	}
	if len(rec.order["c"]) != 0 {
		t.Errorf("%d entries sent to self", len(rec.order["c"]))
	}
	checkAccounting(t, stats, len(moving)+pass)
}

// Entries too large for a frame are skipped, not sent to be dropped.
func TestHandoffOversizedEntry(t *testing.T) {
	st := cache.NewLRU(1 << 30)
	st.Set(testEntry("example.com/big", 8<<10, 0))
	st.Set(testEntry("example.com/small", 10, 0))
	rec := newRecorder()
	h := smallBatches(context.Background(), rec.send, math.MaxInt64)
	h.maxFrame = 4 << 10
	stats, err := h.run(st, newTestRing(t, nodeA), "c")
	if err != nil {
		t.Fatal(err)
	}
	if stats.Entries != 1 || stats.Skipped != 1 {
		t.Errorf("stats %+v, want the small one sent and the big one skipped", stats)
	}
}

func BenchmarkHandoffBatch(b *testing.B) {
	st, moving, _ := handoffFixture(b, 2000, 4<<10)
	next := newTestRing(b, nodeA, nodeB)
	send := func(context.Context, Node, []byte) error { return nil }
	b.ReportAllocs()
	b.SetBytes(int64(len(moving)) * 4 << 10)
	for b.Loop() {
		if _, err := Handoff(context.Background(), st, nil, next, 1, "c", send, math.MaxInt64); err != nil {
			b.Fatal(err)
		}
	}
}

// With replicas, a leaving node sends only the entries whose new owner did
// not hold a copy: the others are there already. (When the next ring is
// the previous one without the leaver, that is none: each key's new owner
// is its next holder. Here a member joined too.)
func TestHandoffSkipsReplicated(t *testing.T) {
	st, moving, pass := handoffFixture(t, 300, 100)
	prev := newTestRing(t, nodeA, nodeB, nodeC)
	next := newTestRing(t, nodeA, nodeB, Node{Name: "d", Addr: "127.0.0.1:4"})
	rec := newRecorder()
	stats, err := Handoff(context.Background(), st, prev, next, 2, "c", rec.send, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	var buf [MaxReplicas]Node
	sent, kept := map[string]bool{}, 0
	for _, es := range rec.order {
		for _, e := range es {
			sent[string(e.Key())] = true
		}
	}
	for _, e := range moving {
		pk := cache.PrimaryKey(e.Key())
		owner, _ := next.Owner(pk)
		held := slices.ContainsFunc(prev.Owners(buf[:0], pk, 2), func(m Node) bool { return m.Name == owner.Name })
		if held == sent[string(e.Key())] {
			t.Errorf("%q: new owner %s held a copy: %v; sent: %v", e.Key(), owner.Name, held, !held)
		}
		if held {
			kept++
		}
	}
	if kept == 0 || kept == len(moving) {
		t.Fatalf("%d of %d entries already on their new owner: the test measures nothing", kept, len(moving))
	}
	if stats.Replicated != int64(kept) || stats.Entries != int64(len(moving)-kept) {
		t.Errorf("stats %+v, want %d replicated and %d sent", stats, kept, len(moving)-kept)
	}
	checkAccounting(t, stats, len(moving)+pass)
}
