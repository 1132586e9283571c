package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/cache"
)

// Replication: each entry lives on its key's first Replicas members of the
// preference list (Ring.Owners) — the owner, then the members that own the
// key should the ones before them go — so a crash promotes a member that
// already holds the copy. The member that stores an entry pushes copies to
// the others (Stored), asynchronously and in batches; after a membership
// change every member pushes the entries whose holders changed to the new
// holders (Rebalance); reads go to the first holder that answers (Lookup),
// asking the next when the first is slow.

// MaxReplicas bounds PeerOptions.Replicas: copies of an entry, the owner's
// included.
const MaxReplicas = 3

const (
	// maxReplicaQueue bounds the bytes of entries waiting to be copied to
	// one member; past it, copies of new fills are dropped (counted): the
	// member is slow or gone, and the fills are on their owner anyway.
	maxReplicaQueue = 64 << 20
	// minHedge and maxHedge bound how long a lookup waits for a key's
	// first holder before asking the next one too.
	minHedge = 5 * time.Millisecond
	maxHedge = 100 * time.Millisecond
	// stallShare: a holder whose lookup lost to the next holder's has
	// this share of the peer timeout (250 ms of the default 2 s) to
	// answer it before it is paused (passive health), its requests going
	// to the next holder until a probe finds it back. Tied to the timeout
	// because both say how slow a member may be and still count as up.
	stallShare = 8
)

// errSlow: a member left a lookup unanswered for its stall grace after
// another member answered it.
var errSlow = errors.New("peer did not answer a lookup another member answered")

// ErrHeldHere is Lookup's answer when the key's owner has not answered
// within the hedge delay and this node, the key's next holder, stores an
// unexpired entry for it: the caller serves the request from its own
// store, as it would had the owner failed.
var ErrHeldHere = errors.New("owner did not answer within the hedge delay; this node holds the key next")

// Owner returns the member that should answer key now: the first of its
// preference list that is not paused by passive health — its owner, or,
// while the owner is unreachable, the replica that would own the key next
// and holds its copy. ok is false when this node comes first (it holds or
// fills the key itself), or no member is available. It allocates nothing.
func (s *PeerSet) Owner(key []byte) (Peer, bool) {
	st := s.state.Load()
	if st.cur == nil {
		return nil, false
	}
	h := s.holders(st, key)
	defer s.holderBufs.Put(h)
	for _, n := range *h {
		if n.Name == s.self {
			return nil, false
		}
		if p := st.peers[n.Name]; p != nil && p.health.Available() {
			return p, true
		}
	}
	return nil, false
}

// holders returns key's preference list on st's ring, in a pooled buffer
// to Put back: a buffer handed to the Ring interface would escape.
func (s *PeerSet) holders(st *peerState, key []byte) *[]Node {
	h := s.holderBufs.Get().(*[]Node)
	*h = st.cur.Owners((*h)[:0], cache.PrimaryKey(key), s.replicas)
	return h
}

