package proxy

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/origin"
	"github.com/valyala/fasthttp"
)

// TestRequestAuthority checks the rule on its own, including what
// fasthttp's server already refuses before the handler runs (the handler
// must not depend on it).
func TestRequestAuthority(t *testing.T) {
	cases := []struct {
		name         string
		target, host string
		http10       bool
		want         string // the authority; "" with problem
		problem      string // part of the reason for a 400
	}{
		{name: "RFC 9112 §3.2.1 origin-form takes Host", target: "/x", host: "Example.com", want: "Example.com"},
		{name: "RFC 9112 §3.2.4 asterisk-form takes Host", target: "*", host: "example.com", want: "example.com"},
		{name: "RFC 9112 §3.2.2 absolute-form replaces Host", target: "http://Victim.com/x", host: "victim.COM", want: "Victim.com"},
		{name: "RFC 9112 §3.2.2 absolute-form without Host", target: "http://victim.com/x", http10: true, want: "victim.com"},
		{name: "RFC 9112 §3.2.2 https, scheme in capitals", target: "HTTPS://victim.com:8443?q", host: "victim.com:8443", want: "victim.com:8443"},
		{name: "RFC 3986 §3.2.2 IPv6 literal", target: "http://[::1]:8080/x", host: "[::1]:8080", want: "[::1]:8080"},
		{name: "RFC 9112 §3.2 HTTP/1.0 may omit Host", target: "/x", http10: true, want: ""},

		{name: "RFC 9112 §3.2.2 absolute-form names another host", target: "http://victim.com/x", host: "evil.com", problem: "differs"},
		{name: "RFC 9112 §3.2.2 same host, another port", target: "http://victim.com:80/x", host: "victim.com", problem: "differs"},
		{name: "RFC 9110 §4.2.4 userinfo in Host", target: "/x", host: "alice:pw@victim.com", problem: "userinfo"},
		{name: "RFC 9110 §4.2.4 userinfo in the target", target: "http://bob:pw@victim.com/x", host: "victim.com", problem: "userinfo"},
		{name: "RFC 9110 §4.2.4 userinfo in the target, no Host", target: "http://bob@victim.com/x", http10: true, problem: "userinfo"},
		{name: "RFC 9112 §3.2 HTTP/1.1 without Host", target: "/x", problem: "missing Host"},
		{name: "RFC 9110 §4.2 only http and https", target: "ftp://victim.com/x", host: "victim.com", problem: "scheme"},
		{name: "RFC 9112 §3.2 authority-form outside CONNECT", target: "victim.com:443", host: "victim.com", problem: "malformed"},
		{name: "RFC 9112 §3.2 not a target", target: "x//victim.com/y", http10: true, problem: "malformed"},
		{name: "fasthttp reads //victim.com/a://b as host victim.com", target: "//victim.com/a://b", host: "evil.com", problem: "ambiguous"},
		{name: "fasthttp reads //victim.com/x without Host as host victim.com", target: "//victim.com/x", http10: true, problem: "ambiguous"},
		{name: "fasthttp reads ///x without Host as path /x", target: "///x", http10: true, problem: "ambiguous"},
		{name: "fasthttp reads // without Host as path /", target: "//", http10: true, problem: "ambiguous"},
		{name: "RFC 9112 §3.2.1 a path may start with //", target: "//x", host: "example.com", want: "example.com"},
		{name: "RFC 3986 §3.2.2 space in Host", target: "/x", host: "a b", problem: "Host"},
		{name: "RFC 3986 §3.2.2 slash in Host", target: "/x", host: "victim.com/evil", problem: "Host"},
		{name: "RFC 3986 §3.2.2 backslash in Host", target: "/x", host: `victim.com\evil`, problem: "Host"},
		{name: "RFC 3986 §3.2.2 query in Host", target: "/x", host: "victim.com?", problem: "Host"},
		{name: "RFC 3986 §3.2.2 fragment in Host", target: "/x", host: "victim.com#", problem: "Host"},
		{name: "RFC 3986 §3.2.2 control in Host", target: "/x", host: "victim.com\x00", problem: "Host"},
		{name: "RFC 3986 §3.2.2 DEL in Host", target: "/x", host: "victim.com\x7f", problem: "Host"},
		{name: "RFC 3986 §3.2.2 pct-encoded Host refused", target: "/x", host: "vict%69m.com", problem: "Host"},
		{name: "RFC 3986 §3.2.3 port must be digits", target: "/x", host: "victim.com:8o", problem: "port"},
		{name: "RFC 3986 §3.2.3 empty port refused", target: "/x", host: "victim.com:", problem: "port"},
		{name: "RFC 3986 §3.2.2 empty host", target: "/x", host: ":80", problem: "Host"},
		{name: "RFC 3986 §3.2.2 unclosed IP literal", target: "/x", host: "[::1", problem: "IP literal"},
		{name: "RFC 6874 zone identifier refused", target: "/x", host: "[fe80::1%25en0]", problem: "IP literal"},
		{name: "RFC 3986 §3.2.2 IPvFuture refused", target: "/x", host: "[v1.x]", problem: "IP literal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var req fasthttp.Request
			req.Header.SetRequestURI(tc.target)
			req.Header.SetHost(tc.host)
			if tc.http10 {
				req.Header.SetProtocol("HTTP/1.0")
			}
			got, problem := requestAuthority(&req.Header, req.URI().Host())
			if tc.problem != "" {
				if !strings.Contains(problem, tc.problem) || got != nil {
					t.Fatalf("authority %q, problem %q; want a 400 for %q", got, problem, tc.problem)
				}
				return
			}
			if problem != "" || string(got) != tc.want {
				t.Fatalf("authority %q, problem %q; want %q", got, problem, tc.want)
			}
		})
	}
}

