package main

// Request bodies, connection caps and slow clients, against a real node on
// loopback sockets.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/valyala/fasthttp"
)

// bodyOrigin is an origin that reads each request body as a stream and
// answers "<length> <sha256>" and the Content-Length it was sent with.
type bodyOrigin struct {
	addr     string
	complete atomic.Int64 // bodies read to their end
}

func startBodyOrigin(t *testing.T) *bodyOrigin {
	t.Helper()
	o := &bodyOrigin{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{StreamRequestBody: true, Handler: func(ctx *fasthttp.RequestCtx) {
		h := sha256.New()
		var n int64
		if s := ctx.RequestBodyStream(); s != nil {
			var err error
			if n, err = io.Copy(h, s); err != nil {
				ctx.Error("broken body", fasthttp.StatusBadRequest)
				return
			}
		} else {
			b := ctx.PostBody()
			h.Write(b)
			n = int64(len(b))
		}
		o.complete.Add(1)
		fmt.Fprintf(ctx, "%d %x cl=%d", n, h.Sum(nil), ctx.Request.Header.ContentLength())
	}}
	done := make(chan struct{})
	serve(srv, ln, func(error) { close(done) })
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	o.addr = ln.Addr().String()
	return o
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// rawExchange writes req on a fresh connection to addr and reads one
// response.
func rawExchange(t *testing.T, addr, req string) *fasthttp.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp := &fasthttp.Response{}
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("reading the answer to %.40q: %v", req, err)
	}
	return resp
}

// TestRequestBodiesStream: request bodies reach the origin intact, large
// ones streamed with their Content-Length, chunked ones chunked, small
// chunked ones with a Content-Length as before; max_request_body still
// answers 413, for a declared length at once and for a chunked body when it
// runs past the limit (the origin then never gets a complete request).
func TestRequestBodiesStream(t *testing.T) {
	o := startBodyOrigin(t)
	const limit = 8 << 20
	tn := startTestNode(t, func(c *config.Config) {
		c.Origin = "http://" + o.addr
		c.MaxRequestBody = limit
	})
	post := func(body []byte, chunked bool) reply {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(tn.base + "/upload")
		if chunked {
			req.SetBodyStream(bytes.NewReader(body), -1)
		} else {
			req.SetBody(body)
		}
		if err := tn.client.DoTimeout(req, resp, 20*time.Second); err != nil {
			t.Fatalf("POST %d bytes (chunked %v): %v", len(body), chunked, err)
		}
		return reply{status: resp.StatusCode(), body: bytes.Clone(resp.Body())}
	}
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		cl      int // Content-Length the origin sees; -1 chunked
	}{
		{"small", 1000, false, 1000},
		{"small chunked", 1000, true, 1000},
		{"large", 5 << 20, false, 5 << 20},
		{"large chunked", 3 << 20, true, -1},
		{"at the limit", limit, false, limit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte{byte(tc.size)}, tc.size)
			r := post(body, tc.chunked)
			want := fmt.Sprintf("%d %s cl=%d", tc.size, digest(body), tc.cl)
			if r.status != 200 || string(r.body) != want {
				t.Fatalf("status %d, origin saw %q; want %q", r.status, r.body, want)
			}
		})
	}

	before := o.complete.Load()
	// The start of the body goes with the headers, as clients send it:
	// fasthttp reads up to 8 KiB of a streamed body before the handler runs.
	r := rawExchange(t, tn.n.Addr(), fmt.Sprintf("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", limit+1, strings.Repeat("y", 16<<10)))
	if r.StatusCode() != fasthttp.StatusRequestEntityTooLarge {
		t.Errorf("declared Content-Length over the limit: status %d, want 413", r.StatusCode())
	}
	// A chunked body past the limit: the node notices while it streams.
	var over strings.Builder
	over.WriteString("POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := strings.Repeat("z", 1<<20)
	for range limit>>20 + 1 {
		fmt.Fprintf(&over, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	over.WriteString("0\r\n\r\n")
	if r := rawExchange(t, tn.n.Addr(), over.String()); r.StatusCode() != fasthttp.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the limit: status %d (%q), want 413", r.StatusCode(), r.Body())
	}
	if got := o.complete.Load(); got != before {
		t.Errorf("the origin read %d complete bodies of requests refused as too large", got-before)
	}
}
