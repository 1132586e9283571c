package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/internal/h1"
	"github.com/valyala/fasthttp"
)

// Dialer opens connections to the origin for requests that switch
// protocols (RFC 9110 §7.8 Upgrade; WebSocket, RFC 6455). origin.Client and
// origin.Router implement it. As for Fetcher, req's Host header is the
// request's authority.
type Dialer interface {
	// Dial returns a new connection to the origin for req, and points req
	// at the origin (URI, Host) as a Fetch would. The caller writes req on
	// it, reads the answer, and closes it.
	Dial(ctx context.Context, req *fasthttp.Request) (net.Conn, error)
}

// A request to switch protocols is a tunnel between one client and the
// origin: it is never answered from the cache, never coalesced with
// another, and never forwarded to the key's owner. Ownership only decides
// where a response is cached, and a tunnel has nothing to cache, so the node
// the client reached dials the origin itself: through the owner it would
// cost a hop each way for every byte, and the peer protocol (requests
// signed, answers read whole) does not carry a stream of frames.
//
// The node sends the client's request with its end-to-end fields, Upgrade
// and the forwarding fields, and reads the origin's answer within
// OriginTimeout. Interim responses before it reach the client as on any
// request that went forward; anything but a 101 is relayed as a normal
// response, in whatever framing the origin chose (and the origin
// connection closed). After a 101 the node writes the 101 to the
// client and copies bytes both ways, unchanged, until either side closes,
// an error, or TunnelIdleTimeout passes without a byte either way.

// tunnel serves a request to switch protocols.
func (p *Proxy) tunnel(ctx *fasthttp.RequestCtx, st *reqState) {
	in := &ctx.Request
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	out.Header.SetMethodBytes(in.Header.Method())
	out.SetRequestURIBytes(in.Header.RequestURI())
	out.Header.SetHostBytes(p.keys.Host(st.host))
	copyRequestHeaders(&out.Header, &in.Header, false, false)
	setUpgrade(&out.Header, &in.Header)
	p.addForwarding(out, ctx, st)
	setBody(out, in)

	dctx, cancel := context.WithTimeout(context.Background(), p.opt.OriginTimeout)
	defer cancel()
	conn, err := p.opt.Tunnels.Dial(dctx, out)
	if err != nil {
		p.tunnelFailed(ctx, st, err)
		return
	}
	resp := fasthttp.AcquireResponse()
	br, err := p.upgradeExchange(conn, out, resp, h1.InterimFrom(p.interim(ctx, st)))
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		_ = conn.Close()
		p.tunnelFailed(ctx, st, err)
		return
	}
	status := resp.StatusCode()
	cs := cacheStatus{fwd: fwdBypass, fwdStatus: status}
	p.count(st, Pass) // timed until the 101 (or the refusal) is written
	if status != fasthttp.StatusSwitchingProtocols {
		_ = conn.Close() // it asked for an upgrade: not worth reusing
		p.relay(ctx, st, resp, nil, cs)
		return
	}
	head := p.appendSwitchingHead(make([]byte, 0, 512), &resp.Header, cs, p.strip(st))
	fasthttp.ReleaseResponse(resp)
	t := p.tunnels.add(conn, br, head, p.opt.TunnelIdleTimeout, p.m)
	// fasthttp writes nothing: the tunnel writes the 101 itself, then the
	// bytes. The status and Cache-Status are set for the access log only.
	ctx.Response.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	p.addCacheStatus(&ctx.Response, cs)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(t.run)
}

// upgradeExchange writes req on conn and reads the answer's head into resp,
// and a body unless it is a 101, all within OriginTimeout. Interim
// responses before it (100, 103) go to interim, as on any request that
// went forward (RFC 9110 §15.2); the answer is read in any framing the
// origin client reads (h1.ReadResponse). It returns the reader of conn,
// which may hold bytes the origin sent after the 101.
func (p *Proxy) upgradeExchange(conn net.Conn, req *fasthttp.Request, resp *fasthttp.Response, interim h1.Interim) (*bufio.Reader, error) {
	_ = conn.SetDeadline(time.Now().Add(p.opt.OriginTimeout))
	bw := bufio.NewWriterSize(conn, 4<<10)
	if err := req.Write(bw); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4<<10)
	resp.Header.SetNoDefaultContentType(true)
	// A body larger than an object we would store is not relayed from
	// memory.
	if _, err := h1.ReadResponse(br, resp, interim, req.Header.IsHead(), int(p.opt.MaxObjectSize)); err != nil {
		return nil, err
	}
	return br, conn.SetDeadline(time.Time{})
}

func (p *Proxy) tunnelFailed(ctx *fasthttp.RequestCtx, st *reqState, err error) {
	p.count(st, Error)
	p.log.Warn("upgrade to the origin failed", "uri", string(ctx.RequestURI()), "err", err)
	status := errorStatus(err)
	p.writeError(ctx, status, "origin unavailable: "+errorText(status), fwdBypass)
}

