// Package demo is a small deterministic origin server for the quick start,
// tests and benchmarks (`ringcache origin`): every response is shaped by
// query parameters (Cache-Control, size, delay, status, validators, Vary,
// cookies, tags), and control endpoints count requests, reset, force
// failures and change every representation.
package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	// MaxBodySize caps the size parameter so one request cannot make the
	// demo origin allocate without bound.
	MaxBodySize = 64 << 20
	// MaxDelay caps the delay parameter and the forced-mode delay.
	MaxDelay = 60 * time.Second

	controlPrefix = "/__origin/"
	// streamChunk is how much of a chunked body is written between flushes,
	// so the peer really sees a body of unknown length arriving in pieces.
	streamChunk = 32 << 10
)

// Options configures a demo origin. The zero value is usable.
type Options struct {
	// Logger receives request errors and control actions. Nil discards.
	Logger *slog.Logger
	// Clock gives the time used for Date, Expires and Last-Modified, so tests
	// can pin them. Nil means time.Now.
	Clock func() time.Time
}

// Server is the demo origin. Every path other than the control endpoints
// under /__origin/ answers 200 with a deterministic body; query parameters
// shape the response:
//
//	cc=<value>       Cache-Control: <value>
//	size=<n>         body of exactly n bytes (0..MaxBodySize), a pattern
//	                 derived from the request line, so different URIs differ
//	delay=<dur>      wait a Go duration (0..MaxDelay) before answering
//	status=<code>    answer that status (100..599)
//	etag=1           strong ETag; a matching If-None-Match answers 304
//	lm=1             Last-Modified (start time - 1h); If-Modified-Since at or
//	                 after it answers 304 when there is no If-None-Match
//	vary=<names>     Vary: <names>; the body includes the request's values of
//	                 those headers, so variants differ
//	cookie=1         Set-Cookie: session=<counter>; Path=/
//	tags=<keys>      Surrogate-Key: <keys>
//	expires=<dur>    Expires: now + dur (dur may be negative)
//	age=<n>          Age: n
//	chunked=1        chunked transfer encoding, no Content-Length
//
// Without size the body is one line: "origin <uri> v=<version>[ Name=value...]\n".
// Bodies and ETags include a content version that POST /__origin/bump
// increments, so a revalidation can see a changed representation.
//
// Control endpoints, not counted as requests:
//
//	GET  /__origin/stats   JSON Stats
//	POST /__origin/reset   zero the counters and clear the forced mode
//	POST /__origin/mode    ?status=503&delay=2s forces every later request to
//	                       that status and/or delay; no parameters clear it
//	POST /__origin/bump    increment the content version
//
// Methods other than GET and HEAD on normal paths answer 200 with a short
// body naming the method.
type Server struct {
	log          *slog.Logger
	now          func() time.Time
	lastModified time.Time
	lmHeader     []byte // lastModified as an HTTP-date, built once

	srv *fasthttp.Server
	// done releases delayed handlers on Shutdown: fasthttp waits for active
	// connections, and a handler sleeping for a minute would hold it up.
	done chan struct{}

	mu        sync.Mutex // guards byURI, listeners, shut
	byURI     map[string]*int64
	listeners []net.Listener
	shut      bool

	requests    atomic.Int64
	notModified atomic.Int64
	cookies     atomic.Int64
	version     atomic.Int64
	mode        atomic.Pointer[forcedMode]

	dates sync.Pool // *dateReader
}

// dateReader is the scratch setDate parses a Date header from.
type dateReader struct {
	buf []byte
	r   bytes.Reader
	br  *bufio.Reader
}

// forcedMode is what POST /__origin/mode set; immutable once published.
type forcedMode struct {
	status int
	delay  time.Duration
}

// Stats is what GET /__origin/stats returns.
type Stats struct {
	// Requests counts normal requests since start or the last reset.
	Requests int64 `json:"requests"`
	// NotModified counts 304 answers among them.
	NotModified int64 `json:"not_modified"`
	// Version is the current content version (reset leaves it alone).
	Version int64 `json:"version"`
	// ByURI counts requests per path+"?"+raw query ("?" only with a query).
	ByURI map[string]int64 `json:"by_uri"`
}

