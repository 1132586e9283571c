package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/ringcache/ringcache/internal/opt"
)

// PeerTag is the serf tag carrying a member's peer HTTP address. Members
// without it are gossiped with but own no keys.
const PeerTag = "peer"

// Defaults for Options' zero values.
const (
	DefaultBindAddr    = "0.0.0.0:7946" // serf's own default port
	DefaultCoalesce    = 100 * time.Millisecond
	DefaultCoalesceMax = time.Second
)

const (
	// eventBuffer is the capacity of the channel serf delivers events on.
	// serf blocks its own state updates while it cannot send, so the loop
	// drains promptly and the buffer only absorbs bursts.
	eventBuffer = 256

	joinBackoffMin = 200 * time.Millisecond
	joinBackoffMax = 5 * time.Second
)

// Options configures a Membership. Zero values mean "use the default".
type Options struct {
	// NodeName is this node's unique name in the cluster. Required.
	NodeName string
	// BindAddr is the host:port serf/memberlist listen on (TCP and UDP).
	// Port 0 picks a free port; GossipAddr reports it. Default DefaultBindAddr.
	BindAddr string
	// AdvertiseAddr is the host:port other members should use to reach this
	// node, when it differs from BindAddr (NAT, 0.0.0.0). Optional.
	AdvertiseAddr string
	// PeerAddr is this node's peer HTTP address (host:port), published in
	// the PeerTag tag. Required: a node without it could own no keys.
	PeerAddr string
	// Join lists gossip addresses of any existing members. Start returns at
	// once; joining runs in the background, retried with exponential backoff
	// (200ms doubling to 5s) until one answers or ctx is done, so nodes that
	// start together still form one cluster. Entries equal to this node's
	// own gossip address are skipped. Empty: this node starts a cluster.
	Join []string
	// GossipKey encrypts and authenticates gossip (AES-GCM, 16, 24 or 32
	// bytes). Required: plaintext gossip would let any host that reaches
	// the port join, take a share of the ring and receive users' requests.
	// Every member must use the same key; GossipKeyFromSecret derives one
	// from the peer secret.
	GossipKey []byte
	// RingKind is passed to NewRing ("" means KindHashRing).
	RingKind string
	// VNodes is passed to NewRing (0 means DefaultVNodes).
	VNodes int
	// Coalesce is the quiet period that batches a burst of member events
	// into one ring rebuild. Default DefaultCoalesce.
	Coalesce time.Duration
	// CoalesceMax caps how long a steady stream of events can delay a
	// rebuild. Default DefaultCoalesceMax; raised to Coalesce if smaller.
	CoalesceMax time.Duration
	// Logger receives membership logs, and serf's and memberlist's own logs
	// at debug level. nil discards.
	Logger *slog.Logger
	// Tune, if set, is called last on the serf config before serf starts;
	// tests use it to shrink gossip and probe timers.
	Tune func(*serf.Config)
}

// Member is one entry of the gossip member list.
type Member struct {
	Name       string
	GossipAddr string // host:port serf gossips with
	PeerAddr   string // from PeerTag; "" when the member has none
	Status     string // alive | leaving | left | failed
}

// MembershipStats are cumulative counters since Start, except where noted.
type MembershipStats struct {
	MemberJoin    uint64 // members reported by serf events, per type
	MemberLeave   uint64
	MemberFailed  uint64
	MemberUpdate  uint64
	MemberReap    uint64
	UserEvents    uint64 // serf user events (ignored)
	Queries       uint64 // serf queries (ignored, left to time out)
	UnknownEvents uint64 // events of a type we do not know (dropped)

	RingRebuilds   uint64 // rings built and swapped in, the initial one included
	RingUnchanged  uint64 // coalesced rebuilds whose node set was unchanged (no swap)
	RingErrors     uint64 // rebuilds that failed (ring kept)
	ListenerPanics uint64 // OnChange listeners that panicked (recovered)
	// MembersWithoutPeer counts alive members left out of the last rebuild
	// for lacking a PeerTag (a gauge, not cumulative).
	MembersWithoutPeer uint64

	JoinAttempts uint64 // calls to serf Join
	JoinFailures uint64 // calls that reached no member
	Joined       bool   // a background join has succeeded
}

