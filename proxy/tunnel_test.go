package proxy

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/origin"
	"github.com/valyala/fasthttp"
)

// tunnelNode is a proxy in front of a WebSocket origin, reached through the
// real origin client, and served on a loopback socket: a tunnel hijacks a
// real connection.
type tunnelNode struct {
	*node
	ws   *testutil.WebSocketOrigin
	addr string // the proxy's client listener
}

func newTunnelNode(t *testing.T, o Options) *tunnelNode {
	t.Helper()
	ws := testutil.StartWebSocketOrigin(t)
	c, err := origin.NewClient(origin.ClientOptions{URL: "http://" + ws.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	o.Tunnels = c
	n := newNode(t, o, nil)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Fetch(ctx, req, resp); err != nil {
			resp.SetStatusCode(fasthttp.StatusBadGateway)
			return
		}
		resp.Body()
	})
	return &tunnelNode{node: n, ws: ws, addr: testutil.ServeLoopback(t, n.p.Handler)}
}

func gaugeValue(t *testing.T, p *Proxy) float64 {
	t.Helper()
	var m dto.Metric
	_ = p.m.tunnelsOpen.Write(&m)
	return m.GetGauge().GetValue()
}

// TestTunnelWebSocket: a WebSocket handshake through the proxy gets the
// origin's 101, and then frames go both ways unchanged: the frame the origin
// sent right behind its 101, text, a binary frame longer than 64 KiB,
// ping, and the close handshake, after which the tunnel is gone.
func TestTunnelWebSocket(t *testing.T) {
	n := newTunnelNode(t, Options{})
	ws := testutil.DialWebSocket(t, n.addr, "site.example", "/chat?room=1", "X-Forwarded-Proto: https", "Cookie: s=1")
	if ws.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d, body %q", ws.Response.StatusCode(), ws.Response.Body())
	}
	h := &ws.Response.Header
	for name, want := range map[string]string{
		"Upgrade": "websocket", "Connection": "Upgrade", "Via": "1.1 ringcache",
		"Cache-Status": "ringcache; fwd=bypass; fwd-status=101",
	} {
		if got := string(h.Peek(name)); got != want {
			t.Errorf("101 %s = %q, want %q", name, got, want)
		}
	}
	if op, msg, err := ws.Receive(); err != nil || op != testutil.OpText || string(msg) != "welcome /chat?room=1" {
		t.Fatalf("the frame sent with the 101: %d %q %v", op, msg, err)
	}
	for _, msg := range []string{"hello", "", strings.Repeat("ü", 100)} {
		ws.Echo(t, msg)
	}
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 20000)
	if err := ws.Send(testutil.OpBinary, big); err != nil {
		t.Fatal(err)
	}
	if op, got, err := ws.Receive(); err != nil || op != testutil.OpBinary || !bytes.Equal(got, big) {
		t.Fatalf("binary echo: opcode %d, %d bytes, %v", op, len(got), err)
	}
	if err := ws.Send(testutil.OpPing, []byte("p")); err != nil {
		t.Fatal(err)
	}
	if op, got, err := ws.Receive(); err != nil || op != testutil.OpPong || string(got) != "p" {
		t.Fatalf("pong: opcode %d, %q, %v", op, got, err)
	}
	if v := gaugeValue(t, n.p); v != 1 {
		t.Errorf("tunnels open = %v, want 1", v)
	}

	// What the origin got: the handshake with this hop's Upgrade and
	// connection option, the end-to-end fields, the forwarding fields.
	hs := n.ws.Handshakes()
	if len(hs) != 1 {
		t.Fatalf("origin got %d handshakes", len(hs))
	}
	for name, want := range map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket", "Cookie": "s=1", "Sec-WebSocket-Version": "13",
		"X-Forwarded-Proto": "http", "Via": "1.1 ringcache",
	} {
		if got := string(hs[0].Peek(name)); got != want {
			t.Errorf("origin got %s %q, want %q", name, got, want)
		}
	}

	if err := ws.Send(testutil.OpClose, []byte{0x03, 0xe8}); err != nil {
		t.Fatal(err)
	}
	if op, _, err := ws.Receive(); err != nil || op != testutil.OpClose {
		t.Fatalf("close: opcode %d, %v", op, err)
	}
	if !ws.Closed(10 * time.Second) {
		t.Fatal("the connection stayed open after the close handshake")
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return gaugeValue(t, n.p) == 0 }, "the tunnel to be counted closed")
	if v := counterValue(n.p.m.tunnels); v != 1 {
		t.Errorf("tunnels total = %v, want 1", v)
	}
	if v := counterValue(n.p.m.requests[Pass]); v != 1 {
		t.Errorf("requests pass = %v, want 1", v)
	}
	if v := sampleCount(n.p.m.durations[Pass]); v != 1 {
		t.Errorf("pass timed %d times, want 1 (as counted)", v)
	}
}

