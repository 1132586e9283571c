package h1

import (
	"net"
	"strconv"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// A handler can write an interim response straight to its connection
// (fasthttp's own RequestCtx.EarlyHints does), but fasthttp buffers the
// answers to pipelined requests: when a client sent a request before it
// had the answer to the previous one, that answer may still sit in the
// server's buffer while the handler of the next runs, and an interim
// response written then would overtake it. The server flushes its buffer
// before it reads from the connection again, so a read made after the
// previous handler returned proves the buffer empty; TrackServed counts
// reads, MarkServed notes when each handler returns, and Quiet compares.

// TrackServed wraps ln so that Quiet can tell about its connections. Wrap
// the listener the server reads from directly, or, for TLS, the one
// beneath the TLS listener (found through tls.Conn.NetConn).
func TrackServed(ln net.Listener) net.Listener { return trackListener{ln} }

type trackListener struct{ net.Listener }

func (l trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c}, nil
}

// trackedConn counts its reads, and remembers the count when a handler
// returned.
type trackedConn struct {
	net.Conn
	reads, served atomic.Uint64
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// NetConn returns the wrapped connection.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// MarkServed wraps the handler of a server whose listener TrackServed
// wrapped: it must be the outermost handler, so that every request counts.
func MarkServed(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		h(ctx)
		if c := tracked(ctx.Conn()); c != nil {
			c.served.Store(c.reads.Load())
		}
	}
}

// Quiet reports whether nothing can be waiting in the server's buffer of
// c: the request being handled was read after the previous one's handler
// returned. Call it when the handler starts (its own body reads would
// count). false when c was not tracked.
func Quiet(c net.Conn) bool {
	t := tracked(c)
	return t != nil && t.reads.Load() > t.served.Load()
}

func tracked(c net.Conn) *trackedConn {
	for range 8 { // TLS over the sniffing listener over the guards
		switch t := c.(type) {
		case *trackedConn:
			return t
		case interface{ NetConn() net.Conn }:
			c = t.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// AppendInterim appends the status line of an interim response with
// status and the fields of h that keep accepts, as HTTP/1.1 writes them;
// the caller adds its own fields and the empty line that ends the block.
func AppendInterim(dst []byte, status int, h *fasthttp.ResponseHeader, keep func(name, value []byte) bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, fasthttp.StatusMessage(status)...)
	dst = append(dst, "\r\n"...)
	for k, v := range h.All() {
		if keep(k, v) {
			dst = append(append(append(append(dst, k...), ": "...), v...), "\r\n"...)
		}
	}
	return dst
}