// Lookup asks key's first available holder (see Owner) for its entry, as
// Peer.Get does, and returns the member that answered. When that member has
// not answered within a delay derived from its observed latency ("The
// Tail at Scale"), the next holder is asked too and the first answer
// wins; the slow member is paused (passive health), so the next requests
// go to the next holder while a probe finds out whether it is back. When
// this node is that next holder, its own store is the replica: if it holds
// the key, Lookup gives up on the owner after the hedge delay and returns
// ErrHeldHere. A holder that fails outright (a crash resets its
// connection) leaves the answer to the other. A lookup therefore never
// waits on a paused or dead owner past the hedge delay, when a replica is
// there to ask.
func (s *PeerSet) Lookup(ctx context.Context, key []byte, f *cache.Fetched) (Peer, bool, error) {
	f.Release() // a previous fetch's entry is done with
	st := s.state.Load()
	if st.cur == nil {
		return nil, false, nil
	}
	var holders [MaxReplicas]*peer
	n := 0
	selfNext := false // this node holds the key after the holders found
	h := s.holders(st, key)
	for _, m := range *h {
		if m.Name == s.self {
			selfNext = true
			break // this node holds the key after those before it
		}
		if p := st.peers[m.Name]; p != nil && p.health.Available() {
			holders[n] = p
			n++
		}
	}
	s.holderBufs.Put(h)
	if n == 0 {
		return nil, false, nil
	}
	first, next := holders[0], holders[1] // next: nil when this node or nobody holds the key next
	if next == nil && (!selfNext || s.store == nil) {
		found, err := first.Get(ctx, key, f) // no other holder: the owner's answer it is
		return first, found, err
	}
	// The lookup is hedged: it does not wait long for the owner's dial,
	// and the owner has the hedge delay to answer.
	cl1, err := first.frames.startGet(ctx, key, int64(f.Max), true)
	if err != nil {
		_, err = first.finishGet(ctx, nil, err, f)
		return s.instead(ctx, key, f, first, err, next)
	}
	t := s.timer(first.hedgeDelay())
	select {
	case <-cl1.done:
		s.putTimer(t)
		found, err := first.finishGet(ctx, cl1, cl1.err, f)
		if err != nil {
			return s.instead(ctx, key, f, first, err, next)
		}
		return first, found, nil
	case <-t.C:
		s.putTimer(t)
	}
	if next != nil {
		return s.race(ctx, key, f, first, cl1, next)
	}
	// The next holder is this node: its store answers at once.
	if s.heldHere(key) {
		// As when another holder answers first: slower is not down, so
		// the owner is paused only if it stays silent.
		cl1.orphan(first.stallGrace(), first.stalled, first.observed)
		return first, false, ErrHeldHere
	}
	// Nothing here: the owner's answer, or its miss, is the one that
	// counts (a miss coalesces there).
	err = cl1.wait(ctx, s.timeout)
	found, err := first.finishGet(ctx, cl1, err, f)
	return first, found, err
}

// instead answers a lookup whose first holder failed with err (or is
// still being dialled): from next, or, when next is nil, from this node,
// which holds the key next.
func (s *PeerSet) instead(ctx context.Context, key []byte, f *cache.Fetched, first *peer, err error, next *peer) (Peer, bool, error) {
	switch {
	case next != nil:
		found, err := next.Get(ctx, key, f)
		return next, found, err
	case s.heldHere(key):
		return first, false, ErrHeldHere
	case errors.Is(err, errFramesDialing):
		// Nothing here: wait for the owner after all.
		found, err := first.Get(ctx, key, f)
		return first, found, err
	}
	return first, false, err
}

// race waits for the first of two holders' answers to a lookup: cl1, sent
// to first, and one to second, sent now (or once its connection is open).
// A holder that fails leaves the answer to the other; a slow first holder
// is paused if it still has not answered its stall grace after the
// second did.
func (s *PeerSet) race(ctx context.Context, key []byte, f *cache.Fetched, first *peer, cl1 *call, second *peer) (Peer, bool, error) {
	var cl2 *call
	var done2 chan struct{}  // cl2's; nil once it failed, or before it was sent
	var dialed chan struct{} // second's dial in flight, once it ends: send then
	var err2 error
	send2 := func() {
		for range 3 { // a dial that ended is followed by an open connection or a failure
			cl2, err2 = second.frames.startGet(ctx, key, int64(f.Max), true)
			if !errors.Is(err2, errFramesDialing) {
				break
			}
			if dialed = second.frames.dialDone(); dialed != nil {
				return
			}
		}
		if err2 != nil {
			_, err2 = second.finishGet(ctx, nil, err2, f)
			return
		}
		done2 = cl2.done
	}
	send2()
	done1 := cl1.done // nil once cl1 failed
	t := s.timer(s.timeout)
	defer s.putTimer(t)
	for {
		select {
		case <-done1:
			if cl1.err != nil && (done2 != nil || dialed != nil) {
				first.finishGet(ctx, cl1, cl1.err, f) // records the failure, releases the call
				done1 = nil
				continue
			}
			if done2 != nil {
				cl2.orphan(s.timeout/stallShare, nil, second.observed)
			}
			found, err := first.finishGet(ctx, cl1, cl1.err, f)
			return first, found, err
		case <-dialed:
			dialed = nil
			send2()
			if done1 == nil && done2 == nil && dialed == nil {
				return second, false, err2 // both failed
			}
		case <-done2:
			if cl2.err != nil && done1 != nil {
				second.finishGet(ctx, cl2, cl2.err, f)
				done2 = nil
				continue
			}
			if done1 != nil {
				// Slower is not down: a loaded owner still owns the key,
				// and sending its requests elsewhere would fetch its
				// misses twice. Only an owner that still has not answered
				// after its stall grace is paused.
				cl1.orphan(first.stallGrace(), first.stalled, first.observed)
			}
			found, err := second.finishGet(ctx, cl2, cl2.err, f)
			return second, found, err
		case <-t.C:
			return second, false, abandonLookups(ctx, f, errFramesTimeout, first, cl1, done1, second, cl2, done2)
		case <-ctx.Done():
			return second, false, abandonLookups(ctx, f, ctx.Err(), first, cl1, done1, second, cl2, done2)
		}
	}
}

