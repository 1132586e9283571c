package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringcache/ringcache/bench/report"
	"github.com/valyala/fasthttp"
)

// Scenario 12 (issue 12): what clients see when one member of a
// three-node cluster crashes (SIGKILL) or stops answering (SIGSTOP) while
// they read warm keys through the other two. The load generator reports
// one histogram per run, and these figures need the requests before,
// during and after a fault told apart, so the clients here run in the
// driver, which records every request and pins itself to the client CPU
// while they run.

// failoverURI is the scenario's keys: 1 KiB, fresh for an hour.
const failoverURI = "/failover/{k}?size=1024&cc=max-age=3600"

const (
	failoverSize = 1024
	// failoverSteady is how long the load runs before a fault: the
	// steady state the fault is compared with.
	failoverSteady = 5 * time.Second
	// failoverAfter is how long the load runs after the cluster settled.
	failoverAfter = 3 * time.Second
	// failoverStop is how long the owner stays stopped (the 10 s).
	failoverStop = 10 * time.Second
	// failoverSettle bounds every wait for the cluster: serf declares a
	// dead member failed within seconds on loopback.
	failoverSettle = 60 * time.Second
	// slowBound is the bound on any request while an owner is
	// stopped.
	slowBound = 250 * time.Millisecond
)

// failover runs scenario 12.
func (e *env) failover(ctx context.Context, r *results) {
	sec := r.section("12. Failover: a member killed or stopped under load")
	n := e.opts.failoverKeys
	clients := e.opts.failoverClients
	sec.printf("Three nodes (default `replicas: 2`, hot copies off, `--peer-timeout 2s`, the default) hold %s warm keys (`%s`, swept once through the cluster; every copy delivered before the fault). %d clients (closed loop, keep-alive, uniform keys) read them through two of them while the third fails; their requests run in the driver, pinned to CPU %s while they run, and each is timed; \"driver stalled\" is the longest the driver itself went unscheduled in a window (a 5 ms timer waking %s or more late): then the machine's other work, not the cluster, delayed requests. A request fails on a transport error, a status other than 200 or a body other than 1 KiB.\n\n",
		fmtInt(float64(n)), failoverURI, clients, e.opts.clientCPU, fmtMs(stallFloor))
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		r.problem("failover: %s", msg)
		sec.printf("FAILED: %s\n\n", msg)
	}
	nodes, cShare, err := e.failoverCluster(ctx, []string{"a", "b", "c"})
	defer func() { stopNodes(nodes) }()
	if err != nil {
		fail("%v", err)
		return
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	survivors := []*rcNode{a, b}

	// (a) SIGKILL.
	if err := e.originReset(ctx); err != nil {
		fail("%v", err)
		return
	}
	unpin, err := e.pinDriver()
	if err != nil {
		fail("%v", err)
		return
	}
	e.waitQuiet(ctx)
	others := e.othersMeter()
	load := startTimedLoad([]*rcNode{a, b}, n, clients, 1)
	pause(ctx, failoverSteady) // the steady state's measured window
	killed := load.now()
	if err := c.proc.stop(syscall.SIGKILL, 10*time.Second); err != nil && !isSignalled(err) {
		load.end()
		unpin()
		fail("SIGKILL c: %v", err)
		return
	}
	err = e.waitRing(ctx, survivors, []string{"a", "b"})
	converged := load.now()
	if err == nil {
		err = e.waitReplicated(ctx, survivors)
	}
	restored := load.now()
	if err == nil {
		pause(ctx, failoverAfter)
	}
	samples := load.end()
	othersPct := others()
	unpin()
	if err != nil {
		fail("after the SIGKILL: %v", err)
		return
	}
	duringLoad, err := e.originStats(ctx)
	if err != nil {
		fail("%v", err)
		return
	}
	read := e.load(ctx, loadArgs{targets: []string{a.addr, b.addr}, conns: clients, uri: failoverURI, keys: "sweep", n: n, size: failoverSize, deadline: 3 * time.Minute})
	if read.err != nil || read.res.Failed() {
		fail("reading every key through a and b: %v %s", read.err, read.res.FailureSummary())
		return
	}
	after, err := e.originStats(ctx)
	if err != nil {
		fail("%v", err)
		return
	}
	steady := load.window(samples, time.Second, killed) // the first second opens connections
	detect := load.window(samples, killed, converged)
	rerep := load.window(samples, converged, restored)
	whole := load.window(samples, killed, restored)
	settled := load.window(samples, restored, load.now()+time.Hour)
	kt := failoverTable()
	kt.Rows = append(kt.Rows,
		steady.row("steady state (before the kill)"),
		detect.row(fmt.Sprintf("SIGKILL → the ring drops c (%s)", fmtSec(converged-killed))),
		rerep.row(fmt.Sprintf("→ every copy restored (%s)", fmtSec(restored-converged))),
		whole.row("whole failover (kill → copies restored)"),
		settled.row("after"))
	refetched := after.Requests
	sec.printf("**(a) SIGKILL of c**, which owned %.0f%% of the key space. %s of %s keys (%.2f%%) were fetched from the origin again: %s while the clients ran, the rest when every key was read once more through a and b afterwards. The slowest request was sent %s after the kill. Other processes used %.0f%% of the CPUs during the load.\n\n%s\n%s",
		100*cShare, fmtInt(float64(refetched)), fmtInt(float64(n)), 100*float64(refetched)/float64(n), fmtInt(float64(duringLoad.Requests)), fmtSec(whole.maxAt-killed), othersPct, kt.Markdown(), load.slowest(5, killed, "after the kill"))
	r.verdicts = append(r.verdicts,
		verdict(refetched*100 < int64(n), fmt.Sprintf("failover, SIGKILL of one node of three with %s warm keys: %s refetched (%.2f%%; target under 1%%)", fmtInt(float64(n)), fmtInt(float64(refetched)), 100*float64(refetched)/float64(n))),
		verdict(whole.errs == 0, fmt.Sprintf("failover, SIGKILL: %d client errors of %s requests from the kill until the copies were restored (target 0)", whole.errs, fmtInt(float64(whole.n)))),
		verdict(whole.p99 <= 2*steady.p99, fmt.Sprintf("failover, SIGKILL: p99 %s from the kill until the copies were restored vs %s steady, %.2f× (target ≤ 2×)", fmtMs(whole.p99), fmtMs(steady.p99), float64(whole.p99)/float64(max(steady.p99, 1)))))
	if whole.p99 > 2*steady.p99 {
		r.note("Failover after a SIGKILL: p99 %s vs %s steady (%.2f×); slowest %s.", fmtMs(whole.p99), fmtMs(steady.p99), float64(whole.p99)/float64(max(steady.p99, 1)), fmtMs(whole.max))
	}
	panel := report.Panel{Title: fmt.Sprintf("Failover under load, %d clients: p99 latency (lower is better)", clients)}
	panel.Bars = append(panel.Bars,
		report.Bar{Label: "steady", Value: ms(steady.p99), Text: fmtMs(steady.p99), Color: "#9c9c9c"},
		report.Bar{Label: "SIGKILL c", Value: ms(whole.p99), Text: fmt.Sprintf("%s (max %s)", fmtMs(whole.p99), fmtMs(whole.max)), Color: colorOf("ringcache")})

	// (b) SIGSTOP, on a fresh cluster: after the kill, a and b hold a
	// copy of every key, and would answer all of them from their own
	// copies without asking the member stopped.
	if ctx.Err() != nil {
		return
	}
	stopNodes(nodes)
	nodes, fShare, err := e.failoverCluster(ctx, []string{"d", "e", "f"})
	if err != nil {
		fail("%v", err)
		return
	}
	d, ee, f := nodes[0], nodes[1], nodes[2]
	if err := e.originReset(ctx); err != nil {
		fail("%v", err)
		return
	}
	if unpin, err = e.pinDriver(); err != nil {
		fail("%v", err)
		return
	}
	e.waitQuiet(ctx)
	others = e.othersMeter()
	load = startTimedLoad([]*rcNode{d, ee}, n, clients, 2)
	watch := e.watchRing(ctx, load, d, "f")
	pause(ctx, failoverSteady)
	stopped := load.now()
	pid := f.proc.pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil { // the process started here, by PID
		load.end()
		watch.end()
		unpin()
		fail("SIGSTOP f: %v", err)
		return
	}
	pause(ctx, failoverStop) // the fault lasts this long: the scenario, not a wait
	contErr := syscall.Kill(pid, syscall.SIGCONT)
	resumed := load.now()
	if contErr == nil {
		if err = e.waitRing(ctx, nodes, []string{"d", "e", "f"}); err == nil {
			err = e.waitReplicated(ctx, nodes)
		}
	}
	back := load.now()
	if contErr == nil && err == nil {
		pause(ctx, failoverAfter)
	}
	samples = load.end()
	changes := watch.end()
	othersPct = others()
	unpin()
	if contErr != nil {
		fail("SIGCONT f: %v", contErr)
		return
	}
	if err != nil {
		fail("after SIGCONT: %v", err)
		return
	}
	stopStats, err := e.originStats(ctx)
	if err != nil {
		fail("%v", err)
		return
	}
	steady = load.window(samples, time.Second, stopped)
	paused := load.window(samples, stopped, resumed)
	rejoin := load.window(samples, resumed, back)
	since := load.window(samples, stopped, load.now()+time.Hour)
	st := failoverTable()
	st.Rows = append(st.Rows,
		steady.row("steady state (before SIGSTOP)"),
		paused.row("f stopped (10 s)"),
		rejoin.row(fmt.Sprintf("SIGCONT → f back in every ring, copies settled (%s)", fmtSec(back-resumed))),
		since.row("from SIGSTOP to the end"))
	ring := "d's ring kept f throughout"
	for _, ch := range changes {
		if !ch.in && ch.at >= stopped {
			ring = fmt.Sprintf("d's ring dropped f %s after SIGSTOP (serf declared it failed)", fmtSec(ch.at-stopped))
		}
		if ch.in && ch.at >= resumed {
			ring += fmt.Sprintf(" and took it back %s after SIGCONT", fmtSec(ch.at-resumed))
			break
		}
	}
	sec.printf("**(b) SIGSTOP of f for %s**, on a fresh cluster d, e, f warmed the same way (f owned %.0f%% of the key space), clients through d and e: f's process exists and its sockets accept connections, but it answers nothing; %s. The slowest request was sent %s after SIGSTOP. %s origin requests from SIGSTOP to the end. Other processes used %.0f%% of the CPUs during the load.\n\n%s\n%s",
		fmtSec(failoverStop), 100*fShare, ring, fmtSec(since.maxAt-stopped), fmtInt(float64(stopStats.Requests)), othersPct, st.Markdown(), load.slowest(5, stopped, "after SIGSTOP"))
	r.verdicts = append(r.verdicts,
		verdict(since.errs == 0, fmt.Sprintf("failover, SIGSTOP of the owner for %s: %d client errors of %s requests (target 0)", fmtSec(failoverStop), since.errs, fmtInt(float64(since.n)))),
		verdict(since.max < slowBound, fmt.Sprintf("failover, SIGSTOP: slowest request %s, %d over %s; p99 %s vs %s steady (target: none over %s)", fmtMs(since.max), since.over, fmtMs(slowBound), fmtMs(since.p99), fmtMs(steady.p99), fmtMs(slowBound))))
	if since.max >= slowBound {
		r.note("SIGSTOP of an owner: %d requests took %s or longer (slowest %s).", since.over, fmtMs(slowBound), fmtMs(since.max))
	}
	panel.Bars = append(panel.Bars, report.Bar{Label: "SIGSTOP f, 10 s", Value: ms(since.p99), Text: fmt.Sprintf("%s (max %s)", fmtMs(since.p99), fmtMs(since.max)), Color: colorOf("ringcache")})
	r.panels = append(r.panels, panel)
}