// New returns a demo origin; call Serve to accept connections or use
// Handler directly.
func New(opts Options) *Server {
	s := &Server{
		log:   opts.Logger,
		now:   opts.Clock,
		done:  make(chan struct{}),
		byURI: make(map[string]*int64),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.version.Store(1)
	s.lastModified = s.now().Truncate(time.Second).Add(-time.Hour).UTC()
	s.lmHeader = fasthttp.AppendHTTPDate(nil, s.lastModified)
	s.srv = &fasthttp.Server{
		Handler: s.Handler,
		Name:    "ringcache-origin",
		// The handler sets Date from the injected clock.
		NoDefaultDate: true,
		Logger:        printfLogger{s.log},
	}
	return s
}

// Serve accepts connections on ln until Shutdown. It returns nil after
// Shutdown and the listener's error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		_ = ln.Close()
		return errors.New("origin server: serve after shutdown")
	}
	// Remembered so that Shutdown can close a listener that fasthttp has
	// not registered yet (Serve racing with Shutdown).
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()

	err := s.srv.Serve(ln)
	if s.isShut() {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, releases delayed handlers (they
// answer 503) and waits for in-flight responses to finish. Safe to call
// more than once.
func (s *Server) Shutdown() error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return nil
	}
	s.shut = true
	lns := s.listeners
	s.listeners = nil
	s.mu.Unlock()

	close(s.done)
	err := s.srv.Shutdown()
	for _, ln := range lns {
		_ = ln.Close() // usually already closed by fasthttp
	}
	if err != nil {
		return fmt.Errorf("origin server shutdown: %w", err)
	}
	return nil
}

func (s *Server) isShut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shut
}

// Requests returns the number of normal requests since start or the last
// reset.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Stats returns a snapshot of the counters, as GET /__origin/stats does.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:    s.requests.Load(),
		NotModified: s.notModified.Load(),
		Version:     s.version.Load(),
	}
	s.mu.Lock()
	st.ByURI = make(map[string]int64, len(s.byURI))
	for k, n := range s.byURI {
		st.ByURI[k] = atomic.LoadInt64(n)
	}
	s.mu.Unlock()
	return st
}

// Handler serves one request; it is what Serve runs.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	s.setDate(&ctx.Response.Header)
	uri := ctx.URI()
	path := uri.PathOriginal()
	if bytes.HasPrefix(path, []byte(controlPrefix)) {
		s.control(ctx, path[len(controlPrefix):])
		return
	}
	s.count(path, uri.QueryString())

	if m := s.mode.Load(); m != nil {
		if m.delay > 0 && !s.wait(ctx, m.delay) {
			return
		}
		if m.status != 0 {
			plain(ctx, m.status, "origin forced status")
			s.countStatus(ctx)
			return
		}
	}

	if !ctx.IsGet() && !ctx.IsHead() {
		r := &ctx.Response
		r.Header.SetContentType("text/plain; charset=utf-8")
		r.AppendBodyString("origin ")
		r.AppendBody(ctx.Method())
		r.AppendBodyString(" ")
		r.AppendBody(path)
		r.AppendBodyString("\n")
		return
	}

	var p params
	if err := p.parse(ctx.QueryArgs()); err != nil {
		plain(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if p.delay > 0 && !s.wait(ctx, p.delay) {
		return
	}
	s.respond(ctx, &p, path, uri.QueryString())
	s.countStatus(ctx)
}

// setDate gives h a Date from the injected clock. fasthttp's Set drops Date
// ("managed automatically") and the server writes its own unless
// NoDefaultDate is on, in which case it writes a Date that was parsed; so
// parse one. It must run first: Read resets the rest of the header.
func (s *Server) setDate(h *fasthttp.ResponseHeader) {
	d, _ := s.dates.Get().(*dateReader)
	if d == nil {
		d = &dateReader{}
		d.br = bufio.NewReaderSize(&d.r, 256) // must hold the whole header
	}
	d.buf = append(d.buf[:0], "HTTP/1.1 200 OK\r\nDate: "...)
	d.buf = fasthttp.AppendHTTPDate(d.buf, s.now())
	// Without a length the parsed header would mean "body until close".
	d.buf = append(d.buf, "\r\nContent-Length: 0\r\n\r\n"...)
	d.r.Reset(d.buf)
	d.br.Reset(&d.r)
	err := h.Read(d.br)
	s.dates.Put(d)
	if err != nil {
		s.log.Error("origin: cannot set Date", "err", err)
	}
}

// count records a normal request. The map insert allocates once per new URI;
// lookups use the compiler's no-copy string(bytes) form.
func (s *Server) count(path, query []byte) {
	s.requests.Add(1)
	var key []byte
	var buf [128]byte
	key = append(buf[:0], path...)
	if len(query) > 0 {
		key = append(key, '?')
		key = append(key, query...)
	}
	s.mu.Lock()
	n := s.byURI[string(key)]
	if n == nil {
		n = new(int64)
		s.byURI[string(key)] = n
	}
	*n++
	s.mu.Unlock()
}

func (s *Server) countStatus(ctx *fasthttp.RequestCtx) {
	if ctx.Response.StatusCode() == fasthttp.StatusNotModified {
		s.notModified.Add(1)
	}
}

// wait sleeps for d unless the server shuts down first, in which case it
// answers 503 and returns false.
func (s *Server) wait(ctx *fasthttp.RequestCtx, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		ctx.SetConnectionClose()
		plain(ctx, fasthttp.StatusServiceUnavailable, "origin shutting down")
		return false
	}
}

