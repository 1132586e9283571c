package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ringcache/ringcache/origin"
)

// settings is the one table every source reads: it binds each setting's
// name to a field of c. Defaults live in Default; --help reads them through
// this table bound to a Default() Config.
func (c *Config) settings() []setting {
	anyAddr, dialAddr := hostPort(false), hostPort(true)
	return []setting{
		{name: "config", val: str(&c.ConfigFile, nil), notInFile: true, help: "YAML config file to read settings from"},
		{name: "listen", val: str(&c.Listen, required(anyAddr)), help: "proxy listen address (host:port)"},
		{name: "tls_cert", val: str(&c.TLSCert, nil), help: "PEM certificate (chain) for clients: with tls_key, listen serves HTTPS (TLS 1.2+) instead of plain HTTP; reloaded when the file changes"},
		{name: "tls_key", val: str(&c.TLSKey, nil), help: "PEM private key of tls_cert"},
		{name: "origin", val: str(&c.Origin, originURL), help: "origin base URL: http:// or https:// and a host, no path or query; required unless origins has a pool without hosts"},
		{name: "origin_tls_ca", val: str(&c.OriginTLSCA, nil), help: "PEM CA certificates verifying an https origin instead of the system roots"},
		{name: "origin_tls_server_name", val: str(&c.OriginTLSServerName, optional(serverName)), help: `name verified in the https origin's certificate (and sent in SNI); "" is the origin URL's host`},
		{name: "origin_tls_cert", val: str(&c.OriginTLSCert, nil), help: "PEM client certificate shown to an https origin that asks for one (with origin_tls_key)"},
		{name: "origin_tls_key", val: str(&c.OriginTLSKey, nil), help: "PEM private key of origin_tls_cert"},
		{name: "origins", val: pools(&c.Origins), help: "origin pools: servers balanced per site, virtual hosts, health checks, TLS (see README, Origins)"},
		{name: "admin", val: str(&c.Admin, optional(anyAddr)), help: `admin listen address for /healthz and /metrics; "" disables it`},
		{name: "admin_token", live: true, val: str(&c.AdminToken, nil), secret: true, help: "bearer token for the admin write endpoints"},
		{name: "admin_token_file", live: true, val: str(&c.AdminTokenFile, nil), help: "file holding admin_token, read and trimmed at startup"},
		{name: "purge_allow", live: true, val: list(&c.PurgeAllow, cidr), help: "client networks (CIDR) allowed to send PURGE to the proxy listener"},
		{name: "cache_size", val: size(&c.CacheSize, positive), help: "byte budget of the cache store"},
		{name: "max_object_size", val: size(&c.MaxObjectSize, positive), help: "larger responses are streamed uncached (<= cache_size)"},
		{name: "store", val: str(&c.Store, oneOf(StoreRistretto, StoreLRU)), help: "cache store: ristretto or lru"},
		{name: "snapshot", val: str(&c.Snapshot, optional(filePath)), help: `file the store is written to at shutdown and loaded from at start (warm restart); "" disables it`},
		{name: "snapshot_interval", val: dur(&c.SnapshotInterval, nonNegative), help: "also write the snapshot this often, for a restart after a crash; 0 disables"},
		{name: "default_ttl", live: true, val: dur(&c.DefaultTTL, nonNegative), help: "freshness when a response gives no lifetime and allows no heuristic; 0 disables"},
		{name: "max_heuristic_ttl", live: true, val: dur(&c.MaxHeuristicTTL, nonNegative), help: "cap on heuristic freshness (10% of Date - Last-Modified); 0 disables"},
		{name: "stale_keep", val: dur(&c.StaleKeep, nonNegative), help: "how long an expired entry is kept for revalidation and stale serving"},
		{name: "strip_set_cookie", live: true, val: boolean(&c.StripSetCookie), help: "store responses with Set-Cookie minus that header (false: do not store them)"},
		{name: "targeted_cache_control", live: true, val: list(&c.TargetedCacheControl, targetedField), help: "targeted cache control fields obeyed over Cache-Control (RFC 9213), first present wins; empty: Cache-Control alone"},
		{name: "strip_targeted_cache_control", live: true, val: list(&c.StripTargetedCacheControl, targetedField), help: "fields of targeted_cache_control removed from answers to clients"},
		{name: "ignore_query", val: list(&c.IgnoreQuery, nil), help: "query parameter names dropped from the cache key"},
		{name: "sort_query", val: boolean(&c.SortQuery), help: "sort query parameters in the cache key"},
		{name: "normalize_accept_encoding", val: boolean(&c.NormalizeAcceptEncoding), help: "key Vary: Accept-Encoding by the codings accepted (br, deflate, gzip, zstd), not by its spelling"},
		{name: "rules", live: true, val: ruleValue(&c.Rules), help: "ordered rules matching requests (host, path_prefix, path_regex, methods, header, cookie) to bypass, ttl, max_ttl, key_headers, key_cookies or stale_if_error; the first match applies"},
		{name: "key_host", val: str(&c.KeyHost, optional(hostName)), help: `host used in cache keys and sent upstream instead of each client's Host; "" keys on the client's Host`},
		{name: "pass_ttl", val: dur(&c.PassTTL, nonNegative), help: "how long a URL with an unstorable response bypasses coalescing; 0 disables"},
		{name: "coalesce_timeout", val: dur(&c.CoalesceTimeout, positive), help: "how long requests wait for an identical in-flight origin fetch before one of them fetches again"},
		{name: "origin_connect_timeout", val: dur(&c.OriginConnectTimeout, positive), help: "deadline for connecting to the origin"},
		{name: "origin_timeout", val: dur(&c.OriginTimeout, positive), help: "deadline for the origin's response headers"},
		{name: "origin_max_conns", val: integer(&c.OriginMaxConns, positive), help: "maximum connections to the origin"},
		{name: "preserve_host", val: boolean(&c.PreserveHost), help: "send the client's Host header to the origin"},
		{name: "trusted_proxies", val: list(&c.TrustedProxies, cidr), help: "networks (CIDR) of proxies in front of the node whose X-Forwarded-* fields are kept and extended; others' are replaced"},
		{name: "forwarded_header", val: boolean(&c.ForwardedHeader), help: "also send the origin an RFC 7239 Forwarded field"},
		{name: "tunnel_idle_timeout", val: dur(&c.TunnelIdleTimeout, positive), help: "close a WebSocket (or other Upgrade) tunnel to the origin after this long without a byte either way"},
		{name: "read_timeout", val: dur(&c.ReadTimeout, positive), help: "client connection read timeout"},
		{name: "write_timeout", val: dur(&c.WriteTimeout, positive), help: "client connection write timeout"},
		{name: "idle_timeout", val: dur(&c.IdleTimeout, positive), help: "client keep-alive idle timeout"},
		{name: "max_request_body", val: size(&c.MaxRequestBody, positive), help: "largest request body accepted from a client"},
		{name: "max_conns", val: integer(&c.MaxConns, nonNegative), help: "most client connections served at once, per listener (beyond: 503); 0 means no cap"},
		{name: "max_conns_per_ip", val: integer(&c.MaxConnsPerIP, nonNegative), help: "most connections from one client address on listen (beyond: 503); 0 means no cap"},
		{name: "log_level", live: true, val: str(&c.LogLevel, oneOf("debug", "info", "warn", "error")), help: "debug, info, warn or error"},
		{name: "log_format", val: str(&c.LogFormat, oneOf(LogFormatText, LogFormatJSON)), help: "text or json"},
		{name: "access_log", val: str(&c.AccessLog, nil), help: `access log: "" off, "-" stdout, or a file path`},
		{name: "access_log_format", val: str(&c.AccessLogFormat, optional(oneOf(AccessLogCombined, AccessLogJSON))), help: `access log lines: combined or json; "" follows log_format`},
		{name: "stats_full_urls", val: boolean(&c.StatsFullURLs), help: "show query strings in /stats top keys (they may carry tokens)"},
		{name: "node_name", val: str(&c.NodeName, notEmpty), help: "unique cluster member name; defaults to the host name"},
		{name: "gossip", val: str(&c.Gossip, optional(anyAddr)), help: `serf bind address (host:port); "" runs a single node`},
		{name: "advertise", val: str(&c.Advertise, optional(dialAddr)), help: "gossip address peers should use when it differs from gossip"},
		{name: "join", val: list(&c.Join, dialAddr), help: "host:port of live members to join"},
		{name: "peer_listen", val: str(&c.PeerListen, optional(anyAddr)), help: `listen address for peer traffic (mutual TLS); "" serves peers on listen beside clients`},
		{name: "gossip_key", val: str(&c.GossipKey, optional(gossipKey)), secret: true, help: "base64 key of 16, 24 or 32 bytes encrypting gossip; \"\" derives one from peer_secret"},
		{name: "peer_secret", val: str(&c.PeerSecret, optional(peerSecret)), secret: true, help: "shared secret making a member: peer TLS and the gossip key derive from it; required with gossip"},
		{name: "peer_secret_file", val: str(&c.PeerSecretFile, nil), help: "file holding peer_secret, read and trimmed at startup"},
		{name: "peer_tls_cert", val: str(&c.PeerTLSCert, nil), help: "PEM certificate (chain) this node shows peers; with peer_tls_key and peer_tls_ca, peer TLS uses the CA instead of peer_secret"},
		{name: "peer_tls_key", val: str(&c.PeerTLSKey, nil), help: "PEM private key of peer_tls_cert"},
		{name: "peer_tls_ca", val: str(&c.PeerTLSCA, nil), help: "PEM CA certificates signing every member's peer_tls_cert"},
		{name: "ring", val: str(&c.Ring, oneOf(RingHashring, RingRendezvous)), help: "key placement: hashring or rendezvous"},
		{name: "ring_vnodes", val: integer(&c.RingVnodes, positive), help: "virtual nodes per member on the ring"},
		{name: "peer_timeout", val: dur(&c.PeerTimeout, positive), help: "deadline for a forwarded request before falling back to the origin"},
		{name: "replicas", val: integer(&c.Replicas, between(1, 3)), help: "members holding each entry, its owner included: 2 or 3 keep a crashed member's entries served, at that cost in capacity"},
		{name: "rebalance_rate", val: size(&c.RebalanceRate, positive), help: "bytes per second of entries pushed to their new holders after a membership change"},
		{name: "hot_cache_size", val: size(&c.HotCacheSize, nonNegative), help: "bytes for local copies of popular keys owned by peers; 0 disables"},
		{name: "handoff_timeout", val: dur(&c.HandoffTimeout, positive), help: "deadline for handing entries to new owners at shutdown"},
		{name: "handoff_max_bytes", val: size(&c.HandoffMaxBytes, nonNegative), help: "most bytes handed to new owners at shutdown; 0 disables handoff"},
		{name: "shutdown_timeout", val: dur(&c.ShutdownTimeout, positive), help: "drain deadline after SIGTERM"},
	}
}

