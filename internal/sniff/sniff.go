// Package sniff splits one listener into several by what each connection
// starts with. A node serves its clients and its peers' mutual TLS on one
// port by the first byte (a TLS handshake record, 0x16, or anything else),
// and its peers' two protocols on one TLS listener by the application
// protocol their handshake agreed on, so a cluster needs no second port
// opened, yet no peer request ever travels in plaintext. With HTTPS for
// clients, every connection is TLS (RequireTLS), and the protocols a
// handshake offers tell members from clients.
package sniff

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// recordTypeHandshake is the first byte of every TLS ClientHello (RFC 8446
// §5.1); no HTTP/1.x request line starts with it.
const recordTypeHandshake = 0x16

// Defaults for Options' zero values.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultMaxPending = 4096
)

// Options configure Split. Zero values take the defaults.
type Options struct {
	// Timeout bounds classifying a new connection (its first byte, its TLS
	// handshake); a client that connects and says nothing is closed after
	// it. Default 10s.
	Timeout time.Duration
	// MaxPending bounds connections being classified, so idle connections
	// cannot pile up goroutines without limit; beyond it new connections
	// are closed at once. Default 4096.
	MaxPending int
	// OnError, if set, hears Accept errors other than the listener's
	// closing; accepting goes on after a pause.
	OnError func(error)
}

// A Classifier looks at a new connection, within deadline, and says which
// listener it goes to (an index into Split's result) and as what
// connection (the same, or one that wraps it). An error closes it.
type Classifier func(c net.Conn, deadline time.Time) (net.Conn, int, error)

// FirstByte sends connections that open with a TLS handshake to listener 1
// and the rest (plain HTTP) to listener 0. The byte is not lost: the
// connections it returns replay it.
func FirstByte(c net.Conn, deadline time.Time) (net.Conn, int, error) {
	_ = c.SetReadDeadline(deadline)
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, 0, err
	}
	_ = c.SetReadDeadline(time.Time{})
	side := 0
	if b[0] == recordTypeHandshake {
		side = 1
	}
	return &replayConn{Conn: c, first: b[0], hasFirst: true}, side, nil
}

// RequireTLS makes a listener that speaks TLS only: connections that open
// with a TLS handshake go on to next; any other is answered with plain
// (an HTTP 400 saying the port wants HTTPS, say) and closed, so that a
// client sending plain HTTP by mistake learns why instead of seeing a
// connection reset.
func RequireTLS(next Classifier, plain []byte) Classifier {
	return func(c net.Conn, deadline time.Time) (net.Conn, int, error) {
		rc, side, err := FirstByte(c, deadline)
		if err != nil {
			return nil, 0, err
		}
		if side == 1 {
			return next(rc, deadline)
		}
		_ = c.SetDeadline(deadline)
		if _, err := c.Write(plain); err == nil {
			lingerClose(c)
		}
		return nil, 0, errNotTLS
	}
}

var errNotTLS = errors.New("not a TLS handshake")

// lingerClose reads what the client still sends for a moment before the
// caller closes c: closing with unread bytes makes the kernel reset the
// connection, and a reset can destroy the answer before the client reads
// it.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// ALPN completes the server side of a TLS handshake with cfg and sends the
// connection to the listener of the application protocol agreed on: the
// index of the protocol in protos, or len(protos) when none of them was.
// The connections it returns are the *tls.Conn, handshake done.
func ALPN(cfg *tls.Config, protos ...string) Classifier {
	return func(c net.Conn, deadline time.Time) (net.Conn, int, error) {
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			return nil, 0, err
		}
		_ = tc.SetDeadline(time.Time{})
		i := slices.Index(protos, tc.ConnectionState().NegotiatedProtocol)
		if i < 0 {
			i = len(protos)
		}
		return tc, i, nil
	}
}

// Split accepts on ln and returns n listeners, handing each connection to
// the one classify chooses. Closing all of them closes ln; a closed
// listener's connections are closed as they arrive.
func Split(ln net.Listener, n int, classify Classifier, o Options) []net.Listener {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	m := &mux{ln: ln, o: o, classify: classify, pending: make(chan struct{}, o.MaxPending), done: make(chan struct{}), open: n}
	out := make([]net.Listener, n)
	for i := range n {
		s := &side{m: m, conns: make(chan net.Conn), closed: make(chan struct{})}
		m.sides = append(m.sides, s)
		out[i] = s
	}
	go m.accept()
	return out
}

type mux struct {
	ln       net.Listener
	o        Options
	classify Classifier
	pending  chan struct{} // a semaphore of connections being classified
	sides    []*side

	done    chan struct{} // closed when ln's Accept fails for good
	err     error         // why; set before done is closed
	closeMu sync.Mutex
	open    int // sides not yet closed
}

func (m *mux) accept() {
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors, a connection aborted before it
				// was accepted: passing troubles. Wait, as net/http's
				// Server does, instead of spinning or giving up.
				if m.o.OnError != nil {
					m.o.OnError(err)
				}
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			m.err = err
			close(m.done)
			return
		}
		backoff = 0
		select {
		case m.pending <- struct{}{}:
			go m.route(c)
		default:
			_ = c.Close()
		}
	}
}

// route classifies c and hands it to its side.
func (m *mux) route(c net.Conn) {
	defer func() { <-m.pending }()
	conn, i, err := m.classify(c, time.Now().Add(m.o.Timeout))
	if err != nil || i < 0 || i >= len(m.sides) {
		_ = c.Close()
		return
	}
	s := m.sides[i]
	select {
	case s.conns <- conn:
	case <-s.closed:
		_ = conn.Close()
	case <-m.done:
		_ = conn.Close()
	}
}

// side is one of the listeners Split returns.
type side struct {
	m      *mux
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (s *side) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.m.done:
		return nil, s.m.err
	}
}

// Close closes this side; the last side closed closes the listener.
func (s *side) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		m := s.m
		m.closeMu.Lock()
		m.open--
		last := m.open == 0
		m.closeMu.Unlock()
		if last {
			err = m.ln.Close()
		}
	})
	return err
}

func (s *side) Addr() net.Addr { return s.m.ln.Addr() }

// replayConn replays the sniffed byte before reading on.
type replayConn struct {
	net.Conn
	first    byte
	hasFirst bool
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.hasFirst && len(p) > 0 {
		p[0] = c.first
		c.hasFirst = false
		return 1, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the connection the byte was sniffed from, as
// tls.Conn.NetConn does, so that a wrapper beneath can still be found (the
// read counts of internal/h1 are).
func (c *replayConn) NetConn() net.Conn { return c.Conn }