// failoverCluster starts a cluster of the named nodes, warms the
// scenario's keys through all of them (one origin request each) and waits
// until every copy landed. It returns the nodes (to stop, also on error)
// and the last one's share of the key space.
func (e *env) failoverCluster(ctx context.Context, names []string) ([]*rcNode, float64, error) {
	nodes, err := e.startCluster(ctx, names, nodeOpts{cacheSize: "256MiB", hotCache: "0"}, nil)
	if err != nil {
		return nodes, 0, err
	}
	if err := e.originReset(ctx); err != nil {
		return nodes, 0, err
	}
	n := e.opts.failoverKeys
	var targets []string
	for _, nd := range nodes {
		targets = append(targets, nd.addr)
	}
	warm := e.load(ctx, loadArgs{targets: targets, conns: 20, uri: failoverURI, keys: "sweep", n: n, size: failoverSize, deadline: 3 * time.Minute})
	if warm.err != nil || warm.res.Failed() {
		return nodes, 0, fmt.Errorf("warm-up sweep: %v %s", warm.err, warm.res.FailureSummary())
	}
	if st, err := e.originStats(ctx); err != nil || st.Requests != int64(n) {
		return nodes, 0, fmt.Errorf("warm-up sweep: the origin saw %d requests for %d keys (%v)", st.Requests, n, err)
	}
	if err := e.waitReplicated(ctx, nodes); err != nil {
		return nodes, 0, err
	}
	view, err := e.clusterOf(ctx, nodes[0])
	if err != nil {
		return nodes, 0, fmt.Errorf("cluster view: %w", err)
	}
	return nodes, view.alive()[names[len(names)-1]], nil
}

