package node

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
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

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
// response. It reads while it writes: a server may answer before the
// request is all sent (a 413 for a body past the limit) and close, and
// then the rest of the request cannot be written; the answer is what
// counts.
func rawExchange(t *testing.T, addr, req string) *fasthttp.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	written := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, req)
		written <- err
	}()
	resp := &fasthttp.Response{}
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		c.Close() // ends the write, bounded by the deadline anyway
		t.Fatalf("reading the answer to %.40q: %v (writing it: %v)", req, err, <-written)
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
	post := func(body []byte, chunked bool) testutil.Reply {
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
		return testutil.Reply{Status: resp.StatusCode(), Body: bytes.Clone(resp.Body())}
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
			if r.Status != 200 || string(r.Body) != want {
				t.Fatalf("status %d, origin saw %q; want %q", r.Status, r.Body, want)
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

// dialFrom connects to addr from the local address ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// status sends a GET on c, unless send is false, and reads one response's
// status code.
func status(t *testing.T, c net.Conn, br *bufio.Reader, send bool) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if send {
		if _, err := io.WriteString(c, "GET /conn HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	return resp.StatusCode()
}

// TestConnectionLimits: connections beyond max_conns_per_ip from one
// address, or beyond max_conns in all, are answered 503 and closed; other
// addresses keep their share, and a closed connection frees its slot.
func TestConnectionLimits(t *testing.T) {
	t.Run("per ip", func(t *testing.T) {
		tn := startTestNode(t, func(c *config.Config) { c.MaxConnsPerIP, c.MaxConns = 2, 0 })
		addr := tn.n.Addr()
		var held []net.Conn
		for range 2 {
			c := dialFrom(t, "127.0.0.1", addr)
			if s := status(t, c, bufio.NewReader(c), true); s != 200 {
				t.Fatalf("connection within the cap: status %d", s)
			}
			held = append(held, c)
		}
		c := dialFrom(t, "127.0.0.1", addr)
		if s := status(t, c, bufio.NewReader(c), false); s != fasthttp.StatusServiceUnavailable {
			t.Fatalf("third connection from 127.0.0.1: status %d, want 503", s)
		}
		other := dialFrom(t, "127.0.0.2", addr)
		if s := status(t, other, bufio.NewReader(other), true); s != 200 {
			t.Fatalf("a connection from another address: status %d, want 200", s)
		}
		held[0].Close()
		testutil.WaitFor(t, 10*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return false
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET /conn HTTP/1.1\r\nHost: x\r\n\r\n")
			var resp fasthttp.Response
			return resp.Read(bufio.NewReader(c)) == nil && resp.StatusCode() == 200
		}, "a closed connection's slot to be free again")
	})
	t.Run("total", func(t *testing.T) {
		tn := startTestNode(t, func(c *config.Config) { c.MaxConnsPerIP, c.MaxConns = 0, 3 })
		addr := tn.n.Addr()
		for range 3 {
			c := dialFrom(t, "127.0.0.1", addr)
			if s := status(t, c, bufio.NewReader(c), true); s != 200 {
				t.Fatalf("connection within the cap: status %d", s)
			}
		}
		c := dialFrom(t, "127.0.0.3", addr)
		if s := status(t, c, bufio.NewReader(c), false); s != fasthttp.StatusServiceUnavailable {
			t.Fatalf("fourth connection: status %d, want 503", s)
		}
	})
}

// slowConn dials addr with a small receive buffer, so that a client that
// reads slowly really holds the node's writes back (the kernel would
// otherwise absorb megabytes).
func slowConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSlowClientGetsLargeBody: write_timeout bounds each write, not the
// response. A client reading a body several times what it can take in one
// write_timeout still gets all of it; one that stops reading is cut off
// about one write_timeout later.
func TestSlowClientGetsLargeBody(t *testing.T) {
	const size = 24 << 20
	const writeTimeout = time.Second
	tn := startTestNode(t, func(c *config.Config) {
		c.WriteTimeout = writeTimeout
		c.MaxObjectSize = 1 << 20 // the body streams from the origin, uncached
	})
	get := fmt.Sprintf("GET /big?size=%d HTTP/1.1\r\nHost: x\r\n\r\n", size)

	t.Run("slow reader", func(t *testing.T) {
		c := slowConn(t, tn.n.Addr())
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.WriteString(c, get); err != nil {
			t.Fatal(err)
		}
		// About 6 MB/s: the body takes some 4s, four write timeouts.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		var resp fasthttp.Response
		err := resp.Read(bufio.NewReaderSize(&pacedReader{r: c, tick: tick.C, step: 64 << 10}, 64<<10))
		t.Logf("read %d body bytes in %s", len(resp.Body()), time.Since(start).Round(time.Millisecond))
		if err != nil || len(resp.Body()) != size {
			t.Fatalf("the slow client got %d of %d body bytes: %v", len(resp.Body()), size, err)
		}
	})

	t.Run("stalled reader", func(t *testing.T) {
		c := slowConn(t, tn.n.Addr())
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.WriteString(c, get); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		if _, err := br.Peek(1); err != nil {
			t.Fatal(err)
		}
		// The client reads no more: once the socket buffers are full the
		// node's write blocks and must give up about writeTimeout later.
		stalled := time.Now()
		testutil.WaitFor(t, 15*writeTimeout, func() bool { return tn.n.Stats().OpenConnections == 0 },
			"the node to drop the stalled client")
		t.Logf("dropped %s after the client stopped reading", time.Since(stalled).Round(time.Millisecond))
		n, _ := io.Copy(io.Discard, br)
		if n >= size {
			t.Fatalf("the stalled client still got the whole body (%d bytes)", n)
		}
	})
}

// pacedReader reads at most step bytes per tick: a slow client.
type pacedReader struct {
	r    io.Reader
	tick <-chan time.Time
	step int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	<-p.tick
	return p.r.Read(b[:min(len(b), p.step)])
}
