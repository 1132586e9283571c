package reqbody_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/reqbody"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// seen is what the handler found in a request.
type seen struct {
	stream bool   // the body came as a stream
	cl     int    // ContentLength() as the handler saw it
	body   string // what it read
	err    error  // reading the stream
}

// serve runs reqbody.Handler(o) on a streaming server and returns a function
// sending a raw request and returning the status and what the handler saw
// (nil when it did not run).
func serve(t *testing.T, o reqbody.Options) func(raw string) (int, *seen) {
	t.Helper()
	var last *seen
	h := func(ctx *fasthttp.RequestCtx) {
		s := &seen{stream: ctx.Request.IsBodyStream(), cl: ctx.Request.Header.ContentLength()}
		if s.stream {
			b, err := io.ReadAll(ctx.Request.BodyStream())
			s.body, s.err = string(b), err
		} else {
			s.body = string(ctx.PostBody())
		}
		last = s
		if s.err != nil {
			ctx.SetStatusCode(reqbody.Status(s.err))
		}
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: reqbody.Handler(h, o), StreamRequestBody: true}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return func(raw string) (int, *seen) {
		t.Helper()
		last = nil
		c, err := ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { _, _ = io.WriteString(c, raw) }() // may block past the answer
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			t.Fatalf("%.40q: %v", raw, err)
		}
		return resp.StatusCode(), last
	}
}

func post(body string) string {
	return fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func chunked(body string, size int) string {
	var b strings.Builder
	b.WriteString("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	for len(body) > 0 {
		n := min(size, len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func TestHandler(t *testing.T) {
	const small, limit = 1 << 10, 64 << 10
	send := serve(t, reqbody.Options{Limit: limit, Small: small})
	short := strings.Repeat("s", small)
	long := strings.Repeat("L", 40<<10)
	for _, tc := range []struct {
		name   string
		raw    string
		status int
		want   *seen // nil: the handler must not run
	}{
		{"small", post(short), 200, &seen{cl: small, body: short}},
		{"small chunked gets a length", chunked(short, 100), 200, &seen{cl: small, body: short}},
		{"large streams", post(long), 200, &seen{stream: true, cl: len(long), body: long}},
		{"large chunked streams", chunked(long, 3000), 200, &seen{stream: true, cl: -1, body: long}},
		{"declared over the limit", post(strings.Repeat("x", limit+1)), 413, nil},
		{"chunked over the limit", chunked(strings.Repeat("x", limit+1), 4000), 413, &seen{stream: true, cl: -1}},
		{"empty body", post(""), 200, &seen{cl: 0}},
		{"no body", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, &seen{cl: -2}}, // fasthttp's "none" for a GET
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, got := send(tc.raw)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if tc.want == nil {
				if got != nil {
					t.Fatalf("the handler ran: %+v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("the handler did not run")
			}
			if got.stream != tc.want.stream || got.cl != tc.want.cl || (tc.status == 200 && got.body != tc.want.body) {
				t.Fatalf("handler saw stream=%v cl=%d body of %d bytes; want stream=%v cl=%d body of %d",
					got.stream, got.cl, len(got.body), tc.want.stream, tc.want.cl, len(tc.want.body))
			}
			if tc.status == 413 && !(reqbody.FromClient(got.err) && errors.Is(got.err, fasthttp.ErrBodyTooLarge)) {
				t.Fatalf("reading past the limit failed with %v, want a client error wrapping ErrBodyTooLarge", got.err)
			}
		})
	}
}

// TestHandlerWhole: requests Whole selects get their body whole, within
// the budget; without a declared length, or past the budget, they are
// refused. Small bodies past the budget stream instead.
func TestHandlerWhole(t *testing.T) {
	isWhole := func(ctx *fasthttp.RequestCtx) bool { return bytes.HasPrefix(ctx.Path(), []byte("/whole")) }
	body := strings.Repeat("w", 20<<10)
	toWhole := strings.Replace(post(body), "POST / ", "POST /whole ", 1)

	send := serve(t, reqbody.Options{Limit: 1 << 20, Whole: isWhole})
	if status, got := send(toWhole); status != 200 || got == nil || got.stream || got.body != body {
		t.Fatalf("whole body: status %d, saw %+v", status, got)
	}
	if status, got := send(strings.Replace(chunked(body, 1000), "POST / ", "POST /whole ", 1)); status != 411 || got != nil {
		t.Fatalf("chunked whole body: status %d (handler ran: %v), want 411", status, got != nil)
	}

	tight := serve(t, reqbody.Options{Limit: 1 << 20, Budget: 1, Whole: isWhole})
	if status, got := tight(toWhole); status != 503 || got != nil {
		t.Fatalf("whole body past the budget: status %d (handler ran: %v), want 503", status, got != nil)
	}
	if status, got := tight(post("tiny")); status != 200 || got == nil || !got.stream || got.body != "tiny" {
		t.Fatalf("small body past the budget: status %d, saw %+v; want it streamed", status, got)
	}
}
