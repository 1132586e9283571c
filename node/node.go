package node

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/ringcache/ringcache/internal/h1"
	"github.com/ringcache/ringcache/internal/rawio"
	"github.com/ringcache/ringcache/internal/sniff"
	"github.com/ringcache/ringcache/internal/tlsfiles"
	"github.com/ringcache/ringcache/origin"
	"github.com/ringcache/ringcache/proxy"
	"github.com/valyala/fasthttp"
)

// Node is one running ringcache node: its store, origin client, proxy,
// cluster membership, and its listeners. Nothing in it is global, so tests
// and the demo run several in one process.
type Node struct {
	cfg config.Config // Reload rewrites it: handlers read the fixed copies below
	// Fixed at Start.
	name, ring string
	startedAt  time.Time
	log        *slog.Logger
	clock      *proxy.Clock
	store      cache.Store
	hot        cache.Store
	origins    *origin.Router
	proxy      *proxy.Proxy
	reg        *prometheus.Registry
	srv        *fasthttp.Server
	ln         net.Listener
	admin      *fasthttp.Server
	adminLn    net.Listener
	access     io.Closer
	gate       cluster.ClientGate                  // keeps the peer protocol off the client listener
	clientTLS  *tlsfiles.Reloader[tls.Certificate] // tls_cert and tls_key; nil for plain HTTP
	originTLS  []*tlsfiles.Reloader[tls.Config]    // origin_tls_* and the pools' tls files
	started    bool                                // listeners handed to their servers
	// Reloadable on SIGHUP.
	adminToken atomic.Pointer[string]
	logLevel   *slog.LevelVar // nil: not reloadable (tests, demo)
	serving    atomic.Bool
	done       chan struct{} // closed when the proxy listener stops serving

	// Cluster mode (cfg.Gossip set).
	members    *cluster.Membership
	peers      *cluster.PeerSet
	peerTLS    *cluster.PeerTLS // nil without peer TLS
	peerSrv    *fasthttp.Server
	peerLn     net.Listener  // the peer listener's HTTP side
	framesLn   net.Listener  // its lookup side
	framesDone chan struct{} // closed when ServeFrames returns
	peerServer *cluster.PeerServer
	// handoffSent counts entries this node handed to others on leaving.
	handoffSent prometheus.Counter
	cancel      context.CancelFunc

	// With a snapshot: the store wrapped to take it in, and its writer.
	warm  *cache.Warm
	snaps *snapshots

	stopOnce sync.Once
	stopErr  error
}

// Options are what a node takes beyond its configuration. The zero value
// is ready: logs discarded, the log level fixed.
type Options struct {
	// Logger receives the node's logs. Nil discards them.
	Logger *slog.Logger
	// LogLevel, when set, is the level of Logger's handler: Reload changes
	// it on log_level. Nil: log_level needs a restart.
	LogLevel *slog.LevelVar
	// Membership, if set, adjusts the membership's options before it
	// starts; tests shrink serf's timers with it.
	Membership func(*cluster.Options)
	// TLSCheckInterval is how often the TLS files (tls_cert, tls_key and
	// the peer_tls_* files) are looked at for changes; 0 means
	// tlsfiles.DefaultInterval (2s). Tests shorten it.
	TLSCheckInterval time.Duration
}

