// Package config holds the settings of `ringcache serve` and loads them from
// four layers: built-in defaults, a YAML file, RINGCACHE_* environment
// variables and command-line flags, each overriding the one before. The
// configuration is flat, and every setting is spelt three ways mechanically:
// the YAML key cache_size, the environment variable RINGCACHE_CACHE_SIZE and
// the flag --cache-size. One table of setting descriptors (settings.go) drives
// all three sources, the --help text and the messages of Validate, so adding a
// setting is one field in Config, one value in Default and one table line.
// The one exception is origins, a list of origin pools (origins.go): a YAML
// structure, set in the file only, whose errors name each part by its key
// path, as in origins[1].servers[0].
package config

import (
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/rules"
)

// Values of the enumerated settings. Store and ring kinds are the names
// their packages build them by.
const (
	StoreRistretto = cache.KindRistretto // store: admission-controlled, concurrent
	StoreLRU       = cache.KindLRU       // store: plain least-recently-used

	RingHashring   = cluster.KindHashRing   // ring: consistent hashing with virtual nodes
	RingRendezvous = cluster.KindRendezvous // ring: highest-random-weight hashing

	LogFormatText = "text"
	LogFormatJSON = "json"

	AccessLogCombined = "combined" // access_log_format: combined log format, Cache-Status and duration
	AccessLogJSON     = "json"     // access_log_format: one JSON object per line
)