// othersMeter starts measuring the share of all CPUs (percent) used by
// processes outside the benchmark; the returned func reads it since.
func (e *env) othersMeter() func() float64 {
	busy0, total0, _ := systemTicks()
	ours0 := e.ourTicks()
	return func() float64 {
		busy1, total1, _ := systemTicks()
		if total1 <= total0 {
			return 0
		}
		return max(0, 100*float64((busy1-busy0)-(e.ourTicks()-ours0))/float64(total1-total0))
	}
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func failoverTable() report.Table {
	return report.Table{Header: []string{"window", "requests", "errors", "p50", "p99", "max", "over 250 ms", "driver stalled"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true}}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtSec(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// isSignalled reports whether err is the exit of a process killed by a
// signal, which is what stopping with SIGKILL is meant to do.
func isSignalled(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			return ws.Signaled()
		}
	}
	return false
}

// waitRing waits until every node's ring holds exactly the members named
// (alive, with a share of the keys).
func (e *env) waitRing(ctx context.Context, nodes []*rcNode, want []string) error {
	for _, n := range nodes {
		err := e.waitFor(ctx, n.proc, failoverSettle, n.proc.name+"'s ring holding "+strings.Join(want, ","), func() error {
			v, err := e.clusterOf(ctx, n)
			if err != nil {
				return err
			}
			var in []string
			for _, m := range v.Members {
				if m.Status == "alive" && m.Share > 0 {
					in = append(in, m.Name)
				}
			}
			slices.Sort(in)
			if !slices.Equal(in, want) {
				return fmt.Errorf("ring holds %v", in)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitReplicated waits until every node has len(nodes) members on its
// ring, runs no rebalance and has sent (or dropped) every copy it queued,
// on two polls in a row (a ring changes a moment before its rebalance
// starts).
func (e *env) waitReplicated(ctx context.Context, nodes []*rcNode) error {
	polls := 0
	return e.waitFor(ctx, nil, failoverSettle, "replica copies to land", func() error {
		for _, n := range nodes {
			if err := n.proc.died(); err != nil {
				return err
			}
			resp, body, err := e.get(ctx, n.admin, "/metrics")
			if err != nil {
				polls = 0
				return err
			}
			if resp.StatusCode != 200 {
				polls = 0
				return fmt.Errorf("%s /metrics: status %d", n.proc.name, resp.StatusCode)
			}
			m := promValues(string(body), "ringcache_cluster_members", "ringcache_replica_rebalancing",
				"ringcache_replica_queued_total", "ringcache_replica_sent_total", "ringcache_replica_dropped_total")
			if len(m) != 5 {
				return fmt.Errorf("%s /metrics lacks replica series (got %v)", n.proc.name, m)
			}
			if int(m["ringcache_cluster_members"]) != len(nodes) || m["ringcache_replica_rebalancing"] != 0 ||
				m["ringcache_replica_sent_total"]+m["ringcache_replica_dropped_total"] < m["ringcache_replica_queued_total"] {
				polls = 0
				return fmt.Errorf("%s: %v", n.proc.name, m)
			}
		}
		if polls++; polls < 2 {
			return errors.New("settled on one poll")
		}
		return nil
	})
}

// pinDriver pins every thread of this process to the client CPU (the
// kernel gives threads created later their creator's CPUs), so that the
// clients run beside the origin as the load generator does, not on the
// servers' core. The returned func restores the previous CPUs.
func (e *env) pinDriver() (func(), error) {
	pid := strconv.Itoa(os.Getpid())
	out, err := exec.Command("taskset", "-p", pid).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("taskset -p %s: %w: %s", pid, err, out)
	}
	// "pid 123's current affinity mask: 3"
	_, mask, ok := strings.Cut(strings.TrimSpace(string(out)), ": ")
	if !ok {
		return nil, fmt.Errorf("taskset -p %s: unexpected output %q", pid, out)
	}
	if out, err := exec.Command("taskset", "-a", "-p", "-c", e.opts.clientCPU, pid).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("taskset -a -p -c %s %s: %w: %s", e.opts.clientCPU, pid, err, out)
	}
	return func() {
		if out, err := exec.Command("taskset", "-a", "-p", mask, pid).CombinedOutput(); err != nil {
			e.log.Warn("restoring the driver's CPUs", "err", err, "out", string(out))
		}
	}, nil
}

// ringChange is a member leaving or rejoining a node's ring, as seen from
// the load's start.
type ringChange struct {
	at time.Duration
	in bool
}

// ringWatch polls one node's ring while a load runs.
type ringWatch struct {
	stop    chan struct{}
	done    chan struct{}
	changes []ringChange
}

// watchRing records, every 50 ms until end, whether n's ring gives member
// a share of the keys.
func (e *env) watchRing(ctx context.Context, l *timedLoad, n *rcNode, member string) *ringWatch {
	w := &ringWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		was := true
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			v, err := e.clusterOf(ctx, n)
			if err != nil {
				continue
			}
			in := v.alive()[member] > 0
			if in != was {
				w.changes = append(w.changes, ringChange{l.now(), in})
				was = in
			}
		}
	}()
	return w
}

// end stops the watch and returns the changes seen.
func (w *ringWatch) end() []ringChange {
	close(w.stop)
	<-w.done
	return w.changes
}

// sample is one client request: when it was sent (since the load's start)
// and how long it took.
type sample struct {
	at, d time.Duration
	bad   bool
}

// timedLoad is closed-loop client load that times every request.
type timedLoad struct {
	start time.Time
	stop  atomic.Bool
	wg    sync.WaitGroup
	per   [][]sample  // one per client, appended by it alone
	slow  [][]slowReq // likewise: the requests over slowBound
	// stalls are the driver's own scheduling delays over stallFloor
	// (a timer that fired late), appended by one goroutine: a slow
	// request sent during one may be the driver's, not the cluster's.
	stalls []sample
}

// slowReq describes a request that took slowBound or longer.
type slowReq struct {
	sample
	node, uri, cacheStatus, err string
}

// stallFloor is the smallest lateness of the driver's timer recorded.
const stallFloor = 20 * time.Millisecond

// startTimedLoad starts clients reading keys 0..keys-1 (uniform, seeded)
// through nodes, each client cycling through them.
func startTimedLoad(nodes []*rcNode, keys, clients int, seed uint64) *timedLoad {
	l := &timedLoad{start: time.Now(), per: make([][]sample, clients), slow: make([][]slowReq, clients)}
	l.wg.Go(func() {
		const tick = 5 * time.Millisecond
		for !l.stop.Load() {
			t0 := time.Now()
			time.Sleep(tick) // the lateness of this wake-up is the measurement
			if late := time.Since(t0) - tick; late >= stallFloor {
				l.stalls = append(l.stalls, sample{at: t0.Sub(l.start), d: late})
			}
		}
	})
	hcs := make([]*fasthttp.HostClient, len(nodes))
	for i, n := range nodes {
		hcs[i] = &fasthttp.HostClient{
			Addr:     n.addr,
			MaxConns: clients,
			// Long enough to time a request that waited on a peer timeout
			// rather than fail it: the figure is the point.
			ReadTimeout:               30 * time.Second,
			WriteTimeout:              30 * time.Second,
			MaxIdemponentCallAttempts: 1, // a retry would hide a failure
			NoDefaultUserAgentHeader:  true,
		}
	}
	prefix, suffix, _ := strings.Cut(failoverURI, "{k}")
	for w := range clients {
		l.wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetHost(benchHost)
			var uri []byte
			out := make([]sample, 0, 1<<16)
			var slow []slowReq
			for i := w; !l.stop.Load(); i++ {
				uri = append(uri[:0], prefix...)
				uri = strconv.AppendInt(uri, int64(rng.IntN(keys)), 10)
				uri = append(uri, suffix...)
				req.SetRequestURIBytes(uri)
				hc := hcs[i%len(hcs)]
				sent := time.Now()
				err := hc.Do(req, resp)
				d := time.Since(sent)
				bad := err != nil || resp.StatusCode() != fasthttp.StatusOK || len(resp.Body()) != failoverSize
				x := sample{at: sent.Sub(l.start), d: d, bad: bad}
				out = append(out, x)
				if d >= slowBound || bad {
					sr := slowReq{sample: x, node: nodes[i%len(nodes)].proc.name, uri: string(uri), cacheStatus: string(resp.Header.Peek("Cache-Status"))}
					if err != nil {
						sr.err = err.Error()
					}
					slow = append(slow, sr)
				}
			}
			l.per[w], l.slow[w] = out, slow
		})
	}
	return l
}

