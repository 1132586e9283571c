// Package streamconn lets a fasthttp client read a streamed response body
// under an idle timeout. fasthttp keeps the deadline it set for the response
// while the caller reads a streamed body (StreamResponseBody), so a long body,
// or a large one sent to a slow client, would be cut off when that deadline
// passes. A Table wraps the connections a client dials, so that once the
// response headers are in the caller can turn the remaining reads of the
// response into an idle timeout: each read must make progress within it, so
// a live body is never cut off but a stalled server still is.
//
// IdleWrites does the same for a fasthttp server's writes: a large response
// to a slow client is not cut off, a client that stops reading still is.
package streamconn

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Table finds the connection behind a response. fasthttp does not expose
// it, but Response.LocalAddr does, and a local address is unique among open
// connections. The zero Table is ready to use; it is safe for concurrent use
// and must not be copied after first use.
//
// A Table relies on fasthttp calling SetWriteDeadline at the start of every
// round trip, which it does whenever the request has a deadline: the caller
// must always send with one (HostClient.DoDeadline or DoTimeout).
type Table struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*conn
}

// Track wraps c, a connection just dialled (call it from
// HostClient.DialTimeout), and remembers it until it is closed. A connection
// whose local address is not TCP is returned unwrapped and never streams
// under an idle timeout.
func (t *Table) Track(c net.Conn) net.Conn {
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return c
	}
	tc := &conn{Conn: c, table: t, key: la.AddrPort()}
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[netip.AddrPort]*conn)
	}
	t.m[tc.key] = tc
	t.mu.Unlock()
	return tc
}

// Streaming gives the connection behind laddr (Response.LocalAddr) an idle
// read timeout for the rest of the current response, in place of fasthttp's
// fixed deadline. Call it after the round trip returned, when the response
// body is a stream. An address no tracked connection has is ignored.
func (t *Table) Streaming(laddr net.Addr, idle time.Duration) {
	la, ok := laddr.(*net.TCPAddr)
	if !ok {
		return
	}
	t.mu.Lock()
	tc := t.m[la.AddrPort()]
	t.mu.Unlock()
	if tc != nil {
		tc.idle.Store(int64(idle))
	}
}

// Len returns the number of tracked connections: those not closed yet.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *Table) forget(tc *conn) {
	t.mu.Lock()
	// The address may already belong to a newer connection.
	if t.m[tc.key] == tc {
		delete(t.m, tc.key)
	}
	t.mu.Unlock()
}

// conn is a tracked connection whose reads push their own deadline while a
// body is streamed.
type conn struct {
	net.Conn
	table  *Table
	key    netip.AddrPort
	idle   atomic.Int64 // time.Duration; > 0 while a body is streamed
	closed atomic.Bool
}

func (c *conn) Read(p []byte) (int, error) {
	if d := time.Duration(c.idle.Load()); d > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// SetWriteDeadline is fasthttp's first call of every round trip (see
// Table), so the previous response is over: fasthttp's own read deadline
// applies again.
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.idle.Store(0)
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) Close() error {
	if !c.closed.Swap(true) {
		c.table.forget(c)
	}
	return c.Conn.Close()
}