// Start builds a node from cfg (already validated) and starts serving. On
// error nothing is left running, and the error names what failed (a
// listener's address, a file).
func Start(cfg config.Config, o Options) (n *Node, err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n = &Node{cfg: cfg, name: cfg.NodeName, ring: cfg.Ring, startedAt: time.Now(), log: log, logLevel: o.LogLevel, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	n.setAdminToken(cfg.AdminToken)
	// Not n: every error return sets the named result to nil first.
	defer func(started *Node) {
		if err != nil {
			started.closeAll()
		}
	}(n)
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// One coarse clock for the stores and the proxy: time.Now is slow on VMs.
	n.clock = proxy.NewClock(time.Millisecond)
	if n.store, err = cache.New(cfg.Store, cfg.CacheSize, cache.WithClock(n.clock.Now)); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if cfg.Snapshot != "" {
		// Loaded once the listeners are bound (below): an address in use
		// fails the start before the wait.
		n.warm = cache.NewWarm(n.store, cache.WithClock(n.clock.Now))
		n.store = n.warm
		n.snaps = newSnapshots(cfg.Snapshot, n.store, n.clock.Now, log, n.reg)
	}
	proxy.RegisterStore(n.reg, n.store)
	metrics := proxy.NewMetrics(n.reg)
	if n.origins, n.originTLS, err = newOrigins(cfg, metrics, log); err != nil {
		return nil, err
	}
	for _, f := range n.originTLS {
		f.Watch(o.TLSCheckInterval, log)
	}
	n.registerNodeMetrics()
	popt := proxyOptions(cfg, metrics, log)
	popt.Clock = n.clock.Now
	if n.snaps != nil {
		popt.OnPurge = n.snaps.purged
	}
	// The origins dial the tunnels of Upgrade (WebSocket) requests.
	popt.Tunnels, popt.TunnelIdleTimeout = n.origins, cfg.TunnelIdleTimeout
	if cfg.Gossip != "" {
		// Peer traffic is always mutual TLS: from the operator's CA when
		// given, else from a key derived from the peer secret.
		if cfg.PeerTLSCert != "" {
			if n.peerTLS, err = cluster.LoadPeerTLS(cfg.PeerTLSCert, cfg.PeerTLSKey, cfg.PeerTLSCA); err == nil {
				n.peerTLS.Watch(o.TLSCheckInterval, log)
			}
		} else if n.peerTLS, err = cluster.SecretPeerTLS([]byte(cfg.PeerSecret)); err != nil {
			err = fmt.Errorf("peer_secret: %w", err)
		}
		if err != nil {
			return nil, err
		}
		signer, err := cluster.NewSigner(cfg.NodeName, []byte(cfg.PeerSecret))
		if err != nil {
			return nil, fmt.Errorf("peer_secret: %w", err)
		}
		n.peers = cluster.NewPeerSet(cluster.PeerOptions{
			Self: cfg.NodeName, Signer: signer, Timeout: cfg.PeerTimeout, Logger: log,
			TLS:           n.peerTLS.Client,
			MaxEntryBytes: cluster.EntryLimit(cfg.MaxObjectSize),
			Replicas:      cfg.Replicas,
			Store:         n.store,
			RebalanceRate: cfg.RebalanceRate,
			NewRing: func(nodes []cluster.Node) (cluster.Ring, error) {
				return cluster.NewRing(cfg.Ring, nodes, cfg.RingVnodes)
			},
		})
		popt.Peers = clusterPeers{n.peers}
		popt.Name = cfg.NodeName
		if hasHotCache(cfg) {
			n.hot = cache.NewLRU(cfg.HotCacheSize, cache.WithClock(n.clock.Now))
			popt.Hot = n.hot
		}
	}
	n.proxy = proxy.New(popt, n.store, n.origins)

	var clientTLS *tls.Config // nil: plain HTTP on listen
	if cfg.TLSCert != "" {
		if n.clientTLS, err = loadClientTLS(cfg); err != nil {
			return nil, err
		}
		n.clientTLS.Watch(o.TLSCheckInterval, log)
		clientTLS = clientTLSConfig(n.clientTLS)
	}
	if n.ln, err = Listen("listen", cfg.Listen); err != nil {
		return nil, err
	}
	n.ln = n.guard(n.ln, cfg.MaxConnsPerIP)
	// Interim responses are written to a connection only when nothing of
	// its server's is waiting (h1.Quiet), which TrackServed tells from
	// beneath TLS and the sniffing (they find it through NetConn).
	base := h1.TrackServed(n.ln)
	clientLn, shared := base, false // shared: members use listen too
	var access *accessLogger
	if cfg.AccessLog != "" {
		w, file, err := openAccessLog(cfg.AccessLog)
		if err != nil {
			return nil, err
		}
		access = newAccessLogger(w, file, accessLogFormat(cfg))
		n.access = access
	}
	// Handshakes are made, and first bytes read, before a connection
	// reaches its server: within read_timeout, a bounded number at a time.
	sniffOpt := sniff.Options{Timeout: cfg.ReadTimeout}
	if n.peers != nil {
		n.peerServer = cluster.NewPeerServer(n.proxy.Cache(), n.peers, cluster.PeerServerOptions{
			Logger: log, MaxEntryBytes: cluster.EntryLimit(cfg.MaxObjectSize), Timeout: cfg.PeerTimeout, Clock: n.clock.Now,
		})
		// Members' two protocols share the peer listener: the handshake's
		// agreed protocol routes a connection to the lookup exchange or to
		// the HTTP server.
		peerSides := sniff.ALPN(n.peerTLS.Server, cluster.FramesALPN)
		switch {
		case cfg.PeerListen != "":
			peerLn, err := Listen("peer_listen", cfg.PeerListen)
			if err != nil {
				return nil, err
			}
			peerLn = n.guard(peerLn, 0) // beneath TLS: write deadlines act on the socket
			sides := sniff.Split(h1.TrackServed(peerLn), 2, peerSides, sniffOpt)
			n.framesLn, n.peerLn = sides[0], sides[1]
		case clientTLS != nil:
			// One port, TLS for everyone: the protocols a handshake
			// offers tell a member from a client (sharedTLS).
			sides := sniff.Split(base, 3, sniff.RequireTLS(sniff.ALPN(sharedTLS(clientTLS, n.peerTLS), cluster.FramesALPN, cluster.PeerALPN), plainToTLS), sniffOpt)
			n.framesLn, n.peerLn, clientLn, shared = sides[0], sides[1], sides[2], true
		default:
			// One port for both: a TLS handshake is a peer's, plain HTTP a
			// client's.
			sides := sniff.Split(base, 2, sniff.FirstByte, sniffOpt)
			clientLn, shared = sides[0], true
			sides = sniff.Split(sides[1], 2, peerSides, sniffOpt)
			n.framesLn, n.peerLn = sides[0], sides[1]
		}
		n.peerSrv = n.newServer(n.peerServer.Handler(n.proxy.PeerHandler), max(cfg.MaxRequestBody, cluster.BodyLimit(cfg.MaxObjectSize)), true, nil)
	}
	if clientTLS != nil && !shared {
		// Clients alone on listen, over TLS only.
		clientLn = sniff.Split(base, 1, sniff.RequireTLS(sniff.ALPN(clientTLS), plainToTLS), sniffOpt)[0]
	}
	n.srv = n.newServer(n.gate.Handler(n.proxy.Handler), cfg.MaxRequestBody, false, access)
	n.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringcache_peer_refused_total",
		Help: "Requests claiming to come from a member that were refused: on the client listener, or without a member's credentials.",
	}, func() float64 {
		refused := n.gate.Refused()
		if n.peerServer != nil {
			refused += n.peerServer.Stats().Refused
		}
		return float64(refused)
	}))
	if cfg.Admin != "" {
		if n.adminLn, err = Listen("admin", cfg.Admin); err != nil {
			return nil, err
		}
		n.admin = &fasthttp.Server{Handler: n.AdminHandler(), Logger: fasthttpLogger{log}, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	}
	if n.warm != nil {
		// Before joining and serving: members do not send this node
		// requests, and /healthz does not answer 200, until it holds what
		// it held before (every entry is served from here on, copied into
		// the store as it is asked for or by a mover in the background).
		n.snaps.load(n.warm)
	}
	if n.peers != nil {
		if err := n.joinCluster(o.Membership); err != nil {
			return nil, err
		}
	}

	if n.admin != nil {
		serve(n.admin, n.adminLn, func(err error) {
			if err != nil {
				log.Error("admin listener stopped", "err", err)
			}
		})
	}
	if n.framesLn != nil {
		n.framesDone = make(chan struct{})
		go func() {
			defer close(n.framesDone)
			n.peerServer.ServeFrames(n.framesLn)
		}()
	}
	if n.peerSrv != nil {
		serve(n.peerSrv, n.peerLn, func(err error) {
			if err != nil {
				log.Error("peer listener stopped", "err", err)
			}
		})
	}
	n.serving.Store(true)
	n.started = true
	serve(n.srv, clientLn, func(err error) {
		defer close(n.done)
		if err != nil {
			log.Error("proxy listener stopped", "err", err)
		}
	})
	if n.snaps != nil && cfg.SnapshotInterval > 0 {
		n.snaps.every(cfg.SnapshotInterval)
	}
	log.Info("ringcache serving", "listen", n.Addr(), "tls", n.clientTLS != nil, "origin", cfg.Origin, "origin_pools", len(n.origins.Pools()), "admin", n.AdminAddr(),
		"store", cfg.Store, "cache_size", config.FormatBytes(cfg.CacheSize), "gossip", n.GossipAddr())
	return n, nil
}