// tunnelSet tracks the open tunnels, so that Close can end them: fasthttp's
// Shutdown does not wait for hijacked connections.
type tunnelSet struct {
	mu     sync.Mutex
	open   map[*tunnel]struct{}
	closed bool
	wg     sync.WaitGroup
}

// add registers a tunnel whose origin side is open; its client side starts
// when fasthttp calls run with the hijacked connection. One that is not
// started within idle (fasthttp may skip the hijack when the connection
// failed) is closed.
func (s *tunnelSet) add(origin net.Conn, br *bufio.Reader, head []byte, idle time.Duration, m *Metrics) *tunnel {
	t := &tunnel{set: s, origin: origin, br: br, head: head, idle: idle, m: m}
	s.mu.Lock()
	if s.open == nil {
		s.open = make(map[*tunnel]struct{})
	}
	s.open[t] = struct{}{}
	s.wg.Add(1)
	closed := s.closed
	s.mu.Unlock()
	if closed {
		t.stop()
	} else {
		t.guard = time.AfterFunc(idle, t.stop)
	}
	return t
}

// close ends every tunnel and waits for them; later ones end at once.
func (s *tunnelSet) close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*tunnel, 0, len(s.open))
	for t := range s.open {
		all = append(all, t)
	}
	s.mu.Unlock()
	for _, t := range all {
		t.stop()
	}
	s.wg.Wait()
}

func (s *tunnelSet) remove(t *tunnel) {
	s.mu.Lock()
	delete(s.open, t)
	s.mu.Unlock()
	s.wg.Done()
}

// tunnel is one client connection switched to another protocol, joined to
// an origin connection.
type tunnel struct {
	set    *tunnelSet
	origin net.Conn
	br     *bufio.Reader // reads origin, holding what followed the 101
	head   []byte        // the 101 to write to the client
	idle   time.Duration
	m      *Metrics
	guard  *time.Timer
	last   atomic.Int64 // unix nanos of the last byte moved either way

	mu       sync.Mutex
	client   net.Conn // set by run
	started  bool     // run attached the client
	stopping bool
	finished bool // removed from the set
}

// run is the hijack handler: it writes the 101 and copies bytes both ways
// until the tunnel ends. fasthttp closes c when it returns.
func (t *tunnel) run(c net.Conn) {
	if !t.attach(c) {
		return // stopped before it started
	}
	defer t.finish()
	defer t.stop()
	t.m.tunnels.Inc()
	t.m.tunnelsOpen.Inc()
	defer t.m.tunnelsOpen.Dec()
	t.last.Store(time.Now().UnixNano())
	_ = c.SetWriteDeadline(time.Now().Add(t.idle))
	if _, err := c.Write(t.head); err != nil {
		return
	}
	up := make(chan struct{})
	go func() {
		defer close(up)
		err := t.copy(t.origin, c, c)
		if cw, ok := t.origin.(interface{ CloseWrite() error }); ok && errors.Is(err, io.EOF) {
			// The client is done sending: tell the origin, and let it
			// finish its answer.
			_ = cw.CloseWrite()
			return
		}
		t.stop()
	}()
	_ = t.copy(c, t.br, t.origin)
	t.stop()
	<-up
}

// copy moves bytes from src (read through r) to dst until an error, EOF, or
// idle time without a byte either way, and returns why it stopped.
func (t *tunnel) copy(dst net.Conn, r io.Reader, src net.Conn) error {
	buf := make([]byte, 32<<10)
	for {
		// A deadline is moved, then stop is checked: stop sets its own
		// deadline in the past after it has marked the tunnel, so either
		// this sees the mark or the read or write sees that deadline.
		_ = src.SetReadDeadline(time.Now().Add(t.idle))
		if t.stopped() {
			return net.ErrClosed
		}
		n, err := r.Read(buf)
		if n > 0 {
			now := time.Now()
			t.last.Store(now.UnixNano())
			_ = dst.SetWriteDeadline(now.Add(t.idle))
			if t.stopped() {
				return net.ErrClosed
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !t.stopped() &&
			time.Since(time.Unix(0, t.last.Load())) < t.idle {
			continue // quiet this way, busy the other
		}
		return err
	}
}

func (t *tunnel) attach(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	t.client, t.started = c, true
	if t.guard != nil {
		t.guard.Stop()
	}
	return true
}

func (t *tunnel) stopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopping
}

// stop ends the tunnel: blocked reads and writes on both sides return at
// once, and the origin connection is closed. A tunnel not started yet is
// finished here; a started one finishes when run returns.
func (t *tunnel) stop() {
	t.mu.Lock()
	first := !t.stopping
	t.stopping = true
	started, c := t.started, t.client
	t.mu.Unlock()
	if !first {
		return
	}
	past := time.Unix(1, 0)
	_ = t.origin.SetDeadline(past)
	if c != nil {
		_ = c.SetDeadline(past)
	}
	_ = t.origin.Close()
	if !started {
		t.finish()
	}
}

func (t *tunnel) finish() {
	t.mu.Lock()
	done := t.finished
	t.finished = true
	t.mu.Unlock()
	if !done {
		t.set.remove(t)
	}
}
