package h1

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestQuiet: a request read after the previous one's handler returned is
// quiet; one that arrived with it (pipelined), whose predecessor's answer
// fasthttp may still hold, is not; nor is a connection not tracked.
func TestQuiet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	quiet := map[string]bool{}
	srv := &fasthttp.Server{Handler: MarkServed(func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		quiet[string(ctx.Path())] = Quiet(ctx.Conn())
		mu.Unlock()
		ctx.SetBodyString("ok")
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(TrackServed(ln)) }()
	defer func() { _ = srv.Shutdown(); <-done }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func(n int) {
		for range n {
			var resp fasthttp.Response
			if err := resp.Read(br); err != nil {
				t.Fatal(err)
			}
		}
	}
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	_, _ = io.WriteString(c, get("/first"))
	read(1)
	_, _ = io.WriteString(c, get("/second"))
	read(1)
	// Two requests in one write: the second is read with the first.
	_, _ = io.WriteString(c, get("/third")+get("/pipelined"))
	read(2)
	mu.Lock()
	defer mu.Unlock()
	for path, want := range map[string]bool{"/first": true, "/second": true, "/third": true, "/pipelined": false} {
		if quiet[path] != want {
			t.Errorf("Quiet for %s = %v, want %v (all: %v)", path, quiet[path], want, quiet)
		}
	}
	if Quiet(&net.TCPConn{}) {
		t.Error("an untracked connection is quiet")
	}
}

func TestAppendInterim(t *testing.T) {
	var h fasthttp.ResponseHeader
	h.SetNoDefaultContentType(true) // as Transport parses them
	_ = h.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\nX-Drop: 1\r\n\r\n")))
	got := string(AppendInterim(nil, 103, &h, func(k, _ []byte) bool { return string(k) != "X-Drop" }))
	if want := "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
