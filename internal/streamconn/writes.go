package streamconn

import (
	"net"
	"sync/atomic"
	"time"
)

// The server side of the same problem: fasthttp's Server sets one write
// deadline (WriteTimeout) when a response starts and keeps it until the
// response is written, so a large body sent to a slow client is cut off
// once that deadline passes, however steadily the client reads. IdleWrites
// turns the deadline into an idle timeout instead: each write must make
// progress within it. A client that stops reading is still cut off about
// one timeout later.

// writeChunk is the most written under one deadline. It sets the slowest
// client that is never cut off: writeChunk bytes per idle period (2 KiB/s
// at 30s).
const writeChunk = 64 << 10

// writeOff marks a connection whose owner cleared its write deadline.
const writeOff = -1

// IdleWrites wraps ln so that every connection it accepts bounds each write
// by idle rather than a whole response: before a write, the deadline moves
// to idle from now (a large write goes out in pieces, each under its own
// deadline). A deadline the server sets counts as one such move; a zero
// deadline (none), or one already past, turns the moves off until the next
// one in the future. To save
// timer updates, the deadline only moves when an eighth of idle has passed
// since the last move, so a write gets at least 7/8 of idle. idle <= 0
// returns ln unchanged.
//
// Wrap the raw TCP listener, beneath any TLS listener: then the deadlines
// act on the socket, and TLS records are written through them.
func IdleWrites(ln net.Listener, idle time.Duration) net.Listener {
	if idle <= 0 {
		return ln
	}
	return &writeListener{Listener: ln, idle: idle}
}

type writeListener struct {
	net.Listener
	idle time.Duration
}

func (l *writeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &writeConn{Conn: c, idle: l.idle}, nil
}

// writeConn is an accepted connection whose writes push their own deadline.
type writeConn struct {
	net.Conn
	idle time.Duration
	// moved is when the write deadline last moved (unix nanoseconds), 0
	// before the first write, or writeOff.
	moved atomic.Int64
}

func (c *writeConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		if err := c.extend(); err != nil {
			return written, err
		}
		n, err := c.Conn.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// extend moves the write deadline to idle from now, unless deadlines are
// off or it moved less than idle/8 ago.
func (c *writeConn) extend() error {
	last := c.moved.Load()
	if last == writeOff {
		return nil
	}
	now := time.Now()
	if now.UnixNano()-last < int64(c.idle/8) {
		return nil
	}
	c.moved.Store(now.UnixNano())
	return c.Conn.SetWriteDeadline(now.Add(c.idle))
}

func (c *writeConn) SetWriteDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *writeConn) SetDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetDeadline(t)
}

// noteDeadline records a deadline set by the connection's owner. A zero
// one (none) or one already past (to abort a write) must stand: writes
// stop moving it until the next deadline in the future.
func (c *writeConn) noteDeadline(t time.Time) {
	now := time.Now()
	if t.IsZero() || !t.After(now) {
		c.moved.Store(writeOff)
		return
	}
	c.moved.Store(now.UnixNano())
}