// params are the query parameters of a normal request.
type params struct {
	cc, vary, tags []byte
	size           int // -1: the one-line default body
	delay          time.Duration
	status         int
	etag, lm       bool
	cookie         bool
	chunked        bool
	expires        time.Duration
	hasExpires     bool
	age            int
	hasAge         bool
}

func (p *params) parse(args *fasthttp.Args) error {
	var err error
	p.size, p.status = -1, fasthttp.StatusOK
	p.cc = args.Peek("cc")
	p.vary = args.Peek("vary")
	p.tags = args.Peek("tags")
	if v := args.Peek("size"); len(v) > 0 {
		if p.size, err = fasthttp.ParseUint(v); err != nil || p.size > MaxBodySize {
			return fmt.Errorf("size must be an integer in 0..%d, got %q", MaxBodySize, v)
		}
	}
	if v := args.Peek("status"); len(v) > 0 {
		if p.status, err = fasthttp.ParseUint(v); err != nil || p.status < 100 || p.status > 599 {
			return fmt.Errorf("status must be in 100..599, got %q", v)
		}
	}
	if v := args.Peek("delay"); len(v) > 0 {
		if p.delay, err = time.ParseDuration(string(v)); err != nil || p.delay < 0 || p.delay > MaxDelay {
			return fmt.Errorf("delay must be a duration in 0..%s, got %q", MaxDelay, v)
		}
	}
	if v := args.Peek("expires"); len(v) > 0 {
		if p.expires, err = time.ParseDuration(string(v)); err != nil {
			return fmt.Errorf("expires must be a duration, got %q", v)
		}
		p.hasExpires = true
	}
	if v := args.Peek("age"); len(v) > 0 {
		if p.age, err = fasthttp.ParseUint(v); err != nil {
			return fmt.Errorf("age must be a non-negative integer, got %q", v)
		}
		p.hasAge = true
	}
	if p.etag, err = parseFlag(args, "etag"); err != nil {
		return err
	}
	if p.lm, err = parseFlag(args, "lm"); err != nil {
		return err
	}
	if p.cookie, err = parseFlag(args, "cookie"); err != nil {
		return err
	}
	p.chunked, err = parseFlag(args, "chunked")
	return err
}

