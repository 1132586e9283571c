package cluster

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/testutil"
)

// keyHeldBy returns a key whose preference list on r starts with names.
func keyHeldBy(t testing.TB, r Ring, names ...string) []byte {
	t.Helper()
	var buf [MaxReplicas]Node
	for i := range 100000 {
		k := fmt.Appendf(nil, "example.com/held/%d", i)
		h := r.Owners(buf[:0], k, len(names))
		match := len(h) == len(names)
		for j := range h {
			match = match && h[j].Name == names[j]
		}
		if match {
			return k
		}
	}
	t.Fatalf("no key held by %v in 100000 tries", names)
	return nil
}

func holds(n *testNode, key []byte) bool {
	_, ok := n.local.st.Get(key)
	return ok
}

func byName(nodes []*testNode, name string) *testNode {
	for _, n := range nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// fill stores count entries on their owners, as a proxy's fill does, and
// tells the owners' peer sets (Stored). It returns the keys.
func fill(t *testing.T, nodes []*testNode, r Ring, count int) [][]byte {
	t.Helper()
	keys := make([][]byte, count)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "example.com/r/%d", i)
		o, _ := r.Owner(keys[i])
		owner := byName(nodes, o.Name)
		e := testEntry(string(keys[i]), 100, 0)
		if !owner.local.st.Set(e) {
			t.Fatalf("store refused %s", keys[i])
		}
		owner.peers.Stored(e)
	}
	return keys
}

// waitHeld waits until every key is stored on each of its first replicas
// holders on r, among nodes.
func waitHeld(t *testing.T, nodes []*testNode, r Ring, keys [][]byte, replicas int) {
	t.Helper()
	var missing string
	testutil.Eventually(t, 10*time.Second, func() bool {
		var buf [MaxReplicas]Node
		for _, k := range keys {
			for _, h := range r.Owners(buf[:0], k, replicas) {
				if !holds(byName(nodes, h.Name), k) {
					missing = fmt.Sprintf("%s not on %s", k, h.Name)
					return false
				}
			}
		}
		return true
	}, func() string { return missing })
}

// TestStoredReplicates: an entry its owner stores reaches the key's next
// holder, and only it; the counters say so.
func TestStoredReplicates(t *testing.T) {
	nodes, r := startReplicatedCluster(t, testutil.NewClock(), 2, "a", "b", "c")
	keys := fill(t, nodes, r, 60)
	waitHeld(t, nodes, r, keys, 2)
	var buf [MaxReplicas]Node
	for _, k := range keys {
		h := r.Owners(buf[:0], k, 2)
		for _, n := range nodes {
			if want := slices.ContainsFunc(h, func(m Node) bool { return m.Name == n.name }); holds(n, k) != want {
				t.Errorf("%s on %s: %v, want %v (holders %v)", k, n.name, !want, want, h)
			}
		}
	}
	// A receiver keeps a batch before its sender reads the answer and
	// counts it: wait for the counters too.
	var sent, in uint64
	testutil.Eventually(t, 10*time.Second, func() bool {
		sent, in = 0, 0
		for _, n := range nodes {
			s := n.peers.ReplicaStats()
			sent += s.Accepted
			in += n.ps.Stats().ReplicasIn
		}
		return sent == uint64(len(keys)) && in == sent
	}, func() string { return fmt.Sprintf("%d copies accepted, %d received; want %d", sent, in, len(keys)) })
	for _, n := range nodes {
		if s := n.peers.ReplicaStats(); s.Dropped != 0 || s.Failed != 0 || s.Accepted != s.Sent {
			t.Errorf("%s: %+v", n.name, s)
		}
	}
}

// TestReplicasOneCopiesNothing: with one replica, Stored sends nothing.
func TestReplicasOneCopiesNothing(t *testing.T) {
	nodes, r := startReplicatedCluster(t, testutil.NewClock(), 1, "a", "b")
	fill(t, nodes, r, 20)
	for _, n := range nodes {
		if s := n.peers.ReplicaStats(); s.Queued != 0 {
			t.Errorf("%s queued %d copies", n.name, s.Queued)
		}
	}
}

