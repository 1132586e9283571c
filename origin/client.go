// Package origin talks to the origin servers behind the cache: Client
// fetches from one server with connection reuse, timeouts and a passive
// circuit breaker; Pool spreads requests over several servers of one site
// (round robin or least connections, each server with its own breaker and
// an optional active health check); Router picks a pool by the request's
// host (virtual hosts) and serves the others from a default pool. ParseURL
// is the one rule for a server's URL, HostPattern the one for a virtual
// host, and TLSFiles turns CA, server name and client certificate files
// into a TLS configuration, reloaded when they change. The demo origin (origin/demo) lives apart.
package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/internal/h1"
	"github.com/ringcache/ringcache/internal/health"
	"github.com/ringcache/ringcache/internal/opt"
	"github.com/ringcache/ringcache/internal/reqbody"
	"github.com/ringcache/ringcache/internal/streamconn"
	"github.com/valyala/fasthttp"
)

var (
	// ErrTimeout means the origin did not answer in time: connect, write or
	// response-header deadline. The proxy answers 504.
	ErrTimeout = errors.New("origin timeout")
	// ErrUnavailable means the circuit is open after repeated transport
	// failures and the request was not sent. The proxy answers 502.
	ErrUnavailable = errors.New("origin unavailable")
)

// Defaults for zero ClientOptions fields.
const (
	DefaultConnectTimeout  = 3 * time.Second
	DefaultResponseTimeout = 30 * time.Second
	DefaultIdleConnTimeout = 60 * time.Second
	DefaultMaxConns        = 1024
	DefaultFailThreshold   = 5
	DefaultCooldown        = 2 * time.Second

	// readBufferSize also caps the size of the response header block;
	// fasthttp's 4 KiB default rejects origins that send a few big cookies.
	readBufferSize = 16 << 10
)

// ClientOptions configures a Client. Zero values mean the documented default.
type ClientOptions struct {
	// URL is the origin base: scheme (http or https) and host, optionally a
	// port, e.g. "http://127.0.0.1:9000". A path, query, fragment or user
	// info is an error (see ParseURL): requests keep their own path and query.
	URL string
	// ConnectTimeout bounds dialling one TCP connection. Zero means 3s.
	ConnectTimeout time.Duration
	// ResponseTimeout bounds a round trip up to the response headers when the
	// caller's context has no deadline. While such a response's body is
	// streamed it becomes an idle timeout: each read must make progress
	// within it, so a slow consumer of a large body is not cut off but a
	// stalled origin is. Zero means 30s.
	ResponseTimeout time.Duration
	// IdleConnTimeout closes keep-alive connections unused for this long.
	// Zero means 60s.
	IdleConnTimeout time.Duration
	// MaxConns caps open connections to the origin. Zero means 1024. A
	// request that finds all busy waits for one up to ResponseTimeout.
	MaxConns int
	// PreserveHost false sends Host: <origin host>; true keeps the Host
	// header of the request given to Fetch (the client's).
	PreserveHost bool
	// FailThreshold is the number of consecutive transport failures (errors
	// and timeouts; HTTP 5xx answers do not count) that opens the circuit.
	// Zero means 5; negative disables the circuit breaker.
	FailThreshold int
	// Cooldown is how long an open circuit fails fast before letting one
	// probe request through (one per Cooldown). Zero means 2s.
	Cooldown time.Duration
	// Observe, if set, is called once per origin round trip (not for
	// requests refused by the open circuit) with its duration up to the
	// response headers and its error (nil on success), e.g. for metrics. It
	// runs on the Fetch goroutine and must be quick.
	Observe func(d time.Duration, err error)
	// TLSConfig is used for an https URL. Nil means system roots and the
	// URL's host as server name. HTTP/1.1 is the only protocol offered
	// (ALPN), whatever its NextProtos say: the client speaks nothing else.
	TLSConfig *tls.Config
	// GetTLSConfig, if set, gives the TLS configuration at each new
	// connection instead of TLSConfig, as tls.Config's GetCertificate does
	// for Certificates: files reloaded while the client runs
	// (TLSFiles.Load) are used from then on, and connections already open
	// keep theirs. It must be quick, and return the same pointer until the
	// configuration changes.
	GetTLSConfig func() *tls.Config
	// Clock is the time source of the circuit breaker. Nil means time.Now.
	Clock func() time.Time
	// Logger receives circuit state changes. Nil discards.
	Logger *slog.Logger
}

