package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// clientFrom returns a client of n's proxy listener whose connections come
// from ip, as the proxy sees them.
func (n *node) clientFrom(ip string) *fasthttp.Client {
	addr := &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}
	return &fasthttp.Client{Dial: func(string) (net.Conn, error) { return n.ln.DialWithLocalAddr(addr) }}
}

// forwardingSeen is what the origin got in the forwarding fields, "-" for
// a field it did not get.
func forwardingSeen(req *fasthttp.Request) map[string]string {
	seen := map[string]string{}
	for _, f := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "Forwarded"} {
		v := req.Header.PeekAll(f)
		if len(v) == 0 {
			seen[f] = "-"
			continue
		}
		var s []string
		for _, x := range v {
			s = append(s, string(x))
		}
		seen[f] = strings.Join(s, " | ")
	}
	return seen
}

func TestForwardingFields(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	sent := []string{
		"X-Forwarded-For: 203.0.113.9", "X-Forwarded-For: 198.51.100.7",
		"X-Forwarded-Proto: https", "X-Forwarded-Host: www.example.org", "X-Forwarded-Port: 443",
		`Forwarded: for=203.0.113.9;proto=https`,
	}
	cases := []struct {
		name      string
		from      string
		forwarded bool
		headers   []string
		peer      bool // sent by a member, to PeerHandler
		want      map[string]string
	}{
		{
			name: "a client's fields are replaced", from: "192.0.2.1", headers: sent,
			want: map[string]string{"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.com", "X-Forwarded-Port": "-", "Forwarded": "-"},
		},
		{
			name: "a trusted proxy's are kept, its chain extended", from: "10.1.2.3", headers: sent,
			want: map[string]string{
				"X-Forwarded-For": "203.0.113.9, 198.51.100.7, 10.1.2.3", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.org",
				"X-Forwarded-Port": "443", "Forwarded": "for=203.0.113.9;proto=https",
			},
		},
		{
			name: "a trusted proxy that sent none gets ours", from: "10.1.2.3",
			want: map[string]string{"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.com", "X-Forwarded-Port": "-", "Forwarded": "-"},
		},
		{
			name: "Forwarded from a client is replaced", from: "192.0.2.1", forwarded: true, headers: sent,
			want: map[string]string{"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.com", "X-Forwarded-Port": "-", "Forwarded": "for=192.0.2.1;host=example.com;proto=http"},
		},
		{
			name: "Forwarded from a trusted proxy is extended", from: "fd00::5", forwarded: true, headers: sent,
			want: map[string]string{
				"X-Forwarded-For": "203.0.113.9, 198.51.100.7, fd00::5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.org", "X-Forwarded-Port": "443",
				"Forwarded": `for=203.0.113.9;proto=https, for="[fd00::5]";host=example.com;proto=http`,
			},
		},
		{
			name: "an IPv6 client", from: "2001:db8::1", forwarded: true,
			want: map[string]string{"X-Forwarded-For": "2001:db8::1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.com", "X-Forwarded-Port": "-", "Forwarded": `for="[2001:db8::1]";host=example.com;proto=http`},
		},
		{
			name: "a member's are what it computed", peer: true, forwarded: true,
			headers: []string{"X-Forwarded-For: 203.0.113.9, 10.1.2.3", "X-Forwarded-Proto: https", "X-Forwarded-Host: www.example.org", "Forwarded: for=203.0.113.9"},
			want:    map[string]string{"X-Forwarded-For": "203.0.113.9, 10.1.2.3", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.org", "X-Forwarded-Port": "-", "Forwarded": "for=203.0.113.9"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, Options{TrustedProxies: trusted, Forwarded: tc.forwarded}, answer(nil, 200, "Cache-Control: no-store"))
			c := n.clientFrom(tc.from)
			if tc.peer {
				c = n.peer
			}
			for _, method := range []string{"GET", "POST"} { // a fill, and a pass
				if r := n.send(c, method, "/f", tc.headers...); r.StatusCode() != 200 {
					t.Fatalf("%s: status %d", method, r.StatusCode())
				}
				got := forwardingSeen(n.origin.lastRequest())
				for f, want := range tc.want {
					if got[f] != want {
						t.Errorf("%s: origin got %s %q, want %q", method, f, got[f], want)
					}
				}
			}
		})
	}
}