// TestCrashAndRejoinKeepEverything: with two replicas, a member that
// crashes loses none of the cluster's entries — the survivors push the
// copies whose second holder it was to their new holders — and when it
// comes back empty under its name, the members push back what it holds.
// Each entry is sent once per new holder, by one member.
func TestCrashAndRejoinKeepEverything(t *testing.T) {
	clock := testutil.NewClock()
	nodes, r := startReplicatedCluster(t, clock, 2, "a", "b", "c")
	keys := fill(t, nodes, r, 300)
	waitHeld(t, nodes, r, keys, 2)

	// c crashes: it answers nothing more, and the others' rings drop it.
	a, b, c := nodes[0], nodes[1], nodes[2]
	c.peers.Close()
	c.stop(t)
	two := newTestRing(t, a.node(), b.node())
	a.peers.Update(r, two)
	b.peers.Update(r, two)
	waitHeld(t, nodes[:2], two, keys, 2) // every key on both survivors

	// c restarts, empty, at a new address.
	c2 := startTestNode(t, "c", clock)
	c2.peers.replicas, c2.peers.store = 2, c2.local.st
	t.Cleanup(func() { c2.peers.Close(); c2.stop(t) })
	three := newTestRing(t, a.node(), b.node(), c2.node())
	before := a.peers.ReplicaStats().Rebalanced + b.peers.ReplicaStats().Rebalanced
	for _, n := range []*testNode{a, b, c2} {
		n.peers.Update(two, three)
	}
	all := []*testNode{a, b, c2}
	waitHeld(t, all, three, keys, 2)
	var buf [MaxReplicas]Node
	want := 0
	for _, k := range keys {
		if slices.ContainsFunc(three.Owners(buf[:0], k, 2), func(m Node) bool { return m.Name == "c" }) {
			want++
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return c2.ps.Stats().ReplicasIn == uint64(want)
	}, func() string { return fmt.Sprintf("c received %d copies, want %d", c2.ps.Stats().ReplicasIn, want) })
	if got := a.peers.ReplicaStats().Rebalanced + b.peers.ReplicaStats().Rebalanced - before; got != uint64(want) {
		t.Errorf("rebalances queued %d entries, want %d (one per new holder)", got, want)
	}
}

// waitDialled waits until ps has an open lookup connection to the member
// named. A hedged lookup waits for a dial only while it is young (a slow
// handshake, as under the race detector, sends it to the next holder),
// and these tests need the owner asked.
func waitDialled(t *testing.T, ps *PeerSet, name string) {
	t.Helper()
	testutil.Eventually(t, peerTestTimeout, func() bool {
		p := ps.state.Load().peers[name]
		if p == nil {
			return false
		}
		p.frames.prime()
		p.frames.mu.Lock()
		defer p.frames.mu.Unlock()
		return p.frames.conn != nil && !p.frames.conn.failed()
	}, func() string { return name + "'s lookup connection to open" })
}

// TestLookupHedgesStalledOwner: when a key's owner stalls, a lookup gets
// the entry from the key's next holder after the hedge delay, not the peer
// timeout; the owner, still silent after stallGrace, is paused, and later
// lookups go to the next holder.
func TestLookupHedgesStalledOwner(t *testing.T) {
	clock := testutil.NewClock()
	nodes, _ := startReplicatedCluster(t, clock, 2, "b")
	b := nodes[0]
	stalled := silentPeer(t, nil)
	const timeout = 20 * time.Second // far above any hedge: reaching it fails the test
	asker := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
		Timeout: timeout, IdleConnTimeout: 50 * time.Millisecond, Clock: clock.Now, Replicas: 2})
	defer asker.Close()
	r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: stalled}, b.node())
	asker.Update(nil, r)
	key := keyHeldBy(t, r, "x", "b")
	b.local.st.Set(testEntry(string(key), 10, 0))
	waitDialled(t, asker, "x")

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var f cache.Fetched
	defer f.Release()
	start := time.Now()
	p, found, err := asker.Lookup(ctx, key, &f)
	if err != nil || !found || p.Name() != "b" {
		t.Fatalf("Lookup = %v, %v, %v; want b's entry", p, found, err)
	}
	if d := time.Since(start); d >= timeout/2 {
		t.Fatalf("Lookup waited %v for the stalled owner", d)
	}
	// x never answers that lookup: after the grace it is paused, and b
	// answers for the key.
	testutil.Eventually(t, 5*time.Second, func() bool {
		o, ok := asker.Owner(key)
		return ok && o.Name() == "b"
	}, func() string { return "x, silent, was not paused" })
	p, found, err = asker.Lookup(ctx, key, &f)
	if err != nil || !found || p.Name() != "b" {
		t.Fatalf("second Lookup = %v, %v, %v; want b's entry", p, found, err)
	}
}

