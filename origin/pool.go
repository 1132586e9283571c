package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Balancing policies of a Pool, as the configuration spells them.
const (
	// RoundRobin sends each request to the next server in turn.
	RoundRobin = "round_robin"
	// LeastConns sends each request to the server with the fewest requests
	// in flight (Client.InFlight), taking turns among equals.
	LeastConns = "least_conns"
)

// MaxServers is the most servers one pool may have.
const MaxServers = 64 // a request's tried servers are one uint64

// Defaults for zero HealthCheck fields.
const (
	DefaultCheckInterval = 10 * time.Second
	DefaultCheckTimeout  = 5 * time.Second
	DefaultCheckStatus   = fasthttp.StatusOK
)

// HealthCheck is a pool's active health check: every Interval each server
// is sent GET Path, and a server whose answer is not Status (or that does
// not answer within Timeout) is left out of the rotation until a later
// check passes. The check runs beside the passive circuit breaker, which
// keeps learning from real requests: a server is used while both allow it.
// A server counts as passing until its first check says otherwise.
type HealthCheck struct {
	// Path is the request target checked, such as /healthz (a query may
	// follow). "" disables the active check.
	Path string
	// Interval is the time between two checks of a server. Zero means 10s.
	Interval time.Duration
	// Timeout bounds one check: connect, send, response headers. Zero
	// means 5s.
	Timeout time.Duration
	// Status is the answer expected. Zero means 200.
	Status int
	// Host is the Host header sent. "" means the server's URL host.
	Host string
}

// Enabled reports whether the check is on.
func (h HealthCheck) Enabled() bool { return h.Path != "" }

func (h HealthCheck) withDefaults() HealthCheck {
	if h.Interval == 0 {
		h.Interval = DefaultCheckInterval
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultCheckTimeout
	}
	if h.Status == 0 {
		h.Status = DefaultCheckStatus
	}
	return h
}

// FieldError is a problem with one field of a structure, named as the
// configuration spells it (interval, status), so that the caller can name
// its own setting.
type FieldError struct {
	Field string
	Err   error
}

