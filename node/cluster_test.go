package node

// In-process clusters on loopback: several nodes, serf with fast timers, one
// demo origin. Each asserts cluster behaviour end to end: discovery from one
// join, one origin fetch per key wherever it is asked, fallback when the
// owner dies, and what membership changes cost the origin.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/hashicorp/serf/serf"
	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/cluster/clustertest"
	"github.com/ringcache/ringcache/config"
	"github.com/valyala/fasthttp"
)

type testCluster struct {
	t      *testing.T
	origin *testOrigin
	nodes  []*Node // nil once stopped
	names  []string
	client *fasthttp.Client
	mutate func(*config.Config)
	// options, if set, adjusts the Options each node starts with.
	options func(name string, o *Options)
}

// startCluster starts a demo origin and n nodes; the others join the first.
func startCluster(t *testing.T, n int, mutate func(*config.Config)) *testCluster {
	t.Helper()
	return startClusterOpts(t, n, mutate, nil)
}

// startClusterOpts is startCluster with options adjusting each node's
// Options.
func startClusterOpts(t *testing.T, n int, mutate func(*config.Config), options func(name string, o *Options)) *testCluster {
	t.Helper()
	c := &testCluster{
		t: t, origin: startTestOrigin(t, "127.0.0.1:0"), mutate: mutate, options: options,
		client: &fasthttp.Client{ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second, MaxConnsPerHost: 512},
	}
	t.Cleanup(func() {
		c.client.CloseIdleConnections()
		for i := range c.nodes {
			c.stop(i, true)
		}
	})
	for range n {
		c.add()
	}
	c.waitConverged(n)
	return c
}

// add starts one more node, joining the first live one.
func (c *testCluster) add() *Node {
	c.t.Helper()
	n := c.start(fmt.Sprintf("n%d", len(c.nodes)))
	c.nodes = append(c.nodes, n)
	c.names = append(c.names, n.Name())
	return n
}

// restart stops node i gracefully and starts it again, empty, under the
// same name, as a rolling deploy does.
func (c *testCluster) restart(i int) *Node {
	c.t.Helper()
	c.stop(i, true)
	n := c.start(c.names[i])
	c.nodes[i] = n
	return n
}

// start starts a node named name, joining the first live one.
func (c *testCluster) start(name string) *Node {
	c.t.Helper()
	cfg := config.Default()
	cfg.NodeName = name
	cfg.Origin = "http://" + c.origin.addr
	cfg.Listen, cfg.Admin, cfg.Gossip = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.PeerSecret = "cluster-test-secret-0123456789"
	cfg.CacheSize = 64 << 20
	cfg.KeyHost = "site.test"
	cfg.HandoffTimeout = 10 * time.Second
	// Generous: under the race detector on a loaded machine a forwarded
	// request can take seconds, and a timeout makes the forwarder fetch
	// too, which the tests counting origin requests would see.
	cfg.PeerTimeout = 10 * time.Second
	for _, n := range c.nodes {
		if n != nil {
			cfg.Join = []string{n.GossipAddr()}
			break
		}
	}
	if c.mutate != nil {
		c.mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		c.t.Fatalf("config: %v", err)
	}
	o := Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Membership: func(o *cluster.Options) { o.Tune = clustertest.FastTimers }}
	if c.options != nil {
		c.options(name, &o)
	}
	n, err := Start(cfg, o)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.NodeName, err)
	}
	return n
}

// stop shuts node i down: gracefully (leave, handoff, drain) or as a crash
// (no leave, listeners closed).
func (c *testCluster) stop(i int, graceful bool) {
	n := c.nodes[i]
	if n == nil {
		return
	}
	c.nodes[i] = nil
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop := n.Shutdown
	if !graceful {
		stop = n.Close // gone without a word, as after SIGKILL
	}
	if err := stop(ctx); err != nil {
		c.t.Errorf("shutdown %s: %v", c.names[i], err)
	}
}