// abandonLookups gives up the calls of a hedged lookup still waiting
// (done not nil) for why, and returns the error of the last.
func abandonLookups(ctx context.Context, f *cache.Fetched, why error, p1 *peer, cl1 *call, done1 chan struct{}, p2 *peer, cl2 *call, done2 chan struct{}) error {
	err := why
	if done1 != nil {
		cl1.abandon(why)
		_, err = p1.finishGet(ctx, cl1, why, f) // releases the call
	}
	if done2 != nil {
		cl2.abandon(why)
		_, err = p2.finishGet(ctx, cl2, why, f)
	}
	return err
}

// heldHere reports whether this node's store holds an unexpired entry
// under key.
func (s *PeerSet) heldHere(key []byte) bool {
	e, ok := s.store.Get(key)
	return ok && !e.Expired(s.now().UnixNano())
}

// timer returns a stopped timer, reset to d, from a pool: a hedged lookup
// allocates none.
func (s *PeerSet) timer(d time.Duration) *time.Timer {
	t := s.timers.Get().(*time.Timer)
	t.Reset(d)
	return t
}

func (s *PeerSet) putTimer(t *time.Timer) {
	t.Stop()
	s.timers.Put(t)
}

// observe folds an answered call's latency into the peer's average.
func (p *peer) observe(cl *call) { p.observed(time.Since(cl.sent)) }

// observed folds one answer's latency into the peer's average: answers
// that lost a hedged lookup count too, or a member slower than the hedge
// delay would keep its estimate, and so the delay, too low to ever win.
func (p *peer) observed(latency time.Duration) {
	d := int64(latency)
	for {
		old := p.latency.Load()
		next := d
		if old != 0 {
			next = old - old/8 + d/8
		}
		if p.latency.CompareAndSwap(old, next) {
			return
		}
	}
}

// stallGrace is how long the peer has to answer a lookup another member
// answered before it counts as stalled: a share of the peer timeout, or
// far above its usual latency when that is high (a loaded member is slow,
// not down).
func (p *peer) stallGrace() time.Duration {
	return max(p.set.timeout/stallShare, 32*time.Duration(p.latency.Load()))
}

// stalled pauses a peer that left a lookup unanswered for stallGrace.
func (p *peer) stalled() { p.failed(errSlow) }

// hedgeDelay is how long a lookup waits for the peer before asking the
// next holder too: well above its usual answer, bounded both ways.
func (p *peer) hedgeDelay() time.Duration {
	return min(max(8*time.Duration(p.latency.Load()), minHedge), maxHedge)
}

