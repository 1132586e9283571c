package node

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// accessLogger writes one line per request in the combined log format plus
// the Cache-Status and the time taken:
//
//	127.0.0.1 - - [25/Nov/2026:10:41:15 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8" "ringcache; hit; ttl=37" 0.000120
type accessLogger struct {
	mu     sync.Mutex
	bw     *bufio.Writer
	file   io.Closer
	pool   sync.Pool
	stop   chan struct{}
	closed sync.WaitGroup
}

func newAccessLogger(w io.Writer, file io.Closer) *accessLogger {
	l := &accessLogger{bw: bufio.NewWriterSize(w, 64<<10), file: file, stop: make(chan struct{})}
	l.pool.New = func() any { b := make([]byte, 0, 256); return &b }
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

// Close flushes the log and closes its file.
func (l *accessLogger) Close() error {
	close(l.stop)
	l.closed.Wait()
	l.flush()
	return l.file.Close()
}

// wrap returns h logging every request.
func (l *accessLogger) wrap(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		h(ctx)
		bp := l.pool.Get().(*[]byte)
		b := (*bp)[:0]
		b = append(b, ctx.RemoteIP().String()...)
		b = append(b, " - - ["...)
		b = start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
		b = append(b, "] \""...)
		b = append(b, ctx.Method()...)
		b = append(b, ' ')
		b = append(b, ctx.RequestURI()...)
		b = append(b, ' ')
		b = append(b, ctx.Request.Header.Protocol()...)
		b = append(b, "\" "...)
		b = strconv.AppendInt(b, int64(ctx.Response.StatusCode()), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(max(0, ctx.Response.Header.ContentLength())), 10)
		b = appendQuoted(b, ctx.Request.Header.Referer())
		b = appendQuoted(b, ctx.Request.Header.UserAgent())
		b = appendQuoted(b, ctx.Response.Header.Peek("Cache-Status"))
		b = append(b, ' ')
		b = strconv.AppendFloat(b, time.Since(start).Seconds(), 'f', 6, 64)
		b = append(b, '\n')
		l.mu.Lock()
		_, _ = l.bw.Write(b)
		l.mu.Unlock()
		*bp = b
		l.pool.Put(bp)
	}
}

func appendQuoted(b, v []byte) []byte {
	b = append(b, " \""...)
	if len(v) == 0 {
		return append(b, "-\""...)
	}
	for _, c := range v {
		if c == '"' || c == '\\' || c < 0x20 {
			b = append(b, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			continue
		}
		b = append(b, c)
	}
	return append(b, '"')
}