func (c *testCluster) live() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitConverged waits until every live node's ring holds want members.
func (c *testCluster) waitConverged(want int) {
	c.t.Helper()
	testutil.WaitFor(c.t, 20*time.Second, func() bool {
		for _, n := range c.live() {
			if len(n.Ring().Members()) != want {
				return false
			}
		}
		return true
	}, fmt.Sprintf("every ring to hold %d members", want))
}

func (c *testCluster) get(n *Node, path string) (testutil.Reply, error) {
	return testutil.Do(c.client, fasthttp.MethodGet, "http://"+n.Addr()+path, nil)
}

func (c *testCluster) originRequests() int64 { return c.origin.srv.Requests() }

// metric reads one series from node n's admin /metrics (0 when absent).
func (c *testCluster) metric(n *Node, series string) float64 {
	c.t.Helper()
	r, err := testutil.Do(c.client, "GET", "http://"+n.AdminAddr()+"/metrics", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	v, _ := testutil.MetricValue(r.Body, series)
	return v
}

func TestClusterDiscoversAndFetchesEachKeyOnce(t *testing.T) {
	c := startCluster(t, 3, nil)
	// Every node sees the same ring, built from one --join each.
	owners := map[string]int{}
	for i := range 30 {
		key := []byte(fmt.Sprintf("site.test/k%d?cc=max-age=300", i))
		var first string
		for _, n := range c.live() {
			o, _ := n.Ring().Owner(key)
			if first == "" {
				first = o.Name
			} else if o.Name != first {
				t.Fatalf("nodes disagree on the owner of %s", key)
			}
		}
		owners[first]++
	}
	if len(owners) != 3 {
		t.Fatalf("30 keys spread over %d owners, want 3: %v", len(owners), owners)
	}
	// Whichever node is asked, each key reaches the origin once.
	for i := range 30 {
		path := fmt.Sprintf("/k%d?cc=max-age=300", i)
		for j, n := range c.live() {
			r, err := c.get(n, path)
			if err != nil || r.Status != 200 {
				t.Fatalf("GET %s from node %d: %v %d", path, j, err, r.Status)
			}
			if cs := r.CacheStatus(); strings.Contains(cs, "detail=peer") && !strings.Contains(cs, ", ") {
				t.Fatalf("a forwarded answer must carry both hops: %q", cs)
			}
		}
	}
	if got := c.originRequests(); got != 30 {
		t.Fatalf("origin requests = %d, want 30 (one per key)", got)
	}
	// The metrics say so too.
	r, err := testutil.Do(c.client, "GET", "http://"+c.live()[0].AdminAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	for series, atLeast := range map[string]float64{
		"ringcache_cluster_members":                                  3,
		`ringcache_requests_total{outcome="forwarded"}`:              1,
		`ringcache_cluster_member_events_total{type="join"}`:         2,
		"ringcache_cluster_ring_rebuilds_total":                      1,
		`ringcache_peer_request_duration_seconds_count{result="ok"}`: 1,
	} {
		if v, ok := testutil.MetricValue(r.Body, series); !ok || v < atLeast {
			t.Errorf("%s = %v (present %v), want >= %v", series, v, ok, atLeast)
		}
	}
}

func TestClusterConcurrentMissesOneOriginRequest(t *testing.T) {
	c := startCluster(t, 3, nil)
	const clients = 60
	var wg sync.WaitGroup
	var failures atomic.Int64
	var mu sync.Mutex
	statuses := map[string]int{} // node: Cache-Status, to tell who fetched
	nodes := c.live()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[i%len(nodes)]
			r, err := c.get(n, "/herd?delay=400ms&cc=max-age=60")
			if err != nil || r.Status != 200 {
				failures.Add(1)
				return
			}
			mu.Lock()
			statuses[n.Name()+": "+r.CacheStatus()]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d requests failed", failures.Load())
	}
	if got := c.originRequests(); got != 1 {
		t.Errorf("origin requests = %d, want 1 for %d concurrent misses on 3 nodes", got, clients)
		for s, n := range statuses {
			t.Logf("%2d× %s", n, s)
		}
		for _, n := range nodes {
			t.Logf("%s: peer fallbacks %v", n.Name(), c.metric(n, "ringcache_peer_fallbacks_total"))
		}
	}
}

// TestClusterUnsafeRequestDropsHotCopies: a POST sent to one member
// reaches the owner, and the hot copy a third member keeps of the URL is
// dropped by the announcement that follows, not left for its hot TTL.
func TestClusterUnsafeRequestDropsHotCopies(t *testing.T) {
	c := startCluster(t, 3, func(cfg *config.Config) { cfg.HotCacheSize = 1 << 20 })
	n0, n2 := c.nodes[0], c.nodes[2]
	var path string
	for i := range 200 {
		key := []byte(fmt.Sprintf("site.test/doc%d?cc=max-age%%3D300", i))
		if o, _ := n0.Ring().Owner(key); o.Name == "n1" {
			path = fmt.Sprintf("/doc%d?cc=max-age%%3D300", i)
			break
		}
	}
	if path == "" {
		t.Fatal("no key owned by n1")
	}
	// n0 forwards to n1 and, sampling, soon keeps a hot copy.
	testutil.WaitFor(t, 10*time.Second, func() bool {
		r, err := c.get(n0, path)
		return err == nil && strings.Contains(r.CacheStatus(), "detail=hot")
	}, "a hot copy on n0")

	r, err := testutil.Do(c.client, "POST", "http://"+n2.Addr()+path, []byte("x=1"))
	if err != nil || r.Status != 200 {
		t.Fatalf("POST via n2: %v %d", err, r.Status)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		return c.metric(n2, `ringcache_invalidation_announcements_total{result="sent"}`) >= 1
	}, "n2 to announce the invalidation")
	if got := c.metric(n0, `ringcache_purges_total{kind="keys"}`); got < 1 {
		t.Fatalf("n0 applied %v announcements", got)
	}
	if r, err := c.get(n0, path); err != nil || strings.Contains(r.CacheStatus(), "detail=hot") {
		t.Fatalf("n0 after the POST: %v %q", err, r.CacheStatus())
	}
}

