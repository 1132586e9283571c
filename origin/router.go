package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// RouterOptions configures a Router.
type RouterOptions struct {
	// Client holds what every server's client shares: timeouts, connection
	// limit (per server), PreserveHost, breaker, Observe, Clock. Its URL,
	// TLSConfig and GetTLSConfig are ignored: each pool gives its own.
	Client ClientOptions
	// Pools are the origin pools; exactly one has no Hosts and is the
	// default pool. No host may be in two pools.
	Pools []PoolOptions
	// Logger receives circuit and health changes. Nil discards.
	Logger *slog.Logger
}

// Router sends each request to the pool of its host: the pool listing the
// host, else the pool of the most specific wildcard matching it, else the
// default pool. The host is the request's Host header, without its port
// and compared case-insensitively; the proxy sets it to the request's one
// authority, the host its cache key names (key_host when set), before
// Fetch or Dial. A Router with only the default pool looks nothing up.
//
// It runs the pools' active health checks from NewRouter until Close. It
// is safe for concurrent use, and routing allocates nothing.
type Router struct {
	pools []*Pool // as configured
	def   *Pool
	exact map[string]*Pool // "www.example.org"
	wild  map[string]*Pool // "*.example.org" as ".example.org"

	cancel context.CancelFunc
	checks sync.WaitGroup
}

// NewRouter checks o, builds every pool's clients and starts the health
// checks. It does not connect otherwise.
func NewRouter(o RouterOptions) (*Router, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{exact: make(map[string]*Pool), wild: make(map[string]*Pool)}
	co := o.Client
	co.Logger = log
	var errs []error
	for i, po := range o.Pools {
		if po.Name == "" {
			po.Name = "default"
			if len(po.Hosts) > 0 {
				po.Name = po.Hosts[0]
			}
		}
		p, err := newPool(po, co, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("origin pool %d (%s): %w", i, po.Name, err))
			continue
		}
		r.pools = append(r.pools, p)
		if len(po.Hosts) == 0 {
			if r.def != nil {
				errs = append(errs, fmt.Errorf("origin pool %d (%s): a second pool without hosts (%s is the default)", i, po.Name, r.def.name))
			}
			r.def = p
		}
		for _, h := range po.Hosts {
			norm, err := HostPattern(h)
			if err != nil {
				errs = append(errs, fmt.Errorf("origin pool %d (%s): host %q: %w", i, po.Name, h, err))
				continue
			}
			m, key := r.exact, norm
			if rest, ok := strings.CutPrefix(norm, "*"); ok {
				m, key = r.wild, rest
			}
			if other := m[key]; other != nil {
				errs = append(errs, fmt.Errorf("origin pool %d (%s): host %q is also in pool %s", i, po.Name, h, other.name))
				continue
			}
			m[key] = p
		}
	}
	if r.def == nil && len(errs) == 0 {
		errs = append(errs, errors.New("no default origin pool (one without hosts)"))
	}
	if err := errors.Join(errs...); err != nil {
		r.closePools()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	for _, p := range r.pools {
		if !p.check.Enabled() {
			continue
		}
		for _, s := range p.servers {
			r.checks.Add(1)
			go p.watch(ctx, s, &r.checks)
		}
	}
	return r, nil
}

// Fetch sends req to a server of its host's pool (see Pool.Fetch).
func (r *Router) Fetch(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	return r.Route(req.Header.Host()).Fetch(ctx, req, resp)
}

// Dial opens a tunnel connection to a server of req's host's pool (see
// Pool.Dial).
func (r *Router) Dial(ctx context.Context, req *fasthttp.Request) (net.Conn, error) {
	return r.Route(req.Header.Host()).Dial(ctx, req)
}

// maxHost is the longest host name routed by name (a DNS name has at most
// 253 characters); longer ones go to the default pool.
const maxHost = 256