func parseFlag(args *fasthttp.Args, name string) (bool, error) {
	v := args.Peek(name)
	switch string(v) {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, fmt.Errorf("%s must be 1 or 0, got %q", name, v)
}

func (s *Server) respond(ctx *fasthttp.RequestCtx, p *params, path, query []byte) {
	h := &ctx.Response.Header
	version := s.version.Load()

	var lineBuf [256]byte
	line := appendLine(lineBuf[:0], &ctx.Request.Header, path, query, version, p.vary)

	ctx.SetStatusCode(p.status)
	ctx.SetContentType("text/plain; charset=utf-8")
	if len(p.cc) > 0 {
		h.SetBytesV(fasthttp.HeaderCacheControl, p.cc)
	}
	if len(p.vary) > 0 {
		h.SetBytesV(fasthttp.HeaderVary, p.vary)
	}
	if len(p.tags) > 0 {
		h.SetBytesV("Surrogate-Key", p.tags)
	}
	if p.hasExpires {
		h.SetBytesV(fasthttp.HeaderExpires, fasthttp.AppendHTTPDate(nil, s.now().Add(p.expires)))
	}
	if p.hasAge {
		h.SetBytesV(fasthttp.HeaderAge, strconv.AppendInt(nil, int64(p.age), 10))
	}
	if p.cookie {
		n := s.cookies.Add(1)
		v := append([]byte("session="), strconv.AppendInt(nil, n, 10)...)
		h.SetBytesV(fasthttp.HeaderSetCookie, append(v, "; Path=/"...))
	}
	var etag []byte
	if p.etag {
		var tagBuf [24]byte
		etag = appendETag(tagBuf[:0], line)
		h.SetBytesV(fasthttp.HeaderETag, etag)
	}
	if p.lm {
		h.SetBytesV(fasthttp.HeaderLastModified, s.lmHeader)
	}

	// RFC 9110 §13.2.1: conditionals apply only when the answer would be 2xx.
	if p.status >= 200 && p.status < 300 && s.notModifiedFor(&ctx.Request.Header, etag, p.lm) {
		// §15.4.5: a 304 carries the headers a 200 would, minus the body.
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}

	if p.chunked {
		pattern := bytes.Clone(line) // the stream writer outlives lineBuf
		size := p.size
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			writeBody(w, pattern, size)
		})
		return
	}
	size := p.size
	if size < 0 {
		size = len(line)
	}
	for size > 0 {
		n := min(size, len(line))
		ctx.Response.AppendBody(line[:n])
		size -= n
	}
}

// notModifiedFor evaluates If-None-Match, then If-Modified-Since only when
// there is no If-None-Match (RFC 9110 §13.2.2).
func (s *Server) notModifiedFor(h *fasthttp.RequestHeader, etag []byte, lm bool) bool {
	if inm := h.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 {
		return etagListMatches(inm, etag)
	}
	if !lm {
		return false
	}
	ims := h.Peek(fasthttp.HeaderIfModifiedSince)
	if len(ims) == 0 {
		return false
	}
	t, err := fasthttp.ParseHTTPDate(ims)
	if err != nil {
		return false // §13.1.3: an invalid date is ignored
	}
	return !s.lastModified.After(t)
}

// etagListMatches applies the weak comparison of §13.1.2 (If-None-Match):
// "*" matches any current representation, otherwise opaque tags are
// compared with any W/ prefix dropped.
func etagListMatches(list, etag []byte) bool {
	if string(bytes.TrimSpace(list)) == "*" {
		return true
	}
	if len(etag) == 0 {
		return false
	}
	etag = bytes.TrimPrefix(etag, []byte("W/"))
	for len(list) > 0 {
		var tag []byte
		tag, list, _ = bytes.Cut(list, []byte(","))
		tag = bytes.TrimPrefix(bytes.TrimSpace(tag), []byte("W/"))
		if bytes.Equal(tag, etag) {
			return true
		}
	}
	return false
}

// appendLine builds the default body: it names the URI, the content version
// and the values of the headers listed in vary, so every variant differs.
func appendLine(dst []byte, req *fasthttp.RequestHeader, path, query []byte, version int64, vary []byte) []byte {
	dst = append(dst, "origin "...)
	dst = append(dst, path...)
	if len(query) > 0 {
		dst = append(dst, '?')
		dst = append(dst, query...)
	}
	dst = append(dst, " v="...)
	dst = strconv.AppendInt(dst, version, 10)
	for len(vary) > 0 {
		var name []byte
		name, vary, _ = bytes.Cut(vary, []byte(","))
		name = bytes.TrimSpace(name)
		if len(name) == 0 || string(name) == "*" {
			continue
		}
		dst = append(dst, ' ')
		dst = append(dst, name...)
		dst = append(dst, '=')
		dst = append(dst, req.PeekBytes(name)...)
	}
	return append(dst, '\n')
}