// Stored copies an entry this node just stored to the other members
// holding its key (its replicas, or the owner when this node filled for
// it), in the background. With Replicas 1 it does nothing.
func (s *PeerSet) Stored(e *cache.Entry) {
	if s.replicas <= 1 || !e.Transferable() {
		return
	}
	st := s.state.Load()
	if st.cur == nil {
		return
	}
	h := s.holders(st, e.Key())
	for _, m := range *h {
		if m.Name == s.self {
			continue
		}
		if p := st.peers[m.Name]; p != nil {
			p.copies.add(e, false)
		}
	}
	s.holderBufs.Put(h)
}

// ReplicaStats are counters of the copies this node sends.
type ReplicaStats struct {
	Queued   uint64        // entries queued for other members
	Sent     uint64        // entries sent
	Accepted uint64        // entries the receivers kept
	Dropped  uint64        // entries dropped: the queue was full
	Failed   uint64        // entries in batches that could not be delivered
	Lag      time.Duration // the last batch's oldest entry: from queued to kept
	// Rebalanced counts entries queued by rebalances after membership
	// changes (they are in Queued too).
	Rebalanced uint64
	// Rebalancing is true while a rebalance is queueing entries.
	Rebalancing bool
	// Members is the size of the ring the copies follow.
	Members int
}

// ReplicaStats returns the counters summed over members.
func (s *PeerSet) ReplicaStats() ReplicaStats {
	st := s.state.Load()
	r := ReplicaStats{Rebalanced: s.rebalanced.Load(), Rebalancing: s.rebalancing.Load() > 0}
	if st.cur != nil {
		r.Members = len(st.cur.Members())
	}
	for _, p := range st.peers {
		c := &p.copies
		r.Queued += c.queued.Load()
		r.Sent += c.sent.Load()
		r.Accepted += c.accepted.Load()
		r.Dropped += c.dropped.Load()
		r.Failed += c.failed.Load()
		r.Lag = max(r.Lag, time.Duration(c.lag.Load()))
	}
	return r
}

