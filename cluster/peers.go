package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/h1"
	"github.com/ringcache/ringcache/internal/health"
	"github.com/ringcache/ringcache/internal/opt"
	"github.com/ringcache/ringcache/internal/streamconn"
	"github.com/valyala/fasthttp"
)

// HeaderError marks a response a node made up because it could not serve a
// forwarded request itself (draining, refusing the peer): the sender treats
// it as a failure of the peer and serves the request from the origin, where
// an ordinary 5xx relayed from the origin is an answer like any other.
const HeaderError = "X-Ringcache-Error"

// Defaults for PeerOptions' zero values.
const (
	DefaultPeerTimeout     = 2 * time.Second
	DefaultPeerMaxConns    = 256
	DefaultPreviousWindow  = 10 * time.Minute
	DefaultFailBackoff     = time.Second
	DefaultMaxFailBackoff  = 10 * time.Second
	DefaultPeerIdleTimeout = 30 * time.Second
	// DefaultMaxEntryBytes bounds one encoded entry on the wire, in a Lookup
	// answer or a handoff frame: well above any storable response, small
	// enough that a corrupt length cannot make a node allocate gigabytes.
	DefaultMaxEntryBytes = 64 << 20

	// peerReadBufferSize also caps a response's header block; origins that
	// send a few big cookies overflow fasthttp's 4 KiB default.
	peerReadBufferSize = 16 << 10
	// maxReplyBytes bounds the small JSON reply to a handoff.
	maxReplyBytes = 4 << 10
)

// PeerOptions configures a PeerSet. Zero (or negative) values mean the
// documented default.
type PeerOptions struct {
	// Self is this node's name: keys it owns are never forwarded. Default:
	// the Signer's name, which it must equal.
	Self string
	// Signer signs every request to a peer and checks requests from peers.
	// Required.
	Signer *Signer
	// Timeout bounds a request to a peer when the caller's context has no
	// deadline, and always bounds connecting to it. A forwarded request
	// includes the owner's own origin fetch, so it should exceed a normal
	// origin response time. Default DefaultPeerTimeout (2s).
	Timeout time.Duration
	// MaxConns caps open connections to each peer; a request that finds all
	// busy waits up to Timeout. Default DefaultPeerMaxConns (256).
	MaxConns int
	// PreviousWindow is how long after a membership change Previous names
	// the keys' former owners; after it the new owners are assumed to have
	// filled up. Default DefaultPreviousWindow (10m).
	PreviousWindow time.Duration
	// FailBackoff is how long a peer is skipped after a transport failure
	// (passive health). Each further failure after the pause doubles it, up
	// to MaxFailBackoff; a success resets it. Default DefaultFailBackoff (1s).
	FailBackoff time.Duration
	// MaxFailBackoff caps FailBackoff's doubling. Default
	// DefaultMaxFailBackoff (10s); raised to FailBackoff if smaller.
	MaxFailBackoff time.Duration
	// IdleConnTimeout closes keep-alive connections to a peer unused for
	// this long. Default DefaultPeerIdleTimeout (30s).
	IdleConnTimeout time.Duration
	// MaxEntryBytes is the largest encoded entry Lookup reads. Default
	// DefaultMaxEntryBytes (64 MiB).
	MaxEntryBytes int64
	// NewRing builds a ring over the given members, as the membership does.
	// When set, a node that joins an existing cluster takes the ring of the
	// others (the cluster before it came) as its previous ring, so it can
	// take moved keys over from their former owners instead of the origin.
	// Nil: a joining node has no previous ring.
	NewRing func(nodes []Node) (Ring, error)
	// Clock is the time source of the previous window and passive health.
	// Nil means time.Now. (Signatures use the Signer's clock.)
	Clock func() time.Time
	// Logger receives peer health changes. Nil discards.
	Logger *slog.Logger
	// Replicas is how many members hold each entry, its owner included: 1
	// keeps one copy; 2 or 3 keep copies on the next members of the key's
	// preference list, which take over when the owner goes (see Stored,
	// Lookup, Rebalance). Default 1; at most MaxReplicas.
	Replicas int
	// Store is this node's store: after each membership change, with
	// Replicas above 1, its entries whose holders changed are pushed to
	// their new holders (Rebalance). Nil: no rebalancing.
	Store cache.Store
	// RebalanceRate paces that push, in bytes per second. Default
	// DefaultRebalanceRate.
	RebalanceRate int64
	// TLS is the client side of the peers' mutual TLS (PeerTLS.Client):
	// every request to a peer goes over it, and the peers' listeners must
	// serve PeerTLS.Server. Required: users' requests and the answers
	// served to them never cross the network in plaintext.
	TLS *tls.Config
}

