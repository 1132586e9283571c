package main

// Cluster faults with real processes: a demo origin and several `ringcache
// serve` children gossiping on loopback with serf's default timers, as in
// production. Unlike cluster_test.go, a crash here is a real SIGKILL (no
// leave, sockets torn down by the kernel) and a leave is a real SIGTERM.

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/node"

	"github.com/valyala/fasthttp"
)

// procWait bounds every wait on the processes: generous, for a loaded
// 2-core machine; the waits normally end in a few seconds.
const procWait = 30 * time.Second

// procNode is one `ringcache serve` child and the addresses it logged.
type procNode struct {
	*child
	name, addr, admin, gossip string
}

func (n *procNode) pid() int { return n.cmd.Process.Pid }

// terminate sends n SIGTERM and waits for it to exit with status 0 (a
// graceful leave) within procWait.
func (n *procNode) terminate(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", n.name, err)
	}
	select {
	case <-n.exited:
		if n.err != nil {
			t.Fatalf("%s exited with %v, want status 0; log:\n%s", n.name, n.err, n.stderr.String())
		}
	case <-time.After(procWait):
		t.Fatalf("%s did not exit within %s of SIGTERM; log:\n%s", n.name, procWait, n.stderr.String())
	}
}

// procCluster is a demo origin process and the serve processes in front of it.
type procCluster struct {
	t      *testing.T
	bin    string
	origin string // host:port of the origin process
	client *fasthttp.Client
	nodes  []*procNode
	extra  []string // more serve flags, for every node
}

// startProcCluster builds the binary and starts an origin and n nodes; the
// others join the first. extra flags go to every serve process. It returns
// once every node sees n alive members.
func startProcCluster(t *testing.T, n int, extra ...string) *procCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs a cluster of processes")
	}
	c := &procCluster{
		t: t, bin: buildBinary(t),
		client: &fasthttp.Client{ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second, MaxConnsPerHost: 256},
		extra:  extra,
	}
	t.Cleanup(c.client.CloseIdleConnections)
	orig := startChild(t, c.bin, "origin", "--listen", "127.0.0.1:0")
	c.origin = waitMatch(t, orig.stderr, regexp.MustCompile(`msg="demo origin serving" listen=(\S+)`), "the origin process to log its address")
	for range n {
		c.add()
	}
	c.waitAlive(c.nodes, n)
	return c
}

// add starts one more serve process; all but the first join the first.
func (c *procCluster) add() *procNode {
	c.t.Helper()
	join := ""
	if len(c.nodes) > 0 {
		join = c.nodes[0].gossip
	}
	n := c.start(fmt.Sprintf("p%d", len(c.nodes)+1), "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", join)
	c.nodes = append(c.nodes, n)
	return n
}

// start starts a serve process named name on the given addresses (port 0:
// any free one), joining the member at gossip address join unless it is
// "". It does not add the node to c.nodes.
func (c *procCluster) start(name, listen, admin, gossip, join string) *procNode {
	c.t.Helper()
	args := []string{"serve", "--node-name", name,
		"--listen", listen, "--admin", admin, "--gossip", gossip,
		"--origin", "http://" + c.origin, "--peer-secret", "process-cluster-secret-0123456789",
		"--key-host", "site.test", "--cache-size", "64MiB", "--shutdown-timeout", "20s"}
	args = append(args, c.extra...)
	if join != "" {
		args = append(args, "--join", join)
	}
	ch := startChild(c.t, c.bin, args...)
	// The startup line carries every address the node ended up with.
	logged := func(field string) string {
		re := regexp.MustCompile(`msg="ringcache serving" (?:.* )?` + field + `=(\S+)`)
		return waitMatch(c.t, ch.stderr, re, "serve process "+name+" to log its "+field+" address")
	}
	return &procNode{child: ch, name: name, addr: logged("listen"), admin: logged("admin"), gossip: logged("gossip")}
}

// view fetches a node's GET /cluster.
func (c *procCluster) view(n *procNode) (node.ClusterView, error) {
	var v node.ClusterView
	r, err := testutil.Do(c.client, fasthttp.MethodGet, "http://"+n.admin+"/cluster", nil)
	if err != nil {
		return v, err
	}
	if r.Status != fasthttp.StatusOK {
		return v, fmt.Errorf("GET /cluster on %s: status %d", n.name, r.Status)
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		return v, fmt.Errorf("GET /cluster on %s: %w", n.name, err)
	}
	return v, nil
}

