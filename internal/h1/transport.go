// Package h1 is the part of HTTP/1.1 that fasthttp leaves out and a proxy
// needs. On the client side, Transport reads every response framing RFC
// 9112 §6.3 allows, where fasthttp refuses a Transfer-Encoding other than
// "chunked", and hands the interim (1xx) responses fasthttp's client
// discards to a caller who forwards them (RFC 9110 §15.2). On the server
// side, TrackServed and Quiet tell when an interim response may be written
// to a client connection without overtaking an answer fasthttp still holds,
// and DateSeed writes the Date fasthttp's setters refuse.
package h1

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Interim receives an interim response (1xx other than 101) that arrived
// before the final response to a request. h is valid during the call only.
type Interim func(status int, h *fasthttp.ResponseHeader)

type interimKey struct{}

// WithInterim returns a context whose fetches hand their interim responses
// to f: the context a proxy passes a Fetcher when it forwards them.
func WithInterim(ctx context.Context, f Interim) context.Context {
	return context.WithValue(ctx, interimKey{}, f)
}

// InterimFrom returns the Interim of ctx, or nil.
func InterimFrom(ctx context.Context) Interim {
	f, _ := ctx.Value(interimKey{}).(Interim)
	return f
}

// ErrFraming means a response's framing was invalid: a Transfer-Encoding
// fasthttp, or this package, cannot decode (a coding other than chunked,
// gzip, x-gzip, deflate or identity; chunked applied twice), one on an
// HTTP/1.0 response (RFC 9112 §6.1: faulty framing), or one without a
// value. The connection is closed; a proxy answers 502 (§6.3).
var ErrFraming = errors.New("invalid response framing")

// maxInterim bounds the interim responses accepted before a final one,
// as fasthttp's client does.
const maxInterim = 100

// Transport is a fasthttp.RoundTripper for a HostClient (its Transport
// field). It sends requests as fasthttp's own transport does and reads
// responses itself up to the body, which fasthttp's stream reader still
// delivers, so that:
//
//   - interim responses go to the Interim registered for the request (see
//     Do), if any, instead of being dropped;
//   - a Transfer-Encoding whose final coding is chunked is dechunked and
//     the codings before it (gzip, deflate) decoded; one whose final coding
//     is not chunked means the body runs until the server closes the
//     connection (RFC 9112 §6.3), decoded the same way; the field never
//     reaches the caller, nor does a Content-Length beside it (§6.3: the
//     Transfer-Encoding overrides it, and a proxy must remove it);
//   - such responses never leave their connection for reuse, nor does one
//     framed by the connection's end, as ever.
//
// A plain response, Content-Length or chunked alone, is read and its
// connection reused exactly as by fasthttp. The zero Transport is ready.
type Transport struct {
	interims sync.Map // *fasthttp.Request -> Interim
}

var _ fasthttp.RoundTripper = (*Transport)(nil)

// Do runs do, which sends req through a HostClient using t, with f
// receiving req's interim responses. f runs on the goroutine that calls
// Do (within do), before do returns.
func (t *Transport) Do(req *fasthttp.Request, f Interim, do func() error) error {
	if f == nil {
		return do()
	}
	t.interims.Store(req, f)
	defer t.interims.Delete(req)
	return do()
}