// PeerSet is the cluster as the request path sees it: the current ring,
// the ring before the last membership change, and a client per member. It
// implements Peers. Reads (Owner, Previous) take no lock: the state is
// swapped whole by Update.
type PeerSet struct {
	self           string
	signer         *Signer
	newRing        func([]Node) (Ring, error)
	timeout        time.Duration
	maxConns       int
	tls            *tls.Config
	window         time.Duration
	backoff        time.Duration
	maxBackoff     time.Duration
	idle           time.Duration
	maxEntry       int64
	replicas       int
	store          cache.Store
	rebalanceRate  int64
	rebalanced     atomic.Uint64      // entries queued by rebalances
	rebalancing    atomic.Int32       // rebalances running
	stopRebalance  context.CancelFunc // the running rebalance's; under mu
	timers         sync.Pool          // *time.Timer, for hedged lookups
	holderBufs     sync.Pool          // *[]Node of MaxReplicas capacity, for preference lists
	now            func() time.Time
	log            *slog.Logger
	handoffPath    []byte // PathPrefix + "handoff"
	contentTypeBin []byte

	state atomic.Pointer[peerState]
	conns streamconn.Table // open connections, to relax deadlines of streamed bodies
	// transport reads the peers' responses, handing the interim ones an
	// owner forwards to the caller of Forward (h1.InterimFrom).
	transport h1.Transport

	mu     sync.Mutex // serializes Update and Close
	closed bool
}

// peerState is one immutable snapshot: readers load it once per call.
type peerState struct {
	cur     Ring
	prev    Ring  // nil when nothing changed yet
	changed int64 // unix nanoseconds of the change that made prev
	peers   map[string]*peer
}

// NewPeerSet returns a PeerSet with no ring: until the first Update every
// key is this node's. It opens no connection. Zero or negative options take
// their defaults. It panics if o.Signer or o.TLS is nil or the Signer signs
// under a name other than o.Self: those are wiring mistakes, not
// configuration.
func NewPeerSet(o PeerOptions) *PeerSet {
	if o.Signer == nil {
		panic("cluster: NewPeerSet needs a Signer")
	}
	if o.TLS == nil {
		panic("cluster: NewPeerSet needs peer TLS")
	}
	if o.Self == "" {
		o.Self = o.Signer.Name()
	}
	if o.Self != o.Signer.Name() {
		panic(fmt.Sprintf("cluster: NewPeerSet for %q with a Signer for %q", o.Self, o.Signer.Name()))
	}
	s := &PeerSet{
		self:           o.Self,
		signer:         o.Signer,
		newRing:        o.NewRing,
		timeout:        opt.Or(o.Timeout, DefaultPeerTimeout),
		maxConns:       opt.Or(o.MaxConns, DefaultPeerMaxConns),
		tls:            o.TLS,
		window:         opt.Or(o.PreviousWindow, DefaultPreviousWindow),
		backoff:        opt.Or(o.FailBackoff, DefaultFailBackoff),
		maxBackoff:     opt.Or(o.MaxFailBackoff, DefaultMaxFailBackoff),
		idle:           opt.Or(o.IdleConnTimeout, DefaultPeerIdleTimeout),
		maxEntry:       opt.Or(o.MaxEntryBytes, DefaultMaxEntryBytes),
		now:            o.Clock,
		log:            o.Logger,
		handoffPath:    []byte(PathPrefix + "handoff"),
		contentTypeBin: []byte("application/octet-stream"),
	}
	s.maxBackoff = max(s.maxBackoff, s.backoff)
	s.replicas = min(max(o.Replicas, 1), MaxReplicas)
	s.store, s.rebalanceRate = o.Store, o.RebalanceRate
	s.holderBufs.New = func() any {
		b := make([]Node, 0, MaxReplicas)
		return &b
	}
	s.timers.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.state.Store(&peerState{})
	return s
}

