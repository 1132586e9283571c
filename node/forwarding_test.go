package node

// Forwarding fields (X-Forwarded-*, Forwarded) from clients and trusted
// proxies, against real nodes on loopback sockets: clients connect from
// 127.0.0.2 (a trusted proxy where the test says so) and 127.0.0.3.

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// fieldsOrigin answers every request with the forwarding fields it got, one
// "Name: value" line each ("-" for none), cacheable for the cc query
// parameter, and keeps them for the test.
type fieldsOrigin struct {
	addr string
	mu   sync.Mutex
	seen []map[string]string
}

var forwardingFields = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"}

func startFieldsOrigin(t *testing.T) *fieldsOrigin {
	t.Helper()
	o := &fieldsOrigin{}
	o.addr = testutil.ServeLoopback(t, func(ctx *fasthttp.RequestCtx) {
		got := map[string]string{}
		var body strings.Builder
		for _, f := range forwardingFields {
			var vals []string
			for _, v := range ctx.Request.Header.PeekAll(f) {
				vals = append(vals, string(v))
			}
			got[f] = "-"
			if len(vals) > 0 {
				got[f] = strings.Join(vals, " | ")
			}
			fmt.Fprintf(&body, "%s: %s\n", f, got[f])
		}
		o.mu.Lock()
		o.seen = append(o.seen, got)
		o.mu.Unlock()
		ctx.Response.Header.Set("Cache-Control", string(ctx.QueryArgs().Peek("cc")))
		ctx.SetBodyString(body.String())
	})
	return o
}

// requests returns what the origin got, request by request.
func (o *fieldsOrigin) requests() []map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]map[string]string(nil), o.seen...)
}

// last returns the fields of the latest request.
func (o *fieldsOrigin) last(t *testing.T) map[string]string {
	t.Helper()
	r := o.requests()
	if len(r) == 0 {
		t.Fatal("the origin got no request")
	}
	return r[len(r)-1]
}

// getFrom sends a GET for target to addr from the local address ip, with
// the given header lines, and reads the answer.
func getFrom(t *testing.T, ip, addr, target string, header ...string) *fasthttp.Response {
	t.Helper()
	c := dialFrom(t, ip, addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: site.test\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp := &fasthttp.Response{}
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("GET %s from %s: %v", target, ip, err)
	}
	return resp
}

func wantFields(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for _, f := range forwardingFields {
		if got[f] != want[f] {
			t.Errorf("%s: origin got %s %q, want %q", what, f, got[f], want[f])
		}
	}
}

// A request with the fields an ingress sets for a user on https.
var fromIngress = []string{
	"X-Forwarded-For: 203.0.113.9",
	"X-Forwarded-Proto: https",
	"X-Forwarded-Host: www.example.org",
	"Forwarded: for=203.0.113.9;host=www.example.org;proto=https",
}

// TestTrustedProxies: behind a trusted ingress the origin learns the
// user's address and scheme; anyone else's claims are replaced by what the
// node saw.
func TestTrustedProxies(t *testing.T) {
	o := startFieldsOrigin(t)
	tn := startTestNode(t, func(c *config.Config) {
		c.Origin = "http://" + o.addr
		c.TrustedProxies = []string{"127.0.0.2/32"}
		c.ForwardedHeader = true
	})
	addr := tn.n.Addr()

	r := getFrom(t, "127.0.0.2", addr, "/t?cc=no-store", fromIngress...)
	if r.StatusCode() != 200 {
		t.Fatalf("from the ingress: status %d", r.StatusCode())
	}
	wantFields(t, "from a trusted proxy", o.last(t), map[string]string{
		"X-Forwarded-For":   "203.0.113.9, 127.0.0.2",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "www.example.org",
		"Forwarded":         "for=203.0.113.9;host=www.example.org;proto=https, for=127.0.0.2;host=site.test;proto=http",
	})

	r = getFrom(t, "127.0.0.3", addr, "/t?cc=no-store", fromIngress...)
	if r.StatusCode() != 200 {
		t.Fatalf("from a client: status %d", r.StatusCode())
	}
	wantFields(t, "from anyone else", o.last(t), map[string]string{
		"X-Forwarded-For":   "127.0.0.3",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "site.test",
		"Forwarded":         "for=127.0.0.3;host=site.test;proto=http",
	})
}

