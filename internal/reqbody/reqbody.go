// Package reqbody bounds the request bodies a fasthttp server hands its
// handler when it streams them (Server.StreamRequestBody), so that a node
// relays large bodies upstream instead of holding them whole. Streaming
// changes what fasthttp checks: it no longer refuses a declared
// Content-Length over MaxRequestBodySize, nor a chunked body that runs past
// it, and Request.Body (PostBody) reads a stream whole, however long. Handler
// puts those checks back in front of the handler and decides which bodies
// are read whole: small ones (cheap, and then they look exactly as before:
// a known length, resendable), and those of requests whose handler needs
// the whole body; all of them within one memory budget.
package reqbody

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Defaults for zero Options fields.
const (
	DefaultSmall     = 64 << 10
	DefaultMinBudget = 64 << 20
)

// Options configure Handler. Zero values take the defaults noted.
type Options struct {
	// Limit is the largest body accepted: a declared Content-Length above
	// it is answered 413 before the handler runs, and reading a chunked
	// body that runs past it fails with an *Error wrapping
	// fasthttp.ErrBodyTooLarge. Required: <= 0 accepts no body at all.
	Limit int64
	// Small is the size up to which a body is read whole before the
	// handler runs, as fasthttp does without streaming. Default
	// DefaultSmall (64 KiB).
	Small int
	// Budget bounds the bytes of request bodies held whole at once, across
	// every request through the handler: past it small bodies stream, and
	// requests that Whole selects are answered 503. Default the larger of
	// DefaultMinBudget (64 MiB) and Limit, so one body up to the limit
	// always fits.
	Budget int64
	// Whole selects requests whose bodies are read whole (up to Limit)
	// before the handler runs, because it reads them with PostBody. They
	// must declare a Content-Length (411 otherwise). Nil selects none.
	Whole func(ctx *fasthttp.RequestCtx) bool
	// Reject answers a request refused here with status (400, 408, 411,
	// 413 or 503), before the handler. Nil: ctx.Error with the status
	// text. The connection is closed after it in any case.
	Reject func(ctx *fasthttp.RequestCtx, status int)
}

// Handler returns h behind the checks and reads described in the package
// documentation. A body left streaming reaches h as ctx.Request.BodyStream,
// with ctx.Request.Header.ContentLength() telling its length (-1 when
// chunked); its read errors are *Error. Requests without a streamed body
// pass straight through, at the cost of two field reads.
func Handler(h fasthttp.RequestHandler, o Options) fasthttp.RequestHandler {
	if o.Small <= 0 {
		o.Small = DefaultSmall
	}
	if o.Budget <= 0 {
		o.Budget = max(DefaultMinBudget, o.Limit)
	}
	if o.Reject == nil {
		o.Reject = func(ctx *fasthttp.RequestCtx, status int) {
			ctx.Error(fasthttp.StatusMessage(status)+"\n", status)
		}
	}
	g := &gate{h: h, o: o}
	g.bufs.New = func() any {
		b := make([]byte, o.Small+1)
		return &b
	}
	return g.serve
}

type gate struct {
	h    fasthttp.RequestHandler
	o    Options
	held atomic.Int64 // bytes of bodies held whole now
	bufs sync.Pool    // *[]byte of Small+1 bytes
}

func (g *gate) serve(ctx *fasthttp.RequestCtx) {
	req := &ctx.Request
	if !req.IsBodyStream() {
		g.h(ctx)
		return
	}
	cl := req.Header.ContentLength()
	switch {
	case int64(cl) > g.o.Limit:
		g.reject(ctx, fasthttp.StatusRequestEntityTooLarge)
	case cl == 0:
		// fasthttp streams an empty body too; the handler sees none, as
		// before (a forwarded request must not look streamed).
		ctx.Request.SetBodyRaw(nil)
		g.h(ctx)
	case g.o.Whole != nil && g.o.Whole(ctx):
		g.serveWhole(ctx, cl)
	case cl <= g.o.Small && g.reserve(int64(g.o.Small+1)):
		// Chunked bodies reserve as much, not knowing their length yet.
		defer g.release(int64(g.o.Small + 1))
		g.serveSmall(ctx, cl)
	default:
		g.stream(ctx, req.BodyStream(), cl)
	}
}