// TestOneAuthority: whatever the request's form, the key, the Host and the
// X-Forwarded-Host the origin gets name one host; a request that names two
// is refused before anything is fetched or stored.
func TestOneAuthority(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		status  int
		host    string // Host and X-Forwarded-Host the origin got
		key     string // the key stored
		unfound string // a key that must not be stored
	}{
		{
			name:   "RFC 9112 §3.2.2 absolute-form naming another host than Host",
			raw:    "GET http://victim.com/x HTTP/1.1\r\nHost: evil.com\r\n\r\n",
			status: 400, unfound: "victim.com/x",
		},
		{
			name:   "RFC 9112 §3.2.2 the same, with X-Forwarded-Host",
			raw:    "GET http://victim.com/x HTTP/1.1\r\nHost: evil.com\r\nX-Forwarded-Host: evil.com\r\n\r\n",
			status: 400, unfound: "victim.com/x",
		},
		{
			name:   "RFC 9112 §3.2.2 unsafe method in absolute-form naming another host",
			raw:    "POST http://victim.com/x HTTP/1.1\r\nHost: evil.com\r\nContent-Length: 0\r\n\r\n",
			status: 400,
		},
		{
			name:   "fasthttp reads //victim.com/a://b as host victim.com",
			raw:    "GET //victim.com/a://b HTTP/1.1\r\nHost: evil.com\r\n\r\n",
			status: 400, unfound: "victim.com/a://b",
		},
		{
			name:   "RFC 9110 §4.2.4 userinfo in Host",
			raw:    "GET /x HTTP/1.1\r\nHost: alice:pw@victim.com\r\n\r\n",
			status: 400, unfound: "victim.com/x",
		},
		{
			name:   "RFC 9112 §3.2 two Host fields",
			raw:    "GET /x HTTP/1.1\r\nHost: victim.com\r\nHost: evil.com\r\n\r\n",
			status: 400, unfound: "victim.com/x",
		},
		{
			name:   "RFC 9112 §3.2.2 absolute-form, Host in other case",
			raw:    "GET http://Victim.com/x HTTP/1.1\r\nHost: victim.com\r\n\r\n",
			status: 200, host: "Victim.com", key: "victim.com/x",
		},
		{
			name:   "RFC 9112 §3.2.2 absolute-form without Host",
			raw:    "GET http://victim.com/x HTTP/1.0\r\n\r\n",
			status: 200, host: "victim.com", key: "victim.com/x",
		},
		{
			name:   "RFC 9112 §3.2.1 absolute-form with an empty path is /",
			raw:    "GET http://victim.com?q=1 HTTP/1.1\r\nHost: victim.com\r\n\r\n",
			status: 200, host: "victim.com", key: "victim.com/?q=1",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, Options{}, nil)
			n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
			r := n.raw(tc.raw)
			if r.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d (body %q)", r.StatusCode(), tc.status, r.Body())
			}
			if tc.status != 200 {
				if calls := n.origin.calls.Load(); calls != 0 {
					t.Errorf("a refused request reached the origin (%d calls)", calls)
				}
			} else {
				req := n.origin.lastRequest()
				if h, xfh := string(req.Header.Host()), string(req.Header.Peek("X-Forwarded-Host")); h != tc.host || xfh != tc.host {
					t.Errorf("origin got Host %q, X-Forwarded-Host %q; want %q", h, xfh, tc.host)
				}
				if _, ok := n.st.Get([]byte(tc.key)); !ok {
					t.Errorf("nothing stored under %q", tc.key)
				}
			}
			if tc.unfound != "" {
				if _, ok := n.st.Get([]byte(tc.unfound)); ok {
					t.Errorf("%q was stored", tc.unfound)
				}
			}
		})
	}
}