// RoundTrip implements fasthttp.RoundTripper.
func (t *Transport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	timeout := req.GetTimeOut()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	cc, err := hc.AcquireConn(timeout, req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)

	if err := conn.SetWriteDeadline(earliest(deadline, hc.WriteTimeout)); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		hc.CloseConn(cc)
		return true, asTimeout(err)
	}

	if err := conn.SetReadDeadline(earliest(deadline, hc.ReadTimeout)); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	br := hc.AcquireReader(conn)
	var interim Interim
	if f, ok := t.interims.Load(req); ok {
		interim = f.(Interim)
	}
	skipBody := resp.SkipBody || req.Header.IsHead()
	framing, err := readHead(br, resp, interim, skipBody)
	if err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		// A framing error would come back the same; anything else (the
		// server closed a kept-alive connection) is worth another try.
		return !errors.Is(err, ErrFraming), err
	}
	// After a 101 the connection speaks another protocol: never reused (no
	// upgrade is asked for; one that comes anyway ends there).
	reuse := framing.reusable && !req.ConnectionClose() && !resp.ConnectionClose() &&
		resp.StatusCode() != fasthttp.StatusSwitchingProtocols
	if skipBody || bodiless(resp.StatusCode()) || resp.Header.ContentLength() == 0 {
		hc.ReleaseReader(br)
		if reuse {
			hc.ReleaseConn(cc)
		} else {
			hc.CloseConn(cc)
		}
		return false, nil
	}

	raw, r, err := bodyReader(br, resp, framing)
	if err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return false, err
	}
	body := &connBody{
		r:         r,
		raw:       raw,
		reuse:     reuse,
		interrupt: func() { _ = conn.Close() },
		release: func(reuse bool) {
			hc.ReleaseReader(br)
			if reuse {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
		},
	}
	size := resp.Header.ContentLength()
	if len(framing.decode) > 0 || size < -1 {
		size = -1
	}
	if !resp.StreamBody {
		b, err := io.ReadAll(body)
		_ = body.Close()
		if err != nil {
			return false, err
		}
		resp.SetBody(b)
		return false, nil
	}
	resp.SetBodyStream(body, size)
	return false, nil
}

// bodyReader returns the body of a response whose head readHead read
// into resp: fasthttp's stream reader frames it by the header parsed (for
// a rewritten head, the framing left in it), over a response of our own,
// raw, which the caller closes and releases (a stream would be released by
// the first SetBodyStream on resp); the transfer codings of f are undone
// over it.
func bodyReader(br *bufio.Reader, resp *fasthttp.Response, f framing) (*fasthttp.Response, io.Reader, error) {
	raw := fasthttp.AcquireResponse()
	raw.StreamBody = true
	resp.Header.CopyTo(&raw.Header)
	if err := raw.ReadBody(br, 0); err != nil {
		fasthttp.ReleaseResponse(raw)
		return nil, nil, err
	}
	var r io.Reader = raw.BodyStream()
	for i := len(f.decode) - 1; i >= 0; i-- {
		r = decoder(f.decode[i], r)
	}
	return raw, r, nil
}

// ReadResponse reads the answer to a request the caller wrote on a
// connection of its own (one no HostClient pools, such as one asking to
// switch protocols) as Transport reads one: interim responses to interim
// (if not nil), then the final response in any framing of RFC 9112 §6.3,
// its body whole, without Transfer-Encoding. A body beyond maxBody bytes
// is fasthttp.ErrBodyTooLarge. The body of a 101 is not read: what follows
// its head in br is the protocol switched to. reuse reports whether the
// connection may carry another request.
func ReadResponse(br *bufio.Reader, resp *fasthttp.Response, interim Interim, skipBody bool, maxBody int) (reuse bool, err error) {
	f, err := readHead(br, resp, interim, skipBody)
	if err != nil {
		return false, err
	}
	status := resp.StatusCode()
	reuse = f.reusable && !resp.ConnectionClose() && status != fasthttp.StatusSwitchingProtocols
	if skipBody || bodiless(status) || resp.Header.ContentLength() == 0 {
		return reuse, nil
	}
	raw, r, err := bodyReader(br, resp, f)
	if err != nil {
		return false, err
	}
	defer fasthttp.ReleaseResponse(raw)
	defer func() { _ = raw.CloseBodyStream() }()
	b, err := io.ReadAll(io.LimitReader(r, int64(maxBody)+1))
	if err != nil {
		return false, err
	}
	if len(b) > maxBody {
		return false, fasthttp.ErrBodyTooLarge
	}
	resp.SetBody(b)
	return reuse, nil
}

// bodiless reports the statuses whose responses end with their header
// (RFC 9112 §6.3): 1xx, 204 and 304.
func bodiless(status int) bool {
	return status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified
}