// Membership runs serf for this node and keeps the current Ring.
type Membership struct {
	log      *slog.Logger
	serf     *serf.Serf
	members  func() []serf.Member // serf.Members; replaced in loop tests
	events   chan serf.Event
	self     Node
	gossip   string
	kind     string
	vnodes   int
	coalesce time.Duration
	quantum  time.Duration

	ring atomic.Pointer[ringRef]

	mu           sync.Mutex // guards listeners and stopCtxWatch
	listeners    []func(old, new Ring)
	stopCtxWatch func() bool

	stats struct {
		join, leave, failed, update, reap atomic.Uint64
		user, query, unknown              atomic.Uint64
		rebuilds, unchanged, ringErrors   atomic.Uint64
		panics, withoutPeer               atomic.Uint64
		joinAttempts, joinFailures        atomic.Uint64
		joined                            atomic.Bool
	}

	stop         chan struct{} // closed by Shutdown after serf is down
	cancelJoin   context.CancelFunc
	shutdownOnce sync.Once
	shutdownErr  error
	wg           sync.WaitGroup // event loop and joiner
}

// ringRef boxes a Ring so it can sit behind an atomic.Pointer.
type ringRef struct{ Ring }

// Start validates o, starts serf and the event loop, and begins joining
// o.Join in the background. The returned Membership's ring holds only this
// node until gossip brings others. Cancelling ctx shuts the Membership down
// without a leave, like Shutdown.
func Start(ctx context.Context, o Options) (*Membership, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("membership %s: %w", o.NodeName, err)
	}
	conf, err := o.serfConfig()
	if err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", o.NodeName)
	m := newMembership(o, logger)
	conf.EventCh = m.events
	// serf and memberlist each take a *log.Logger; they must not be given
	// both Logger and LogOutput, so only Logger is set.
	std := log.New(logWriter{logger}, "", 0)
	conf.Logger = std
	conf.LogOutput = nil
	conf.MemberlistConfig.Logger = std
	conf.MemberlistConfig.LogOutput = nil
	if o.Tune != nil {
		o.Tune(conf)
	}

	ml := conf.MemberlistConfig
	bind := net.JoinHostPort(ml.BindAddr, strconv.Itoa(ml.BindPort))
	if err := checkBindable(ml.BindAddr, ml.BindPort); err != nil {
		return nil, fmt.Errorf("membership %s: %w", o.NodeName, err)
	}
	s, err := serf.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("membership %s: start serf on %s: %w", o.NodeName, bind, err)
	}
	m.serf = s
	m.members = s.Members
	m.gossip = s.Memberlist().LocalNode().Address()
	m.rebuild() // self only, so Ring is never nil

	m.wg.Add(1)
	go m.loop()

	joinCtx, cancel := context.WithCancel(ctx)
	m.cancelJoin = cancel
	if seeds := m.seeds(o.Join); len(seeds) > 0 {
		m.wg.Add(1)
		go m.joinLoop(joinCtx, seeds)
	}
	// Cancelling ctx is a shutdown without leave; Shutdown unregisters this.
	m.mu.Lock()
	m.stopCtxWatch = context.AfterFunc(ctx, func() { _ = m.Shutdown() })
	m.mu.Unlock()
	logger.Info("membership started", "gossip", m.gossip, "peer", m.self.Addr, "ring", m.kind)
	return m, nil
}

// newMembership sets up everything but serf, so loop tests can drive the
// event loop with a fake member source.
func newMembership(o Options, logger *slog.Logger) *Membership {
	m := &Membership{
		log:      logger,
		events:   make(chan serf.Event, eventBuffer),
		self:     Node{Name: o.NodeName, Addr: o.PeerAddr},
		kind:     o.RingKind,
		vnodes:   o.VNodes,
		coalesce: opt.Or(o.Coalesce, DefaultCoalesce),
		quantum:  opt.Or(o.CoalesceMax, DefaultCoalesceMax),
		stop:     make(chan struct{}),
	}
	m.quantum = max(m.quantum, m.coalesce)
	return m
}