// setting describes one configuration setting.
type setting struct {
	name      string // YAML key; env and flag names derive from it
	help      string // one line for --help
	val       value  // parse, format and check, bound to a Config field
	secret    bool   // never echoed in errors or logs
	live      bool   // a running node applies a change (SIGHUP); others need a restart
	notInFile bool   // not accepted as a YAML key
}

// fileOnly reports whether s is set in the config file only: a value read
// from its YAML node (a yamlValue) has no flag or environment variable.
func (s *setting) fileOnly() bool {
	_, ok := s.val.(yamlValue)
	return ok
}

func (s *setting) flagName() string { return strings.ReplaceAll(s.name, "_", "-") }
func (s *setting) envName() string  { return envName(s.name) }

func envName(name string) string { return envPrefix + strings.ToUpper(name) }

const envPrefix = "RINGCACHE_"

// value is a setting's field seen as text. Set is all-or-nothing: on error
// the field keeps its previous value.
type value interface {
	Set(string) error
	String() string
	Type() string // kind shown in --help
	isList() bool
	setItems([]string) error // lists only: one YAML sequence
	validate() error
	take(from value) // copy the value of the same setting of another Config
}

// field is a value of Go type T with the text syntax of its kind.
type field[T any] struct {
	p      *T
	typ    string
	parse  func(string) (T, error)
	format func(T) string
	check  func(T) error // nil: every parseable value is valid
}