// TestForwardingFieldsNotInCacheKey: a client that varies X-Forwarded-Host
// and -Proto (and Forwarded) reaches neither the origin with them nor an
// entry of its own: every variation is answered from the one entry the
// node's own values filled.
func TestForwardingFieldsNotInCacheKey(t *testing.T) {
	o := startFieldsOrigin(t)
	tn := startTestNode(t, func(c *config.Config) { c.Origin = "http://" + o.addr })
	addr := tn.n.Addr()
	variations := [][]string{
		{"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https"},
		{"X-Forwarded-Host: other.example", "X-Forwarded-Proto: http", "Forwarded: host=evil.example;proto=https"},
		{"X-Forwarded-Host: site.test", "X-Forwarded-Proto: ftp", "X-Forwarded-For: 203.0.113.9"},
		nil,
	}
	var first string
	for i, hdr := range variations {
		r := getFrom(t, "127.0.0.3", addr, "/page?cc=max-age=300", hdr...)
		if r.StatusCode() != 200 {
			t.Fatalf("variation %d: status %d", i, r.StatusCode())
		}
		cs := string(r.Header.Peek("Cache-Status"))
		if i == 0 {
			first = string(r.Body())
			if !strings.Contains(cs, "stored") {
				t.Fatalf("first request not stored: Cache-Status %q", cs)
			}
			continue
		}
		if !strings.Contains(cs, "hit") || string(r.Body()) != first {
			t.Errorf("variation %d (%q): Cache-Status %q, body %q; want a hit on the first entry %q", i, hdr, cs, r.Body(), first)
		}
	}
	seen := o.requests()
	if len(seen) != 1 {
		t.Fatalf("origin got %d requests, want 1: %v", len(seen), seen)
	}
	wantFields(t, "the fill", seen[0], map[string]string{
		"X-Forwarded-For": "127.0.0.3", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "site.test", "Forwarded": "-",
	})
	var keys []string
	tn.n.Range(func(e *cache.Entry) bool {
		keys = append(keys, string(e.Key()))
		return true
	})
	if len(keys) != 1 {
		t.Errorf("store holds %q, want one entry", keys)
	}
}

// TestClusterTrustedProxies: a member that does not own the URL computes
// the fields from the client's connection, and the owner sends the origin
// exactly those, not what it sees of the member.
func TestClusterTrustedProxies(t *testing.T) {
	o := startFieldsOrigin(t)
	c := startCluster(t, 2, func(cfg *config.Config) {
		cfg.Origin = "http://" + o.addr
		cfg.TrustedProxies = []string{"127.0.0.2/32"}
		cfg.ForwardedHeader = true
	})
	entry := c.nodes[0]
	path := pathOwnedBy(t, entry, c.names[1], "/c%d?cc=no-store")
	r := getFrom(t, "127.0.0.2", entry.Addr(), path, fromIngress...)
	if cs := string(r.Header.Peek("Cache-Status")); r.StatusCode() != 200 || !strings.Contains(cs, "detail=peer") {
		t.Fatalf("status %d, Cache-Status %q: want the owner's answer", r.StatusCode(), cs)
	}
	wantFields(t, "through the owner", o.last(t), map[string]string{
		"X-Forwarded-For":   "203.0.113.9, 127.0.0.2",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "www.example.org",
		"Forwarded":         "for=203.0.113.9;host=www.example.org;proto=https, for=127.0.0.2;host=site.test;proto=http",
	})
}

// pathOwnedBy returns the first path made from pattern (with %d) whose
// key n's ring gives to owner.
func pathOwnedBy(t *testing.T, n *Node, owner, pattern string) string {
	t.Helper()
	for i := range 1000 {
		path := fmt.Sprintf(pattern, i)
		if o, ok := n.Ring().Owner([]byte("site.test" + path)); ok && o.Name == owner {
			return path
		}
	}
	t.Fatalf("no path of %q is owned by %s", pattern, owner)
	return ""
}