// TestClusterPeerTLS: with peer TLS, members forward, look up and hand off
// over mutual TLS on peer_listen, and the peer port refuses plain HTTP.
func TestClusterPeerTLS(t *testing.T) {
	certs := testutil.Certs(t, t.TempDir(), "n0", "n1", "n2")
	next := 0
	c := startCluster(t, 2, func(cfg *config.Config) {
		f := certs[fmt.Sprintf("n%d", next)]
		next++
		cfg.PeerListen = "127.0.0.1:0"
		cfg.PeerTLSCert, cfg.PeerTLSKey, cfg.PeerTLSCA = f.Cert, f.Key, f.CA
		cfg.Replicas = 1 // with two copies on two members nothing is forwarded
	})
	n0, n1 := c.nodes[0], c.nodes[1]
	var paths []string
	for i := 0; len(paths) < 20 && i < 1000; i++ {
		key := []byte(fmt.Sprintf("site.test/tls%d?cc=max-age%%3D300", i))
		if o, _ := n0.Ring().Owner(key); o.Name == "n1" {
			paths = append(paths, fmt.Sprintf("/tls%d?cc=max-age%%3D300", i))
		}
	}
	// n0's peer set follows the ring a moment later: wait for a forward.
	testutil.WaitFor(t, 10*time.Second, func() bool {
		r, err := c.get(n0, paths[0])
		return err == nil && strings.Contains(r.CacheStatus(), "detail=peer")
	}, "n0 to forward")
	for _, path := range paths {
		r, err := c.get(n0, path)
		if err != nil || r.Status != 200 || !strings.HasPrefix(r.CacheStatus(), "n1; ") {
			t.Fatalf("GET %s via n0: %v %d %q", path, err, r.Status, r.CacheStatus())
		}
	}
	if got := c.originRequests(); got != int64(len(paths)) {
		t.Fatalf("origin requests %d, want %d", got, len(paths))
	}
	// SIGHUP re-reads the files; a broken file keeps the current ones.
	if applied, _ := n0.Reload(n0.Config()); !slices.Contains(applied, "peer_tls_files") {
		t.Fatalf("reload applied %v; want peer_tls_files", applied)
	}
	if err := os.WriteFile(certs["n0"].Cert, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if applied, _ := n0.Reload(n0.Config()); slices.Contains(applied, "peer_tls_files") {
		t.Fatal("a broken certificate file was reported as reloaded")
	}
	if r, err := c.get(n0, paths[0]); err != nil || !strings.HasPrefix(r.CacheStatus(), "n1; hit") {
		t.Fatalf("forwarding after a failed reload: %v %q", err, r.CacheStatus())
	}
	// Plain HTTP on the peer port gets no answer.
	peerAddr := n1.PeerAddr()
	if r, err := testutil.Do(c.client, "GET", "http://"+peerAddr+"/__ringcache/entry?key=eA", nil); err == nil {
		t.Fatalf("plain HTTP to the TLS peer port answered %d", r.Status)
	}
	// A graceful leave hands n1's entries to n0 over TLS: no refetch.
	c.stop(1, true)
	c.waitConverged(1)
	for _, path := range paths {
		if r, err := c.get(n0, path); err != nil || !strings.Contains(r.CacheStatus(), "hit") {
			t.Fatalf("GET %s after n1 left: %v %q", path, err, r.CacheStatus())
		}
	}
	if got := c.originRequests(); got != int64(len(paths)) {
		t.Fatalf("origin requests after the handoff %d, want %d", got, len(paths))
	}
}

func TestClusterForgedPeerRequestRefused(t *testing.T) {
	c := startCluster(t, 2, nil)
	n := c.live()[0]
	for _, hdr := range [][]string{
		{cluster.HeaderForwarded, "n1"},
		{cluster.HeaderForwarded, "n1", cluster.HeaderAuth, "n1:1:AAAA"},
	} {
		r, err := testutil.Do(c.client, "GET", "http://"+n.Addr()+"/x?cc=max-age=60", nil, hdr...)
		if err != nil || r.Status != 403 {
			t.Fatalf("forged forward %v answered %d %v, want 403", hdr, r.Status, err)
		}
	}
	r, err := testutil.Do(c.client, "GET", "http://"+n.Addr()+cluster.PathPrefix+"entry?key=eA", nil)
	if err != nil || r.Status != 403 {
		t.Fatalf("peer endpoint in plain HTTP answered %d %v, want 403", r.Status, err)
	}
	if got := c.originRequests(); got != 0 {
		t.Fatalf("refused requests reached the origin %d times", got)
	}
}

// TestClusterStrangerCannotJoin is the review's critical attack: a host
// that reaches the gossip port of a cluster configured without gossip_key
// (only the peer secret, as the README's examples do) runs a plain serf
// agent, asks to join and advertises a peer address of its own. It must
// not become a member, so it never owns keys nor receives users' requests.
func TestClusterStrangerCannotJoin(t *testing.T) {
	c := startCluster(t, 2, nil)
	conf := serf.DefaultConfig()
	conf.NodeName = "stranger"
	conf.Tags = map[string]string{cluster.PeerTag: "127.0.0.1:1"}
	conf.MemberlistConfig.BindAddr = "127.0.0.1"
	conf.MemberlistConfig.BindPort = 0
	conf.Logger = log.New(io.Discard, "", 0)
	conf.MemberlistConfig.Logger = conf.Logger
	clustertest.FastTimers(conf)
	x, err := serf.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = x.Shutdown() }()
	if n, err := x.Join([]string{c.live()[0].GossipAddr()}, true); err == nil {
		t.Fatalf("the stranger's join reached %d member(s)", n)
	}
	for _, n := range c.live() {
		for _, m := range n.Ring().Members() {
			if m.Name == "stranger" {
				t.Fatalf("%s's ring holds the stranger", n.Name())
			}
		}
	}
}