// earliest is the deadline d, or timeout from now if that comes first;
// zero if neither is set.
func earliest(d time.Time, timeout time.Duration) time.Time {
	if timeout > 0 {
		if t := time.Now().Add(timeout); d.IsZero() || t.Before(d) {
			return t
		}
	}
	return d
}

func asTimeout(err error) error {
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return fasthttp.ErrTimeout
	}
	return err
}

// framing is what the head of a final response says about its body.
type framing struct {
	// decode lists the transfer codings to undo, outermost last (the
	// order of the field), without the final chunked that framing removes.
	decode [][]byte
	// reusable: the connection may carry another request after the body.
	reusable bool
}

// readHead reads the interim responses, handing them to interim, then the
// final response's head into resp.Header, which is left framing its body
// for fasthttp's stream reader (Content-Length, chunked, or neither: until
// the connection closes).
func readHead(br *bufio.Reader, resp *fasthttp.Response, interim Interim, skipBody bool) (framing, error) {
	for n := 0; ; n++ {
		head, err := peekHead(br)
		if err != nil {
			return framing{}, err
		}
		status, proto := statusLine(head)
		if status < 100 || status > 199 || status == fasthttp.StatusSwitchingProtocols {
			return finalHead(br, head, status, proto, resp, skipBody)
		}
		if n >= maxInterim {
			return framing{}, errors.New("too many interim responses")
		}
		// An interim response has no body (RFC 9110 §15.2): any framing
		// field it carries means nothing.
		h := fasthttp.AcquireResponse()
		h.Header.SetNoDefaultContentType(true) // no Content-Type it did not send
		err = parseHead(&h.Header, head, func(name []byte) bool { return isField(name, "transfer-encoding") || isField(name, "content-length") }, nil)
		if err == nil {
			_, err = br.Discard(len(head))
		}
		if err == nil && interim != nil {
			interim(status, &h.Header)
		}
		fasthttp.ReleaseResponse(h)
		if err != nil {
			return framing{}, err
		}
	}
}

// finalHead parses the head of a final response (RFC 9112 §6.3).
func finalHead(br *bufio.Reader, head []byte, status int, proto []byte, resp *fasthttp.Response, skipBody bool) (framing, error) {
	codings, hasTE, hasCL := framingFields(head)
	noBody := skipBody || bodiless(status)
	if hasTE && !noBody && string(proto) == "HTTP/1.0" {
		// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has
		// faulty framing, whatever its Content-Length says.
		return framing{}, fmt.Errorf("%w: Transfer-Encoding on an HTTP/1.0 response", ErrFraming)
	}
	if !hasTE || (len(codings) == 1 && isField(codings[0], "chunked") && !hasCL && te1Line(head)) {
		// Content-Length, chunked alone, or neither: fasthttp's own
		// reading, connection reuse included.
		if err := resp.Header.Read(br); err != nil {
			return framing{}, err
		}
		return framing{reusable: true}, nil
	}
	var f framing
	if !noBody {
		chunked := 0
		for _, c := range codings {
			switch {
			case isField(c, "chunked"):
				chunked++
			case isField(c, "gzip"), isField(c, "x-gzip"), isField(c, "deflate"), isField(c, "identity"):
			default:
				return framing{}, fmt.Errorf("%w: transfer coding %q", ErrFraming, c)
			}
		}
		if len(codings) == 0 || chunked > 1 {
			return framing{}, fmt.Errorf("%w: Transfer-Encoding %q", ErrFraming, bytes.Join(codings, []byte(", ")))
		}
		f.decode = codings
		if last := codings[len(codings)-1]; isField(last, "chunked") {
			f.decode = codings[:len(codings)-1]
		}
	}
	// The head fasthttp parses: without Transfer-Encoding and
	// Content-Length, plus chunked framing where the final coding is
	// chunked; otherwise no length, which is "until the server closes".
	var extra []byte
	if !noBody && len(f.decode) < len(codings) {
		extra = []byte("Transfer-Encoding: chunked\r\n")
	}
	if err := parseHead(&resp.Header, head, func(name []byte) bool {
		return isField(name, "transfer-encoding") || isField(name, "content-length")
	}, extra); err != nil {
		return framing{}, err
	}
	if _, err := br.Discard(len(head)); err != nil {
		return framing{}, err
	}
	if noBody {
		// A HEAD, 204 or 304 ends with its header: Transfer-Encoding there
		// describes what a 200 to GET would have had (RFC 9112 §6.1). The
		// head without it has no length, which fasthttp reads as "close".
		if string(proto) == "HTTP/1.1" && !closes(head) {
			resp.Header.ResetConnectionClose()
		}
		return framing{reusable: true}, nil
	}
	// A coding other than chunked, or Content-Length beside
	// Transfer-Encoding, which "ought to be handled as an error" (§6.3):
	// the answer is read and relayed, the connection never reused.
	resp.Header.SetConnectionClose()
	return f, nil
}