// Config is every setting of `ringcache serve`. Sizes are bytes; a zero
// duration or size disables the feature only where a field says so.
type Config struct {
	// ConfigFile is the YAML file the settings were read from; "" when none
	// was given. Set by --config or RINGCACHE_CONFIG, never by the file.
	ConfigFile string

	// Listen is the proxy listener, host:port.
	Listen string
	// TLSCert and TLSKey name PEM files: the certificate chain and private
	// key the proxy listener shows clients. Set both and Listen serves
	// HTTP/1.1 over TLS 1.2 or 1.3 only (plain HTTP is answered 400);
	// leave both empty for plain HTTP. The files are reloaded when they
	// change on disk.
	TLSCert, TLSKey string
	// Origin is the base URL requests are proxied to: http:// or https://,
	// with a host and no path, query, fragment or user info (the rule is
	// origin.ParseURL). It is the default pool, of one server: required
	// unless Origins has a pool without hosts instead.
	Origin string
	// OriginTLSCA, OriginTLSServerName, OriginTLSCert and OriginTLSKey are
	// the TLS settings of an https Origin (origin.TLSFiles): a PEM file of
	// CA certificates verifying it instead of the system roots, the name
	// verified in its certificate (and sent in SNI) instead of the URL's
	// host, and a PEM client certificate and its key for origins that ask
	// for one. Verification is never turned off. Pools in Origins have
	// their own.
	OriginTLSCA, OriginTLSServerName, OriginTLSCert, OriginTLSKey string
	// Origins are origin pools, set in the config file only: several
	// servers for one site (balanced, with a breaker each and an optional
	// health check) and virtual hosts served by other servers than the
	// default pool's. See OriginPool.
	Origins []OriginPool
	// Admin is the listener for /healthz and /metrics; "" disables it.
	Admin string
	// AdminToken is the bearer token the admin write endpoints require.
	AdminToken string
	// AdminTokenFile names a file holding AdminToken. Load reads it, puts
	// the trimmed content into AdminToken and clears this field, so a loaded
	// Config still validates.
	AdminTokenFile string
	// PurgeAllow lists the client networks (CIDR) whose PURGE requests on
	// the proxy listener are obeyed. Default: loopback only.
	PurgeAllow []string

	// CacheSize is the byte budget of the store. Must be > 0.
	CacheSize int64
	// MaxObjectSize is the largest response that is stored; larger ones are
	// streamed to the client uncached. Must be > 0 and <= CacheSize.
	MaxObjectSize int64
	// Store picks the store implementation: StoreRistretto or StoreLRU.
	Store string
	// Snapshot is a file the store is written to at shutdown (SIGTERM)
	// and loaded from at start, so a restarted node serves hits at once.
	// "" disables it. The file holds cached responses and is created mode
	// 0600; a file there that is not a snapshot is never overwritten.
	Snapshot string
	// SnapshotInterval also writes the snapshot this often while the node
	// runs, so a restart after a crash (SIGKILL, OOM) is warm too. 0
	// disables it; it needs Snapshot.
	SnapshotInterval time.Duration
	// DefaultTTL is the freshness given to storable responses that state no
	// lifetime and allow no heuristic. 0 disables it.
	DefaultTTL time.Duration
	// MaxHeuristicTTL caps heuristic freshness (10% of Date - Last-Modified,
	// RFC 9111 §4.2.2). 0 disables heuristic freshness.
	MaxHeuristicTTL time.Duration
	// StaleKeep is how long an expired entry is kept for conditional
	// revalidation (when it has an ETag or Last-Modified) and for serving
	// stale when a client allows it (max-stale, stale-if-error). 0 drops
	// entries as soon as their freshness and RFC 5861 windows end.
	StaleKeep time.Duration
	// StripSetCookie stores responses carrying Set-Cookie without that
	// header; when false such responses are not stored at all.
	StripSetCookie bool
	// TargetedCacheControl is the cluster's target list of targeted cache
	// control (RFC 9213): response fields that carry Cache-Control
	// directives for this kind of cache, most applicable first, such as
	// [Ringcache-Cache-Control, CDN-Cache-Control]. The first present with
	// a valid value decides a response's caching in place of Cache-Control
	// and Expires. Empty: Cache-Control alone.
	TargetedCacheControl []string
	// StripTargetedCacheControl names fields of TargetedCacheControl left
	// out of the answers to clients (members still pass them to each
	// other): for a field only this cluster reads.
	StripTargetedCacheControl []string
	// IgnoreQuery lists query parameter names dropped from the cache key,
	// such as utm_source.
	IgnoreQuery []string
	// SortQuery sorts query parameters in the cache key, so ?a=1&b=2 and
	// ?b=2&a=1 share an entry.
	SortQuery bool
	// NormalizeAcceptEncoding keys Vary: Accept-Encoding by the set of
	// codings a request accepts (br, deflate, gzip, zstd) and asks the
	// origin for that set, instead of one variant per spelling.
	NormalizeAcceptEncoding bool
	// Rules are the operator's rules, compiled (regular expressions
	// included) when the file is loaded: the first that matches a GET or
	// HEAD request may bypass the cache, force or cap the TTL of what is
	// stored, add request fields or cookies to the key, or let a stale copy
	// answer when the origin fails. Set only in the YAML file, as a list
	// under rules:. nil: none.
	Rules *rules.Set

	// KeyHost replaces the client's Host in cache keys and towards the
	// origin (Host with preserve_host, X-Forwarded-Host) when every client
	// reaches one site through any node, e.g. by each node's IP address.
	// "" keys on the client's Host.
	KeyHost string
	// PassTTL is how long a URL whose response was not storable goes
	// straight to the origin, skipping request coalescing. 0 disables it.
	PassTTL time.Duration
	// CoalesceTimeout is how long requests wait for an identical in-flight
	// origin fetch before one of them (one per fetch) fetches again; the
	// others keep waiting for whichever answers first, up to OriginTimeout
	// more. Must be > 0.
	CoalesceTimeout time.Duration

	// OriginConnectTimeout bounds connecting to the origin. Must be > 0.
	OriginConnectTimeout time.Duration
	// OriginTimeout bounds an origin request until its response headers
	// arrive. Must be > 0.
	OriginTimeout time.Duration
	// OriginMaxConns caps connections to the origin. Must be >= 1.
	OriginMaxConns int
	// PreserveHost sends the client's Host header to the origin instead of
	// the origin URL's host.
	PreserveHost bool
	// TrustedProxies lists the networks (CIDR) of the proxies in front of
	// the node, such as an ingress or a load balancer. A request whose
	// connection comes from one keeps its X-Forwarded-Proto and
	// X-Forwarded-Host (and Forwarded), and its X-Forwarded-For gets the
	// connecting address appended; everyone else's are replaced by what the
	// node saw. None of them is part of the cache key. Default: none.
	TrustedProxies []string
	// ForwardedHeader also sends the origin RFC 7239's Forwarded field
	// (for, host, proto), extending a trusted proxy's and replacing anyone
	// else's; off, a trusted proxy's is passed on and anyone else's dropped.
	ForwardedHeader bool
	// TunnelIdleTimeout closes a tunnel (a connection switched to another
	// protocol, such as a WebSocket, relayed to the origin) after this long
	// without a byte either way. Must be > 0.
	TunnelIdleTimeout time.Duration

	// ReadTimeout, WriteTimeout and IdleTimeout bound client connections
	// (IdleTimeout between keep-alive requests). Each must be > 0.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxRequestBody is the largest request body accepted from a client.
	// Must be > 0.
	MaxRequestBody int64
	// MaxConns caps the client connections the proxy listener (and the peer
	// listener, each on its own) serves at once; those beyond it are
	// answered 503 and closed. Each open connection costs memory (fasthttp
	// keeps a 16 KiB read buffer and a goroutine per connection, more while
	// a request is read), so the cap is what bounds a node's memory against
	// a flood of connections. 0 means no cap of ours.
	MaxConns int
	// MaxConnsPerIP caps the connections from one client address on the
	// proxy listener, so one host cannot take every slot of MaxConns; those
	// beyond it are answered 503 and closed. Load balancers and sidecars
	// connect from few addresses, and so do peers when they share the proxy
	// listener (up to 256 connections each): keep it well above what one
	// of them opens. 0 means no cap.
	MaxConnsPerIP int

	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is LogFormatText or LogFormatJSON.
	LogFormat string
	// AccessLog is "" for no access log, "-" for stdout, or a file path.
	AccessLog string
	// AccessLogFormat is AccessLogCombined or AccessLogJSON; "" follows
	// LogFormat (json gives JSON lines, text the combined format), so
	// one setting makes every line a JSON object and another keeps the
	// combined format for tools that read it beside JSON logs.
	AccessLogFormat string
	// StatsFullURLs shows top keys with their query strings on the admin
	// /stats endpoint; by default only host and path are shown, since
	// queries may carry tokens.
	StatsFullURLs bool

	// NodeName is this member's unique name in the cluster. Defaults to the
	// host name.
	NodeName string
	// Gossip is the serf bind address, host:port; "" runs a single node
	// without a cluster.
	Gossip string
	// Advertise is the gossip address peers should use when it differs
	// from Gossip (NAT, containers); "" means Gossip.
	Advertise string
	// Join lists host:port of live members to join at start.
	Join []string
	// PeerListen is a separate listener for peer-to-peer traffic; "" means
	// peers use the proxy listener.
	PeerListen string
	// GossipKey is a base64 key decoding to 16, 24 or 32 bytes that turns on
	// serf's encryption; "" leaves gossip in clear text.
	GossipKey string
	// PeerSecret authenticates requests between peers. Required when Gossip
	// is set; at least 16 characters.
	PeerSecret string
	// PeerSecretFile names a file holding PeerSecret; Load reads and trims
	// it into PeerSecret and clears this field, as for AdminTokenFile.
	PeerSecretFile string
	// PeerTLSCert, PeerTLSKey and PeerTLSCA name PEM files: this node's
	// certificate chain and key, and the CA certificates that sign every
	// member's. Set together, peer TLS proves membership with the CA;
	// all empty, with a key derived from PeerSecret (peer traffic is
	// mutual TLS either way). The files are reloaded when they change on
	// disk.
	PeerTLSCert, PeerTLSKey, PeerTLSCA string
	// Ring picks key placement: RingHashring or RingRendezvous.
	Ring string
	// RingVnodes is the number of virtual nodes per member. Must be >= 1.
	RingVnodes int
	// PeerTimeout bounds a request forwarded to the owning peer before the
	// node falls back to the origin. Must be > 0.
	PeerTimeout time.Duration
	// Replicas is how many members hold each entry, its owner included
	// (1 to 3): with 2, a member's crash loses none of its entries, and the
	// cluster holds half as many distinct entries in the same memory.
	Replicas int
	// RebalanceRate paces pushing entries to their new holders after a
	// membership change, in bytes per second. Must be > 0.
	RebalanceRate int64
	// HotCacheSize is the byte budget for local copies of popular keys owned
	// by other nodes. 0 disables the hot cache.
	HotCacheSize int64
	// HandoffTimeout bounds handing entries to their new owners at shutdown.
	// Must be > 0.
	HandoffTimeout time.Duration
	// HandoffMaxBytes caps the bytes handed off at shutdown. 0 disables
	// handoff.
	HandoffMaxBytes int64

	// ShutdownTimeout is the drain deadline after SIGTERM. Must be > 0.
	ShutdownTimeout time.Duration
}