// Route returns the pool serving authority, a Host header's value
// (host[:port]).
func (r *Router) Route(authority []byte) *Pool {
	if len(r.exact) == 0 && len(r.wild) == 0 {
		return r.def
	}
	host := stripPort(authority)
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1] // the root's dot: "example.org." is example.org
	}
	if len(host) == 0 || len(host) > maxHost {
		return r.def
	}
	var buf [maxHost]byte
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			n := copy(buf[:], host)
			lower(buf[i:n])
			host = buf[:n]
			break
		}
	}
	if p := r.exact[string(host)]; p != nil {
		return p
	}
	// Wildcards, most specific first: for a.b.example.org, *.b.example.org
	// before *.example.org.
	for i, c := range host {
		if c == '.' {
			if p := r.wild[string(host[i:])]; p != nil {
				return p
			}
		}
	}
	return r.def
}

func lower(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
}

// stripPort returns the host of a host[:port] authority; an IPv6 literal
// keeps its brackets.
func stripPort(a []byte) []byte {
	if len(a) > 0 && a[0] == '[' {
		for i, c := range a {
			if c == ']' {
				return a[:i+1]
			}
		}
		return a
	}
	for i, c := range a {
		if c == ':' {
			return a[:i]
		}
	}
	return a
}

// HostPattern checks a virtual host of a pool and returns it as the Router
// matches it: lower case. A pattern is a host name ("www.example.org"), a
// wildcard for every name below a domain ("*.example.org": a.example.org
// and a.b.example.org, not example.org itself), an IPv4 address, or an IPv6
// literal in brackets, never with a port: a request's port does not choose
// its pool. It is the one rule for virtual hosts: NewRouter applies it, and
// so does the configuration, which can then name the setting.
func HostPattern(s string) (string, error) {
	p := strings.ToLower(s)
	name := p
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		name = rest
	}
	switch {
	case name == "":
		return "", errors.New("empty host")
	case strings.HasPrefix(name, "["):
		if name != p {
			return "", errors.New("a wildcard needs a domain name")
		}
		ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"))
		if err != nil || !strings.HasSuffix(name, "]") || !ip.Is6() {
			return "", errors.New("want an IPv6 address in brackets, without a port")
		}
		return p, nil
	case strings.Contains(name, ":"):
		return "", errors.New("want a host without a port (hosts match whatever port a request names)")
	case strings.Contains(name, "*"):
		return "", errors.New("a wildcard is allowed only as the first label (*.example.org)")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return "", errors.New("empty label (two dots, or a dot at either end)")
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("character %q not allowed in a host name", c)
			}
		}
	}
	return p, nil
}

// Pools returns the pools in their configured order.
func (r *Router) Pools() []*Pool { return r.pools }

// ServerStatus is one server as the admin API and metrics show it.
type ServerStatus struct {
	Pool   string `json:"pool"`
	Server string `json:"server"`
	// Up: the circuit is closed and the health check (if any) passes.
	Up          bool `json:"up"`
	CircuitOpen bool `json:"circuit_open"`
	// HealthCheck is "passing" or "failing", or "" without a check.
	HealthCheck string `json:"health_check,omitempty"`
	InFlight    int    `json:"in_flight"`
	// Requests counts the round trips sent to the server.
	Requests uint64 `json:"requests"`
}

// Status returns every server's state, pools in order.
func (r *Router) Status() []ServerStatus {
	var out []ServerStatus
	for _, p := range r.pools {
		for _, s := range p.servers {
			passing := s.passing.Load()
			st := ServerStatus{
				Pool: p.name, Server: s.c.URL(),
				CircuitOpen: !s.c.Healthy(),
				InFlight:    s.c.InFlight(),
				Requests:    s.c.Sent(),
			}
			st.Up = !st.CircuitOpen && passing
			if p.check.Enabled() {
				st.HealthCheck = "failing"
				if passing {
					st.HealthCheck = "passing"
				}
			}
			out = append(out, st)
		}
	}
	return out
}

// Close stops the health checks, waiting for those in flight (each ends
// within its timeout), and closes idle connections. The Router stays
// usable for requests.
func (r *Router) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.checks.Wait()
	r.closePools()
}

func (r *Router) closePools() {
	for _, p := range r.pools {
		p.Close()
	}
}