// RingSource is what Follow needs from a Membership.
type RingSource interface {
	Ring() Ring
	OnChange(fn func(old, new Ring))
}

// Follow keeps s in step with src: it registers Update as a change listener
// and installs src's current ring. Registering first means a change that
// lands in between is not lost; installing the initial ring is a no-op if
// that change got there first.
func (s *PeerSet) Follow(src RingSource) {
	src.OnChange(s.Update)
	s.Update(nil, src.Ring())
}

// Update installs next as the current ring; it has Membership.OnChange's
// signature. The ring it replaces becomes the previous ring, which Previous
// answers from for PreviousWindow. old is only used when s had no ring yet;
// Update(nil, r) installs an initial ring without a previous one, and is
// ignored once s has a ring (so an initial ring read before a change cannot
// overwrite that change).
//
// Clients are kept for members whose name and address are unchanged, made
// for new ones, and closed for departed ones (requests in flight on them
// finish).
func (s *PeerSet) Update(old, next Ring) {
	if next == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	cur := s.state.Load()
	if old == nil && cur.cur != nil {
		return
	}
	prev := cur.cur
	if prev == nil {
		prev = old
	}
	if len(Others(prev, s.self)) == 0 && len(Others(next, s.self)) > 0 && s.newRing != nil {
		// This node just joined: before it came, the others owned its keys.
		if r, err := s.newRing(Others(next, s.self)); err == nil {
			prev = r
		}
	}
	st := &peerState{cur: next, prev: prev, peers: make(map[string]*peer, len(next.Members()))}
	if prev != nil {
		st.changed = s.now().UnixNano()
	}
	for _, n := range next.Members() {
		if n.Name == s.self {
			continue
		}
		if p := cur.peers[n.Name]; p != nil && p.node.Addr == n.Addr {
			st.peers[n.Name] = p
			continue
		}
		p := s.newPeer(n)
		st.peers[n.Name] = p
		// Open the lookup connection now, off the request path: the first
		// request for the member's keys should not wait for a handshake.
		p.frames.prime()
	}
	s.state.Store(st)
	for name, p := range cur.peers {
		if st.peers[name] != p {
			p.release()
		}
	}
	if s.replicas > 1 && s.store != nil && prev != nil {
		s.rebalance(prev, next)
	}
}

// rebalance starts pushing the entries whose holders changed from old to
// next, stopping the push for an earlier change: its remaining work is
// recomputed against the newest ring. Called under s.mu.
func (s *PeerSet) rebalance(old, next Ring) {
	if s.stopRebalance != nil {
		s.stopRebalance()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopRebalance = cancel
	s.rebalancing.Add(1)
	go func() {
		defer s.rebalancing.Add(-1)
		n := s.Rebalance(ctx, s.store, old, next, s.rebalanceRate)
		s.rebalanced.Add(uint64(n))
		if n > 0 {
			s.log.Info("rebalanced", "entries", n, "members", len(next.Members()))
		}
	}()
}

// Close closes the idle connections of every peer client and stops Update;
// requests in flight finish. Owner and Previous keep answering from the last
// ring, so a draining node can still forward.
func (s *PeerSet) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.stopRebalance != nil {
		s.stopRebalance()
	}
	for _, p := range s.state.Load().peers {
		p.release()
	}
}