// peekHead returns the next header block in br, status line to the empty
// line, without consuming it. The block must fit br's buffer.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; {
		b, err := br.Peek(n)
		if len(b) > 0 {
			b, _ = br.Peek(br.Buffered())
			if end := headEnd(b); end > 0 {
				return b[:end], nil
			}
		}
		if err != nil {
			var te interface{ Timeout() bool }
			switch {
			case len(b) == 0 && errors.As(err, &te) && te.Timeout():
				return nil, fasthttp.ErrTimeout
			case len(b) == 0:
				return nil, io.EOF // as fasthttp: the server closed a kept-alive connection
			case errors.Is(err, bufio.ErrBufferFull):
				return nil, fmt.Errorf("response header larger than %d bytes: %w", br.Size(), fasthttp.ErrSmallReadBuffer)
			}
			return nil, fmt.Errorf("reading response header: %w", err)
		}
		n = len(b) + 1
	}
}

// headEnd returns the length of the header block at the start of b, or 0
// if b does not hold all of it. Lines end in CRLF, or LF alone.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// statusLine returns the status code and protocol of a head, or 0.
func statusLine(head []byte) (int, []byte) {
	if len(head) < len("HTTP/1.1 200") || !bytes.HasPrefix(head, []byte("HTTP/")) || head[8] != ' ' {
		return 0, nil
	}
	code := 0
	for _, c := range head[9:12] {
		if c < '0' || c > '9' {
			return 0, nil
		}
		code = code*10 + int(c-'0')
	}
	return code, head[:8]
}

// headLines calls fn for each field line of head (obs-fold continuations
// joined with a space), name and value trimmed.
func headLines(head []byte, fn func(name, value []byte)) {
	var name, value []byte
	flush := func() {
		if name != nil {
			fn(name, bytes.TrimSpace(value))
		}
		name, value = nil, nil
	}
	lines := head
	if i := bytes.IndexByte(lines, '\n'); i >= 0 {
		lines = lines[i+1:] // the status line
	}
	for len(lines) > 0 {
		var line []byte
		if i := bytes.IndexByte(lines, '\n'); i >= 0 {
			line, lines = lines[:i], lines[i+1:]
		} else {
			line, lines = lines, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case len(line) == 0:
			flush()
			return
		case line[0] == ' ' || line[0] == '\t':
			value = append(append(value[:len(value):len(value)], ' '), bytes.TrimSpace(line)...)
		default:
			flush()
			if k, v, ok := bytes.Cut(line, []byte(":")); ok {
				name, value = bytes.TrimSpace(k), v
			}
		}
	}
	flush()
}