// now is the time since the load started.
func (l *timedLoad) now() time.Duration { return time.Since(l.start) }

// end stops the clients and returns every request, in the order sent.
func (l *timedLoad) end() []sample {
	l.stop.Store(true)
	l.wg.Wait()
	var all []sample
	for _, s := range l.per {
		all = append(all, s...)
	}
	slices.SortFunc(all, func(a, b sample) int { return cmp.Compare(a.at, b.at) })
	return all
}

// slowest describes up to n of the slowest requests (after end), each
// with the driver's longest stall while it ran, times relative to from.
func (l *timedLoad) slowest(n int, from time.Duration, what string) string {
	var all []slowReq
	for _, s := range l.slow {
		all = append(all, s...)
	}
	if len(all) == 0 {
		return ""
	}
	slices.SortFunc(all, func(a, b slowReq) int { return cmp.Compare(b.d, a.d) })
	var b strings.Builder
	fmt.Fprintf(&b, "The slowest requests (%d over %s), with the longest the driver itself was not scheduled while each ran:\n\n", len(all), fmtMs(slowBound))
	for _, r := range all[:min(n, len(all))] {
		var stall time.Duration
		for _, st := range l.stalls {
			if st.at+st.d > r.at && st.at < r.at+r.d {
				stall = max(stall, st.d)
			}
		}
		fmt.Fprintf(&b, "- %s, sent %s %s to %s, `%s`: Cache-Status `%s`%s; driver stalled %s\n",
			fmtMs(r.d), fmtSec(r.at-from), what, strings.TrimPrefix(r.node, "ringcache-"), r.uri, r.cacheStatus, errText(r.err), fmtMs(stall))
	}
	b.WriteString("\n")
	return b.String()
}