// TestOneAuthorityKeyHost: with key_host, the key and the origin get that
// host whatever the request names; a request naming two hosts is still
// refused (it says nothing reliable about what it wants).
func TestOneAuthorityKeyHost(t *testing.T) {
	n := newNode(t, Options{Key: cache.KeyOptions{Host: "site.local"}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: max-age=60"))
	if r := n.raw("GET http://victim.com/x HTTP/1.1\r\nHost: evil.com\r\n\r\n"); r.StatusCode() != 400 {
		t.Fatalf("two hosts: status %d, want 400", r.StatusCode())
	}
	// Found by FuzzAuthority: without Host, fasthttp reads "//" as an
	// empty authority and the path /, while the fill, sent with Host
	// site.local, asks for //: the site's root page would be the answer
	// for //.
	for _, target := range []string{"//", "///x"} {
		if r := n.raw("GET " + target + " HTTP/1.0\r\n\r\n"); r.StatusCode() != 400 {
			t.Errorf("%s without Host: status %d, want 400", target, r.StatusCode())
		}
	}
	if n.origin.calls.Load() != 0 {
		t.Fatalf("refused requests reached the origin %d times", n.origin.calls.Load())
	}
	r := n.raw("GET http://victim.com/x HTTP/1.0\r\n\r\n")
	wantStatus(t, r, 200, "ringcache; fwd=uri-miss; fwd-status=200; ttl=60; stored")
	req := n.origin.lastRequest()
	if h, xfh := string(req.Header.Host()), string(req.Header.Peek("X-Forwarded-Host")); h != "site.local" || xfh != "site.local" {
		t.Errorf("origin got Host %q, X-Forwarded-Host %q; want site.local", h, xfh)
	}
	if _, ok := n.st.Get([]byte("site.local/x")); !ok {
		t.Error("nothing stored under site.local/x")
	}
}

// TestForwardCarriesTheAuthority: the owner keys a forwarded request by its
// Host alone, so that Host must be the authority this node keyed it by,
// also when the client named it only in the target.
func TestForwardCarriesTheAuthority(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	owner := &fakePeer{name: "owner", forward: func(req *fasthttp.Request, resp *fasthttp.Response) error {
		mu.Lock()
		hosts = append(hosts, string(req.Header.Host())+" "+string(req.Header.Peek("X-Forwarded-Host")))
		mu.Unlock()
		return ownerAnswer(req, resp)
	}}
	n := newNode(t, Options{Name: "me", Peers: &fakePeers{owner: owner}}, nil)
	for _, raw := range []string{
		"GET http://victim.com/f HTTP/1.0\r\n\r\n",
		"GET http://VICTIM.com/f HTTP/1.1\r\nHost: victim.com\r\n\r\n",
		"DELETE http://victim.com/f HTTP/1.0\r\n\r\n",
	} {
		if r := n.raw(raw); r.StatusCode() != 200 {
			t.Fatalf("%q: status %d", raw, r.StatusCode())
		}
	}
	if r := n.raw("GET http://victim.com/f HTTP/1.1\r\nHost: evil.com\r\n\r\n"); r.StatusCode() != 400 {
		t.Fatalf("two hosts: status %d, want 400", r.StatusCode())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"victim.com victim.com", "VICTIM.com VICTIM.com", "victim.com victim.com"}
	if strings.Join(hosts, ", ") != strings.Join(want, ", ") {
		t.Fatalf("owner got Host and X-Forwarded-Host %q, want %q", hosts, want)
	}
	if n.origin.calls.Load() != 0 {
		t.Fatal("a non-owner fetched from the origin")
	}
}

// wireOrigin is an origin on 127.0.0.1 that the node reaches through the
// real origin.Client, and that records what it gets on the wire: fasthttp's
// client adds Basic credentials from userinfo after the proxy has built its
// request, where the fake origin cannot see them.
type wireOrigin struct {
	addr string // host:port it listens on
	mu   sync.Mutex
	reqs []wireRequest
}

// wireRequest is what one request brought to the origin.
type wireRequest struct{ host, xfh, auth, uri string }

// seen returns the requests received since the last call.
func (w *wireOrigin) seen() []wireRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	reqs := w.reqs
	w.reqs = nil
	return reqs
}

// newWireOrigin serves n's fills from a wireOrigin whose answers are
// cacheable and name the credentials they were made for.
func newWireOrigin(t testing.TB, n *node, preserveHost bool) *wireOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireOrigin{addr: ln.Addr().String()}
	srv := &fasthttp.Server{Logger: quietLogger{}, Handler: func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		auth := string(h.Peek("Authorization"))
		w.mu.Lock()
		w.reqs = append(w.reqs, wireRequest{host: string(h.Host()), xfh: string(h.Peek("X-Forwarded-Host")), auth: auth, uri: string(h.RequestURI())})
		w.mu.Unlock()
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.SetBodyString("page for " + auth)
	}}
	testutil.ServeFasthttp(t, srv, ln)
	c, err := origin.NewClient(origin.ClientOptions{URL: "http://" + w.addr, PreserveHost: preserveHost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close) // before the server's shutdown: cleanups run last first
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Fetch(ctx, req, resp); err != nil {
			// Seen by the test as the client's answer: a failed fetch is
			// not always the test's failure (a fuzzed request may have no
			// Host to preserve).
			resp.Reset()
			resp.SetStatusCode(fasthttp.StatusBadGateway)
			resp.SetBodyString(err.Error())
			return
		}
		resp.Body() // read the stream whole while ctx holds
	})
	return w
}