// joinCluster starts serf membership, publishing this node's peer address,
// and keeps the peer set's ring current.
func (n *Node) joinCluster(tune func(*cluster.Options)) error {
	cfg := n.cfg
	// Gossip is never plaintext: the operator's key, or one derived from
	// the peer secret, so one secret makes a member.
	key, err := cluster.GossipKeyFromSecret([]byte(cfg.PeerSecret))
	if cfg.GossipKey != "" {
		key, err = base64.StdEncoding.DecodeString(cfg.GossipKey) // Validate already checked it
	}
	if err != nil {
		return fmt.Errorf("gossip_key: %w", err)
	}
	peerAddr := n.peerLn.Addr().String()
	copt := cluster.Options{
		NodeName:      cfg.NodeName,
		BindAddr:      cfg.Gossip,
		AdvertiseAddr: cfg.Advertise,
		PeerAddr:      reachable(peerAddr, cfg.Advertise, cfg.Gossip),
		Join:          cfg.Join,
		GossipKey:     key,
		RingKind:      cfg.Ring,
		VNodes:        cfg.RingVnodes,
		Logger:        n.log,
	}
	if tune != nil {
		tune(&copt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	m, err := cluster.Start(ctx, copt)
	if err != nil {
		return bindError("gossip", cfg.Gossip, err)
	}
	n.members = m
	n.peers.Follow(m)
	n.handoffSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "ringcache_handoff_sent_entries_total", Help: "Entries handed to their new owners when this node left."})
	n.registerClusterMetrics(n.peerServer)
	return nil
}