// TestClusterReplayedPeerRequestRefused: a member's request, correctly
// signed with the peer secret (as one captured from the wire of an older
// release would be), replayed in plain HTTP to a node's client port with a
// header of the attacker's choosing, is refused: only the peer listener's
// mutual TLS makes a member, so nothing an attacker sends is trusted as
// forwarded, stored under another authority, or served.
func TestClusterReplayedPeerRequestRefused(t *testing.T) {
	c := startCluster(t, 2, nil)
	n := c.live()[0]
	signer, err := cluster.NewSigner("n1", []byte(n.Config().PeerSecret))
	if err != nil {
		t.Fatal(err)
	}
	// Signed exactly as a member signs (peer.Forward), then sent on a raw
	// socket to the client port.
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetRequestURI("/replayed?cc=max-age=600")
	req.Header.SetHost("site.test")
	signer.Sign(req)
	if _, ok := signer.Verify(req); !ok {
		t.Fatal("the test's signature does not verify")
	}
	req.Header.Set("X-Forwarded-Host", "evil.example")
	conn, err := net.DialTimeout("tcp", n.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	bw := bufio.NewWriter(conn)
	if err := req.Write(bw); err != nil || bw.Flush() != nil {
		t.Fatalf("writing the replay: %v", err)
	}
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 403 || string(resp.Header.Peek(cluster.HeaderError)) != "1" {
		t.Fatalf("replayed signed request answered %d (%q)", resp.StatusCode(), resp.Header.Peek("Cache-Status"))
	}
	if got := c.originRequests(); got != 0 {
		t.Fatalf("the replay reached the origin %d times", got)
	}
}

// steadyLoad requests keys from the given nodes until stop closes and
// reports how many requests failed (transport errors or non-200).
func steadyLoad(c *testCluster, nodes []*Node, keys int, stop <-chan struct{}) (errs *atomic.Int64, total *atomic.Int64, done *sync.WaitGroup) {
	errs, total, done = new(atomic.Int64), new(atomic.Int64), new(sync.WaitGroup)
	for w := range 4 {
		done.Add(1)
		go func() {
			defer done.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := c.get(nodes[i%len(nodes)], fmt.Sprintf("/load%d?cc=max-age=300", i%keys))
				total.Add(1)
				if err != nil || r.Status != 200 {
					errs.Add(1)
					c.t.Logf("request failed: %v %d %s", err, r.Status, r.CacheStatus())
				}
			}
		}()
	}
	return errs, total, done
}

