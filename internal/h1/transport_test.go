package h1

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

func gzipped(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = io.WriteString(w, s)
	_ = w.Close()
	return b.String()
}

func zlibbed(s string) string {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	_, _ = io.WriteString(w, s)
	_ = w.Close()
	return b.String()
}

// chunk frames s in chunks of at most n bytes, then the last chunk.
func chunk(s string, n int) string {
	var b strings.Builder
	for len(s) > 0 {
		c := s[:min(n, len(s))]
		s = s[len(c):]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(c), c)
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// client returns a HostClient for addr that uses a Transport, as the
// origin client does.
func client(addr string, stream bool) (*fasthttp.HostClient, *Transport) {
	t := &Transport{}
	return &fasthttp.HostClient{Addr: addr, Transport: t, StreamResponseBody: stream, ReadTimeout: 10 * time.Second}, t
}

// get sends GET (or method) / and returns the status, header and body, the
// body read to its end.
func get(t *testing.T, hc *fasthttp.HostClient, tr *Transport, method string, interim Interim) (int, *fasthttp.ResponseHeader, string, error) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + hc.Addr + "/")
	err := tr.Do(req, interim, func() error { return hc.DoTimeout(req, resp, 10*time.Second) })
	if err != nil {
		return 0, nil, "", err
	}
	var body []byte
	if s := resp.BodyStream(); s != nil {
		body, err = io.ReadAll(s)
		_ = resp.CloseBodyStream()
	} else {
		body = resp.Body()
	}
	h := &fasthttp.ResponseHeader{}
	resp.Header.CopyTo(h)
	return resp.StatusCode(), h, string(body), err
}

// framingBody is the body of every framing in framings.
const framingBody = "hello, framed world"

// framings are the response framings of RFC 9112 §6.3 as a server writes
// them: the body a reader gets, and whether the connection may carry
// another request.
var framings = []struct {
	name   string
	reply  string
	close  bool // the server closes after the answer
	method string
	body   string
	reused bool // a second request went over the same connection
	err    error
}{
	{"RFC9112 §6.3 Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n" + framingBody, false, "GET", framingBody, true, nil},
	{"RFC9112 §6.3 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(framingBody, 5), false, "GET", framingBody, true, nil},
	{"RFC9112 §6.3 chunked with a trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.TrimSuffix(chunk(framingBody, 5), "\r\n") + "X-T: 1\r\n\r\n", false, "GET", framingBody, true, nil},
	{"RFC9112 §6.3 no length: until the server closes", "HTTP/1.1 200 OK\r\n\r\n" + framingBody, true, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 no length and Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + framingBody, true, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 gzip not final: until close, decoded", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + gzipped(framingBody), true, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 x-gzip not final", "HTTP/1.1 200 OK\r\nTransfer-Encoding: x-gzip\r\n\r\n" + gzipped(framingBody), true, "GET", framingBody, false, nil},
	{"RFC9112 §7.2 deflate is zlib", "HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate\r\n\r\n" + zlibbed(framingBody), true, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 gzip, chunked: dechunked and decoded", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunk(gzipped(framingBody), 7), false, "GET", framingBody, false, nil},
	{"RFC9112 §6.1 codings over two field lines", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(gzipped(framingBody), 7), false, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 chunked, gzip: chunked not final, until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" + gzipped(chunk(framingBody, 4)), true, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 identity alone: until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n" + framingBody, true, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 Transfer-Encoding overrides Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(framingBody, 5), false, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 Content-Length after Transfer-Encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 300\r\n\r\n" + chunk(framingBody, 5), false, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 Transfer-Encoding gzip with Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\n" + gzipped(framingBody), true, "GET", framingBody, false, nil},
	{"RFC9112 §6.3 304 ends with its header", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n", false, "GET", "", true, nil},
	{"RFC9112 §6.3 204 ends with its header", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, "GET", "", true, nil},
	{"RFC9112 §6.3 HEAD ends with the header", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, "HEAD", "", true, nil},
	{"RFC9112 §6.1 compress is not decoded here", "HTTP/1.1 200 OK\r\nTransfer-Encoding: compress\r\n\r\nxxx", true, "GET", "", false, ErrFraming},
	{"RFC9112 §6.1 chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n" + chunk(chunk(framingBody, 5), 9), true, "GET", "", false, ErrFraming},
	{"RFC9112 §6.1 Transfer-Encoding without a coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n" + framingBody, true, "GET", "", false, ErrFraming},
	{"RFC9112 §6.1 Transfer-Encoding on HTTP/1.0 is faulty", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 19\r\n\r\n" + framingBody, true, "GET", "", false, ErrFraming},
}

// TestFramings reads every response framing of RFC 9112 §6.3 from a raw
// socket: the body, and whether the connection was used again.
func TestFramings(t *testing.T) {
	for _, tc := range framings {
		t.Run(tc.name, func(t *testing.T) {
			o := testutil.ServeRaw(t, func(int64, *fasthttp.Request) (string, bool) { return tc.reply, tc.close })
			hc, tr := client(o.Addr, true)
			defer hc.CloseIdleConnections()
			for i := range 2 {
				status, h, got, err := get(t, hc, tr, tc.method, nil)
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("error %v, want %v", err, tc.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				if got != tc.body {
					t.Fatalf("request %d: body %q, want %q", i+1, got, tc.body)
				}
				if status == 0 || len(h.Peek("Transfer-Encoding")) > 0 && !strings.EqualFold(string(h.Peek("Transfer-Encoding")), "chunked") {
					t.Errorf("status %d, Transfer-Encoding %q left for the caller", status, h.Peek("Transfer-Encoding"))
				}
			}
			if reused := o.Conns() == 1; reused != tc.reused {
				t.Errorf("2 requests over %d connections: reused %v, want %v", o.Conns(), reused, tc.reused)
			}
		})
	}
}

// TestReadResponse reads the same framings from a connection no
// HostClient pools (RFC 9112 §6.3): the body whole, decoded, without
// Transfer-Encoding; reuse only where the framing allows it.
func TestReadResponse(t *testing.T) {
	for _, tc := range framings {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.reply))
			resp := &fasthttp.Response{}
			reuse, err := ReadResponse(br, resp, nil, tc.method == "HEAD", 1<<20)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.Body()) != tc.body {
				t.Errorf("body %q, want %q", resp.Body(), tc.body)
			}
			if te := resp.Header.Peek("Transfer-Encoding"); len(te) > 0 && !strings.EqualFold(string(te), "chunked") {
				t.Errorf("Transfer-Encoding %q left for the caller", te)
			}
			if reuse != tc.reused {
				t.Errorf("reuse %v, want %v", reuse, tc.reused)
			}
		})
	}
}

// TestReadResponseSwitching: interim responses before a 101 reach the
// Interim (RFC 9110 §15.2); the 101 is final, and what follows its head,
// the protocol switched to, is left unread. A body past maxBody is an
// error, not a truncated answer.
func TestReadResponseSwitching(t *testing.T) {
	const after = "\x81\x02hi" // a WebSocket frame
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + after))
	var seen []int
	resp := &fasthttp.Response{}
	reuse, err := ReadResponse(br, resp, func(status int, h *fasthttp.ResponseHeader) {
		if len(h.Peek("Link")) == 0 {
			t.Errorf("interim %d without its Link", status)
		}
		seen = append(seen, status)
	}, false, 1<<20)
	if err != nil || resp.StatusCode() != 101 || reuse {
		t.Fatalf("101: status %d, reuse %v, %v", resp.StatusCode(), reuse, err)
	}
	if fmt.Sprint(seen) != "[103]" {
		t.Errorf("interim responses %v, want [103]", seen)
	}
	if rest, _ := io.ReadAll(br); string(rest) != after {
		t.Errorf("after the 101: %q left, want %q", rest, after)
	}

	br = bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + gzipped(strings.Repeat("x", 100))))
	if _, err := ReadResponse(br, &fasthttp.Response{}, nil, false, 99); !errors.Is(err, fasthttp.ErrBodyTooLarge) {
		t.Errorf("100 bytes with maxBody 99: %v, want ErrBodyTooLarge", err)
	}
}

