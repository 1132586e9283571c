package proxy

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// exchange writes raw on a fresh connection and reads n answers, each as
// the interim heads before it and the final response.
func (n *node) exchange(raw string, answers int) (interim [][]string, finals []*fasthttp.Response) {
	n.t.Helper()
	c, err := n.ln.Dial()
	if err != nil {
		n.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		n.t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for range answers {
		var heads []string
		for {
			line, err := br.Peek(12)
			if err != nil {
				n.t.Fatalf("reading an answer: %v", err)
			}
			if line[9] != '1' {
				break
			}
			var head bytes.Buffer
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					n.t.Fatal(err)
				}
				if l == "\r\n" {
					break
				}
				head.WriteString(l)
			}
			heads = append(heads, head.String())
		}
		resp := &fasthttp.Response{}
		if err := resp.Read(br); err != nil {
			n.t.Fatalf("reading a final answer: %v", err)
		}
		interim, finals = append(interim, heads), append(finals, resp)
	}
	return interim, finals
}

const (
	processing = "HTTP/1.1 102 Processing\r\n\r\n"
	earlyHints = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nConnection: X-Hop\r\nX-Hop: 1\r\nVia: 1.1 upstream\r\n\r\n"
)

// TestInterimForwarded: the origin's interim responses reach the client
// that caused the fetch, before the final answer (RFC 9110 §15.2), with
// their end-to-end fields and Via; a stored answer has none.
func TestInterimForwarded(t *testing.T) {
	n := newNode(t, Options{}, answer(nil, 200, "Cache-Control: max-age=60"))
	n.origin.interim = []string{processing, earlyHints}
	interim, finals := n.exchange("GET /i HTTP/1.1\r\nHost: example.com\r\n\r\n", 1)
	want := []string{
		"HTTP/1.1 102 Processing\r\nVia: 1.1 ringcache\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nVia: 1.1 upstream, 1.1 ringcache\r\n",
	}
	if strings.Join(interim[0], "|") != strings.Join(want, "|") {
		t.Errorf("interim responses\n %q\nwant\n %q", interim[0], want)
	}
	if finals[0].StatusCode() != 200 || !strings.Contains(csOf(finals[0]), "stored") {
		t.Fatalf("final: %d %q", finals[0].StatusCode(), csOf(finals[0]))
	}
	// A hit is answered from the cache: nothing interim about it.
	interim, finals = n.exchange("GET /i HTTP/1.1\r\nHost: example.com\r\n\r\n", 1)
	if len(interim[0]) != 0 || !strings.Contains(csOf(finals[0]), "hit") {
		t.Errorf("hit: interim %q, Cache-Status %q", interim[0], csOf(finals[0]))
	}
	// Requests the cache passes on get them too.
	interim, _ = n.exchange("POST /i HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1\r\n\r\nx", 1)
	if len(interim[0]) != 2 {
		t.Errorf("POST: interim %q, want 2", interim[0])
	}
}

// TestInterimNotToHTTP10: an HTTP/1.0 client gets no 1xx (RFC 9110 §15.2).
func TestInterimNotToHTTP10(t *testing.T) {
	n := newNode(t, Options{}, answer(nil, 200, "Cache-Control: max-age=60"))
	n.origin.interim = []string{earlyHints}
	interim, finals := n.exchange("GET /old HTTP/1.0\r\nHost: example.com\r\n\r\n", 1)
	if len(interim[0]) != 0 || finals[0].StatusCode() != 200 {
		t.Errorf("HTTP/1.0: interim %q, status %d", interim[0], finals[0].StatusCode())
	}
}

// TestInterimNotPipelined: a request that came with the one before it gets
// no 1xx: fasthttp may still hold that one's answer, which the 1xx would
// overtake.
func TestInterimNotPipelined(t *testing.T) {
	n := newNode(t, Options{}, answer(nil, 200, "Cache-Control: max-age=60"))
	n.origin.interim = []string{earlyHints}
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n\r\n" }
	interim, finals := n.exchange(get("/p1")+get("/p2"), 2)
	if len(interim[0]) != 1 || len(interim[1]) != 0 {
		t.Errorf("pipelined: interim %q and %q, want one for the first and none for the second", interim[0], interim[1])
	}
	for i, f := range finals {
		if f.StatusCode() != 200 || !strings.Contains(csOf(f), "uri-miss") {
			t.Errorf("answer %d: %d %q", i+1, f.StatusCode(), csOf(f))
		}
	}
}