func TestClusterOwnerCrashNoClientErrors(t *testing.T) {
	c := startCluster(t, 3, nil)
	survivors := c.live()[:2]
	stop := make(chan struct{})
	errs, total, done := steadyLoad(c, survivors, 50, stop)
	testutil.WaitFor(t, 10*time.Second, func() bool { return total.Load() > 200 }, "load to warm up")
	c.stop(2, false) // the owner of about a third of the keys dies
	before := total.Load()
	testutil.WaitFor(t, 20*time.Second, func() bool {
		return total.Load() > before+300 && len(survivors[0].Ring().Members()) == 2
	}, "load to go on and the ring to drop the dead node")
	close(stop)
	done.Wait()
	if errs.Load() != 0 {
		t.Fatalf("%d of %d client requests failed while a node died", errs.Load(), total.Load())
	}
}

func TestClusterJoinUnderLoad(t *testing.T) {
	c := startCluster(t, 3, nil)
	stop := make(chan struct{})
	errs, total, done := steadyLoad(c, c.live(), 50, stop)
	testutil.WaitFor(t, 10*time.Second, func() bool { return total.Load() > 200 }, "load to warm up")
	d := c.add() // nobody restarts
	c.waitConverged(4)
	before := total.Load()
	testutil.WaitFor(t, 20*time.Second, func() bool { return total.Load() > before+300 }, "load to go on")
	close(stop)
	done.Wait()
	if errs.Load() != 0 {
		t.Fatalf("%d of %d client requests failed while a node joined", errs.Load(), total.Load())
	}
	if owned := cluster.Shares(d.Ring(), 0)[d.Name()]; owned < 0.15 {
		t.Fatalf("the new node owns %.2f of the key space", owned)
	}
}