// TestFramingsBuffered: the same framings without a streamed body.
func TestFramingsBuffered(t *testing.T) {
	const body = "hello, buffered"
	o := testutil.ServeRaw(t, func(int64, *fasthttp.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunk(gzipped(body), 3), false
	})
	hc, tr := client(o.Addr, false)
	defer hc.CloseIdleConnections()
	if _, _, got, err := get(t, hc, tr, "GET", nil); err != nil || got != body {
		t.Fatalf("body %q, %v; want %q", got, err, body)
	}
}

// TestInterim: interim responses (RFC 9110 §15.2) reach the caller's
// Interim in order, with their fields; without one they are dropped. The
// final response is read as ever.
func TestInterim(t *testing.T) {
	o := testutil.ServeRaw(t, func(int64, *fasthttp.Request) (string, bool) {
		return "HTTP/1.1 102 Processing\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	hc, tr := client(o.Addr, true)
	defer hc.CloseIdleConnections()
	var seen []string
	record := func(status int, h *fasthttp.ResponseHeader) {
		if ct := h.Peek("Content-Type"); len(ct) > 0 {
			t.Errorf("interim %d: Content-Type %q it did not carry", status, ct)
		}
		var links []string
		for _, v := range h.PeekAll("Link") {
			links = append(links, string(v))
		}
		seen = append(seen, fmt.Sprintf("%d %s", status, strings.Join(links, " | ")))
	}
	status, _, body, err := get(t, hc, tr, "GET", record)
	if err != nil || status != 200 || body != "ok" {
		t.Fatalf("final: %d %q %v", status, body, err)
	}
	want := []string{"102 ", "103 </a.css>; rel=preload | </b.js>; rel=preload"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("interim responses %q, want %q", seen, want)
	}
	seen = nil
	if status, _, body, err := get(t, hc, tr, "GET", nil); err != nil || status != 200 || body != "ok" || seen != nil {
		t.Fatalf("without an Interim: %d %q %v, seen %q", status, body, err, seen)
	}
	if o.Conns() != 1 {
		t.Errorf("connections = %d, want 1 (interim responses do not spoil reuse)", o.Conns())
	}
}

// TestBodyClosedEarly: a body closed before its end closes the connection;
// one read to its end gives it back.
func TestBodyClosedEarly(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	o := testutil.ServeRaw(t, func(int64, *fasthttp.Request) (string, bool) {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(long), long), false
	})
	hc, _ := client(o.Addr, true)
	defer hc.CloseIdleConnections()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + o.Addr + "/")
	for i := range 2 {
		if err := hc.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		var buf [10]byte
		if _, err := io.ReadFull(resp.BodyStream(), buf[:]); err != nil {
			t.Fatal(err)
		}
		_ = resp.CloseBodyStream()
		if got := o.Conns(); got != int64(i+1) {
			t.Fatalf("after %d early closes: %d connections, want %d", i+1, got, i+1)
		}
	}
}