func errText(err string) string {
	if err == "" {
		return ""
	}
	return "; error: " + err
}

// stalled is the driver's longest stall that began in [from, to).
func (l *timedLoad) stalled(from, to time.Duration) time.Duration {
	var m time.Duration
	for _, st := range l.stalls {
		if st.at >= from && st.at < to {
			m = max(m, st.d)
		}
	}
	return m
}

// windowStats summarise the requests sent in one window.
type windowStats struct {
	n, errs, over int
	p50, p99, max time.Duration
	maxAt         time.Duration // when the slowest was sent
	stall         time.Duration // the driver's longest stall in the window
}

// window is window with the driver's longest stall in [from, to).
func (l *timedLoad) window(samples []sample, from, to time.Duration) windowStats {
	w := window(samples, from, to)
	w.stall = l.stalled(from, to)
	return w
}

// window summarises the requests sent in [from, to).
func window(samples []sample, from, to time.Duration) windowStats {
	var s windowStats
	var ds []time.Duration
	for _, x := range samples {
		if x.at < from || x.at >= to {
			continue
		}
		s.n++
		if x.bad {
			s.errs++
		}
		if x.d >= slowBound {
			s.over++
		}
		if x.d > s.max {
			s.max, s.maxAt = x.d, x.at
		}
		ds = append(ds, x.d)
	}
	if len(ds) == 0 {
		return s
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	s.p50, s.p99 = q(0.50), q(0.99)
	return s
}

func (s windowStats) row(label string) []string {
	stall := "—"
	if s.stall > 0 {
		stall = fmtMs(s.stall)
	}
	if s.n == 0 {
		return []string{label, "0", "", "", "", "", "", stall}
	}
	return []string{label, fmtInt(float64(s.n)), fmt.Sprint(s.errs), fmtMs(s.p50), fmtMs(s.p99), fmtMs(s.max), fmt.Sprint(s.over), stall}
}