// framingFields returns the transfer codings of head's Transfer-Encoding
// lines, in order, and whether it has Transfer-Encoding and Content-Length.
func framingFields(head []byte) (codings [][]byte, te, cl bool) {
	headLines(head, func(name, value []byte) {
		switch {
		case isField(name, "transfer-encoding"):
			te = true
			for _, c := range bytes.Split(value, []byte(",")) {
				// transfer-coding = token *( OWS ";" OWS transfer-parameter )
				c, _, _ = bytes.Cut(c, []byte(";"))
				if c = bytes.TrimSpace(c); len(c) > 0 {
					codings = append(codings, c)
				}
			}
		case isField(name, "content-length"):
			cl = true
		}
	})
	return codings, te, cl
}

// closes reports whether head's Connection field has "close".
func closes(head []byte) bool {
	c := false
	headLines(head, func(name, value []byte) {
		if isField(name, "connection") {
			for _, o := range bytes.Split(value, []byte(",")) {
				c = c || isField(bytes.TrimSpace(o), "close")
			}
		}
	})
	return c
}

// te1Line reports whether head has one Transfer-Encoding line.
func te1Line(head []byte) bool {
	n := 0
	headLines(head, func(name, _ []byte) {
		if isField(name, "transfer-encoding") {
			n++
		}
	})
	return n == 1
}

// parseHead parses head into h, leaving out the fields drop names and
// adding the lines in extra.
func parseHead(h *fasthttp.ResponseHeader, head []byte, drop func([]byte) bool, extra []byte) error {
	buf := make([]byte, 0, len(head)+len(extra))
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		buf = append(buf, head[:i+1]...)
	}
	headLines(head, func(name, value []byte) {
		if drop(name) {
			return
		}
		buf = append(append(append(append(buf, name...), ": "...), value...), "\r\n"...)
	})
	buf = append(append(buf, extra...), "\r\n"...)
	return h.Read(bufio.NewReaderSize(bytes.NewReader(buf), len(buf)+16))
}

func isField(name []byte, lower string) bool {
	return len(name) == len(lower) && bytes.EqualFold(name, []byte(lower))
}

// decoder undoes one transfer coding (RFC 9112 §7). The readers of gzip
// and zlib read their header on the first Read, not here: RoundTrip must
// not wait for body bytes.
func decoder(coding []byte, r io.Reader) io.Reader {
	switch {
	case isField(coding, "chunked"):
		return httputil.NewChunkedReader(r)
	case isField(coding, "gzip"), isField(coding, "x-gzip"):
		return &lazyReader{open: func() (io.Reader, error) { return gzip.NewReader(r) }}
	case isField(coding, "deflate"):
		// "deflate" is the zlib format (RFC 9112 §7.2).
		return &lazyReader{open: func() (io.Reader, error) { return zlib.NewReader(r) }}
	}
	return r // identity
}

type lazyReader struct {
	open func() (io.Reader, error)
	r    io.Reader
	err  error
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.r == nil && l.err == nil {
		l.r, l.err = l.open()
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.r.Read(p)
}

// connBody is a response body read from a pooled connection: closing it
// gives the connection back once the body has been read to its end, or
// closes the connection (which also ends a Read in progress on another
// goroutine).
type connBody struct {
	r         io.Reader
	raw       *fasthttp.Response // owns the stream fasthttp reads
	reuse     bool               // the framing lets the connection be reused
	fullyRead bool
	interrupt func()           // closes the connection
	release   func(reuse bool) // gives the connection back, or closes it
	closed    atomic.Bool
	mu        sync.Mutex // held by Read
	once      sync.Once
}

func (b *connBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		b.fullyRead = true
	}
	return n, err
}

// Close implements io.Closer; fasthttp's Response.CloseBodyStream calls it.
func (b *connBody) Close() error {
	b.once.Do(func() {
		b.closed.Store(true)
		locked := b.mu.TryLock()
		if !locked {
			// A Read is blocked on the network: closing the connection
			// ends it, and it lets go of mu.
			b.interrupt()
			b.mu.Lock()
		}
		defer b.mu.Unlock()
		reuse := locked && b.reuse && b.fullyRead
		_ = b.raw.CloseBodyStream()
		fasthttp.ReleaseResponse(b.raw)
		b.release(reuse)
	})
	return nil
}
