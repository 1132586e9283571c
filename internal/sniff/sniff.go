// Package sniff splits one listener in two by the first byte each
// connection sends: a TLS handshake record (0x16) goes one way, anything
// else (plain HTTP) the other. A node serves its clients and its peers'
// mutual TLS on one port this way, so a cluster needs no second port
// opened, yet no peer request ever travels in plaintext.
package sniff

import (
	"errors"
	"io"
	"net"
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
	// Timeout bounds the wait for a new connection's first byte; a client
	// that connects and says nothing is closed after it. Default 10s.
	Timeout time.Duration
	// MaxPending bounds connections waiting for their first byte, so idle
	// connections cannot pile up goroutines without limit; beyond it new
	// connections are closed at once. Default 4096.
	MaxPending int
	// OnError, if set, hears Accept errors other than the listener's
	// closing; accepting goes on after a pause.
	OnError func(error)
}

// Split accepts on ln and returns two listeners: plain receives the
// connections whose first byte is not a TLS handshake, tlsSide those whose
// first byte is (wrap it with tls.NewListener). The first byte is not lost:
// the connections returned replay it. Closing both closes ln; a closed
// side's connections are closed as they arrive.
func Split(ln net.Listener, o Options) (plain, tlsSide net.Listener) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	m := &mux{ln: ln, o: o, pending: make(chan struct{}, o.MaxPending), done: make(chan struct{})}
	m.plain = m.newSide()
	m.tls = m.newSide()
	go m.accept()
	return m.plain, m.tls
}

type mux struct {
	ln      net.Listener
	o       Options
	pending chan struct{} // a semaphore of connections being sniffed
	plain   *side
	tls     *side

	done    chan struct{} // closed when ln's Accept fails for good
	err     error         // why; set before done is closed
	closeMu sync.Mutex
	open    int // sides not yet closed
}

func (m *mux) newSide() *side {
	m.open++
	return &side{m: m, conns: make(chan net.Conn), closed: make(chan struct{})}
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
			go m.sniff(c)
		default:
			_ = c.Close()
		}
	}
}

// sniff reads c's first byte and hands c to the side it belongs to.
func (m *mux) sniff(c net.Conn) {
	defer func() { <-m.pending }()
	_ = c.SetReadDeadline(time.Now().Add(m.o.Timeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	s := m.plain
	if b[0] == recordTypeHandshake {
		s = m.tls
	}
	pc := &conn{Conn: c, first: b[0], hasFirst: true}
	select {
	case s.conns <- pc:
	case <-s.closed:
		_ = c.Close()
	case <-m.done:
		_ = c.Close()
	}
}

// side is one of the two listeners Split returns.
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

// conn replays the sniffed byte before reading on.
type conn struct {
	net.Conn
	first    byte
	hasFirst bool
}

func (c *conn) Read(p []byte) (int, error) {
	if c.hasFirst && len(p) > 0 {
		p[0] = c.first
		c.hasFirst = false
		return 1, nil
	}
	return c.Conn.Read(p)
}
