package proxy

import (
	"strings"
	"sync"
	"testing"

	"github.com/ringcache/ringcache/cache"

	"github.com/valyala/fasthttp"
)

// codingOrigin answers with Vary: Accept-Encoding, encoding by what the
// fill asked for (br, then gzip, else identity), and records the
// Accept-Encoding of every request it sees.
func codingOrigin(n *node) (seen func() []string) {
	var mu sync.Mutex
	var got []string
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		ae := string(req.Header.Peek("Accept-Encoding"))
		mu.Lock()
		got = append(got, ae)
		mu.Unlock()
		setOriginDate(&resp.Header, httpDate(n.clk))
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.Header.Set("Vary", "Accept-Encoding")
		enc := "identity"
		switch {
		case strings.Contains(ae, "br"):
			enc = "br"
		case strings.Contains(ae, "gzip"):
			enc = "gzip"
		}
		if enc != "identity" {
			resp.Header.Set("Content-Encoding", enc)
		}
		resp.SetBodyString(enc)
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestAcceptEncodingNormalized: browsers' spellings of one set of codings
// share a variant, fills ask the origin for that set, and each request gets
// an encoding it accepts.
func TestAcceptEncodingNormalized(t *testing.T) {
	n := newNode(t, Options{Key: cache.KeyOptions{Codings: true}}, nil)
	seen := codingOrigin(n)
	steps := []struct {
		ae, body, cs string
	}{
		{"gzip, deflate, br", "br", "fwd=uri-miss"},
		{"br, gzip, deflate", "br", "hit"},
		{"deflate;q=0.5, br;q=1.0, gzip, compress", "br", "hit"},
		{"gzip", "gzip", "fwd=vary-miss"},
		{"x-gzip, br;q=0", "gzip", "hit"},
		{"", "identity", "fwd=vary-miss"},
		{"identity", "identity", "hit"},
	}
	for _, s := range steps {
		var r *fasthttp.Response
		if s.ae == "" {
			r = n.get("/v")
		} else {
			r = n.get("/v", "Accept-Encoding: "+s.ae)
		}
		if string(r.Body()) != s.body || !strings.Contains(csOf(r), s.cs) {
			t.Errorf("Accept-Encoding %q: body %q, Cache-Status %q; want %q, %q", s.ae, r.Body(), csOf(r), s.body, s.cs)
		}
	}
	if got, want := strings.Join(seen(), " | "), "br, deflate, gzip | gzip | "; got != want {
		t.Fatalf("origin saw Accept-Encoding %q, want %q", got, want)
	}
}

// TestAcceptEncodingRaw: with normalisation off, each spelling is its own
// variant and the origin sees the client's value.
func TestAcceptEncodingRaw(t *testing.T) {
	n := newNode(t, Options{}, nil)
	seen := codingOrigin(n)
	n.get("/v", "Accept-Encoding: gzip, deflate, br")
	if cs := csOf(n.get("/v", "Accept-Encoding: br, gzip, deflate")); !strings.Contains(cs, "fwd=vary-miss") {
		t.Fatalf("another spelling: %q; want a variant miss", cs)
	}
	if got, want := strings.Join(seen(), " | "), "gzip, deflate, br | br, gzip, deflate"; got != want {
		t.Fatalf("origin saw %q, want %q", got, want)
	}
}