// TestCredentialsInAuthority: userinfo in Host or in the target must not
// become credentials the cache never saw, with an answer then cached for
// everyone (RFC 9110 §4.2.4, RFC 9111 §3.5).
func TestCredentialsInAuthority(t *testing.T) {
	cases := []struct {
		name         string
		opt          Options
		preserveHost bool
		raw          string
	}{
		{name: "RFC 9110 §4.2.4 userinfo in Host", raw: "GET /private HTTP/1.1\r\nHost: alice:pw@victim.com\r\n\r\n"},
		{name: "RFC 9110 §4.2.4 userinfo in Host, preserve_host", preserveHost: true, raw: "GET /private HTTP/1.1\r\nHost: alice:pw@victim.com\r\n\r\n"},
		{name: "RFC 9110 §4.2.4 userinfo in the target", raw: "GET http://bob:pw@victim.com/private HTTP/1.1\r\nHost: victim.com\r\n\r\n"},
		{
			name: "RFC 9110 §4.2.4 userinfo in the target, key_host",
			opt:  Options{Key: cache.KeyOptions{Host: "victim.com"}},
			raw:  "GET http://bob:pw@x/private HTTP/1.1\r\nHost: x\r\n\r\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.opt, nil)
			w := newWireOrigin(t, n, tc.preserveHost)
			if r := n.raw(tc.raw); r.StatusCode() != 400 {
				t.Errorf("status %d (body %q), want 400", r.StatusCode(), r.Body())
			}
			// Anyone else asking for the page must get the anonymous one.
			r := n.raw("GET /private HTTP/1.1\r\nHost: victim.com\r\n\r\n")
			if r.StatusCode() != 200 || string(r.Body()) != "page for " {
				t.Errorf("an anonymous client got %d %q (Cache-Status %q)", r.StatusCode(), r.Body(), csOf(r))
			}
			for _, req := range w.seen() {
				if req.auth != "" {
					t.Errorf("origin got Authorization %q no client sent", req.auth)
				}
			}
		})
	}
}
