// Package testutil holds what the tests of several packages share: polling
// a condition with a deadline instead of sleeping, and a clock that moves
// only when told to.
package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

// PollInterval is how often Eventually and WaitFor look again.
const PollInterval = 10 * time.Millisecond

// Eventually polls cond until it holds and fails t once timeout has passed
// without it. what describes the condition; it is called only on failure,
// so it can report the last state seen.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what())
		}
		time.Sleep(PollInterval) // the poll interval, not a wait for an event
	}
}

// WaitFor is Eventually with a fixed description.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	Eventually(t, timeout, cond, func() string { return what })
}

// Clock is a fake clock for code that takes its time from a function: it
// starts at a fixed instant and moves only by Advance. It is safe for
// concurrent use.
type Clock struct{ ns atomic.Int64 }

// Start is where every Clock starts: a fixed, recent instant, so that
// dates derived from it read plausibly in failures.
var Start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// NewClock returns a Clock at Start.
func NewClock() *Clock {
	c := &Clock{}
	c.ns.Store(Start.UnixNano())
	return c
}

// Now is the clock's time, for func() time.Time clocks.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// UnixNano is the clock's time in unix nanoseconds, for func() int64 clocks.
func (c *Clock) UnixNano() int64 { return c.ns.Load() }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Reply is a response copied out of fasthttp's pooled objects, so it can
// be kept and compared after the request is done.
type Reply struct {
	Status        int
	Header        map[string]string // canonical name -> value
	Body          []byte
	ContentLength int
}

// CacheStatus is the reply's Cache-Status field.
func (r Reply) CacheStatus() string { return r.Header["Cache-Status"] }

// Do sends one request with c within 20 s; hdr holds name, value pairs.
// It is safe to call from several goroutines.
func Do(c *fasthttp.Client, method, url string, body []byte, hdr ...string) (Reply, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := c.DoTimeout(req, resp, 20*time.Second); err != nil {
		return Reply{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	r := Reply{Status: resp.StatusCode(), Header: map[string]string{}, Body: bytes.Clone(resp.Body()), ContentLength: resp.Header.ContentLength()}
	for k, v := range resp.Header.All() {
		r.Header[string(k)] = string(v)
	}
	return r, nil
}

// MetricValue finds one series ("name" or "name{labels}") in a Prometheus
// text exposition.
func MetricValue(exposition []byte, series string) (float64, bool) {
	for line := range strings.Lines(string(exposition)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// ServeLoopback serves h on a fresh 127.0.0.1 port until the test ends and
// returns the address.
func ServeLoopback(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeFasthttp(t, &fasthttp.Server{Handler: h}, ln)
	return ln.Addr().String()
}

// ServeFasthttp runs srv on ln until the test ends, and then until Serve
// has returned.
func ServeFasthttp(t testing.TB, srv *fasthttp.Server, ln net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		// fasthttp's Shutdown stops only a listener Serve has registered: a
		// test that ends at once would otherwise leave it serving.
		for {
			_ = srv.Shutdown()
			select {
			case <-done:
				return
			case <-time.After(PollInterval):
			}
		}
	})
}

// ExpectStatus fails t unless r has status want.
func ExpectStatus(t testing.TB, what string, r Reply, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d, want %d (Cache-Status %q, body %.200q)", what, r.Status, want, r.CacheStatus(), r.Body)
	}
}

// ExpectCacheStatus fails t unless r's Cache-Status contains every part.
func ExpectCacheStatus(t testing.TB, what string, r Reply, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(r.CacheStatus(), p) {
			t.Errorf("%s: Cache-Status %q lacks %q", what, r.CacheStatus(), p)
		}
	}
}

// Repeat is pattern repeated and cut to size bytes: how the demo origin
// builds its bodies.
func Repeat(pattern string, size int) []byte {
	out := make([]byte, 0, size)
	for len(out) < size {
		out = append(out, pattern[:min(len(pattern), size-len(out))]...)
	}
	return out
}

// FasthttpHousekeeping lists fasthttp's own background loops, for
// goleak.VerifyTestMain: its housekeeping loops sleep up to 10s before
// noticing there is nothing left to clean, and its Date ticker is
// process-wide, started once by any server.
func FasthttpHousekeeping() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	}
}

// Serve runs serve(ln) until the test ends, then calls shutdown and checks
// that serve returns nil within 20 s: for servers whose Shutdown makes
// Serve return (the demo origin's).
func Serve(t testing.TB, ln net.Listener, serve func(net.Listener) error, shutdown func() error) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- serve(ln) }()
	t.Cleanup(func() {
		if err := shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve returned %v after shutdown, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not return after shutdown")
		}
	})
}

// RawOrigin is a server on raw sockets: each request it reads is answered
// with exactly the bytes its answer function returns, so that tests can
// send the framings, dates and interim responses a fasthttp server never
// writes. It serves as many keep-alive connections as it is given.
type RawOrigin struct {
	Addr     string
	requests atomic.Int64
	conns    atomic.Int64
}

// RawAnswer answers the nth request (from 1) of a RawOrigin with reply;
// close ends the connection after it ("until the server closes").
type RawAnswer func(n int64, req *fasthttp.Request) (reply string, close bool)

// Requests is the number of requests read.
func (o *RawOrigin) Requests() int64 { return o.requests.Load() }

// Conns is the number of connections accepted.
func (o *RawOrigin) Conns() int64 { return o.conns.Load() }

// ServeRaw starts a RawOrigin on 127.0.0.1 until the test ends.
func ServeRaw(t testing.TB, answer RawAnswer) *RawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &RawOrigin{Addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.conns.Add(1)
			mu.Lock()
			open[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				// The deadline bounds a connection the client keeps idle;
				// the cleanup closes it sooner.
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				br := bufio.NewReader(c)
				for {
					req := fasthttp.AcquireRequest()
					if err := req.Read(br); err != nil {
						fasthttp.ReleaseRequest(req)
						return
					}
					reply, closeAfter := answer(o.requests.Add(1), req)
					fasthttp.ReleaseRequest(req)
					if _, err := c.Write([]byte(reply)); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return o
}

// FreeAddr returns a loopback address nothing listens on (for now): for a
// dial that must be refused, or a fixed port to check is free again later.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// HoldAddr returns a loopback address held over TCP and UDP (serf binds
// both) until the test ends: one a listener cannot have.
func HoldAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return ln.Addr().String()
}