func (e FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Problems returns what is wrong with h, field by field (path, interval,
// timeout, status), or nil: the one rule for a health check, which
// NewRouter applies and the configuration reports key by key.
func (h HealthCheck) Problems() []FieldError {
	var out []FieldError
	if h.Path == "" {
		if h != (HealthCheck{}) {
			out = append(out, FieldError{"path", errors.New("missing: the health check needs a path")})
		}
		return out
	}
	if err := CheckPath(h.Path); err != nil {
		out = append(out, FieldError{"path", err})
	}
	if h.Interval < 0 {
		out = append(out, FieldError{"interval", errors.New("must not be negative")})
	}
	if h.Timeout < 0 {
		out = append(out, FieldError{"timeout", errors.New("must not be negative")})
	}
	if h.Status != 0 && (h.Status < 100 || h.Status > 599) {
		out = append(out, FieldError{"status", errors.New("must be an HTTP status, from 100 to 599")})
	}
	return out
}

func (h HealthCheck) validate() error {
	var errs []error
	for _, p := range h.Problems() {
		errs = append(errs, fmt.Errorf("health check %w", p))
	}
	return errors.Join(errs...)
}

// CheckPath is the rule for a health check's path, for the configuration
// to apply where it can name the setting: an origin-form target (RFC 9112
// §3.2.1), a path starting with / and an optional query. The error gives
// the reason only.
func CheckPath(p string) error {
	ok := len(p) > 0 && p[0] == '/'
	for i := 0; ok && i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == '#' || c == 0x7f {
			ok = false
		}
	}
	if !ok {
		return errors.New("want a path starting with /, without spaces or a fragment")
	}
	return nil
}

// PoolOptions configures one pool of a Router.
type PoolOptions struct {
	// Name identifies the pool in logs, metrics and Status. "" means
	// "default" for the default pool, else its first host.
	Name string
	// Hosts are the virtual hosts the pool serves (see HostPattern); none
	// makes it the default pool, which serves every other host.
	Hosts []string
	// Servers are the base URLs of the pool's servers (see ParseURL), at
	// least one and at most MaxServers.
	Servers []string
	// Balance is RoundRobin or LeastConns. "" means RoundRobin.
	Balance string
	// HealthCheck is the active health check; its zero value is off.
	HealthCheck HealthCheck
	// TLS and GetTLS are the TLS configuration of the pool's https
	// servers, as ClientOptions.TLSConfig and GetTLSConfig are: fixed, or
	// asked for at each new connection (the Current method of what
	// TLSFiles.Load returns, so that files reloaded are used).
	TLS    *tls.Config
	GetTLS func() *tls.Config
}

// Pool is several servers of one site. A request goes to one server chosen
// by the balancing policy among those available — circuit closed (or due
// for its probe) and passing the health check — and, if it could not be
// sent there (circuit open, connection refused, TLS handshake failed), to
// the next, each server at most once. When every server fails its health
// check, the check is ignored rather than the site taken down: the servers
// are tried anyway, a broken check (a wrong path) being likelier than a
// site down everywhere. A server whose circuit is open is still skipped
// until its cooldown lets a probe through, so with every circuit open a
// request fails fast with ErrUnavailable, as with one server.
//
// A Pool is safe for concurrent use; choosing a server allocates nothing.
type Pool struct {
	name       string
	servers    []*server
	leastConns bool
	next       atomic.Uint64 // turn counter: where the next search starts
	check      HealthCheck   // defaults applied; Path "" is off
	log        *slog.Logger
}

// server is one server of a pool.
type server struct {
	c *Client
	// passing is the last health check's verdict; true without a check.
	passing atomic.Bool
	checker *fasthttp.HostClient // sends the health checks; nil without
}

func newPool(o PoolOptions, co ClientOptions, log *slog.Logger) (*Pool, error) {
	p := &Pool{name: o.Name, check: o.HealthCheck, log: log}
	var errs []error
	switch o.Balance {
	case "", RoundRobin:
	case LeastConns:
		p.leastConns = true
	default:
		errs = append(errs, fmt.Errorf("balance %q: want %s or %s", o.Balance, RoundRobin, LeastConns))
	}
	switch n := len(o.Servers); {
	case n == 0:
		errs = append(errs, errors.New("no servers"))
	case n > MaxServers:
		errs = append(errs, fmt.Errorf("%d servers, at most %d", n, MaxServers))
	}
	if err := o.HealthCheck.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.check = p.check.withDefaults()
	for _, u := range o.Servers {
		co := co
		co.URL = u
		co.TLSConfig, co.GetTLSConfig = o.TLS, o.GetTLS
		c, err := NewClient(co)
		if err != nil {
			p.Close()
			return nil, err
		}
		s := &server{c: c}
		s.passing.Store(true)
		if p.check.Enabled() {
			s.checker = c.checker()
		}
		p.servers = append(p.servers, s)
	}
	return p, nil
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.name }

// Fetch sends req to a server of the pool as Client.Fetch does, and fills
// resp. When req could not be sent to the server chosen (NotSent), it goes
// to the next; the error returned is the last server's.
func (p *Pool) Fetch(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	start := p.turn()
	var tried uint64
	for from := start; ; {
		i := p.pick(tried, from)
		tried |= 1 << i
		err := p.servers[i].c.Fetch(ctx, req, resp)
		if err == nil || !NotSent(err) || tried == p.all() {
			p.went(start, i)
			return err
		}
		from = i + 1
	}
}

// Dial opens a tunnel connection to a server of the pool as Client.Dial
// does, trying the next server when one cannot be reached.
func (p *Pool) Dial(ctx context.Context, req *fasthttp.Request) (net.Conn, error) {
	start := p.turn()
	var tried uint64
	for from := start; ; {
		i := p.pick(tried, from)
		tried |= 1 << i
		conn, err := p.servers[i].c.Dial(ctx, req)
		if err == nil || !NotSent(err) || tried == p.all() {
			p.went(start, i)
			return conn, err
		}
		from = i + 1
	}
}

// all is the tried mask with every server in it.
func (p *Pool) all() uint64 { return 1<<len(p.servers) - 1 }

// turn returns where a request's search for a server starts: each request
// one server further than the one before.
func (p *Pool) turn() int {
	if len(p.servers) == 1 {
		return 0
	}
	return int((p.next.Add(1) - 1) % uint64(len(p.servers)))
}

// went records that a request whose search started at start ended at
// server i. Round robin's next request then starts after i: when servers
// were passed over (circuit open, health check failing), the servers still
// in rotation take equal turns, instead of the one after a gap taking its
// own turn and the gap's.
func (p *Pool) went(start, i int) {
	if i != start && !p.leastConns {
		p.next.Store(uint64(i + 1))
	}
}

// Server ranks: a request goes to the best rank that has an untried server.
const (
	rankReady   = iota // available and passing its health check
	rankChecked        // available, failing its health check: tried when none is ready
	rankOpen           // circuit open: Fetch fails fast unless its probe is due meanwhile
	rankNone
)

// pick returns the index of the server the next attempt goes to, among
// those not in tried, searching from index from on (wrapping around); at
// least one server must be untried. Within the best rank, round robin
// takes the first server found, least connections the one with the fewest
// requests in flight (the first found among equals).
func (p *Pool) pick(tried uint64, from int) int {
	n := len(p.servers)
	best, bestRank, bestLoad := -1, rankNone, 0
	for k := range n {
		i := (from + k) % n
		if tried&(1<<i) != 0 {
			continue
		}
		s := p.servers[i]
		rank := rankOpen
		if s.c.Available() {
			rank = rankChecked
			if s.passing.Load() {
				rank = rankReady
			}
		}
		switch {
		case rank > bestRank:
		case rank < bestRank:
			best, bestRank = i, rank
			if p.leastConns {
				bestLoad = s.c.InFlight()
			}
		case p.leastConns: // same rank: fewer in flight wins
			if load := s.c.InFlight(); load < bestLoad {
				best, bestLoad = i, load
			}
		}
		if bestRank == rankReady && !p.leastConns {
			break // round robin: the first ready server in turn
		}
	}
	return best
}

// watch runs the health checks of one server until ctx ends.
func (p *Pool) watch(ctx context.Context, s *server, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic in origin health check", "pool", p.name, "server", s.c.URL(), "panic", r)
		}
	}()
	t := time.NewTicker(p.check.Interval)
	defer t.Stop()
	for {
		p.checkOnce(s)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkOnce checks one server now and records the verdict.
func (p *Pool) checkOnce(s *server) {
	err := s.c.check(s.checker, &p.check)
	ok := err == nil
	if s.passing.Swap(ok) == ok {
		return
	}
	if ok {
		p.log.Info("origin server passes its health check again", "pool", p.name, "server", s.c.URL())
	} else {
		p.log.Warn("origin server failed its health check; left out until it passes", "pool", p.name, "server", s.c.URL(), "err", err)
	}
}

// Close closes the servers' idle connections.
func (p *Pool) Close() {
	for _, s := range p.servers {
		s.c.Close()
		if s.checker != nil {
			s.checker.CloseIdleConnections()
		}
	}
}