// tlsClientFrom serves n's proxy handler on a listener of its own behind
// TLS, as a node's HTTPS listen does, and returns a client of it whose
// connections come from ip.
func (n *node) tlsClientFrom(ip string) *fasthttp.Client {
	t := n.t
	ca := testutil.NewCA(t)
	certPEM, keyPEM := ca.Issue(t, "proxy", 1)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: n.p.Handler, Logger: quietLogger{}}
	testutil.ServeFasthttp(t, srv, tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	addr := &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}
	return &fasthttp.Client{Dial: func(string) (net.Conn, error) {
		c, err := ln.DialWithLocalAddr(addr)
		if err != nil {
			return nil, err
		}
		return tls.Client(c, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}), nil
	}}
}

// TestForwardingOverTLS: a client on a TLS connection is https wherever
// the node sets the scheme itself; a trusted proxy's own word still wins.
func TestForwardingOverTLS(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name, from string
		headers    []string
		want       map[string]string
	}{
		{"a client's claim is replaced by https", "192.0.2.1", []string{"X-Forwarded-Proto: http", "Forwarded: proto=http"},
			map[string]string{"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "https", "Forwarded": "for=192.0.2.1;host=example.com;proto=https"}},
		{"a trusted proxy that sent none gets https", "10.1.2.3", nil,
			map[string]string{"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "https", "Forwarded": "for=10.1.2.3;host=example.com;proto=https"}},
		{"a trusted proxy's scheme is kept, this hop's is https", "10.1.2.3", []string{"X-Forwarded-Proto: http", "Forwarded: for=203.0.113.9;proto=http"},
			map[string]string{"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "http", "Forwarded": "for=203.0.113.9;proto=http, for=10.1.2.3;host=example.com;proto=https"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, Options{TrustedProxies: trusted, Forwarded: true}, answer(nil, 200, "Cache-Control: no-store"))
			if r := n.send(n.tlsClientFrom(tc.from), "GET", "/f", tc.headers...); r.StatusCode() != 200 {
				t.Fatalf("status %d", r.StatusCode())
			}
			got := forwardingSeen(n.origin.lastRequest())
			for f, want := range tc.want {
				if got[f] != want {
					t.Errorf("origin got %s %q, want %q", f, got[f], want)
				}
			}
		})
	}
}

// TestForwardingToOwner: the owner sends the origin what the member the
// client reached computed, so that member must compute it from the client.
func TestForwardingToOwner(t *testing.T) {
	var got map[string]string
	owner := &fakePeer{name: "owner", forward: func(req *fasthttp.Request, resp *fasthttp.Response) error {
		got = forwardingSeen(req)
		return ownerAnswer(req, resp)
	}}
	n := newNode(t, Options{Peers: &fakePeers{owner: owner}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, nil)
	if r := n.send(n.clientFrom("10.9.9.9"), "GET", "/o", "X-Forwarded-For: 203.0.113.9", "X-Forwarded-Proto: https"); r.StatusCode() != 200 {
		t.Fatalf("status %d", r.StatusCode())
	}
	want := map[string]string{"X-Forwarded-For": "203.0.113.9, 10.9.9.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.com"}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("owner got %s %q, want %q", f, got[f], w)
		}
	}
}

func TestAppendForwardedElement(t *testing.T) {
	for _, tc := range []struct {
		ip, host, proto, want string
	}{
		{"192.0.2.43", "example.com", "http", "for=192.0.2.43;host=example.com;proto=http"},
		{"2001:db8:cafe::17", "example.com", "https", `for="[2001:db8:cafe::17]";host=example.com;proto=https`},
		{"", "example.com", "http", "for=unknown;host=example.com;proto=http"},
		{"192.0.2.43", "example.com:8080", "http", `for=192.0.2.43;host="example.com:8080";proto=http`},
		{"192.0.2.43", `a"b\c`, "http", `for=192.0.2.43;host="a\"b\\c";proto=http`},
		{"192.0.2.43", "", "http", "for=192.0.2.43;proto=http"},
	} {
		var ip netip.Addr
		if tc.ip != "" {
			ip = netip.MustParseAddr(tc.ip)
		}
		if got := string(appendForwardedElement(nil, ip, []byte(tc.host), tc.proto)); got != tc.want {
			t.Errorf("%s %s %s: %s, want %s", tc.ip, tc.host, tc.proto, got, tc.want)
		}
	}
}
