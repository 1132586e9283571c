// Package connlimit caps the connections a listener hands out per client
// address. fasthttp's own Server.MaxConnsPerIP answers 429 Too Many Requests
// beyond its cap, but a connection cap is about the server's capacity, not
// the client's request rate, and clients and load balancers retry a 503
// elsewhere; so the cap lives here, in a listener, and answers 503.
package connlimit

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

const (
	// rejectTimeout bounds writing the 503 and draining what the client
	// sent meanwhile.
	rejectTimeout = time.Second
	// maxDraining bounds the rejected connections drained at once; beyond
	// it they are closed at once (the client may then see a reset rather
	// than the 503).
	maxDraining = 64
	// drainBytes is the most read from a rejected client before closing.
	drainBytes = 64 << 10
)

const rejectBody = "too many connections from your address\n"

// rejectResponse is written to each connection over the cap.
var rejectResponse = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Connection: close\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Cache-Control: no-store\r\n" +
	"Retry-After: 1\r\n" +
	"Content-Length: " + strconv.Itoa(len(rejectBody)) + "\r\n\r\n" + rejectBody)

// PerIP wraps ln so that at most max connections from one remote IP address
// are open at once; Accept answers the others 503 Service Unavailable and
// closes them. A connection counts until it is closed. max <= 0 returns ln
// unchanged. Connections without an IP remote address are not counted.
//
// Wrap the plain TCP listener (the 503 is written in clear text).
func PerIP(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	return &listener{Listener: ln, max: max, open: make(map[netip.Addr]int), draining: make(chan struct{}, maxDraining)}
}

type listener struct {
	net.Listener
	max      int
	mu       sync.Mutex
	open     map[netip.Addr]int
	draining chan struct{} // semaphore of rejected connections being drained
}

// Accept returns the next connection within the cap. Like any accept loop
// it runs until the listener fails; each rejection costs one short write.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, ok := remoteIP(c)
		if !ok {
			return c, nil
		}
		if l.take(ip) {
			return &conn{Conn: c, l: l, ip: ip}, nil
		}
		l.reject(c)
	}
}

func (l *listener) take(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] >= l.max {
		return false
	}
	l.open[ip]++
	return true
}

func (l *listener) put(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] <= 1 {
		delete(l.open, ip) // the map holds only addresses with connections
		return
	}
	l.open[ip]--
}

// reject answers c 503 and closes it. The write is a few hundred bytes to a
// fresh socket, so it does not block the accept loop. Closing a socket with
// unread input makes the kernel send a reset, which can destroy the answer
// before the client reads it; so the rest is done in the background: stop
// writing, read what the client sent (bounded in bytes and time), close.
func (l *listener) reject(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(rejectTimeout))
	if _, err := c.Write(rejectResponse); err != nil {
		_ = c.Close()
		return
	}
	select {
	case l.draining <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.draining }()
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, drainBytes))
		_ = c.Close()
	}()
}

func remoteIP(c net.Conn) (netip.Addr, bool) {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	default:
		return netip.Addr{}, false
	}
}

// conn gives its slot back when closed.
type conn struct {
	net.Conn
	l    *listener
	ip   netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.put(c.ip) })
	return err
}