// reachable turns a listener address into one peers can dial: a wildcard
// host (0.0.0.0, ::) is replaced by the advertised or gossip host, else by
// the private IP memberlist itself would advertise.
func reachable(addr, advertise, gossip string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return addr
	}
	for _, a := range []string{advertise, gossip} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				return net.JoinHostPort(h, port)
			}
		}
	}
	if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
		return net.JoinHostPort(ip, port)
	}
	return addr
}

// clusterPeers presents the cluster's peer set as the proxy's Peers: the
// proxy declares what it needs of the cluster, and neither imports the
// other.
type clusterPeers struct{ *cluster.PeerSet }

var _ proxy.Peers = clusterPeers{}

func (c clusterPeers) Owner(key []byte) (proxy.Peer, bool) {
	if p, ok := c.PeerSet.Owner(key); ok {
		return p, true
	}
	return nil, false
}

// Lookup converts the answering member to the proxy's Peer; a nil
// *cluster.Peer must not become a non-nil interface.
func (c clusterPeers) Lookup(ctx context.Context, key []byte, f *cache.Fetched) (proxy.Peer, bool, error) {
	p, ok, err := c.PeerSet.Lookup(ctx, key, f)
	if p == nil {
		return nil, ok, err
	}
	return p, ok, err
}

func (c clusterPeers) Previous(key []byte) (proxy.Peer, bool) {
	if p, ok := c.PeerSet.Previous(key); ok {
		return p, true
	}
	return nil, false
}

// newServer returns a server for h, serving members (peers) or clients.
// bodyLimit bounds request bodies, which are streamed: see bodyGate. Its
// listener must go through guard, which makes WriteTimeout an idle timeout
// per write.
func (n *Node) newServer(h fasthttp.RequestHandler, bodyLimit int64, peers bool, access *accessLogger) *fasthttp.Server {
	cfg := n.cfg
	h = bodyGate(h, bodyLimit, peers)
	if access != nil {
		// Outside the body gate, so that requests refused for their
		// bodies are logged.
		h = access.wrap(h)
	}
	return &fasthttp.Server{
		// Outermost: every request counts for h1.Quiet.
		Handler:                      h1.MarkServed(h),
		ErrorHandler:                 badRequest,
		ReadTimeout:                  cfg.ReadTimeout,
		WriteTimeout:                 cfg.WriteTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		MaxRequestBodySize:           int(bodyLimit),
		ReadBufferSize:               16 << 10, // room for large cookies and tokens
		NoDefaultServerHeader:        true,     // the origin's Server header passes through
		NoDefaultContentType:         true,     // never invent a type the origin did not send
		NoDefaultDate:                true,     // the proxy writes each Date: a hit keeps its stored one (RFC 9110 §6.6.1)
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		StreamRequestBody:            true,
		Logger:                       fasthttpLogger{n.log},
		SecureErrorLogMessage:        true,
		// Beyond it fasthttp answers 503 and closes; 0 leaves its own cap.
		Concurrency: cfg.MaxConns,
	}
}