// inRing counts the members a view gives a share of the ring: serf reports
// a member alive before the coalesced rebuild puts it in the ring.
func inRing(v node.ClusterView) int {
	k := 0
	for _, m := range v.Members {
		if m.Share > 0 {
			k++
		}
	}
	return k
}

// alive counts the members a view lists as alive.
func alive(v node.ClusterView) int {
	k := 0
	for _, m := range v.Members {
		if m.Status == "alive" {
			k++
		}
	}
	return k
}

// waitAlive waits until each of nodes lists want alive members.
func (c *procCluster) waitAlive(nodes []*procNode, want int) {
	c.t.Helper()
	var last string
	c.waitFor(func() bool {
		for _, n := range nodes {
			v, err := c.view(n)
			if err != nil || alive(v) != want || inRing(v) != want {
				last = fmt.Sprintf("%s: %+v %v", n.name, v.Members, err)
				return false
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("every node to list %d alive members, all in its ring (last: %s)", want, last)
	})
}

// waitGone waits until on's /cluster no longer lists gone as alive and its
// ring gives gone no share of the keys, so on stops forwarding to it.
func (c *procCluster) waitGone(on, gone *procNode) string {
	c.t.Helper()
	var status string
	c.waitFor(func() bool {
		v, err := c.view(on)
		if err != nil {
			return false
		}
		status = "absent"
		for _, m := range v.Members {
			if m.Name == gone.name {
				status = m.Status
				if m.Status == "alive" || m.Share > 0 {
					return false
				}
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("%s to drop %s from the alive members and the ring (status %s)", on.name, gone.name, status)
	})
	return status
}

// waitFor is waitFor with procWait; on timeout it shows every child's log
// and what, which may describe the last state seen.
func (c *procCluster) waitFor(cond func() bool, what func() string) {
	c.t.Helper()
	deadline := time.Now().Add(procWait)
	for !cond() {
		if time.Now().After(deadline) {
			c.dumpLogs()
			c.t.Fatalf("timed out after %s waiting for %s", procWait, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *procCluster) dumpLogs() {
	for _, n := range c.nodes {
		c.t.Logf("--- %s (pid %d) log:\n%s", n.name, n.pid(), n.stderr.String())
	}
}

// originRequests reads the origin process's request counter.
func (c *procCluster) originRequests() int64 {
	c.t.Helper()
	r, err := testutil.Do(c.client, fasthttp.MethodGet, "http://"+c.origin+"/__origin/stats", nil)
	if err != nil || r.Status != fasthttp.StatusOK {
		c.t.Fatalf("origin stats: %v (status %d)", err, r.Status)
	}
	var st struct {
		Requests *int64 `json:"requests"`
	}
	if err := json.Unmarshal(r.Body, &st); err != nil || st.Requests == nil {
		c.t.Fatalf("origin stats %q: %v", r.Body, err)
	}
	return *st.Requests
}

// procLoad is steady client load: workers cycle through keys on the
// given nodes until stop, counting every transport error or non-200.
type procLoad struct {
	stop        chan struct{}
	wg          sync.WaitGroup
	total, errs atomic.Int64
}

func (c *procCluster) startLoad(nodes []*procNode, keys int) *procLoad {
	l := &procLoad{stop: make(chan struct{})}
	const workers = 4
	const maxPerWorker = 1_000_000 // bound; stop ends it long before
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; i < maxPerWorker; i += workers {
				select {
				case <-l.stop:
					return
				default:
				}
				n := nodes[i%len(nodes)]
				r, err := testutil.Do(c.client, fasthttp.MethodGet, fmt.Sprintf("http://%s/load%d?cc=max-age=300", n.addr, i%keys), nil)
				l.total.Add(1)
				if err != nil || r.Status != fasthttp.StatusOK {
					if l.errs.Add(1) <= 10 {
						c.t.Logf("client error via %s: %v status %d Cache-Status %q", n.name, err, r.Status, r.CacheStatus())
					}
				}
			}
		}()
	}
	// Registered after the children's cleanups, so it runs before them:
	// no request is left in flight against a killed process.
	c.t.Cleanup(l.end)
	return l
}

// waitMore waits until n more requests than now have completed.
func (c *procCluster) waitMore(l *procLoad, n int64, what string) {
	c.t.Helper()
	target := l.total.Load() + n
	c.waitFor(func() bool { return l.total.Load() >= target }, func() string {
		return fmt.Sprintf("%s (%d of %d requests)", what, l.total.Load(), target)
	})
}

// end stops the load and waits for the workers; idempotent.
func (l *procLoad) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// startTime identifies one incarnation of a process: the kernel's start
// time of pid (clock ticks since boot, /proc/<pid>/stat field 22), or ""
// when /proc does not have it.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// metric reads one series from a node's /metrics.
func (c *procCluster) metric(n *procNode, series string) float64 {
	c.t.Helper()
	r, err := testutil.Do(c.client, fasthttp.MethodGet, "http://"+n.admin+"/metrics", nil)
	if err != nil || r.Status != fasthttp.StatusOK {
		c.t.Fatalf("%s /metrics: %v (status %d)", n.name, err, r.Status)
	}
	v, ok := testutil.MetricValue(r.Body, series)
	if !ok {
		c.t.Fatalf("%s /metrics lacks %s", n.name, series)
	}
	return v
}

// processStart is the process_start_time_seconds a node's /metrics reports:
// which incarnation answers on its admin address.
func (c *procCluster) processStart(n *procNode) float64 {
	return c.metric(n, "process_start_time_seconds")
}

// share is what node on's ring gives of the key space to the member named;
// 0 when on does not answer (polls retry, checks fail on it).
func (c *procCluster) share(on *procNode, name string) float64 {
	c.t.Helper()
	v, err := c.view(on)
	if err != nil {
		c.t.Logf("share of %s: %v", name, err)
		return 0
	}
	for _, m := range v.Members {
		if m.Name == name {
			return m.Share
		}
	}
	return 0
}

func TestProcessClusterSIGKILL(t *testing.T) {
	// No hot cache: the survivors keep forwarding the dead node's keys to
	// it until gossip declares it failed, instead of serving local copies
	// through most of that window. One copy of each key: the path this
	// test watches is the dead owner's keys falling back to the origin
	// (with two, the survivors answer them from their copies; see
	// process_replicas_test.go).
	c := startProcCluster(t, 3, "--hot-cache-size", "0", "--replicas", "1")
	const keys = 60
	const fallbacks = "ringcache_peer_fallbacks_total"
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	if sh := c.share(n1, n3.name); sh < 0.15 {
		t.Fatalf("%s owns only %.2f of the key space: its death would measure nothing", n3.name, sh)
	}

	load := c.startLoad([]*procNode{n1, n2}, keys)
	c.waitMore(load, 400, "the load to warm the cache")
	warm := c.originRequests()
	if err := n3.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", n3.name, err)
	}
	killed := time.Now()
	select {
	case <-n3.exited:
	case <-time.After(procWait):
		t.Fatalf("%s did not die of SIGKILL", n3.name)
	}
	status := c.waitGone(n1, n3)
	t.Logf("%s shows %s as %s after %s", n1.name, n3.name, status, time.Since(killed).Round(time.Millisecond))
	c.waitMore(load, 400, "the load to go on after the ring dropped the dead node")
	load.end()

	got := c.originRequests()
	fell := c.metric(n1, fallbacks) + c.metric(n2, fallbacks)
	t.Logf("%d client requests, %d failed; origin requests: %d when warm, %d at the end; %v peer fallbacks",
		load.total.Load(), load.errs.Load(), warm, got, fell)
	if fell == 0 {
		t.Errorf("no request fell back from the dead owner: the test did not exercise the crash")
	}
	if e := load.errs.Load(); e != 0 {
		t.Errorf("%d of %d client requests failed while %s was killed", e, load.total.Load(), n3.name)
	}
	if warm < keys {
		t.Errorf("origin saw %d requests while warming %d keys: the load did not warm the cache", warm, keys)
	}
	// Warming costs 60; the dead node's keys (about a third) may be fetched
	// again by each survivor. Far more means the survivors kept going to
	// the origin instead of caching what they fetched.
	if got >= 200 {
		t.Errorf("origin requests = %d, want < 200 for %d keys: the survivors did not keep the dead node's keys", got, keys)
	}
}

func TestProcessClusterJoinUnderLoad(t *testing.T) {
	c := startProcCluster(t, 3)
	originals := append([]*procNode(nil), c.nodes...)
	type incarnation struct {
		stat  string
		start float64
	}
	before := make([]incarnation, len(originals))
	for i, n := range originals {
		before[i] = incarnation{startTime(n.pid()), c.processStart(n)}
	}

	load := c.startLoad(originals, 60)
	c.waitMore(load, 300, "the load to warm the cache")
	d := c.add()
	c.waitAlive(c.nodes, 4)
	// Alive is serf's view; the ring follows after a coalescing delay.
	// Wait until every original node routes keys to the newcomer.
	c.waitFor(func() bool {
		for _, n := range originals {
			if c.share(n, d.name) < 0.1 {
				return false
			}
		}
		return true
	}, func() string { return "every original node's ring to give " + d.name + " a share" })
	c.waitMore(load, 300, "the load to go on after the join")
	load.end()

	t.Logf("%d client requests, %d failed; origin requests %d", load.total.Load(), load.errs.Load(), c.originRequests())
	if e := load.errs.Load(); e != 0 {
		t.Errorf("%d of %d client requests failed while %s joined", e, load.total.Load(), d.name)
	}
	for i, n := range originals {
		select {
		case <-n.exited:
			t.Errorf("%s (pid %d) exited during the join: %v\n%s", n.name, n.pid(), n.err, n.stderr.String())
			continue
		default:
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", n.pid())); before[i].stat != "" && err != nil {
			t.Errorf("%s: /proc/%d: %v", n.name, n.pid(), err)
		}
		if st := startTime(n.pid()); st != before[i].stat {
			t.Errorf("%s: pid %d start time %q, was %q: another process", n.name, n.pid(), st, before[i].stat)
		}
		if s := c.processStart(n); s != before[i].start {
			t.Errorf("%s: process_start_time_seconds %v, was %v: the node restarted", n.name, s, before[i].start)
		}
		if k := strings.Count(n.stderr.String(), `msg="ringcache serving"`); k != 1 {
			t.Errorf("%s logged %d startups, want 1", n.name, k)
		}
	}
}

func TestProcessClusterGracefulLeaveHandsOff(t *testing.T) {
	c := startProcCluster(t, 3)
	const keys = 300
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	// requestAll asks for every key, spread over nodes, from a few workers.
	requestAll := func(nodes []*procNode) (failed int64) {
		var wg sync.WaitGroup
		var bad atomic.Int64
		const workers = 4
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < keys; i += workers {
					n := nodes[i%len(nodes)]
					r, err := testutil.Do(c.client, fasthttp.MethodGet, fmt.Sprintf("http://%s/obj/%d?cc=max-age=3600", n.addr, i), nil)
					if err != nil || r.Status != fasthttp.StatusOK {
						if bad.Add(1) <= 10 {
							t.Logf("GET /obj/%d via %s: %v status %d", i, n.name, err, r.Status)
						}
					}
				}
			}()
		}
		wg.Wait()
		return bad.Load()
	}

	if bad := requestAll([]*procNode{n1}); bad != 0 {
		t.Fatalf("warming through %s: %d failures", n1.name, bad)
	}
	base := c.originRequests()
	if base != keys {
		t.Fatalf("warming made %d origin requests, want %d", base, keys)
	}
	if sh := c.share(n1, n3.name); sh < 0.15 {
		t.Fatalf("%s owns only %.2f of the key space: the leave would measure nothing", n3.name, sh)
	}

	n3.terminate(t)
	if m := regexp.MustCompile(`msg="handed off entries".*`).FindString(n3.stderr.String()); m != "" {
		t.Logf("%s: %s", n3.name, m)
	}
	for _, n := range []*procNode{n1, n2} {
		c.waitGone(n, n3)
	}

	if bad := requestAll([]*procNode{n1, n2}); bad != 0 {
		t.Fatalf("after the leave: %d failures", bad)
	}
	refetched := c.originRequests() - base
	t.Logf("after %s left, %d of %d keys were refetched from the origin", n3.name, refetched, keys)
	if limit := int64(keys) * 2 / 100; refetched >= limit {
		t.Errorf("refetched %d keys after a graceful leave; want under %d (2%%): the handoff did not move %s's entries", refetched, limit, n3.name)
	}
}
