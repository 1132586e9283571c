package demo

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.FasthttpHousekeeping()...) }

// testNow is the pinned time the demo origin runs at in tests.
var testNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// startServer runs a demo origin on a fresh 127.0.0.1 port with the pinned
// clock and shuts it down when the test ends.
func startServer(t testing.TB) (*Server, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Clock: func() time.Time { return testNow }})
	testutil.Serve(t, ln, s.Serve, s.Shutdown)
	return s, ln
}

// httpClient is a plain buffering fasthttp client for looking at the demo
// origin from outside.
type httpClient struct {
	t  testing.TB
	hc *fasthttp.HostClient
}

func newHTTPClient(t testing.TB, addr string) *httpClient {
	hc := &fasthttp.HostClient{Addr: addr, DisablePathNormalizing: true}
	t.Cleanup(hc.CloseIdleConnections)
	return &httpClient{t: t, hc: hc}
}

type result struct {
	status int
	header *fasthttp.ResponseHeader
	body   []byte
}

func (r result) get(name string) string { return string(r.header.Peek(name)) }

// do sends method uri with headers given as name, value pairs.
func (c *httpClient) do(method, uri string, headers ...string) result {
	c.t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + c.hc.Addr + uri)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if err := c.hc.DoTimeout(req, resp, 20*time.Second); err != nil {
		c.t.Fatalf("%s %s: %v", method, uri, err)
	}
	h := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(h)
	return result{status: resp.StatusCode(), header: h, body: bytes.Clone(resp.Body())}
}

func (c *httpClient) get(uri string, headers ...string) result {
	c.t.Helper()
	return c.do(fasthttp.MethodGet, uri, headers...)
}

func (c *httpClient) post(uri string) result {
	c.t.Helper()
	return c.do(fasthttp.MethodPost, uri)
}