// policy maps the configuration onto the proxy's caching policy.
func policy(cfg config.Config) httpcache.Policy {
	return httpcache.Policy{
		DefaultTTL:     int64(cfg.DefaultTTL / time.Second),
		MaxHeuristic:   int64(cfg.MaxHeuristicTTL / time.Second),
		NoHeuristic:    cfg.MaxHeuristicTTL == 0,
		StripSetCookie: cfg.StripSetCookie,
		Targets:        fieldNames(cfg.TargetedCacheControl),
		StripTargets:   fieldNames(cfg.StripTargetedCacheControl),
	}
}

// fieldNames converts a list of header field names.
func fieldNames(names []string) httpcache.Targets {
	var t httpcache.Targets
	for _, n := range names {
		t = append(t, []byte(n))
	}
	return t
}

// prefixes parses a list of networks config validated (purge_allow,
// trusted_proxies).
func prefixes(cidrs []string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// proxyOptions maps the configuration onto the proxy's own options.
func proxyOptions(cfg config.Config, m *proxy.Metrics, log *slog.Logger) proxy.Options {
	o := proxy.Options{
		Key:             cache.KeyOptions{IgnoreQuery: cfg.IgnoreQuery, SortQuery: cfg.SortQuery, Host: cfg.KeyHost, Codings: cfg.NormalizeAcceptEncoding},
		Policy:          policy(cfg),
		Rules:           cfg.Rules,
		PurgeAllow:      prefixes(cfg.PurgeAllow),
		TrustedProxies:  prefixes(cfg.TrustedProxies),
		Forwarded:       cfg.ForwardedHeader,
		MaxObjectSize:   cfg.MaxObjectSize,
		StaleKeep:       cfg.StaleKeep,
		PassTTL:         cfg.PassTTL,
		CoalesceTimeout: cfg.CoalesceTimeout,
		StatsFullURLs:   cfg.StatsFullURLs,
		OriginTimeout:   cfg.OriginTimeout,
		Metrics:         m,
		Logger:          log,
	}
	o.StaleKeep, o.PassTTL = offWhenZero(o.StaleKeep), offWhenZero(o.PassTTL)
	return o
}

// offWhenZero carries a duration whose 0 means "off" in the configuration
// into options where 0 means "the default" and a negative value "off" (the
// convention of every Options struct here, so a zero struct is usable).
func offWhenZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// Stats is a snapshot of a node's counters.
type Stats struct {
	Proxy proxy.Snapshot
	Store cache.Stats
	Hot   cache.Stats // zero without a hot cache
	// OpenConnections counts the client connections open now.
	OpenConnections int
	// Replicas counts the copies this node sent to other members (zero
	// for a single node).
	Replicas cluster.ReplicaStats
}

// Stats returns the node's counters now.
func (n *Node) Stats() Stats {
	s := Stats{Proxy: n.proxy.Snapshot(), Store: n.store.Stats(), OpenConnections: int(n.srv.GetOpenConnectionsCount())}
	if n.hot != nil {
		s.Hot = n.hot.Stats()
	}
	if n.peers != nil {
		s.Replicas = n.peers.ReplicaStats()
	}
	return s
}

// Range calls fn for every entry the node holds, in its store and its hot
// cache, until fn returns false.
func (n *Node) Range(fn func(e *cache.Entry) bool) {
	more := true
	n.store.Range(func(e *cache.Entry) bool { more = fn(e); return more })
	if more && n.hot != nil {
		n.hot.Range(fn)
	}
}

// PeerAddr is the address members reach this node's peer listener on, or
// "" for a node without a cluster.
func (n *Node) PeerAddr() string {
	if n.peerLn == nil {
		return ""
	}
	return n.peerLn.Addr().String()
}

// hasHotCache reports whether a node built from cfg keeps hot copies: only
// in a cluster, where other members own keys, and when given room.
func hasHotCache(cfg config.Config) bool { return cfg.Gossip != "" && cfg.HotCacheSize > 0 }

// Name is the node's name in the cluster and in Cache-Status.
func (n *Node) Name() string { return n.name }

// Config is the configuration the node runs with, reloaded values
// included.
func (n *Node) Config() config.Config { return n.cfg }

// Ring is the node's current ring, or nil for a node without a cluster.
func (n *Node) Ring() cluster.Ring {
	if n.members == nil {
		return nil
	}
	return n.members.Ring()
}

// Addr is the proxy listener's address.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// GossipAddr is the serf address other members join, or "" for a single node.
func (n *Node) GossipAddr() string {
	if n.members == nil {
		return ""
	}
	return n.members.GossipAddr()
}

// AdminAddr is the admin listener's address, or "" when it is off.
func (n *Node) AdminAddr() string {
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}

// Shutdown hands this node's entries to their new owners (bounded by
// handoff_timeout and handoff_max_bytes) and leaves the cluster, then stops
// accepting requests, lets those in flight finish until ctx ends, writes
// the snapshot (if configured, within ctx), and releases everything. A
// snapshot that cannot be written is logged, not returned: the node
// stopped cleanly.
func (n *Node) Shutdown(ctx context.Context) error {
	return n.stop(ctx, true)
}

// Close stops the node without leaving the cluster, as a crash would as
// far as the others can tell: no handoff, no leave (they find it failed),
// and no snapshot (the last periodic one stays). Requests in flight still
// finish until ctx ends.
func (n *Node) Close(ctx context.Context) error {
	return n.stop(ctx, false)
}

// stop stops the node once; later calls (Shutdown after Close, a test's
// cleanup after the test's own Shutdown) return the first one's result.
func (n *Node) stop(ctx context.Context, graceful bool) error {
	n.stopOnce.Do(func() { n.stopErr = n.stopNow(ctx, graceful) })
	return n.stopErr
}

func (n *Node) stopNow(ctx context.Context, graceful bool) error {
	n.serving.Store(false)
	if n.snaps != nil {
		n.snaps.stop() // no periodic write from here on
	}
	if n.members != nil {
		if graceful {
			n.leave(ctx)
		} else {
			_ = n.members.Shutdown() // gone without a word
		}
	}
	err := n.srv.ShutdownWithContext(ctx)
	<-n.done
	if n.peerSrv != nil {
		_ = n.peerSrv.ShutdownWithContext(ctx)
	}
	if n.framesLn != nil {
		_ = n.framesLn.Close()
		<-n.framesDone
	}
	if graceful && n.snaps != nil {
		// After the handoff, which copies entries and keeps them, and after
		// the requests in flight, whose fills are in: a restart under the
		// same name starts with everything this node held.
		_ = n.snaps.write(ctx, false)
	}
	n.closeAll()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("drain: %w", err)
	}
	return err
}