// TestTunnelRefused: an origin that does not switch protocols is relayed
// as any response, and the client's connection serves on.
func TestTunnelRefused(t *testing.T) {
	n := newTunnelNode(t, Options{})
	ws := testutil.DialWebSocket(t, n.addr, "site.example", "/refuse")
	r := ws.Response
	if r.StatusCode() != fasthttp.StatusForbidden || string(r.Body()) != "refused" || string(r.Header.Peek("X-Refused")) != "yes" {
		t.Fatalf("got %d %q (X-Refused %q), want the origin's 403", r.StatusCode(), r.Body(), r.Header.Peek("X-Refused"))
	}
	if cs := string(r.Header.Peek("Cache-Status")); cs != "ringcache; fwd=bypass; fwd-status=403" {
		t.Errorf("Cache-Status %q", cs)
	}
	if _, err := ws.Conn.Write([]byte("GET /after HTTP/1.1\r\nHost: site.example\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	var next fasthttp.Response
	if err := next.Read(ws.Reader()); err != nil || string(next.Body()) != "plain /after" {
		t.Fatalf("next request on the connection: %v, %q", err, next.Body())
	}
	if v := counterValue(n.p.m.tunnels); v != 0 {
		t.Errorf("tunnels total = %v, want 0", v)
	}
}

// TestTunnelNeverCachedOrCoalesced: an upgrade is never answered from a
// stored copy of its URL, concurrent ones each get their own tunnel, and
// none stores anything.
func TestTunnelNeverCachedOrCoalesced(t *testing.T) {
	n := newTunnelNode(t, Options{})
	for i, want := range []string{"fwd=uri-miss", "hit"} {
		if r := n.get("/chat"); !strings.Contains(csOf(r), want) {
			t.Fatalf("plain GET %d: Cache-Status %q, want %s", i, csOf(r), want)
		}
	}
	// All open at once: each its own tunnel, none waiting on another.
	const clients = 4
	var conns []*testutil.WebSocketClient
	for range clients {
		conns = append(conns, testutil.DialWebSocket(t, n.addr, "example.com", "/chat"))
	}
	for i, ws := range conns {
		if ws.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
			t.Fatalf("upgrade %d: status %d, Cache-Status %q", i, ws.Response.StatusCode(), ws.Response.Header.Peek("Cache-Status"))
		}
		if _, _, err := ws.Receive(); err != nil { // welcome
			t.Fatal(err)
		}
		ws.Echo(t, strings.Repeat("x", i+1))
	}
	if got := n.ws.Upgrades.Load(); got != clients {
		t.Errorf("origin answered %d upgrades, want %d", got, clients)
	}
	if r := n.get("/chat"); !strings.Contains(csOf(r), "hit") || string(r.Body()) != "plain /chat" {
		t.Errorf("plain GET after the upgrades: Cache-Status %q, body %q", csOf(r), r.Body())
	}
	if got := n.ws.Plain.Load(); got != 1 {
		t.Errorf("origin answered %d plain requests, want 1", got)
	}
}

// TestTunnelIdleTimeout: a tunnel with no byte either way for
// TunnelIdleTimeout is closed.
func TestTunnelIdleTimeout(t *testing.T) {
	n := newTunnelNode(t, Options{TunnelIdleTimeout: 200 * time.Millisecond})
	ws := testutil.DialWebSocket(t, n.addr, "site.example", "/idle")
	if ws.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
		t.Fatalf("status %d", ws.Response.StatusCode())
	}
	if _, _, err := ws.Receive(); err != nil { // welcome
		t.Fatal(err)
	}
	ws.Echo(t, "still here")
	if !ws.Closed(10 * time.Second) {
		t.Fatal("an idle tunnel stayed open")
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return gaugeValue(t, n.p) == 0 }, "the tunnel to be counted closed")
}

// TestTunnelClosedWithProxy: Close ends open tunnels, which fasthttp's
// Shutdown leaves alone.
func TestTunnelClosedWithProxy(t *testing.T) {
	n := newTunnelNode(t, Options{})
	ws := testutil.DialWebSocket(t, n.addr, "site.example", "/x")
	if _, _, err := ws.Receive(); err != nil {
		t.Fatal(err)
	}
	n.p.Close()
	if !ws.Closed(10 * time.Second) {
		t.Fatal("the tunnel outlived Close")
	}
	if v := gaugeValue(t, n.p); v != 0 {
		t.Errorf("tunnels open = %v after Close", v)
	}
}

// TestUpgradeIgnored: requests that do not switch protocols here are
// served as any other, from the cache, without Upgrade: HTTP/1.0 (RFC 9110
// §7.8), an Upgrade without the connection option, and h2c.
func TestUpgradeIgnored(t *testing.T) {
	n := newTunnelNode(t, Options{})
	n.get("/page") // stored
	for _, raw := range []string{
		"GET /page HTTP/1.0\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET /page HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n",
		"GET /page HTTP/1.1\r\nHost: example.com\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
	} {
		r := n.raw(raw)
		if r.StatusCode() != 200 || !strings.Contains(csOf(r), "hit") {
			t.Errorf("%q: status %d, Cache-Status %q; want a hit", raw, r.StatusCode(), csOf(r))
		}
	}
	if got := n.ws.Upgrades.Load() + int64(len(n.ws.Handshakes())); got != 0 {
		t.Errorf("the origin saw %d handshakes", got)
	}
}