// serveWhole reads a body of declared length cl whole, then runs h.
func (g *gate) serveWhole(ctx *fasthttp.RequestCtx, cl int) {
	if cl < 0 {
		g.reject(ctx, fasthttp.StatusLengthRequired)
		return
	}
	if !g.reserve(int64(cl)) {
		g.reject(ctx, fasthttp.StatusServiceUnavailable)
		return
	}
	defer g.release(int64(cl))
	// Allocated, not pooled: these are the peer endpoints' batches, rare and
	// up to Limit; the budget bounds them.
	body := make([]byte, cl)
	if _, err := io.ReadFull(ctx.Request.BodyStream(), body); err != nil {
		g.reject(ctx, Status(err))
		return
	}
	ctx.Request.SetBodyRaw(body)
	g.h(ctx)
}

// serveSmall reads a body of at most Small bytes whole into a pooled buffer,
// or, when a chunked one turns out longer, streams it on with what was read
// put back in front.
func (g *gate) serveSmall(ctx *fasthttp.RequestCtx, cl int) {
	bp := g.bufs.Get().(*[]byte)
	defer g.bufs.Put(bp)
	buf := *bp
	stream := &limited{r: ctx.Request.BodyStream(), left: g.o.Limit}
	if cl > 0 {
		buf = buf[:cl]
	}
	n, err := io.ReadFull(stream, buf)
	switch {
	case cl < 0 && n == len(buf):
		// Chunked and longer than Small: stream it. The buffer stays in use
		// until h returns.
		g.stream(ctx, io.MultiReader(bytes.NewReader(buf), stream), cl)
		return
	case cl < 0 && (err == io.ErrUnexpectedEOF || err == io.EOF):
		// ReadFull's own words for a stream that ended early (compared as
		// values: a broken stream's error is an *Error, even when it wraps
		// io.ErrUnexpectedEOF): a chunked body that ended within Small.
		err = nil
	}
	if err != nil {
		g.reject(ctx, Status(err))
		return
	}
	ctx.Request.SetBodyRaw(buf[:n])
	if cl < 0 {
		// As fasthttp says of a chunked body it read whole.
		ctx.Request.Header.SetContentLength(n)
	}
	g.h(ctx)
	// The buffer goes back to the pool: let nothing read it through the
	// request any more.
	ctx.Request.SetBodyRaw(nil)
}

// stream hands h the body as a stream that marks its errors as the client's
// and, for a chunked body, enforces Limit.
func (g *gate) stream(ctx *fasthttp.RequestCtx, r io.Reader, cl int) {
	if _, ok := r.(*limited); !ok {
		r = &limited{r: r, left: g.o.Limit}
	}
	// SetBodyStream leaves the server's own stream to the server, which
	// drains what h does not read.
	ctx.Request.SetBodyStream(r, cl)
	g.h(ctx)
}

func (g *gate) reserve(n int64) bool {
	if g.held.Add(n) > g.o.Budget {
		g.held.Add(-n)
		return false
	}
	return true
}

func (g *gate) release(n int64) { g.held.Add(-n) }

func (g *gate) reject(ctx *fasthttp.RequestCtx, status int) {
	g.o.Reject(ctx, status)
	// The rest of the body is unread, or broken: the connection cannot
	// carry another request.
	ctx.SetConnectionClose()
}

// limited reads a client's body, failing past left bytes and marking every
// error but io.EOF as the client's.
type limited struct {
	r    io.Reader
	left int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, &Error{Err: fasthttp.ErrBodyTooLarge}
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1] // one byte more tells a body over the limit
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n + int(l.left), &Error{Err: fasthttp.ErrBodyTooLarge}
	}
	if err != nil && err != io.EOF {
		if _, ok := err.(*Error); !ok {
			err = &Error{Err: err}
		}
	}
	return n, err
}

// Error is a failure reading a request body from the client: it went away,
// stalled, broke the framing, or sent more than the limit. An upstream
// request that fails with it says nothing about the upstream, so health
// checks must not count it.
type Error struct{ Err error }

func (e *Error) Error() string { return "reading the request body: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// FromClient reports whether err came from reading the client's body.
func FromClient(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Status is the answer to a request whose body could not be read for err:
// 413 past the limit, 408 when the client stalled, 400 otherwise.
func Status(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return fasthttp.StatusRequestTimeout
	}
	return fasthttp.StatusBadRequest
}
