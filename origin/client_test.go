package origin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/origin/demo"

	"github.com/valyala/fasthttp"
)

func newClient(t testing.TB, opts ClientOptions) *Client {
	t.Helper()
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// fetch sends a GET for uri (path and query) with optional header pairs and
// returns the buffered response, or the error.
func fetch(ctx context.Context, c *Client, uri string, headers ...string) (*fasthttp.Response, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(uri)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp := new(fasthttp.Response)
	if err := c.Fetch(ctx, req, resp); err != nil {
		return nil, err
	}
	resp.Body() // read the stream whole, giving the connection back
	return resp, nil
}

func mustFetch(t testing.TB, c *Client, uri string, headers ...string) *fasthttp.Response {
	t.Helper()
	resp, err := fetch(context.Background(), c, uri, headers...)
	if err != nil {
		t.Fatalf("fetch %s: %v", uri, err)
	}
	return resp
}

func TestNewClientValidation(t *testing.T) {
	tests := []struct {
		name string
		opts ClientOptions
		ok   bool
	}{
		{"http", ClientOptions{URL: "http://127.0.0.1:9000"}, true},
		{"https default port, slash", ClientOptions{URL: "https://example.com/"}, true},
		{"all set", ClientOptions{URL: "http://h", ConnectTimeout: 1, ResponseTimeout: 1, IdleConnTimeout: 1, MaxConns: 1, FailThreshold: -1, Cooldown: 1}, true},
		{"empty", ClientOptions{}, false},
		{"no scheme", ClientOptions{URL: "127.0.0.1:9000"}, false},
		{"bad scheme", ClientOptions{URL: "ftp://h"}, false},
		{"no host", ClientOptions{URL: "http://"}, false},
		{"port only", ClientOptions{URL: "http://:80"}, false},
		{"path", ClientOptions{URL: "http://h/base"}, false},
		{"query", ClientOptions{URL: "http://h?x=1"}, false},
		{"user", ClientOptions{URL: "http://u:p@h"}, false},
		{"user without password", ClientOptions{URL: "http://u@h"}, false},
		{"fragment", ClientOptions{URL: "http://h/#top"}, false},
		{"empty query", ClientOptions{URL: "http://h/?"}, false},
		{"port out of range", ClientOptions{URL: "http://h:65536"}, false},
		{"unparsable", ClientOptions{URL: "http://[::1"}, false},
		{"negative connect timeout", ClientOptions{URL: "http://h", ConnectTimeout: -1}, false},
		{"negative response timeout", ClientOptions{URL: "http://h", ResponseTimeout: -1}, false},
		{"negative idle timeout", ClientOptions{URL: "http://h", IdleConnTimeout: -1}, false},
		{"negative cooldown", ClientOptions{URL: "http://h", Cooldown: -1}, false},
		{"negative max conns", ClientOptions{URL: "http://h", MaxConns: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok = %v", err, tt.ok)
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

func TestClientForwarding(t *testing.T) {
	_, ln := startServer(t)
	addr := ln.Addr().String()
	tests := []struct {
		name         string
		preserveHost bool
		uri          string // as the caller sets it on the request
		wantBody     string
	}{
		{
			name: "origin host", uri: "http://client.example/p?vary=Host&q=1",
			wantBody: "origin /p?vary=Host&q=1 v=1 Host=" + addr + "\n",
		},
		{
			name: "preserve host", preserveHost: true, uri: "http://client.example/p?vary=Host&q=1",
			wantBody: "origin /p?vary=Host&q=1 v=1 Host=client.example\n",
		},
		{
			name: "path exactly as given", uri: "/a//b/%2F/./c/../d?vary=Host&x=%20&&y",
			wantBody: "origin /a//b/%2F/./c/../d?vary=Host&x=%20&&y v=1 Host=" + addr + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, ClientOptions{URL: "http://" + addr, PreserveHost: tt.preserveHost})
			resp := mustFetch(t, c, tt.uri)
			if got := string(resp.Body()); got != tt.wantBody {
				t.Errorf("origin saw %q, want %q", got, tt.wantBody)
			}
		})
	}
}

// TestClientNeverInventsCredentials: userinfo in the URI or the Host header
// must not reach the origin as Authorization (RFC 9110 §4.2.4: userinfo in
// an http URI is an error), since the cache decides what to share by the
// Authorization header it saw. A header the caller set goes through as is.
func TestClientNeverInventsCredentials(t *testing.T) {
	_, ln := startServer(t)
	addr := ln.Addr().String()
	tests := []struct {
		name         string
		preserveHost bool
		uri, host    string
		headers      []string
		wantAuth     string
	}{
		{name: "userinfo in URI", uri: "http://bob:pw@client.example/p?vary=Authorization"},
		{name: "userinfo in URI, preserve host", preserveHost: true, uri: "http://bob:pw@client.example/p?vary=Authorization"},
		{name: "userinfo in Host", uri: "/p?vary=Authorization", host: "alice:pw@client.example"},
		{name: "userinfo in Host, preserve host", preserveHost: true, uri: "/p?vary=Authorization", host: "alice:pw@client.example"},
		{
			name: "caller's header kept", uri: "http://bob:pw@client.example/p?vary=Authorization",
			headers: []string{"Authorization", "Bearer t"}, wantAuth: "Bearer t",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, ClientOptions{URL: "http://" + addr, PreserveHost: tt.preserveHost})
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI(tt.uri)
			if tt.host != "" {
				req.Header.SetHost(tt.host)
			}
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header.Set(tt.headers[i], tt.headers[i+1])
			}
			resp := new(fasthttp.Response)
			if err := c.Fetch(context.Background(), req, resp); err != nil {
				t.Fatal(err)
			}
			want := " Authorization=" + tt.wantAuth + "\n"
			if got := string(resp.Body()); !strings.HasSuffix(got, want) {
				t.Fatalf("origin saw %q, want Authorization %q", got, tt.wantAuth)
			}
		})
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	s, ln := startServer(t)
	c := newClient(t, ClientOptions{URL: "http://" + ln.Addr().String()})
	resp := mustFetch(t, c, "/r?status=302")
	if resp.StatusCode() != 302 || s.Requests() != 1 {
		t.Errorf("status %d after %d requests, want 302 after 1", resp.StatusCode(), s.Requests())
	}
}

func TestClientErrors(t *testing.T) {
	_, ln := startServer(t)
	up := "http://" + ln.Addr().String()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()

	tests := []struct {
		name    string
		opts    ClientOptions
		ctx     func() (context.Context, context.CancelFunc)
		uri     string
		timeout bool
		is      error // also errors.Is, if set
	}{
		{
			name: "response timeout", opts: ClientOptions{URL: up, ResponseTimeout: 100 * time.Millisecond},
			uri: "/slow?delay=5s", timeout: true,
		},
		{
			name: "context deadline", opts: ClientOptions{URL: up},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			},
			uri: "/slow?delay=5s", timeout: true,
		},
		{
			name: "context already expired", opts: ClientOptions{URL: up},
			ctx: func() (context.Context, context.CancelFunc) { return expired, func() {} },
			uri: "/a", timeout: true, is: context.DeadlineExceeded,
		},
		{
			name: "context cancelled", opts: ClientOptions{URL: up},
			ctx: func() (context.Context, context.CancelFunc) { return canceled, func() {} },
			uri: "/a", is: context.Canceled,
		},
		{
			name: "connection refused", opts: ClientOptions{URL: "http://" + freeAddr(t)},
			uri: "/a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var observed []error
			tt.opts.Observe = func(_ time.Duration, err error) { observed = append(observed, err) }
			c := newClient(t, tt.opts)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			_, err := fetch(ctx, c, tt.uri)
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			if errors.Is(err, ErrTimeout) != tt.timeout {
				t.Errorf("errors.Is(%v, ErrTimeout) = %v, want %v", err, !tt.timeout, tt.timeout)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("%v is ErrUnavailable", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("%v is not %v", err, tt.is)
			}
			// Only real round trips reach Observe, and with the same error.
			sent := tt.is == nil
			if sent && (len(observed) != 1 || observed[0] != err) {
				t.Errorf("observed %v, want [%v]", observed, err)
			}
			if !sent && len(observed) != 0 {
				t.Errorf("observed %v for a request never sent", observed)
			}
		})
	}
}