// serfConfig checks o and turns it into a serf config (without EventCh,
// loggers or Tune).
func (o Options) serfConfig() (*serf.Config, error) {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("node name is required"))
	}
	if _, _, err := net.SplitHostPort(o.PeerAddr); err != nil {
		errs = append(errs, fmt.Errorf("peer address %q must be host:port: %w", o.PeerAddr, err))
	}
	bind := o.BindAddr
	if bind == "" {
		bind = DefaultBindAddr
	}
	bindHost, bindPort, err := splitHostPort(bind)
	if bindHost == "" {
		bindHost = "0.0.0.0"
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("bind address: %w", err))
	} else if net.ParseIP(bindHost) == nil {
		// memberlist would silently bind every interface for a host name.
		errs = append(errs, fmt.Errorf("bind address %q: host must be an IP address", bind))
	}
	var advHost string
	var advPort int
	if o.AdvertiseAddr != "" {
		if advHost, advPort, err = splitHostPort(o.AdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("advertise address: %w", err))
		} else if net.ParseIP(advHost) == nil || advPort == 0 {
			errs = append(errs, fmt.Errorf("advertise address %q needs an IP address and a non-zero port", o.AdvertiseAddr))
		}
	}
	switch len(o.GossipKey) {
	case 16, 24, 32:
	case 0:
		errs = append(errs, errors.New("gossip key is required: gossip is never plaintext"))
	default:
		errs = append(errs, fmt.Errorf("gossip key must be 16, 24 or 32 bytes (got %d)", len(o.GossipKey)))
	}
	if _, err := NewRing(o.RingKind, nil, o.VNodes); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("membership options: %w", err)
	}

	conf := serf.DefaultConfig()
	conf.NodeName = o.NodeName
	conf.Tags = map[string]string{PeerTag: o.PeerAddr}
	ml := conf.MemberlistConfig
	ml.BindAddr = bindHost
	ml.BindPort = bindPort
	ml.AdvertisePort = bindPort
	if advHost != "" {
		ml.AdvertiseAddr = advHost
		ml.AdvertisePort = advPort
	}
	ml.SecretKey = slices.Clone(o.GossipKey)
	// Refuse unencrypted messages both ways (memberlist's defaults, made
	// explicit: a member that accepted plaintext could be joined by anyone).
	ml.GossipVerifyIncoming, ml.GossipVerifyOutgoing = true, true
	return conf, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q must be host:port: %w", addr, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q has a bad port: %w", addr, err)
	}
	return host, int(port), nil
}

// checkBindable reports a busy fixed gossip port before serf starts:
// serf.Create leaks a goroutine when memberlist then fails to bind
// (hashicorp/serf#521). A port taken in between still fails in Create.
func checkBindable(host string, port int) error {
	if port == 0 {
		return nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gossip address %s: %w", addr, err)
	}
	defer l.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("gossip address %s: %w", addr, err)
	}
	return pc.Close()
}

// seeds drops this node's own address from join, so a static seed list
// shared by every node does not make a node "join" itself and stop trying.
func (m *Membership) seeds(join []string) []string {
	out := make([]string, 0, len(join))
	for _, a := range join {
		if a != "" && a != m.gossip {
			out = append(out, a)
		}
	}
	return out
}

// Ring returns the current ring without locking. It holds the alive members
// that publish a peer address, and always this node.
func (m *Membership) Ring() Ring { return m.ring.Load().Ring }