// TestLookupHedgesToOwnStore: when this node holds a key after its owner,
// its store is the replica. An owner that stalls costs a lookup the hedge
// delay: if the store holds the key, Lookup gives up on the owner
// (ErrHeldHere, the caller serves from its store) and the owner, still
// silent after the grace, is paused. With nothing stored here the owner's
// answer is awaited, slow or not: a miss is decided (and coalesced) there.
func TestLookupHedgesToOwnStore(t *testing.T) {
	clock := testutil.NewClock()
	const timeout = 20 * time.Second // far above any hedge: reaching it fails the test
	newAsker := func(owner string) (*PeerSet, cache.Store, []byte) {
		st := cache.NewLRU(1 << 20)
		ps := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
			Timeout: timeout, IdleConnTimeout: 50 * time.Millisecond, Clock: clock.Now, Replicas: 2, Store: st})
		t.Cleanup(ps.Close)
		r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: owner})
		ps.Update(nil, r)
		return ps, st, keyHeldBy(t, r, "x", "a")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var f cache.Fetched
	defer f.Release()

	asker, st, key := newAsker(silentPeer(t, nil))
	st.Set(testEntry(string(key), 10, 0))
	waitDialled(t, asker, "x")
	start := time.Now()
	if p, found, err := asker.Lookup(ctx, key, &f); !errors.Is(err, ErrHeldHere) || found {
		t.Fatalf("Lookup = %v, %v, %v; want ErrHeldHere", p, found, err)
	}
	if d := time.Since(start); d >= timeout/2 {
		t.Fatalf("Lookup waited %v for the stalled owner", d)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, ok := asker.Owner(key)
		return !ok // x paused: this node answers for the key
	}, func() string { return "x, silent, was not paused" })

	slow, _ := slowPeer(t, 3*maxHedge)
	asker, _, key = newAsker(slow)
	start = time.Now()
	p, found, err := asker.Lookup(ctx, key, &f)
	if err != nil || found || p == nil || p.Name() != "x" {
		t.Fatalf("Lookup of a key not stored here = %v, %v; want x's miss", found, err)
	}
	if d := time.Since(start); d < 3*maxHedge {
		t.Fatalf("Lookup returned after %v, before the owner answered", d)
	}
}

// TestLookupLateAnswersCount: an owner slower than the first hedge delay
// loses the lookup to this node's copy, but its late answer counts in its
// observed latency, so the hedge delay grows and the next lookup waits for
// the owner; otherwise a member slower than 5 ms would never be asked.
func TestLookupLateAnswersCount(t *testing.T) {
	clock := testutil.NewClock()
	const delay = 30 * time.Millisecond // above minHedge, well under the stall grace
	slow, answered := slowPeer(t, delay)
	st := cache.NewLRU(1 << 20)
	asker := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
		Timeout: peerTestTimeout, IdleConnTimeout: 50 * time.Millisecond, Clock: clock.Now, Replicas: 2, Store: st})
	defer asker.Close()
	r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: slow})
	asker.Update(nil, r)
	key := keyHeldBy(t, r, "x", "a")
	st.Set(testEntry(string(key), 10, 0))
	waitDialled(t, asker, "x")
	x := asker.state.Load().peers["x"]

	var f cache.Fetched
	defer f.Release()
	if _, _, err := asker.Lookup(context.Background(), key, &f); !errors.Is(err, ErrHeldHere) {
		t.Fatalf("first Lookup: %v; want ErrHeldHere (x answers after %v, the hedge delay is %v)", err, delay, x.hedgeDelay())
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return answered.Load() == 1 && x.hedgeDelay() > delay },
		func() string {
			return fmt.Sprintf("x answered %d lookups; hedge delay %v", answered.Load(), x.hedgeDelay())
		})
	p, found, err := asker.Lookup(context.Background(), key, &f)
	if err != nil || found || p.Name() != "x" {
		t.Fatalf("second Lookup = %v, %v; want x's answer (a miss)", found, err)
	}
}