// Default returns every setting at its default. Origin is empty, so the
// result does not validate until an origin (or a default pool) is set.
func Default() Config {
	return Config{
		Listen:    "127.0.0.1:8080",
		Admin:     "127.0.0.1:8081",
		CacheSize: 256 << 20,

		MaxObjectSize:           8 << 20,
		Store:                   StoreRistretto,
		MaxHeuristicTTL:         24 * time.Hour,
		StaleKeep:               time.Hour,
		SortQuery:               true,
		NormalizeAcceptEncoding: true,
		PassTTL:                 10 * time.Second,
		CoalesceTimeout:         10 * time.Second,

		OriginConnectTimeout: 3 * time.Second,
		OriginTimeout:        30 * time.Second,
		OriginMaxConns:       1024,
		TunnelIdleTimeout:    5 * time.Minute,

		ReadTimeout:    30 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    60 * time.Second,
		MaxRequestBody: 16 << 20,
		MaxConns:       10000,
		MaxConnsPerIP:  1000,

		LogLevel:  "info",
		LogFormat: LogFormatText,

		NodeName:        hostname(),
		Ring:            RingHashring,
		RingVnodes:      160,
		PeerTimeout:     2 * time.Second,
		HotCacheSize:    16 << 20,
		Replicas:        2,
		RebalanceRate:   64 << 20,
		HandoffTimeout:  10 * time.Second,
		HandoffMaxBytes: 1 << 30,

		ShutdownTimeout:      30 * time.Second,
		PurgeAllow:           []string{"127.0.0.0/8", "::1/128"},
		TargetedCacheControl: []string{"CDN-Cache-Control"},
	}
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "ringcache"
}