func TestIsTimeout(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{fasthttp.ErrTimeout, true},
		{fasthttp.ErrDialTimeout, true},
		{fasthttp.ErrTLSHandshakeTimeout, true},
		{fmt.Errorf("x: %w", &net.OpError{Op: "read", Err: timeoutErr{}}), true},
		{fasthttp.ErrConnectionClosed, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{io.EOF, false},
	}
	for _, tt := range tests {
		if got := isTimeout(tt.err); got != tt.want {
			t.Errorf("isTimeout(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClientCircuitBreaker(t *testing.T) {
	s, ln := startServer(t)
	clock := testutil.NewClock()
	var roundTrips atomic.Int64
	c := newClient(t, ClientOptions{
		URL:           "http://" + ln.Addr().String(),
		FailThreshold: 3,
		Cooldown:      10 * time.Second,
		Clock:         clock.Now,
		Observe:       func(time.Duration, error) { roundTrips.Add(1) },
	})

	// Pooled connections would outlive the break: drop them.
	setBroken := func(b bool) {
		ln.broken.Store(b)
		c.Close()
	}

	// HTTP errors are answers, not failures.
	for range 5 {
		if r := mustFetch(t, c, "/a?status=503"); r.StatusCode() != 503 {
			t.Fatalf("status %d", r.StatusCode())
		}
	}
	if !c.Healthy() {
		t.Fatal("5xx answers opened the circuit")
	}

	setBroken(true)
	for i := range 3 {
		if !c.Healthy() {
			t.Fatalf("circuit open after %d failures, threshold 3", i)
		}
		_, err := fetch(context.Background(), c, "/a")
		if err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("failure %d: err = %v, want a transport error", i, err)
		}
	}
	if c.Healthy() {
		t.Fatal("circuit still closed after 3 failures")
	}

	// Open: fail fast, the origin sees nothing.
	accepted, trips := ln.accepted.Load(), roundTrips.Load()
	for range 3 {
		if _, err := fetch(context.Background(), c, "/a"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("open circuit: err = %v, want ErrUnavailable", err)
		}
	}
	clock.Advance(9 * time.Second)
	if _, err := fetch(context.Background(), c, "/a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("before cooldown: err = %v, want ErrUnavailable", err)
	}
	if ln.accepted.Load() != accepted || roundTrips.Load() != trips {
		t.Fatal("open circuit let requests through")
	}

	// After the cooldown exactly one probe goes; it fails and the circuit
	// stays open for another cooldown.
	clock.Advance(time.Second)
	if _, err := fetch(context.Background(), c, "/a"); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("probe: err = %v, want a transport error", err)
	}
	if roundTrips.Load() != trips+1 {
		t.Fatalf("round trips %d, want one probe", roundTrips.Load()-trips)
	}
	if _, err := fetch(context.Background(), c, "/a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after failed probe: err = %v, want ErrUnavailable", err)
	}

	// The origin recovers: the next probe succeeds and closes the circuit.
	setBroken(false)
	clock.Advance(10 * time.Second)
	before := s.Requests()
	if r := mustFetch(t, c, "/a"); r.StatusCode() != 200 {
		t.Fatalf("probe status %d", r.StatusCode())
	}
	if !c.Healthy() {
		t.Fatal("successful probe did not close the circuit")
	}
	for range 3 {
		mustFetch(t, c, "/a")
	}
	if got := s.Requests() - before; got != 4 {
		t.Errorf("origin served %d requests after recovery, want 4", got)
	}

	// The count is of consecutive failures: a success in between resets it.
	setBroken(true)
	for range 2 {
		_, _ = fetch(context.Background(), c, "/a")
	}
	setBroken(false)
	mustFetch(t, c, "/a")
	setBroken(true)
	for range 2 {
		_, _ = fetch(context.Background(), c, "/a")
	}
	if !c.Healthy() {
		t.Error("non-consecutive failures opened the circuit")
	}
}

