package proxy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/reqbody"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// streamingClient serves p as a node does (streamed request bodies behind
// reqbody) on an in-memory listener.
func streamingClient(t *testing.T, p *Proxy) *fasthttp.Client {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{
		Handler:           reqbody.Handler(p.Handler, reqbody.Options{Limit: 64 << 20}),
		StreamRequestBody: true, NoDefaultContentType: true, NoDefaultServerHeader: true,
	}
	testutil.ServeFasthttp(t, srv, ln)
	return &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
}

// TestStreamedBodyPassedNotForwarded: an unsafe request whose body is
// streamed goes to the origin from the node the client asked, as it
// arrives, and its invalidation is announced to the others (the owner
// included); a small body is still forwarded to the owner. Forwarding a
// stream would make both nodes hold it whole: the peer signature covers a
// digest of the body.
func TestStreamedBodyPassedNotForwarded(t *testing.T) {
	owner := &fakePeer{name: "owner", forward: func(req *fasthttp.Request, resp *fasthttp.Response) error {
		resp.SetBodyString("owner got " + string(req.Body()))
		return nil
	}}
	peers := &fakePeers{owner: owner}
	n := newNode(t, Options{Name: "me", Peers: peers}, nil)
	var got []byte
	var mu sync.Mutex
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		mu.Lock()
		defer mu.Unlock()
		if !req.IsBodyStream() {
			t.Errorf("the origin got a body of %d bytes held whole, want a stream", len(req.Body()))
		}
		got, _ = io.ReadAll(req.BodyStream())
		resp.SetStatusCode(204)
	})
	c := streamingClient(t, n.p)
	send := func(body []byte) *fasthttp.Response {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("http://example.com/upload")
		req.SetBody(body)
		resp := &fasthttp.Response{}
		if err := c.DoTimeout(req, resp, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		return resp
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if r := send(big); r.StatusCode() != 204 {
		t.Fatalf("large POST: status %d, body %.80q", r.StatusCode(), r.Body())
	}
	mu.Lock()
	if sha256.Sum256(got) != sha256.Sum256(big) {
		t.Errorf("the origin got %d bytes, not the %d sent", len(got), len(big))
	}
	mu.Unlock()
	if f := owner.forwards.Load(); f != 0 {
		t.Fatalf("a streamed body was forwarded to the owner (%d)", f)
	}
	if keys := announcedKeys(t, peers, 1); keys[0] != "example.com/upload" {
		t.Fatalf("announced %q", keys)
	}

	if r := send([]byte("small")); string(r.Body()) != "owner got small" {
		t.Fatalf("small POST answered %q, want the owner's answer", r.Body())
	}
}