// warm requests every key once, spread over the nodes, in parallel.
func (c *testCluster) requestAll(keys int, nodes []*Node) (failed int64) {
	var wg sync.WaitGroup
	var bad atomic.Int64
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += workers {
				r, err := c.get(nodes[i%len(nodes)], fmt.Sprintf("/obj/%d?cc=max-age=3600&size=256", i))
				if err != nil || r.Status != 200 {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return bad.Load()
}

// moved counts the keys whose owner differs between two rings: what a plain
// ring, without handoff or takeover, refetches from the origin.
func moved(keys int, before, after cluster.Ring) int {
	n := 0
	for i := range keys {
		k := []byte(fmt.Sprintf("site.test/obj/%d?cc=max-age=3600&size=256", i))
		a, _ := before.Owner(k)
		b, _ := after.Owner(k)
		if a.Name != b.Name {
			n++
		}
	}
	return n
}

// TestClusterLeastDataLoss: a warm three-node cluster holding 10,000 keys
// (3,000 under the race detector) goes through a membership change — a
// graceful leave (also under load), a join, a crash (Close: no leave, no
// handoff, as SIGKILL), a second crash after a join and re-replication, a
// rolling restart where each member comes back empty under its name — and
// then every key is read again. Target (issues 3 and 12): under 1% of the
// keys refetched from the origin, where a plain ring refetches every key
// whose owner changed.
func TestClusterLeastDataLoss(t *testing.T) {
	keys := 10000
	if testing.Short() || nodeRaceEnabled {
		keys = 3000 // the rolling restart; the race detector is slow
	}
	for _, change := range []string{"graceful leave", "graceful leave under load", "join", "crash", "second crash", "rolling restart"} {
		t.Run(change, func(t *testing.T) {
			c := startCluster(t, 3, nil)
			if bad := c.requestAll(keys, c.live()); bad != 0 {
				t.Fatalf("warming: %d failures", bad)
			}
			if got := c.originRequests(); got != int64(keys) {
				t.Fatalf("warming made %d origin requests, want %d", got, keys)
			}
			ringBefore := c.live()[0].Ring()
			base := c.originRequests()
			var stopLoad chan struct{}
			var loadDone sync.WaitGroup
			if change == "graceful leave under load" {
				// Clients keep asking the survivors for every key while the
				// node leaves: its keys must be handed over before the
				// others stop forwarding to it.
				stopLoad = make(chan struct{})
				survivors := c.live()[:2]
				loadDone.Add(1)
				go func() {
					defer loadDone.Done()
					for {
						select {
						case <-stopLoad:
							return
						default:
						}
						c.requestAll(keys/4, survivors)
					}
				}()
			}
			switch change {
			case "join":
				c.add()
				c.waitConverged(4)
			case "crash":
				// With two replicas (the default) every entry is on a
				// second member once its copy lands; then a crash loses
				// nothing.
				c.waitReplicated()
				c.stop(2, false)
				c.waitConverged(2)
			case "second crash":
				// A member joins, one crashes, and once the survivors have
				// re-replicated what lost a copy, another crashes.
				c.add()
				c.waitConverged(4)
				c.waitReplicated()
				c.stop(2, false)
				c.waitConverged(3)
				c.waitReplicated()
				c.stop(1, false)
				c.waitConverged(2)
			case "rolling restart":
				// Each member in turn leaves, comes back empty under its
				// name, and gets its keys back before the next goes.
				for i := range 3 {
					c.restart(i)
					c.waitConverged(3)
					c.waitReplicated()
				}
			default:
				c.stop(2, true) // hands its entries to their new owners
				c.waitConverged(2)
			}
			if stopLoad != nil {
				close(stopLoad)
				loadDone.Wait()
			}
			plain := moved(keys, ringBefore, c.live()[0].Ring())
			if change == "rolling restart" {
				plain = keys // every member came back empty once
			}
			if bad := c.requestAll(keys, c.live()); bad != 0 {
				t.Fatalf("after the %s: %d failures", change, bad)
			}
			refetched := c.originRequests() - base
			t.Logf("%s, %d keys: refetched %d from the origin (%.2f%%); a plain ring would refetch %d (%.1f%%)",
				change, keys, refetched, pct(refetched, keys), plain, pct(int64(plain), keys))
			if limit := int64(keys) / 100; refetched >= limit {
				t.Fatalf("refetched %d; want under %d (1%%)", refetched, limit)
			}
			if plain < keys/6 {
				t.Fatalf("the change moved only %d keys: nothing was measured", plain)
			}
		})
	}
}

// waitReplicated waits until every copy the live nodes queued for other
// members was delivered (or given up).
func (c *testCluster) waitReplicated() {
	c.t.Helper()
	testutil.WaitFor(c.t, 20*time.Second, func() bool {
		for _, n := range c.live() {
			r := n.Stats().Replicas
			if r.Members != len(n.Ring().Members()) || r.Rebalancing || r.Sent+r.Dropped < r.Queued {
				return false
			}
		}
		return true
	}, "replica copies to land")
}

func pct(n int64, of int) float64 { return 100 * float64(n) / float64(of) }

// TestClusterReplicaHit: a member holding a replica of a key another member
// owns answers it from the copy: no lookup at the owner, no origin request.
func TestClusterReplicaHit(t *testing.T) {
	// No hot cache: its sampled copies of the first, forwarded, round
	// would answer some keys before the replica is looked at.
	c := startCluster(t, 3, func(cfg *config.Config) { cfg.HotCacheSize = 0 })
	n0 := c.nodes[0]
	var paths []string
	var held [cluster.MaxReplicas]cluster.Node
	for i := 0; len(paths) < 10 && i < 1000; i++ {
		p := fmt.Sprintf("/replica-%d?cc=max-age=600", i)
		h := n0.Ring().Owners(held[:0], []byte("site.test"+p), 2)
		if len(h) == 2 && h[0].Name != "n0" && h[1].Name == "n0" {
			paths = append(paths, p)
		}
	}
	if len(paths) < 10 {
		t.Fatalf("n0 is the second holder of only %d of 1,000 keys", len(paths))
	}
	for _, p := range paths { // filled at their owners, through n0
		if r, err := c.get(n0, p); err != nil || r.Status != 200 {
			t.Fatalf("GET %s: %v %d", p, err, r.Status)
		}
	}
	c.waitReplicated()
	before := c.originRequests()
	for _, p := range paths {
		r, err := c.get(n0, p)
		if err != nil || r.Status != 200 || !strings.HasPrefix(r.CacheStatus(), "n0; hit; ") || !strings.Contains(r.CacheStatus(), "detail=replica") {
			t.Fatalf("GET %s via n0, its replica holder: %v %d %q", p, err, r.Status, r.CacheStatus())
		}
	}
	if got := c.originRequests() - before; got != 0 {
		t.Fatalf("%d origin requests for replica hits", got)
	}
}