// Members returns serf's member list (every status), sorted by name.
func (m *Membership) Members() []Member {
	sm := m.members()
	out := make([]Member, 0, len(sm))
	for _, s := range sm {
		out = append(out, Member{
			Name:       s.Name,
			GossipAddr: net.JoinHostPort(s.Addr.String(), strconv.Itoa(int(s.Port))),
			PeerAddr:   s.Tags[PeerTag],
			Status:     s.Status.String(),
		})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Self returns this node as the ring sees it.
func (m *Membership) Self() Node { return m.self }

// GossipAddr returns the host:port other members reach this node's gossip
// on: the advertised address, with the port actually bound when BindAddr
// asked for port 0.
func (m *Membership) GossipAddr() string { return m.gossip }

// OnChange registers fn to be called after each ring swap with the previous
// and the new ring. Listeners run in registration order on the event loop
// goroutine, outside any lock; a slow listener delays later rebuilds (serf
// itself is not blocked). A panic is recovered and logged. fn must not call
// Shutdown.
func (m *Membership) OnChange(fn func(old, new Ring)) {
	m.mu.Lock()
	m.listeners = append(m.listeners, fn)
	m.mu.Unlock()
}

// Leave broadcasts a graceful leave so others drop this node at once rather
// than after failure detection. It blocks while the leave goes out and
// propagates (serf's BroadcastTimeout and LeavePropagateDelay, about a
// second by default); call Shutdown afterwards.
func (m *Membership) Leave() error {
	if err := m.serf.Leave(); err != nil {
		return fmt.Errorf("membership %s: leave: %w", m.self.Name, err)
	}
	return nil
}

// Shutdown stops serf without a leave (others will see this node fail),
// then the event loop and any pending join. It waits for them and is safe
// to call more than once.
func (m *Membership) Shutdown() error {
	m.shutdownOnce.Do(func() {
		m.mu.Lock()
		stopWatch := m.stopCtxWatch
		m.mu.Unlock()
		if stopWatch != nil {
			stopWatch()
		}
		if m.cancelJoin != nil {
			m.cancelJoin()
		}
		// serf goes first while the loop still drains: serf's senders block
		// on a full EventCh and would never see their shutdown otherwise.
		if m.serf != nil {
			if err := m.serf.Shutdown(); err != nil {
				m.shutdownErr = fmt.Errorf("membership %s: shutdown serf: %w", m.self.Name, err)
			}
		}
		close(m.stop)
	})
	m.wg.Wait()
	return m.shutdownErr
}

// Stats returns a snapshot of the counters.
func (m *Membership) Stats() MembershipStats {
	s := &m.stats
	return MembershipStats{
		MemberJoin:         s.join.Load(),
		MemberLeave:        s.leave.Load(),
		MemberFailed:       s.failed.Load(),
		MemberUpdate:       s.update.Load(),
		MemberReap:         s.reap.Load(),
		UserEvents:         s.user.Load(),
		Queries:            s.query.Load(),
		UnknownEvents:      s.unknown.Load(),
		RingRebuilds:       s.rebuilds.Load(),
		RingUnchanged:      s.unchanged.Load(),
		RingErrors:         s.ringErrors.Load(),
		ListenerPanics:     s.panics.Load(),
		MembersWithoutPeer: s.withoutPeer.Load(),
		JoinAttempts:       s.joinAttempts.Load(),
		JoinFailures:       s.joinFailures.Load(),
		Joined:             s.joined.Load(),
	}
}

// loop owns the event channel. Member events restart a quiet timer; when
// it fires (or the quantum since the first pending event runs out) the ring
// is rebuilt once from a full member snapshot, like serf's coalesceLoop.
func (m *Membership) loop() {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pendingSince time.Time // zero: nothing pending
	for {
		select {
		case e := <-m.events:
			if !m.count(e) {
				continue
			}
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			// Wait for quiet, but never past the quantum.
			wait := min(m.coalesce, m.quantum-now.Sub(pendingSince))
			timer.Reset(max(wait, 0))
		case <-timer.C:
			pendingSince = time.Time{}
			m.rebuild()
		case <-m.stop:
			m.drain()
			return
		}
	}
}

// drain discards what serf sent while shutting down.
func (m *Membership) drain() {
	for range len(m.events) {
		<-m.events
	}
}

// count records e and reports whether it may change the ring.
func (m *Membership) count(e serf.Event) bool {
	s := &m.stats
	switch e := e.(type) {
	case serf.MemberEvent:
		n := uint64(len(e.Members))
		switch e.Type {
		case serf.EventMemberJoin:
			s.join.Add(n)
		case serf.EventMemberLeave:
			s.leave.Add(n)
		case serf.EventMemberFailed:
			s.failed.Add(n)
		case serf.EventMemberUpdate:
			s.update.Add(n)
		case serf.EventMemberReap:
			s.reap.Add(n)
		default:
			s.unknown.Add(1)
			return false
		}
		if m.log.Enabled(context.Background(), slog.LevelDebug) {
			names := make([]string, len(e.Members))
			for i, mem := range e.Members {
				names[i] = mem.Name
			}
			m.log.Debug("member event", "type", e.Type.String(), "members", names)
		}
		return true
	case serf.UserEvent:
		s.user.Add(1)
	case *serf.Query:
		s.query.Add(1)
	default:
		s.unknown.Add(1)
	}
	return false
}

// rebuild builds a ring from the current member snapshot and, if its nodes
// differ from the current ring's, swaps it in and notifies listeners. Only
// the event loop (and Start, before the loop runs) calls it.
func (m *Membership) rebuild() {
	nodes := []Node{m.self}
	var withoutPeer uint64
	for _, mem := range m.members() {
		if mem.Name == m.self.Name {
			continue // always in, whatever serf says about our own status
		}
		if mem.Status != serf.StatusAlive {
			continue // leaving, left and failed members own nothing
		}
		addr := mem.Tags[PeerTag]
		if addr == "" {
			withoutPeer++
			continue
		}
		nodes = append(nodes, Node{Name: mem.Name, Addr: addr})
	}
	m.stats.withoutPeer.Store(withoutPeer)

	next, err := NewRing(m.kind, nodes, m.vnodes)
	if err != nil {
		m.stats.ringErrors.Add(1)
		m.log.Error("ring rebuild failed; keeping the old ring", "err", err)
		return
	}
	prevRef := m.ring.Load()
	var prev Ring
	if prevRef != nil {
		prev = prevRef.Ring
		if slices.Equal(prev.Members(), next.Members()) {
			m.stats.unchanged.Add(1)
			return
		}
	}
	m.ring.Store(&ringRef{next})
	m.stats.rebuilds.Add(1)
	m.log.Info("ring rebuilt", "members", len(nodes))
	if prev == nil {
		return // the initial ring has no "old" to hand off from
	}
	m.mu.Lock()
	listeners := slices.Clone(m.listeners)
	m.mu.Unlock()
	for _, fn := range listeners {
		m.notify(fn, prev, next)
	}
}

func (m *Membership) notify(fn func(old, new Ring), old, next Ring) {
	defer func() {
		if r := recover(); r != nil {
			m.stats.panics.Add(1)
			m.log.Error("ring change listener panicked", "panic", r)
		}
	}()
	fn(old, next)
}

// joinLoop joins any of seeds, backing off exponentially between rounds in
// which none answered, until one does or ctx is done.
func (m *Membership) joinLoop(ctx context.Context, seeds []string) {
	defer m.wg.Done()
	backoff := joinBackoffMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		m.stats.joinAttempts.Add(1)
		n, err := m.serf.Join(seeds, true)
		// A seed name that resolves only to this node (a headless service
		// listing just this pod, while the others start) is no join: keep
		// trying, or pods started together form clusters of one.
		if n > 0 && m.serf.NumNodes() > 1 {
			m.stats.joined.Store(true)
			m.log.Info("joined cluster", "contacted", n, "seeds", seeds)
			return
		}
		if n > 0 && err == nil {
			err = errors.New("the seeds reached only this node")
		}
		m.stats.joinFailures.Add(1)
		m.log.Warn("join failed; retrying", "seeds", seeds, "retry_in", backoff, "err", err)
		timer.Reset(backoff)
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// logWriter feeds serf's and memberlist's *log.Logger output into slog at
// debug level: their INFO lines are chatty and their WARNs (e.g. a probe
// timeout) are routine under churn; our own logs carry what matters.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		w.log.Debug(strings.TrimRight(string(p), "\n"), "component", "serf")
	}
	return len(p), nil
}