func TestClientCircuitDisabled(t *testing.T) {
	c := newClient(t, ClientOptions{URL: "http://" + freeAddr(t), FailThreshold: -1})
	for range 10 {
		if _, err := fetch(context.Background(), c, "/a"); err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want a transport error", err)
		}
	}
	if !c.Healthy() {
		t.Error("disabled breaker reports unhealthy")
	}
}

func TestClientStreamedBody(t *testing.T) {
	_, ln := startServer(t)
	c := newClient(t, ClientOptions{URL: "http://" + ln.Addr().String()})
	const size = 2 << 20
	for _, uri := range []string{"/big?size=2097152", "/big?size=2097152&chunked=1"} {
		want := testutil.Repeat("origin "+uri+" v=1\n", size)
		t.Run(uri+" Body", func(t *testing.T) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(uri)
			if err := c.Fetch(context.Background(), req, resp); err != nil {
				t.Fatal(err)
			}
			if resp.BodyStream() == nil {
				t.Error("a 2 MiB body was buffered, want a stream")
			}
			if !bytes.Equal(resp.Body(), want) {
				t.Errorf("body of %d bytes differs from the expected %d", len(resp.Body()), len(want))
			}
		})
		t.Run(uri+" BodyStream", func(t *testing.T) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(uri)
			if err := c.Fetch(context.Background(), req, resp); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.BodyStream())
			if err != nil {
				t.Fatal(err)
			}
			if err := resp.CloseBodyStream(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("streamed %d bytes differ from the expected %d", len(got), len(want))
			}
		})
	}
	// Every stream was given back: the connection pool is idle, and the
	// client still works.
	testutil.WaitFor(t, 10*time.Second, func() bool { return c.hc.ConnsCount() == c.hc.IdleConnsCount() }, "connections to be released")
	if r := mustFetch(t, c, "/after"); string(r.Body()) != "origin /after v=1\n" {
		t.Errorf("after streams: %q", r.Body())
	}
}