// Client sends requests to one origin over pooled keep-alive connections.
// It is safe for concurrent use.
type Client struct {
	hc              *fasthttp.HostClient
	transport       *h1.Transport // every framing; interim responses to the caller
	scheme          []byte
	host            []byte // URL host as given, for the URI and Host header
	origin          string // for error messages
	preserveHost    bool
	connectTimeout  time.Duration
	responseTimeout time.Duration
	observe         func(time.Duration, error)
	log             *slog.Logger
	failThreshold   int                // for the log line
	breaker         *health.Monitor    // the circuit: fixed cooldown, one probe per cooldown
	conns           streamconn.Table   // relaxes deadlines of streamed bodies
	addr            string             // host:port dialled
	tlsHost         string             // for an https origin, the server name unless its TLS configuration names one
	getTLS          func() *tls.Config // for an https origin, the base of handshakes in connect; nil for http
	tls             atomic.Pointer[derivedTLS]
	sent            atomic.Uint64 // round trips attempted (the breaker let them through)
	// errUnavailable is built once so that failing fast allocates nothing.
	errUnavailable error
}

// NewClient checks opts and returns a Client; it does not connect.
func NewClient(opts ClientOptions) (*Client, error) {
	var errs []error
	u, err := ParseURL(opts.URL)
	switch {
	case opts.URL == "":
		errs = append(errs, errors.New("origin url is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("origin url %q: %w", opts.URL, err))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"connect timeout", opts.ConnectTimeout},
		{"response timeout", opts.ResponseTimeout},
		{"idle conn timeout", opts.IdleConnTimeout},
		{"cooldown", opts.Cooldown},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("origin %s must be >= 0 (got %s)", d.name, d.v))
		}
	}
	if opts.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("origin max conns must be >= 0 (got %d)", opts.MaxConns))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// Negative durations and MaxConns were refused above, so opt.Or's "zero
	// or negative means the default" is this type's "zero means the default".
	c := &Client{
		scheme:          []byte(u.Scheme),
		host:            []byte(u.Host),
		origin:          u.Scheme + "://" + u.Host,
		preserveHost:    opts.PreserveHost,
		connectTimeout:  opt.Or(opts.ConnectTimeout, DefaultConnectTimeout),
		responseTimeout: opt.Or(opts.ResponseTimeout, DefaultResponseTimeout),
		observe:         opts.Observe,
		log:             opts.Logger,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.errUnavailable = fmt.Errorf("origin %s: %w", c.origin, ErrUnavailable)
	c.failThreshold = opts.FailThreshold
	if c.failThreshold == 0 { // not opt.Or: negative disables the breaker
		c.failThreshold = DefaultFailThreshold
	}
	cooldown := opt.Or(opts.Cooldown, DefaultCooldown)
	c.breaker = health.New(health.Config{
		Threshold: c.failThreshold, // negative disables, as documented
		Pause:     cooldown,
		MaxPause:  cooldown, // the cooldown never grows
		Clock:     opts.Clock,
	})

	isTLS := u.Scheme == "https"
	c.addr = fasthttp.AddMissingPort(u.Host, isTLS)
	if isTLS {
		c.tlsHost, c.getTLS = u.Hostname(), opts.GetTLSConfig
		if c.getTLS == nil {
			static := opts.TLSConfig
			c.getTLS = func() *tls.Config { return static }
		}
	}
	c.transport = &h1.Transport{}
	c.hc = &fasthttp.HostClient{
		// fasthttp's own transport answers a Transfer-Encoding other than
		// chunked with an error, and drops interim responses: see h1.
		Transport: c.transport,
		Addr:      c.addr,
		IsTLS:     isTLS,
		// dial hands fasthttp connections whose TLS handshake is done.
		DialTimeout:         c.dial,
		MaxConns:            opt.Or(opts.MaxConns, DefaultMaxConns),
		MaxConnWaitTimeout:  c.responseTimeout,
		MaxIdleConnDuration: opt.Or(opts.IdleConnTimeout, DefaultIdleConnTimeout),
		ReadBufferSize:      readBufferSize,
		// The proxy forwards the client's User-Agent; never invent one.
		NoDefaultUserAgentHeader: true,
		// The path must reach the origin byte for byte: it is part of the
		// cache key, and normalizing would make two keys share one answer.
		DisablePathNormalizing: true,
		StreamResponseBody:     true,
	}
	return c, nil
}