// TestLookupDoesNotWaitForDial: an owner that accepts connections but
// never completes a handshake (a paused process whose lookup connection
// was dropped) costs a lookup the hedge delay, not the dial timeout, when
// the key's next holder — another member or this node — has it: the dial
// goes on in the background.
func TestLookupDoesNotWaitForDial(t *testing.T) {
	clock := testutil.NewClock()
	nodes, _ := startReplicatedCluster(t, clock, 2, "b")
	b := nodes[0]
	// A listener nobody accepts on: the kernel completes the TCP
	// handshake, the TLS one never comes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const timeout = 20 * time.Second
	st := cache.NewLRU(1 << 20)
	asker := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
		Timeout: timeout, IdleConnTimeout: 50 * time.Millisecond, Clock: clock.Now, Replicas: 2, Store: st})
	defer asker.Close()
	r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: ln.Addr().String()}, b.node())
	asker.Update(nil, r) // starts dialling x
	onB := keyHeldBy(t, r, "x", "b")
	b.local.st.Set(testEntry(string(onB), 10, 0))
	here := keyHeldBy(t, r, "x", "a")
	st.Set(testEntry(string(here), 10, 0))

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var f cache.Fetched
	defer f.Release()
	for i := range 3 {
		start := time.Now()
		p, found, err := asker.Lookup(ctx, onB, &f)
		if err != nil || !found || p.Name() != "b" {
			t.Fatalf("Lookup %d = %v, %v, %v; want b's entry", i, p, found, err)
		}
		if _, found, err := asker.Lookup(ctx, here, &f); !errors.Is(err, ErrHeldHere) || found {
			t.Fatalf("Lookup %d of a key held here = %v, %v; want ErrHeldHere", i, found, err)
		}
		if d := time.Since(start); d >= timeout/2 {
			t.Fatalf("Lookups %d waited %v for x's handshake", i, d)
		}
	}
}

// TestLookupOwnerFails: an owner whose lookup fails outright (a crashed
// process resets its connection) leaves the answer to the key's next
// holder, not to the origin: the lookup returns the replica's entry, not
// the owner's error.
func TestLookupOwnerFails(t *testing.T) {
	clock := testutil.NewClock()
	nodes, _ := startReplicatedCluster(t, clock, 2, "b")
	b := nodes[0]
	// An owner that completes the handshake, reads the lookup and hangs up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(ln, testTLS().Server)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			_, _ = c.Read(buf)
			_ = c.Close()
		}
	})
	defer func() { tl.Close(); wg.Wait() }()
	asker := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
		Timeout: peerTestTimeout, IdleConnTimeout: 50 * time.Millisecond, Clock: clock.Now, Replicas: 2})
	defer asker.Close()
	r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: ln.Addr().String()}, b.node())
	asker.Update(nil, r)
	key := keyHeldBy(t, r, "x", "b")
	b.local.st.Set(testEntry(string(key), 10, 0))

	var f cache.Fetched
	defer f.Release()
	p, found, err := asker.Lookup(context.Background(), key, &f)
	if err != nil || !found || p.Name() != "b" {
		t.Fatalf("Lookup = %v, %v; want b's entry", found, err)
	}
}

// delayedProxy relays connections to target, each only after delay: a
// member whose handshakes are slow.
func delayedProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Go(func() {
				time.Sleep(delay) // the slowness is the point
				up, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				track(up)
				wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
				_, _ = io.Copy(c, up)
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestLookupSecondHolderDialling: when the owner stalls and the next
// holder's connection is still being dialled (slowly) at the hedge delay,
// the lookup sends to the next holder once its connection opens, rather
// than waiting out the timeout on the owner.
func TestLookupSecondHolderDialling(t *testing.T) {
	clock := testutil.NewClock()
	nodes, _ := startReplicatedCluster(t, clock, 2, "b")
	b := nodes[0]
	const timeout = 20 * time.Second
	asker := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
		Timeout: timeout, IdleConnTimeout: 50 * time.Millisecond, Clock: clock.Now, Replicas: 2})
	defer asker.Close()
	slowB := Node{Name: "b", Addr: delayedProxy(t, b.addr, 3*dialGrace)}
	r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: silentPeer(t, nil)}, slowB)
	asker.Update(nil, r) // dials both
	key := keyHeldBy(t, r, "x", "b")
	b.local.st.Set(testEntry(string(key), 10, 0))
	waitDialled(t, asker, "x")

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var f cache.Fetched
	defer f.Release()
	start := time.Now()
	p, found, err := asker.Lookup(ctx, key, &f)
	if err != nil || !found || p.Name() != "b" {
		t.Fatalf("Lookup = %v, %v; want b's entry", found, err)
	}
	if d := time.Since(start); d >= timeout/2 {
		t.Fatalf("Lookup waited %v on the stalled owner", d)
	}
}

