package node

import (
	"bufio"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ringcache/ringcache/config"
	"github.com/valyala/fasthttp"
)

// accessLogger writes one line per request: in the combined log format plus
// the Cache-Status and the time taken,
//
//	127.0.0.1 - - [25/Nov/2026:10:41:15 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8" "ringcache; hit; ttl=37" 0.000120
//
// or as one JSON object (access_log_format json),
//
//	{"time":"2026-11-25T10:41:15.042Z","remote":"127.0.0.1","method":"GET","uri":"/a","proto":"HTTP/1.1","status":200,"referer":"","user_agent":"curl/8","cache_status":"ringcache; hit; ttl=37","bytes":512,"duration_seconds":0.000120}
//
// bytes counts the response body sent: none for HEAD, 304 and the like,
// and for a body streamed to the client (one too large to store, relayed
// as it arrives) what was written of it. The line of such a response is
// written once its body is, and its duration includes the writing; other
// bodies are written by fasthttp after the line, in a blink.
type accessLogger struct {
	json   bool
	mu     sync.Mutex
	bw     *bufio.Writer
	file   io.Closer
	lines  sync.Pool // *logLine
	stop   chan struct{}
	closed sync.WaitGroup
}

// streamCounter is a response body stream that tells, once fasthttp is
// done with it, how many bytes it gave to be written: the proxy's relayed
// bodies are.
type streamCounter interface {
	OnClose(fn func(n int64))
}

// accessLogFormat resolves access_log_format: "" follows log_format.
func accessLogFormat(cfg config.Config) string {
	if cfg.AccessLogFormat != "" {
		return cfg.AccessLogFormat
	}
	if cfg.LogFormat == config.LogFormatJSON {
		return config.AccessLogJSON
	}
	return config.AccessLogCombined
}

func newAccessLogger(w io.Writer, file io.Closer, format string) *accessLogger {
	l := &accessLogger{json: format == config.AccessLogJSON, bw: bufio.NewWriterSize(w, 64<<10), file: file, stop: make(chan struct{})}
	l.lines.New = func() any {
		ln := &logLine{l: l, buf: make([]byte, 0, 512)}
		ln.finishFunc = ln.finish // bound once: a method value allocates
		return ln
	}
	l.closed.Add(1)
	go func() {
		// Flush at least once a second so a tail -f sees lines promptly.
		defer l.closed.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.flush()
			case <-l.stop:
				return
			}
		}
	}()
	return l
}

func (l *accessLogger) flush() {
	l.mu.Lock()
	_ = l.bw.Flush()
	l.mu.Unlock()
}

// Close flushes the log and closes its file. Lines of bodies still being
// streamed when it is called are lost.
func (l *accessLogger) Close() error {
	close(l.stop)
	l.closed.Wait()
	l.mu.Lock()
	_ = l.bw.Flush()
	l.bw.Reset(io.Discard)
	l.mu.Unlock()
	return l.file.Close()
}

// wrap returns h logging every request.
func (l *accessLogger) wrap(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		h(ctx)
		ln := l.lines.Get().(*logLine)
		ln.start = start
		if l.json {
			ln.beginJSON(ctx)
		} else {
			ln.beginCombined(ctx)
		}
		if s, ok := ctx.Response.BodyStream().(streamCounter); ok {
			s.OnClose(ln.finishFunc)
			return
		}
		ln.finish(bodyBytes(ctx))
	}
}

// bodyBytes is the size of the body fasthttp will send with ctx's
// response, which is not a stream.
func bodyBytes(ctx *fasthttp.RequestCtx) int64 {
	r := &ctx.Response
	if s := r.StatusCode(); r.SkipBody || ctx.IsHead() || s < 200 || s == fasthttp.StatusNoContent || s == fasthttp.StatusNotModified {
		return 0 // RFC 9110 §6.4.1: these have no content
	}
	return int64(len(r.Body()))
}

// logLine is one request's line, built when the handler returns but ended
// (byte count, duration) when its body has been written.
type logLine struct {
	l     *accessLogger
	start time.Time
	// buf holds the line without the byte count and the duration, which
	// go at split and at the end.
	buf        []byte
	split      int
	finishFunc func(n int64)
}

func (ln *logLine) beginCombined(ctx *fasthttp.RequestCtx) {
	b := appendRemote(ln.buf[:0], ctx)
	b = append(b, " - - ["...)
	b = ln.start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = append(b, ctx.Method()...)
	b = append(b, ' ')
	b = append(b, ctx.RequestURI()...)
	b = append(b, ' ')
	b = append(b, ctx.Request.Header.Protocol()...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(ctx.Response.StatusCode()), 10)
	b = append(b, ' ')
	ln.split = len(b)
	b = appendQuoted(b, ctx.Request.Header.Referer())
	b = appendQuoted(b, ctx.Request.Header.UserAgent())
	b = appendQuoted(b, ctx.Response.Header.Peek("Cache-Status"))
	ln.buf = b
}

func (ln *logLine) beginJSON(ctx *fasthttp.RequestCtx) {
	b := append(ln.buf[:0], `{"time":"`...)
	b = ln.start.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","remote":"`...)
	b = appendRemote(b, ctx)
	b = append(b, `","method":`...)
	b = appendJSONString(b, ctx.Method())
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, ctx.RequestURI())
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, ctx.Request.Header.Protocol())
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ctx.Response.StatusCode()), 10)
	b = append(b, `,"referer":`...)
	b = appendJSONString(b, ctx.Request.Header.Referer())
	b = append(b, `,"user_agent":`...)
	b = appendJSONString(b, ctx.Request.Header.UserAgent())
	b = append(b, `,"cache_status":`...)
	b = appendJSONString(b, ctx.Response.Header.Peek("Cache-Status"))
	b = append(b, `,"bytes":`...)
	ln.split = len(b)
	b = append(b, `,"duration_seconds":`...)
	ln.buf = b
}

// finish writes the line with n body bytes sent and returns it to the pool.
func (ln *logLine) finish(n int64) {
	l := ln.l
	d := time.Since(ln.start).Seconds()
	var num [24]byte
	count := strconv.AppendInt(num[:0], n, 10)
	l.mu.Lock()
	_, _ = l.bw.Write(ln.buf[:ln.split])
	_, _ = l.bw.Write(count)
	_, _ = l.bw.Write(ln.buf[ln.split:])
	end := strconv.AppendFloat(num[:0], d, 'f', 6, 64)
	if l.json {
		end = append(end, '}')
	} else {
		_ = l.bw.WriteByte(' ')
	}
	_, _ = l.bw.Write(append(end, '\n'))
	l.mu.Unlock()
	if cap(ln.buf) <= 64<<10 { // not a freak request's
		l.lines.Put(ln)
	}
}

// appendRemote appends the client's IP address.
func appendRemote(b []byte, ctx *fasthttp.RequestCtx) []byte {
	ip, ok := netip.AddrFromSlice(ctx.RemoteIP())
	if !ok {
		return append(b, '-')
	}
	return ip.Unmap().AppendTo(b)
}

// appendQuoted appends a combined-log field: quoted, "-" when empty, quotes,
// backslashes and control bytes as \xHH.
func appendQuoted(b, v []byte) []byte {
	b = append(b, " \""...)
	if len(v) == 0 {
		return append(b, "-\""...)
	}
	for _, c := range v {
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		b = append(b, c)
	}
	return append(b, '"')
}

// appendJSONString appends v as a JSON string (RFC 8259 §7). Bytes that
// are not UTF-8, which a request line may hold, become U+FFFD, so that
// every line parses.
func appendJSONString(b, v []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, v[i:i+size]...)
			}
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"