// Fetch sends req to the origin and fills resp. Interim responses (1xx)
// go to ctx's h1.Interim, if any; a Transfer-Encoding the response carries
// is undone (h1.Transport), and one that cannot be is h1.ErrFraming. req must hold the path and
// query in its URI and the headers to send (hop-by-hop already removed);
// Fetch sets the URI's scheme and host to the origin's and the Host header
// per PreserveHost, and drops the URI's userinfo: it never becomes an
// Authorization header. Redirects are returned, not followed.
//
// After Fetch returns nil, resp's body may be a stream (resp.BodyStream()
// non-nil): the caller must either call resp.Body(), which reads it whole
// (and, as fasthttp does, replaces the body with the error text if the read
// fails), or read BodyStream to the end and call resp.CloseBodyStream(),
// which gives the connection back. Releasing resp also closes the stream.
//
// ctx's deadline, if any, bounds the whole exchange including the body;
// otherwise ResponseTimeout applies. fasthttp cannot abort a request in
// flight, so a cancellation is only noticed before sending: a cancelled
// request still waits for its deadline.
//
// Errors: ErrTimeout on a timeout, ErrUnavailable when the circuit is open,
// otherwise the transport error; all wrapped, test with errors.Is. When no
// connection could be made (connect or TLS handshake failed), the error
// also satisfies NotSent: req never left, and may go to another server.
func (c *Client) Fetch(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch %s from origin %s: %w: %w", req.URI().RequestURI(), c.origin, ErrTimeout, err)
		}
		return fmt.Errorf("fetch %s from origin %s: %w", req.URI().RequestURI(), c.origin, err)
	}
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline && !time.Now().Before(deadline) {
		// The caller ran out of time: not the origin's fault, so the breaker
		// does not hear about it.
		return fmt.Errorf("fetch %s from origin %s: %w: %w", req.URI().RequestURI(), c.origin, ErrTimeout, context.DeadlineExceeded)
	}
	if !c.breaker.Allow() {
		return c.errUnavailable
	}

	c.target(req)
	c.sent.Add(1)

	start := time.Now()
	err := c.transport.Do(req, h1.InterimFrom(ctx), func() error {
		if hasDeadline {
			return c.hc.DoDeadline(req, resp, deadline)
		}
		return c.hc.DoTimeout(req, resp, c.responseTimeout)
	})
	d := time.Since(start)

	if err != nil {
		err = c.failed(req, err)
	} else {
		if c.breaker.Success() {
			c.log.Info("origin circuit closed", "origin", c.origin)
		}
		if !hasDeadline && resp.BodyStream() != nil {
			c.conns.Streaming(resp.LocalAddr(), c.responseTimeout)
		}
	}
	if c.observe != nil {
		c.observe(d, err)
	}
	return err
}

// target points req at the origin: the URI's scheme and host, and Host per
// PreserveHost.
func (c *Client) target(req *fasthttp.Request) {
	u := req.URI()
	if c.preserveHost && len(req.Header.Host()) == 0 {
		// A request built from an absolute URI carries its host there.
		req.Header.SetHostBytes(u.Host())
	}
	u.SetSchemeBytes(c.scheme)
	u.SetHostBytes(c.host)
	// fasthttp sends userinfo parsed from the URI or the Host header
	// ("user:pw@host") as Authorization: Basic. A cache that never saw that
	// header would store and share the answer, so only credentials the
	// caller set as a header go out.
	u.SetUsernameBytes(nil)
	u.SetPasswordBytes(nil)
	// fasthttp rewrites Host from the URI unless UseHostHeader is set.
	req.UseHostHeader = c.preserveHost
	if !c.preserveHost {
		req.Header.SetHostBytes(c.host)
	}
}

// failed classifies and wraps a transport error and tells the breaker.
func (c *Client) failed(req *fasthttp.Request, err error) error {
	if errors.Is(err, fasthttp.ErrNoFreeConns) || reqbody.FromClient(err) || errors.Is(err, h1.ErrFraming) {
		// Our own pool is exhausted, the client's request body broke off
		// while it streamed, or the origin answered in a framing that
		// cannot be read: says nothing about the origin's health.
		return fmt.Errorf("fetch %s from origin %s: %w", req.URI().RequestURI(), c.origin, err)
	}
	if _, opened := c.breaker.Failure(); opened {
		c.log.Warn("origin circuit open", "origin", c.origin, "failures", c.failThreshold, "err", err)
	}
	if isTimeout(err) {
		return fmt.Errorf("fetch %s from origin %s: %w: %w", req.URI().RequestURI(), c.origin, ErrTimeout, err)
	}
	return fmt.Errorf("fetch %s from origin %s: %w", req.URI().RequestURI(), c.origin, err)
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Healthy reports whether the circuit is closed.
func (c *Client) Healthy() bool { return c.breaker.Healthy() }

// Available reports whether a request may go to the server: the circuit is
// closed, or its cooldown is over and the next request probes it. It claims
// nothing (Fetch does), so a pool may ask it of every server.
func (c *Client) Available() bool { return c.breaker.Available() }

// InFlight is the number of requests waiting for the server's response
// headers (or for a free connection to it); a streamed body no longer
// counts once its headers are in.
func (c *Client) InFlight() int { return c.hc.PendingRequests() }

// Sent is the number of round trips the client attempted: requests the
// circuit let through, whatever their outcome.
func (c *Client) Sent() uint64 { return c.sent.Load() }

// URL is the server's base URL, scheme and host as configured.
func (c *Client) URL() string { return c.origin }

// checker returns a client for health checks of the server: its own, so
// that a check never rides on a connection that real requests keep alive
// (and finds out whether new connections can be made), and is not counted
// in InFlight.
func (c *Client) checker() *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                     c.addr,
		IsTLS:                    c.getTLS != nil,
		DialTimeout:              func(_ string, timeout time.Duration) (net.Conn, error) { return c.dialWithin(timeout, false) },
		MaxConns:                 1,
		ReadBufferSize:           readBufferSize,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
	}
}