func (f *field[T]) Set(s string) error {
	v, err := f.parse(s)
	if err != nil {
		return err
	}
	*f.p = v
	return nil
}

func (f *field[T]) String() string { return f.format(*f.p) }
func (f *field[T]) Type() string   { return f.typ }

func (f *field[T]) isList() bool {
	_, ok := any(f.p).(*[]string)
	return ok
}

func (f *field[T]) setItems(items []string) error {
	p, ok := any(f.p).(*[]string)
	if !ok {
		return errors.New("not a list setting")
	}
	*p = cleanItems(items)
	return nil
}

func (f *field[T]) take(from value) { *f.p = *from.(*field[T]).p }

func (f *field[T]) validate() error {
	if f.check == nil {
		return nil
	}
	return f.check(*f.p)
}

func str(p *string, check func(string) error) value {
	return &field[string]{p: p, typ: "string", check: check,
		parse:  func(s string) (string, error) { return s, nil },
		format: func(s string) string { return s },
	}
}

func dur(p *time.Duration, check func(time.Duration) error) value {
	return &field[time.Duration]{p: p, typ: "duration", check: check, parse: parseDuration, format: formatDuration}
}

func size(p *int64, check func(int64) error) value {
	return &field[int64]{p: p, typ: "bytes", check: check, parse: ParseBytes, format: FormatBytes}
}

func integer(p *int, check func(int) error) value {
	return &field[int]{p: p, typ: "int", check: check,
		parse: func(s string) (int, error) {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return 0, errors.New("want a whole number")
			}
			return n, nil
		},
		format: strconv.Itoa,
	}
}

func boolean(p *bool) value {
	return &field[bool]{p: p, typ: "bool",
		parse: func(s string) (bool, error) {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			if err != nil {
				return false, errors.New("want true or false")
			}
			return b, nil
		},
		format: strconv.FormatBool,
	}
}

