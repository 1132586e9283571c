package node

// WebSocket tunnels through real nodes on loopback sockets: a single node,
// and a cluster member that does not own the URL.

import (
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// tunnelMetrics reads a node's tunnel series from its admin /metrics.
func tunnelMetrics(t *testing.T, c *fasthttp.Client, n *Node) (total, open float64) {
	t.Helper()
	r, err := testutil.Do(c, "GET", "http://"+n.AdminAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	total, ok1 := testutil.MetricValue(r.Body, "ringcache_tunnels_total")
	open, ok2 := testutil.MetricValue(r.Body, "ringcache_tunnels_open")
	if !ok1 || !ok2 {
		t.Fatalf("%s's /metrics lacks the tunnel series", n.Name())
	}
	return total, open
}

// chat runs a WebSocket conversation through ws, ending with the close
// handshake.
func chat(t *testing.T, ws *testutil.WebSocketClient, path string) {
	t.Helper()
	if ws.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d, Cache-Status %q, body %q", ws.Response.StatusCode(), ws.Response.Header.Peek("Cache-Status"), ws.Response.Body())
	}
	if op, msg, err := ws.Receive(); err != nil || op != testutil.OpText || string(msg) != "welcome "+path {
		t.Fatalf("welcome frame: %d %q %v", op, msg, err)
	}
	for _, msg := range []string{"one", "two", "three"} {
		ws.Echo(t, msg)
	}
	if err := ws.Send(testutil.OpClose, []byte{0x03, 0xe8}); err != nil {
		t.Fatal(err)
	}
	if op, _, err := ws.Receive(); err != nil || op != testutil.OpClose {
		t.Fatalf("close: %d %v", op, err)
	}
	if !ws.Closed(10 * time.Second) {
		t.Fatal("the connection stayed open after the close handshake")
	}
}

func TestWebSocketThroughNode(t *testing.T) {
	o := testutil.StartWebSocketOrigin(t)
	tn := startTestNode(t, func(c *config.Config) { c.Origin = "http://" + o.Addr })
	ws := testutil.DialWebSocket(t, tn.n.Addr(), "site.test", "/socket")
	if ws.Response.StatusCode() == fasthttp.StatusSwitchingProtocols {
		if total, open := tunnelMetrics(t, tn.client, tn.n); total != 1 || open != 1 {
			t.Errorf("while open: ringcache_tunnels_total %v, ringcache_tunnels_open %v; want 1, 1", total, open)
		}
	}
	chat(t, ws, "/socket")
	testutil.Eventually(t, 10*time.Second, func() bool {
		total, open := tunnelMetrics(t, tn.client, tn.n)
		return total == 1 && open == 0
	}, func() string { return "ringcache_tunnels_open to drop to 0" })
	if got := o.Upgrades.Load(); got != 1 {
		t.Errorf("origin upgrades = %d, want 1", got)
	}
}

// TestClusterWebSocketNotOwner: the member a client reaches tunnels to the
// origin itself, whoever owns the URL: a tunnel has nothing to cache.
func TestClusterWebSocketNotOwner(t *testing.T) {
	o := testutil.StartWebSocketOrigin(t)
	c := startCluster(t, 2, func(cfg *config.Config) { cfg.Origin = "http://" + o.Addr })
	entry, owner := c.nodes[0], c.nodes[1]
	path := pathOwnedBy(t, entry, owner.Name(), "/ws%d")
	// A plain GET of the URL goes to its owner, as ever.
	if r, err := c.get(entry, path); err != nil || r.Status != 200 {
		t.Fatalf("plain GET: %v %d", err, r.Status)
	} else {
		testutil.ExpectCacheStatus(t, "plain GET", r, "detail=peer")
	}
	chat(t, testutil.DialWebSocket(t, entry.Addr(), "site.test", path), path)
	if total, _ := tunnelMetrics(t, c.client, entry); total != 1 {
		t.Errorf("%s (reached) tunnels = %v, want 1", entry.Name(), total)
	}
	if total, _ := tunnelMetrics(t, c.client, owner); total != 0 {
		t.Errorf("%s (owner) tunnels = %v, want 0", owner.Name(), total)
	}
	if got := o.Upgrades.Load(); got != 1 {
		t.Errorf("origin upgrades = %d, want 1", got)
	}
}