// slowPeer answers every lookup "missing" after delay, as a loaded but
// healthy owner does.
func slowPeer(t *testing.T, delay time.Duration) (addr string, answered *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	answered = new(atomic.Int64)
	tl := tls.NewListener(ln, testTLS().Server)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				var head [requestHead]byte
				for {
					if _, err := io.ReadFull(c, head[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint32(head[0:4]) - (requestHead - 4)
					if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
						return
					}
					time.Sleep(delay) // the slowness is the point
					var out [responseHead]byte
					binary.BigEndian.PutUint32(out[0:4], responseHead-4)
					copy(out[4:8], head[4:8])
					out[8] = statusMissing
					binary.BigEndian.PutUint64(out[9:17], uint64(time.Now().UnixNano()))
					if _, err := c.Write(out[:]); err != nil {
						return
					}
					answered.Add(1)
				}
			})
		}
	})
	t.Cleanup(func() { tl.Close(); wg.Wait() })
	return ln.Addr().String(), answered
}

// TestLookupSlowOwnerNotPaused: an owner slower than the hedge delay but
// answering is not paused when the next holder answers first: its keys'
// misses must still go to it, or they would be fetched twice.
func TestLookupSlowOwnerNotPaused(t *testing.T) {
	clock := testutil.NewClock()
	nodes, _ := startReplicatedCluster(t, clock, 2, "b")
	b := nodes[0]
	slow, answered := slowPeer(t, 30*time.Millisecond)
	asker := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
		Timeout: 10 * time.Second, IdleConnTimeout: 50 * time.Millisecond, Clock: clock.Now, Replicas: 2})
	defer asker.Close()
	r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: slow}, b.node())
	asker.Update(nil, r)
	key := keyHeldBy(t, r, "x", "b")
	b.local.st.Set(testEntry(string(key), 10, 0))
	waitDialled(t, asker, "x")

	var f cache.Fetched
	defer f.Release()
	start := time.Now()
	if _, _, err := asker.Lookup(context.Background(), key, &f); err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return answered.Load() == 1 }, func() string { return "x never answered" })
	// Past the grace the orphaned answer had, x must still own the key.
	for time.Since(start) < 3*asker.timeout/stallShare {
		if o, ok := asker.Owner(key); !ok || o.Name() != "x" {
			t.Fatalf("Owner = %v, %v: a slow but answering owner was paused", o, ok)
		}
		time.Sleep(10 * time.Millisecond) // polling a property that must hold throughout
	}
}

// TestFlush: Flush returns once queued copies were sent, and false when
// its context ends first (a member that does not answer).
func TestFlush(t *testing.T) {
	nodes, r := startReplicatedCluster(t, testutil.NewClock(), 2, "a", "b")
	fill(t, nodes, r, 50)
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if !n.peers.Flush(ctx) {
			t.Fatalf("%s: Flush timed out", n.name)
		}
		cancel()
		if s := n.peers.ReplicaStats(); s.Sent != s.Queued {
			t.Fatalf("%s: Flush returned with %d of %d sent", n.name, s.Sent, s.Queued)
		}
	}

	stalled := silentPeer(t, nil)
	ps := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
		Timeout: 20 * time.Second, IdleConnTimeout: 50 * time.Millisecond, Clock: testutil.NewClock().Now, Replicas: 2})
	defer ps.Close()
	ps.Update(nil, newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: stalled}))
	ps.Stored(testEntry("example.com/f", 10, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if ps.Flush(ctx) {
		t.Fatal("Flush reported a copy to a silent member sent")
	}
}