// list is a string list: comma-separated in flags and the environment, a
// sequence or a comma string in YAML. check applies to each item.
func list(p *[]string, check func(string) error) value {
	f := &field[[]string]{p: p, typ: "strings",
		parse:  func(s string) ([]string, error) { return cleanItems(strings.Split(s, ",")), nil },
		format: func(l []string) string { return strings.Join(l, ",") },
	}
	if check != nil {
		f.check = func(l []string) error {
			var errs []error
			for _, item := range l {
				if err := check(item); err != nil {
					errs = append(errs, fmt.Errorf("item %q: %w", item, err))
				}
			}
			return errors.Join(errs...)
		}
	}
	return f
}

// cleanItems trims items and drops empty ones, so "a, b," is [a b] and an
// empty list is nil like the default.
func cleanItems(items []string) []string {
	var out []string
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("want a duration such as 1.5s, 10m or 24h")
	}
	return d, nil
}

// formatDuration drops the zero tails time.Duration.String adds: 1h, not 1h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Checks. Each returns the reason only; the caller adds key, value and source.

func positive[T int | int64 | time.Duration](v T) error {
	if v <= 0 {
		return errors.New("must be greater than 0")
	}
	return nil
}

func between(lo, hi int) func(int) error {
	return func(v int) error {
		if v < lo || v > hi {
			return fmt.Errorf("must be from %d to %d", lo, hi)
		}
		return nil
	}
}

func nonNegative[T int | int64 | time.Duration](v T) error {
	if v < 0 {
		return errors.New("must not be negative")
	}
	return nil
}

func notEmpty(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// filePath accepts a path that can name a file (not one ending in a
// slash, which names a directory).
func filePath(s string) error {
	if strings.HasSuffix(s, "/") {
		return errors.New("want a file path, not a directory")
	}
	return nil
}

// cidr accepts a network such as 10.0.0.0/8 or ::1/128.
func cidr(s string) error {
	if _, err := netip.ParsePrefix(s); err != nil {
		return errors.New("want a network in CIDR form, such as 10.0.0.0/8")
	}
	return nil
}

// targetedField accepts a response field name (a token, RFC 9110 §5.1)
// other than Cache-Control, which is no targeted field.
func targetedField(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errors.New("want a header field name, such as CDN-Cache-Control")
		}
	}
	if strings.EqualFold(s, "Cache-Control") {
		return errors.New("Cache-Control is obeyed anyway; name targeted fields such as CDN-Cache-Control")
	}
	return nil
}

// hostName accepts a host or host:port as it may appear in a Host header.
func hostName(s string) error {
	if strings.ContainsAny(s, " \t\r\n/?#@") {
		return errors.New("want a host name or host:port, without scheme or path")
	}
	return nil
}

// optional lets "" through, meaning "off".
func optional(check func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return check(s)
	}
}

func required(check func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return errors.New("must not be empty")
		}
		return check(s)
	}
}

func oneOf(allowed ...string) func(string) error {
	return func(s string) error {
		for _, a := range allowed {
			if s == a {
				return nil
			}
		}
		return errors.New("want " + orList(allowed))
	}
}

// orList writes "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// hostPort checks a host:port with a numeric port. Listeners may leave the
// host empty (all interfaces) and use port 0 (any free port); an address
// others dial needs both.
func hostPort(dial bool) func(string) error {
	return func(s string) error {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			var ae *net.AddrError
			if errors.As(err, &ae) {
				return fmt.Errorf("want host:port: %s", ae.Err)
			}
			return fmt.Errorf("want host:port: %w", err)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return fmt.Errorf("port %q is not a number in 0..65535", port)
		}
		if dial && host == "" {
			return errors.New("want host:port with a host")
		}
		if dial && n == 0 {
			return errors.New("port 0 cannot be dialled")
		}
		return nil
	}
}

// originURL is the origin client's own rule (origin.ParseURL), so that a URL
// the client would refuse is reported here, naming the setting and its
// source, and not as a failure to start the node.
func originURL(s string) error {
	if s == "" {
		return nil // reported as "required" with the hint where to set it
	}
	_, err := origin.ParseURL(s)
	return err
}

func gossipKey(s string) error {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return errors.New("not valid base64 (make one with: head -c32 /dev/urandom | base64)")
	}
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("decodes to %d bytes, want 16, 24 or 32", len(key))
}

// minSecret keeps peer secrets out of guessing range; the recommended
// generator gives 44 characters.
const minSecret = 16

func peerSecret(s string) error {
	if len(s) < minSecret {
		return fmt.Errorf("must be at least %d characters (make one with: head -c32 /dev/urandom | base64)", minSecret)
	}
	return nil
}