// slowBodyServer serves a chunked body of n pieces, one every gap, or stalls
// after the first piece when gap is 0, until the test ends.
func slowBodyServer(t *testing.T, n int, gap time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := range n {
				fmt.Fprintf(w, "piece %d\n", i)
				if w.Flush() != nil {
					return
				}
				wait := gap
				if gap == 0 {
					wait = time.Hour
				}
				select {
				case <-time.After(wait):
				case <-stop:
					return
				}
			}
		})
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		close(stop)
		_ = srv.Shutdown()
	})
	return "http://" + ln.Addr().String()
}

func TestClientSlowBodyOutlivesResponseTimeout(t *testing.T) {
	// 12 pieces 150ms apart take 1.8s in all, longer than the 1s
	// ResponseTimeout, but no single read waits anywhere near it.
	const n = 12
	c := newClient(t, ClientOptions{URL: slowBodyServer(t, n, 150*time.Millisecond), ResponseTimeout: time.Second})
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("/slow")
	if err := c.Fetch(context.Background(), req, resp); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.BodyStream())
	if err != nil {
		t.Fatalf("reading a slow but live body: %v after %d bytes", err, len(got))
	}
	if err := resp.CloseBodyStream(); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(got), "\n"); lines != n {
		t.Errorf("got %d pieces, want %d", lines, n)
	}

}

func TestClientStalledBodyTimesOut(t *testing.T) {
	c := newClient(t, ClientOptions{URL: slowBodyServer(t, 3, 0), ResponseTimeout: 200 * time.Millisecond})
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("/stall")
	if err := c.Fetch(context.Background(), req, resp); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.BodyStream())
		read <- err
	}()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("a stalled body read to the end")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reading a stalled body never timed out")
	}
	_ = resp.CloseBodyStream()
}

// localhostCert is a self-signed certificate for localhost, and a pool
// that trusts it.
func localhostCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, err := fasthttp.GenerateTestCertificate("localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	return cert, roots
}

func TestClientTLS(t *testing.T) {
	cert, roots := localhostCert(t)

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := demo.New(demo.Options{})
	go func() { _ = s.Serve(tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
	t.Cleanup(func() { _ = s.Shutdown() })

	_, port, _ := net.SplitHostPort(raw.Addr().String())
	c := newClient(t, ClientOptions{URL: "https://localhost:" + port, TLSConfig: &tls.Config{RootCAs: roots}})
	const uri = "/tls?size=1048576"
	for range 2 { // the second reuses the TLS connection
		resp := mustFetch(t, c, uri)
		if !bytes.Equal(resp.Body(), testutil.Repeat("origin "+uri+" v=1\n", 1<<20)) {
			t.Fatal("TLS body differs")
		}
	}
	if s.Requests() != 2 {
		t.Errorf("origin served %d, want 2", s.Requests())
	}
}

func TestClientClose(t *testing.T) {
	_, ln := startServer(t)
	c := newClient(t, ClientOptions{URL: "http://" + ln.Addr().String()})
	mustFetch(t, c, "/a")
	if c.hc.ConnsCount() != 1 {
		t.Fatalf("%d connections, want 1", c.hc.ConnsCount())
	}
	c.Close()
	testutil.WaitFor(t, 10*time.Second, func() bool { return c.hc.ConnsCount() == 0 }, "idle connections to close")
	tracked := c.conns.Len()
	if tracked != 0 {
		t.Errorf("%d closed connections still tracked", tracked)
	}
	mustFetch(t, c, "/b") // still usable
}

// BenchmarkClientFetch measures a small round trip over loopback.
func BenchmarkClientFetch(b *testing.B) {
	_, ln := startServer(b)
	c := newClient(b, ClientOptions{URL: "http://" + ln.Addr().String()})
	benchFetch(b, c, "")
}

// benchFetch fetches a small response through f in parallel, with the Host
// header host if not "".
func benchFetch(b *testing.B, f interface {
	Fetch(context.Context, *fasthttp.Request, *fasthttp.Response) error
}, host string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI("/bench?cc=max-age=60")
			if host != "" {
				req.Header.SetHost(host)
			}
			if err := f.Fetch(context.Background(), req, resp); err != nil {
				b.Error(err)
				return
			}
			resp.Body()
		}
	})
}