// check sends the health check h (defaults applied) to the server with hc
// (from checker), past the circuit breaker and Observe, and closes the
// connection afterwards. It returns why the server failed the check, or
// nil.
func (c *Client) check(hc *fasthttp.HostClient, h *HealthCheck) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(h.Path)
	u := req.URI()
	u.SetSchemeBytes(c.scheme)
	u.SetHostBytes(c.host)
	if h.Host != "" {
		req.Header.SetHost(h.Host)
		req.UseHostHeader = true
	}
	req.Header.SetUserAgent(checkUserAgent)
	req.SetConnectionClose()
	if err := hc.DoTimeout(req, resp, h.Timeout); err != nil {
		return err
	}
	if got := resp.StatusCode(); got != h.Status {
		return fmt.Errorf("%s answered %d, want %d", h.Path, got, h.Status)
	}
	return nil
}

const checkUserAgent = "ringcache-health-check"

// Close closes idle connections. Connections in use close when their
// response is done; the Client stays usable.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
}

// dial is the HostClient's: it connects (TLS handshake included) within
// ConnectTimeout, or the request's remaining time if shorter (timeout 0
// means the request set none), and tracks the connection so that Fetch can
// relax its read deadline for a streamed body.
func (c *Client) dial(_ string, timeout time.Duration) (net.Conn, error) {
	return c.dialWithin(timeout, true)
}

func (c *Client) dialWithin(timeout time.Duration, track bool) (net.Conn, error) {
	if timeout <= 0 || timeout > c.connectTimeout {
		timeout = c.connectTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.connect(ctx, track)
}

// connect opens a connection to the server within ctx's deadline, which
// must be set, and for an https origin completes the TLS handshake in that
// time too, so that a server that accepts but never answers the handshake
// costs ConnectTimeout, not the response timeout. track registers the
// connection for streamed bodies. A failure is a *connectError: nothing
// was sent on it.
func (c *Client) connect(ctx context.Context, track bool) (net.Conn, error) {
	deadline, _ := ctx.Deadline()
	left := time.Until(deadline)
	if left <= 0 {
		return nil, &connectError{context.DeadlineExceeded} // DialTimeout takes 0 for none
	}
	conn, err := fasthttp.DialTimeout(c.addr, left)
	if err != nil {
		return nil, &connectError{err}
	}
	if track {
		conn = c.conns.Track(conn)
	}
	if c.getTLS == nil {
		return conn, nil
	}
	// fasthttp takes a connection with a Handshake method as TLS already.
	tc := tls.Client(conn, c.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, &connectError{err}
	}
	return tc, nil
}

// derivedTLS is the configuration of this server's handshakes (clientTLS)
// derived from base, GetTLSConfig's answer.
type derivedTLS struct{ base, cfg *tls.Config }

// tlsConfig is the configuration of a new connection's handshake, derived
// again only when the base changed (a reload).
func (c *Client) tlsConfig() *tls.Config {
	base := c.getTLS()
	if d := c.tls.Load(); d != nil && d.base == base {
		return d.cfg
	}
	d := &derivedTLS{base: base, cfg: clientTLS(base, c.tlsHost)}
	c.tls.Store(d)
	return d.cfg
}

// connectError is a failure to connect to the server, TCP or TLS: the
// request was not sent. Its text is the cause's.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// NotSent reports whether err, from Fetch or Dial, means that the request
// never reached the server: the circuit was open (ErrUnavailable) or no
// connection could be made. Such a request may be sent to another server
// whatever its method, as nothing of it, body included, was consumed.
func NotSent(err error) bool {
	var ce *connectError
	return errors.Is(err, ErrUnavailable) || errors.As(err, &ce)
}