// appendETag derives a strong ETag from the default body line, which holds
// everything that distinguishes a representation (URI, version, variant).
func appendETag(dst, line []byte) []byte {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, c := range line {
		h ^= uint64(c)
		h *= prime64
	}
	dst = append(dst, '"')
	var hex [16]byte
	for i := len(hex) - 1; i >= 0; i-- {
		hex[i] = "0123456789abcdef"[h&0xf]
		h >>= 4
	}
	dst = append(dst, hex[:]...)
	return append(dst, '"')
}

// writeBody writes pattern repeated and truncated to size bytes, or pattern
// once when size < 0, flushing every streamChunk bytes.
func writeBody(w *bufio.Writer, pattern []byte, size int) {
	if size < 0 {
		size = len(pattern)
	}
	sinceFlush := 0
	for size > 0 {
		n := min(size, len(pattern))
		if _, err := w.Write(pattern[:n]); err != nil {
			return // the peer went away
		}
		size -= n
		sinceFlush += n
		if sinceFlush >= streamChunk {
			if w.Flush() != nil {
				return
			}
			sinceFlush = 0
		}
	}
}

func (s *Server) control(ctx *fasthttp.RequestCtx, name []byte) {
	method := fasthttp.MethodPost
	if string(name) == "stats" {
		method = fasthttp.MethodGet
	}
	switch string(name) {
	case "stats", "reset", "mode", "bump":
	default:
		plain(ctx, fasthttp.StatusNotFound, "unknown control endpoint")
		return
	}
	if string(ctx.Method()) != method {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, method)
		plain(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
		return
	}
	switch string(name) {
	case "stats":
		writeJSON(ctx, s.Stats())
	case "reset":
		s.reset()
		s.log.Info("origin counters reset")
		writeJSON(ctx, s.Stats())
	case "bump":
		v := s.version.Add(1)
		s.log.Info("origin content version bumped", "version", v)
		writeJSON(ctx, map[string]int64{"version": v})
	case "mode":
		m, err := parseMode(ctx.QueryArgs())
		if err != nil {
			plain(ctx, fasthttp.StatusBadRequest, err.Error())
			return
		}
		s.mode.Store(m)
		out := map[string]any{"status": 0, "delay": "0s"}
		if m != nil {
			out["status"], out["delay"] = m.status, m.delay.String()
		}
		s.log.Info("origin mode set", "mode", out)
		writeJSON(ctx, out)
	}
}

// reset zeroes the counters and clears the forced mode. The content version
// is kept: a cache may hold a representation of a later version, and
// rewinding would make a changed representation look unchanged.
func (s *Server) reset() {
	s.mu.Lock()
	clear(s.byURI)
	s.requests.Store(0)
	s.notModified.Store(0)
	s.cookies.Store(0)
	s.mu.Unlock()
	s.mode.Store(nil)
}

func parseMode(args *fasthttp.Args) (*forcedMode, error) {
	var m forcedMode
	var err error
	if v := args.Peek("status"); len(v) > 0 {
		if m.status, err = fasthttp.ParseUint(v); err != nil || m.status < 100 || m.status > 599 {
			return nil, fmt.Errorf("status must be in 100..599, got %q", v)
		}
	}
	if v := args.Peek("delay"); len(v) > 0 {
		if m.delay, err = time.ParseDuration(string(v)); err != nil || m.delay < 0 || m.delay > MaxDelay {
			return nil, fmt.Errorf("delay must be a duration in 0..%s, got %q", MaxDelay, v)
		}
	}
	if m == (forcedMode{}) {
		return nil, nil
	}
	return &m, nil
}

func writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		plain(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

// plain answers status with a one-line text body. Unlike ctx.Error it keeps
// the headers already set (Date).
func plain(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(msg + "\n")
}

// printfLogger routes fasthttp's Printf-style logging to slog.
type printfLogger struct{ log *slog.Logger }

func (l printfLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "origin-server")
}