// ErrHelp is returned by Load when the arguments ask for --help or -h; the
// usage text has then been written and the caller should exit 0.
var ErrHelp = errors.New("help requested")

// Validate checks every setting and reports all problems at once, each
// naming the setting as the user spells it in the YAML file.
func (c Config) Validate() error {
	return c.validate(nil, nil)
}

// LogValue lets the effective configuration be logged with slog; secret
// settings show only whether they are set.
func (c Config) LogValue() slog.Value {
	table := c.settings()
	attrs := make([]slog.Attr, 0, len(table))
	for _, s := range table {
		v := s.val.String()
		if s.secret && v != "" {
			v = "<redacted>"
		}
		attrs = append(attrs, slog.String(s.name, v))
	}
	return slog.GroupValue(attrs...)
}

// Reload returns the configuration a running node moves to when next is
// loaded while it runs cur: cur with every live setting (marked in the
// settings table; --help says "reloads on SIGHUP") taken from next.
// applied names the live settings that changed; restart names the other
// settings that changed, which keep their running values until a restart.
func Reload(cur, next Config) (merged Config, applied, restart []string) {
	merged = cur
	sm, sn := merged.settings(), next.settings()
	for i := range sm {
		if sm[i].val.String() == sn[i].val.String() {
			continue
		}
		if sm[i].live {
			sm[i].val.take(sn[i].val)
			applied = append(applied, sm[i].name)
		} else {
			restart = append(restart, sm[i].name)
		}
	}
	return merged, applied, restart
}

// Changed returns the names (YAML keys) of the settings whose values differ
// between a and b, in table order: what a reload has to apply or report.
func Changed(a, b Config) []string {
	sa, sb := a.settings(), b.settings()
	var names []string
	for i := range sa {
		if sa[i].val.String() != sb[i].val.String() {
			names = append(names, sa[i].name)
		}
	}
	return names
}