// leave hands this node's entries to the members that will own them once
// it is gone, then announces the departure. With replicas, the new owners
// hold copies already: it sends the copies still queued and hands off only
// what no holder has. Handing off first matters
// under load: peers drop a leaving node from their rings within
// milliseconds, and every request for its keys before the entries arrive
// would go to the origin. Until the leave, this node keeps serving (and
// owning) its keys.
func (n *Node) leave(ctx context.Context) {
	self := n.members.Self()
	if rest := cluster.Others(n.members.Ring(), self.Name); len(rest) > 0 && n.cfg.HandoffMaxBytes > 0 {
		if next, err := cluster.NewRing(n.cfg.Ring, rest, n.cfg.RingVnodes); err != nil {
			n.log.Error("handoff ring", "err", err)
		} else {
			hctx, cancel := context.WithTimeout(ctx, n.cfg.HandoffTimeout)
			// The copies stand in for the handoff only when every one was
			// delivered: a drop, a failed batch or a rebalance cut short
			// leaves holders without theirs, and then everything goes.
			replicas := 1
			if n.cfg.Replicas > 1 {
				flushed := n.peers.Flush(hctx)
				rs := n.peers.ReplicaStats()
				if flushed && !rs.Rebalancing && rs.Dropped+rs.Failed == 0 {
					replicas = n.cfg.Replicas
				} else {
					n.log.Warn("replica copies incomplete; handing off every entry", "flushed", flushed, "rebalancing", rs.Rebalancing, "dropped", rs.Dropped, "failed", rs.Failed)
				}
			}
			st, err := cluster.Handoff(hctx, n.store, n.members.Ring(), next, replicas, self.Name, n.peers.SendHandoff, n.cfg.HandoffMaxBytes)
			cancel()
			n.handoffSent.Add(float64(st.Entries))
			n.log.Info("handed off entries", "entries", st.Entries, "bytes", st.Bytes, "batches", st.Batches, "failed", st.Failed, "replicated", st.Replicated, "err", err)
		}
	}
	if err := n.members.Leave(); err != nil {
		n.log.Warn("leaving the cluster", "err", err)
	}
}