// Flush waits until the copies queued so far were sent (delivered or
// failed) or ctx ends, and reports whether they were. A member leaving
// gracefully flushes: with replicas, the copies are its handoff.
func (s *PeerSet) Flush(ctx context.Context) bool {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := false
		for _, p := range s.state.Load().peers {
			c := &p.copies
			c.mu.Lock()
			pending = pending || c.bytes > 0
			c.mu.Unlock()
		}
		if !pending {
			return true
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}

// copier sends one member the entries it should hold: a queue bounded in
// bytes, drained by one goroutine in batches of up to HandoffBatchBytes,
// one batch in flight.
type copier struct {
	p *peer

	mu      sync.Mutex
	queue   []queued
	bytes   int64
	running bool
	space   *sync.Cond // signalled when the queue drains (rebalance waits on it)
	wake    chan struct{}
	stop    chan struct{}
	stopped bool

	queued, sent, accepted, dropped, failed atomic.Uint64
	lag                                     atomic.Int64 // nanoseconds
}

type queued struct {
	e  *cache.Entry
	at time.Time
}

func (c *copier) init(p *peer) {
	c.p = p
	c.space = sync.NewCond(&c.mu)
	c.wake = make(chan struct{}, 1)
	c.stop = make(chan struct{})
}

// add queues e. With wait it waits for room (a rebalance pacing itself);
// without, a full queue drops e.
func (c *copier) add(e *cache.Entry, wait bool) bool {
	size := int64(e.Size())
	c.mu.Lock()
	for c.bytes+size > maxReplicaQueue && len(c.queue) > 0 && !c.stopped {
		if !wait {
			c.mu.Unlock()
			c.dropped.Add(1)
			return false
		}
		c.space.Wait()
	}
	if c.stopped {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, queued{e, time.Now()})
	c.bytes += size
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	c.queued.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// close stops the copier; what is queued is dropped.
func (c *copier) close() {
	c.mu.Lock()
	if !c.stopped {
		c.stopped = true
		close(c.stop)
		c.space.Broadcast()
	}
	c.mu.Unlock()
}

func (c *copier) run() {
	var batch []byte
	var spare []queued
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		for {
			c.mu.Lock()
			q := c.queue
			c.queue, spare = spare[:0], nil
			c.mu.Unlock()
			if len(q) == 0 {
				break
			}
			for start := 0; start < len(q); {
				batch = batch[:0]
				end := start
				for end < len(q) && (end == start || len(batch)+q[end].e.EncodedSize() <= HandoffBatchBytes) {
					batch = binary.AppendUvarint(batch, uint64(q[end].e.EncodedSize()))
					batch = q[end].e.AppendBinary(batch)
					end++
				}
				c.send(batch, q[start:end])
				start = end
			}
			c.mu.Lock()
			for _, x := range q {
				c.bytes -= int64(x.e.Size())
			}
			c.space.Broadcast()
			c.mu.Unlock()
			clear(q)
			spare = q[:0]
			if cap(batch) > 4*HandoffBatchBytes {
				batch = nil
			}
		}
	}
}

// send delivers one batch; a failure is counted, not retried: the copies
// are on their owner, and the next rebalance sends what is missing.
func (c *copier) send(batch []byte, entries []queued) {
	ctx, cancel := context.WithTimeout(context.Background(), c.p.set.timeout)
	defer cancel()
	accepted, _, err := c.p.frames.put(ctx, c.p.set.now().UnixNano(), batch)
	c.sent.Add(uint64(len(entries)))
	if err != nil {
		c.failed.Add(uint64(len(entries)))
		return
	}
	c.accepted.Add(uint64(accepted))
	c.lag.Store(int64(time.Since(entries[0].at)))
}

// DefaultRebalanceRate paces Rebalance: bytes of entries queued per
// second, so that a membership change does not flood the network or the
// receivers while they serve.
const DefaultRebalanceRate = 64 << 20

// Rebalance queues, after a membership change from old to next, the
// entries of st whose holders changed for their new holders: the member
// that joined (or came back under its name) gets the entries it now owns
// or copies, and a key that lost a holder gets a copy on the member that
// replaces it. Each entry is sent once, by the first of its old holders
// still in the ring, so the others need not coordinate. Keys follow their
// owner through any sequence of changes, not just one. It paces itself at
// rate bytes per second (<= 0: DefaultRebalanceRate), stops when ctx ends
// (a newer change starts its own), and returns the entries it queued.
func (s *PeerSet) Rebalance(ctx context.Context, st cache.Store, old, next Ring, rate int64) int {
	if old == nil || next == nil {
		return 0
	}
	if rate <= 0 {
		rate = DefaultRebalanceRate
	}
	in := make(map[string]bool, len(next.Members()))
	for _, m := range next.Members() {
		in[m.Name] = true
	}
	peers := s.state.Load().peers
	start, sent := time.Now(), int64(0)
	now := s.now().UnixNano()
	var ob, nb [MaxReplicas]Node
	queued := 0
	st.Range(func(e *cache.Entry) bool {
		if ctx.Err() != nil {
			return false
		}
		if !e.Transferable() || e.Expired(now) {
			return true
		}
		pk := cache.PrimaryKey(e.Key())
		oldH := old.Owners(ob[:0], pk, s.replicas)
		sender := ""
		for _, h := range oldH {
			if in[h.Name] {
				sender = h.Name
				break
			}
		}
		if sender != s.self {
			return true
		}
		for _, h := range next.Owners(nb[:0], pk, s.replicas) {
			if h.Name == s.self || contains(oldH, h.Name) {
				continue
			}
			if p := peers[h.Name]; p != nil && p.copies.add(e, true) {
				queued++
				sent += int64(e.Size())
			}
		}
		// Pace: never ahead of rate.
		if ahead := time.Duration(float64(sent)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 10*time.Millisecond {
			select {
			case <-time.After(ahead):
			case <-ctx.Done():
				return false
			}
		}
		return true
	})
	return queued
}