// Previous returns the owner of key on the previous ring while the last
// change is within PreviousWindow, provided it is not this node, not the
// current owner, still a member of the current ring and not paused by
// passive health.
func (s *PeerSet) Previous(key []byte) (Peer, bool) {
	st := s.state.Load()
	if st.prev == nil || st.cur == nil {
		return nil, false
	}
	if s.now().UnixNano()-st.changed > int64(s.window) {
		return nil, false
	}
	n, ok := st.prev.Owner(key)
	if !ok || n.Name == s.self {
		return nil, false
	}
	if c, ok := st.cur.Owner(key); ok && c.Name == n.Name {
		return nil, false
	}
	p := st.peers[n.Name]
	if p == nil || p.node.Addr != n.Addr || !p.health.Available() {
		return nil, false
	}
	return p, true
}

// Authenticate checks a peer's signature with the Signer.
func (s *PeerSet) Authenticate(req *fasthttp.Request) (string, bool) {
	return s.signer.Verify(req)
}

// SendHandoff posts one handoff batch (see Handoff) to node, signed, and
// waits for its reply. It is Handoff's send function. body is only read
// during the call.
func (s *PeerSet) SendHandoff(ctx context.Context, node Node, body []byte) error {
	p := s.state.Load().peers[node.Name]
	if p == nil || p.node.Addr != node.Addr {
		// Not a member of our ring (yet): a one-off client.
		p = s.newPeer(node)
		defer p.release()
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetRequestURIBytes(s.handoffPath)
	req.Header.SetHost(node.Addr)
	req.Header.SetContentTypeBytes(s.contentTypeBin)
	req.SetBodyRaw(body)
	if err := p.do(ctx, req, resp); err != nil {
		return fmt.Errorf("handoff to peer %s: %w", node.Name, err)
	}
	reply, err := readBody(resp, maxReplyBytes)
	if err != nil {
		return fmt.Errorf("handoff to peer %s: reading reply: %w", node.Name, err)
	}
	if sc := resp.StatusCode(); sc != fasthttp.StatusOK {
		return fmt.Errorf("handoff to peer %s: status %d: %s", node.Name, sc, bytes.TrimSpace(reply))
	}
	s.log.Debug("handoff batch delivered", "peer", node.Name, "bytes", len(body), "reply", string(reply))
	return nil
}

func (s *PeerSet) newPeer(n Node) *peer {
	timeout := s.timeout
	p := &peer{set: s, node: n, health: s.newHealth(), frames: newFramesClient(n.Addr, s.tls, s.timeout, s.maxEntry)}
	p.copies.init(p)
	p.hc = &fasthttp.HostClient{
		Addr: n.Addr,
		// Our own dialer: fasthttp's default one caches DNS in a process-wide
		// goroutine that never ends.
		DialTimeout: func(addr string, t time.Duration) (net.Conn, error) {
			if t <= 0 || t > timeout {
				t = timeout
			}
			d := net.Dialer{Timeout: t}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			return s.conns.Track(c), nil
		},
		Transport:           &s.transport,
		RetryIfErr:          s.retryIfErr,
		MaxConns:            s.maxConns,
		MaxConnWaitTimeout:  timeout,
		MaxIdleConnDuration: s.idle,
		ReadBufferSize:      peerReadBufferSize,
		// Forwarded requests carry the client's User-Agent; never invent one.
		NoDefaultUserAgentHeader: true,
		// The path is part of the cache key and of the signature: it must
		// reach the peer byte for byte.
		DisablePathNormalizing: true,
		StreamResponseBody:     true,
		IsTLS:                  true,
		TLSConfig:              s.tls,
	}
	return p
}

// newHealth returns a peer's passive health: paused on its first failure
// for FailBackoff, open to every request once the pause is over (Owner and
// Previous are routing questions, asked without claiming a probe), the
// pause doubling up to MaxFailBackoff after each failure that follows it.
func (s *PeerSet) newHealth() *health.Monitor {
	return health.New(health.Config{Threshold: 1, Pause: s.backoff, MaxPause: s.maxBackoff, Clock: s.now})
}

// retryIfErr lets fasthttp resend a request that failed before an answer
// (typically on a keep-alive connection the peer had just closed) when
// sending it twice is harmless: idempotent methods, as fasthttp's default
// does, and handoff batches, since a receiver offered an entry twice keeps
// one copy. A forwarded client POST is never resent.
func (s *PeerSet) retryIfErr(req *fasthttp.Request, _ int, _ error) (resetTimeout, retry bool) {
	h := &req.Header
	if h.IsGet() || h.IsHead() || h.IsPut() || h.IsOptions() || h.IsDelete() {
		return false, true
	}
	return false, h.IsPost() && bytes.Equal(req.URI().PathOriginal(), s.handoffPath)
}

// peer is one member's client. It implements Peer.
type peer struct {
	set     *PeerSet
	node    Node
	hc      *fasthttp.HostClient // forwarded requests, handoffs, purges
	frames  *framesClient        // lookups and replica copies
	copies  copier               // replica copies waiting to go
	latency atomic.Int64         // lookups' average answer time, nanoseconds
	health  *health.Monitor
}

var _ Peer = (*peer)(nil)

// release closes the peer's idle connections and its lookup connection;
// requests in flight on the HTTP client finish.
func (p *peer) release() {
	p.hc.CloseIdleConnections()
	p.copies.close()
	p.frames.close()
}

// Get looks key up on the peer over the frame exchange (FramesALPN). When
// the peer holds an entry whose encoding is at most f.Max bytes, it is
// decoded into f.Entry, borrowing the call's buffer until f.Release, with
// its times moved to this node's clock, and Get reports true; a missing or
// larger entry reports false and nil. It allocates nothing. A transport
// error or timeout pauses the peer (passive health).
func (p *peer) Get(ctx context.Context, key []byte, f *cache.Fetched) (bool, error) {
	f.Release() // a previous fetch's entry is done with
	cl, err := p.frames.startGet(ctx, key, int64(f.Max), false)
	if err == nil {
		err = cl.wait(ctx, p.set.timeout)
	}
	return p.finishGet(ctx, cl, err, f)
}

// finishGet turns an answered lookup (or its failure) into Get's result.
func (p *peer) finishGet(ctx context.Context, cl *call, err error, f *cache.Fetched) (bool, error) {
	if err != nil {
		if !errors.Is(err, errFramesDown) && !errors.Is(err, errFramesClosed) && !errors.Is(err, errFramesDialing) && ctx.Err() == nil {
			p.failed(err)
		}
		if cl != nil {
			cl.Release()
		}
		return false, fmt.Errorf("lookup on peer %s: %w", p.node.Name, err)
	}
	p.observe(cl)
	if status := cl.status; status != statusFound {
		cl.Release() // from here the call may be another caller's
		if status == statusMissing || status == statusTooLarge {
			return false, nil
		}
		return false, fmt.Errorf("lookup on peer %s: status %d", p.node.Name, status)
	}
	if err := cache.DecodeEntryInto(&f.Entry, cl.buf); err != nil {
		cl.Release()
		return false, fmt.Errorf("lookup on peer %s: %w", p.node.Name, err)
	}
	f.Borrowed = cl
	f.Entry.Rebase(p.set.now().UnixNano() - cl.now)
	return true, nil
}

func (p *peer) Name() string { return p.node.Name }

// Forward sends req to the peer, keeping its path, query and Host header:
// the URI's host becomes the peer's address, and the request is marked
// (HeaderForwarded) and signed. req is modified in place.
//
// With a ctx deadline, the whole exchange, the streamed body included, must
// end by it. Without one, Timeout bounds the wait for the response headers
// and then becomes an idle timeout for the body: each read must make
// progress within it, so a large body is not cut off but a stalled peer is.
// Connecting is always bounded by Timeout. fasthttp cannot abort a request
// in flight, so a cancellation is only noticed before sending. Interim
// responses the owner forwards go to ctx's h1.Interim, if any.
//
// A transport error, or a response carrying HeaderError (the peer could not
// serve the request itself), is returned as an error and pauses the peer
// (passive health); resp's body stream is then already closed. Any other
// response, 5xx included, is the owner's answer: on a nil error resp's body
// may be a stream the caller must read to the end and close
// (resp.CloseBodyStream), or release resp.
func (p *peer) Forward(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	u := req.URI()
	// Set before the request URI is signed: it decides how the URI is
	// written on the wire. (do sets the scheme.)
	u.DisablePathNormalizing = true
	u.SetHost(p.node.Addr)
	// fasthttp would send userinfo ("user:pw@" in the URI or Host) as
	// Authorization: Basic, credentials the client never sent as a header
	// and the owner would then cache for everyone.
	u.SetUsernameBytes(nil)
	u.SetPasswordBytes(nil)
	if len(req.Header.Host()) == 0 {
		// A request built from an absolute URI carries its host there only.
		req.Header.SetHostBytes(u.Host())
	}
	req.UseHostHeader = true // keep the client's Host, not the peer's address
	req.Header.SetRequestURIBytes(u.RequestURI())
	if err := p.do(ctx, req, resp); err != nil {
		return fmt.Errorf("forward %s to peer %s: %w", req.Header.RequestURI(), p.node.Name, err)
	}
	if isPeerError(resp) {
		_, _ = readBody(resp, maxReplyBytes) // drain, so the connection is reused
		p.failed(errPeerRefused)
		return fmt.Errorf("forward %s to peer %s: %w (status %d)", req.Header.RequestURI(), p.node.Name, errPeerRefused, resp.StatusCode())
	}
	return nil
}

// errPeerRefused: the peer answered but said it could not serve the request.
var errPeerRefused = errors.New("peer could not serve the request")

func isPeerError(resp *fasthttp.Response) bool {
	v := resp.Header.Peek(HeaderError)
	return len(v) == 1 && v[0] == '1'
}

// do signs req and sends it within ctx's deadline (or Timeout), counting
// transport failures for passive health. req's request URI must be final.
func (p *peer) do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		return err // the caller gave up: not the peer's fault
	}
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		deadline = time.Now().Add(p.set.timeout)
	}
	// fasthttp refuses a request whose scheme differs from the client's.
	req.URI().SetScheme("https")
	p.set.signer.Sign(req)
	err := p.set.transport.Do(req, h1.InterimFrom(ctx), func() error { return p.hc.DoDeadline(req, resp, deadline) })
	if err != nil {
		if !errors.Is(err, fasthttp.ErrNoFreeConns) { // our pool, not the peer
			p.failed(err)
		}
		return err
	}
	if !hasDeadline && resp.BodyStream() != nil {
		p.set.conns.Streaming(resp.LocalAddr(), p.set.timeout)
	}
	if !isPeerError(resp) && p.health.Success() {
		p.set.log.Info("peer healthy again", "peer", p.node.Name)
	}
	return nil
}

func (p *peer) failed(err error) {
	if d, first := p.health.Failure(); first {
		p.set.log.Warn("peer failed; its keys go to their next holders or the origin", "peer", p.node.Name, "pause", d, "err", err)
	}
}

// readBody returns resp's body, reading a stream to the end (which gives
// the connection back), refusing one longer than limit. The result is only
// valid until resp is reused.
func readBody(resp *fasthttp.Response, limit int64) ([]byte, error) {
	stream := resp.BodyStream()
	if stream == nil {
		b := resp.Body()
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("body of %d bytes exceeds %d", len(b), limit)
		}
		return b, nil
	}
	if cl := resp.Header.ContentLength(); cl > 0 && int64(cl) > limit {
		_ = resp.CloseBodyStream()
		return nil, fmt.Errorf("body of %d bytes exceeds %d", cl, limit)
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(io.LimitReader(stream, limit+1))
	if cerr := resp.CloseBodyStream(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("body exceeds %d bytes", limit)
	}
	return buf.Bytes(), nil
}