func (n *Node) closeAll() {
	if n.snaps != nil {
		n.snaps.stop()
	}
	if n.members != nil {
		_ = n.members.Shutdown()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.proxy != nil {
		n.proxy.Close()
	}
	if !n.started {
		for _, ln := range []net.Listener{n.ln, n.peerLn, n.framesLn, n.adminLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
	}
	if n.peers != nil {
		n.peers.Close()
	}
	if n.peerTLS != nil {
		n.peerTLS.Close()
	}
	if n.clientTLS != nil {
		n.clientTLS.Close()
	}
	for _, f := range n.originTLS {
		f.Close()
	}
	if n.hot != nil {
		n.hot.Close()
	}
	if n.admin != nil && n.started {
		_ = n.admin.Shutdown()
	}
	if n.origins != nil {
		n.origins.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
	if n.access != nil {
		_ = n.access.Close()
	}
	if n.clock != nil {
		n.clock.Stop()
	}
}

// Listen opens the TCP listener of the setting named (listen, admin, ...)
// on addr. Its error names both, with the reason alone: "listen
// 127.0.0.1:8080: address already in use", not Go's "listen tcp
// 127.0.0.1:8080: bind: address already in use". The reason stays wrapped
// (errors.Is(err, syscall.EADDRINUSE)). Its connections read and write
// with raw system calls (internal/rawio).
func Listen(setting, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, bindError(setting, addr, err)
	}
	return rawio.Listener{Listener: ln}, nil
}

// bindError is Listen's error, also for the gossip address, which serf
// binds.
func bindError(setting, addr string, err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
		var sys *os.SyscallError
		if errors.As(err, &sys) {
			err = sys.Err
		}
	}
	return fmt.Errorf("%s %s: %w", setting, addr, err)
}

// fileError is a file named by a setting that could not be opened, named
// as bindError names addresses: "access_log /var/log: is a directory".
func fileError(setting string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", setting, pe.Path, pe.Err)
	}
	return fmt.Errorf("%s: %w", setting, err)
}

// badRequest answers requests fasthttp could not parse: a clear 4xx, never
// a crash or a dropped connection without a word.
func badRequest(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = fasthttp.StatusRequestEntityTooLarge
	case errors.As(err, &small):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	}
	ctx.Error(fasthttp.StatusMessage(status)+"\n", status)
}

// fasthttpLogger routes fasthttp's own messages (bad requests, mostly) to
// slog at debug level: a malformed request is the client's problem.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

// NewLogger returns a logger writing to w at level ("debug", "info",
// "warn", "error") in format ("text" or "json"), both as config validates
// them, and the level variable that changes it later (Options.LogLevel).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	_ = lv.UnmarshalText([]byte(level)) // validated by config
	opts := &slog.HandlerOptions{Level: lv}
	if format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

func openAccessLog(path string) (io.Writer, io.Closer, error) {
	if path == "-" {
		return os.Stdout, nopCloser{}, nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fileError("access_log", err)
	}
	return f, f, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// serve runs srv on ln in a goroutine, calling exited with Serve's result,
// and returns once srv accepts connections. fasthttp's Shutdown only stops
// listeners Serve has already registered, so a node stopped right after it
// started (a SIGTERM during startup) would otherwise serve on forever.
func serve(srv *fasthttp.Server, ln net.Listener, exited func(error)) {
	l := &acceptNotify{Listener: ln, accepting: make(chan struct{})}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		exited(srv.Serve(l))
	}()
	select {
	case <-l.accepting:
	case <-stopped:
	}
}

// acceptNotify closes accepting on the first Accept: by then Serve has
// registered the listener.
type acceptNotify struct {
	net.Listener
	once      sync.Once
	accepting chan struct{}
}

func (l *acceptNotify) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.accepting) })
	return l.Listener.Accept()
}
