// Command bench runs ringcache's benchmark scenarios side by side with
// nginx and Varnish, in one run on one machine, and writes
// bench/results/<date>.md and .svg. `make bench` builds the binaries and
// runs it; see bench/README.md.
//
// Servers under test run pinned to one core (-server-cpu), the load
// generator and the demo origin to another (-client-cpu). nginx and Varnish
// are installed with apt-get when missing (as root). Every process started
// here is stopped on exit, by PID.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringcache/ringcache/bench/report"
)

// options are the driver's flags.
type options struct {
	out, tmpRoot                string
	keepTmp                     bool
	ringcache, loadgen, ceiling string
	serverCPU, clientCPU        string
	dur, warmup                 time.Duration
	rounds, conns, herd         int
	zipfBudget                  int64
	zipfKeys                    int
	zipfWarm, zipfRequests      int
	churnKeys                   int
	churnDur                    time.Duration
	costKeys                    int
	costCPUs                    []string // one CPU per node of the cost scenario's clusters; nil: -server-cpu
	rssBudget                   int64
	rssConns                    int
	simKeys                     int
	failoverKeys                int
	failoverClients             int
	restartKeys                 int
	restartBudget               string
	restartWindow               time.Duration
	only                        string
	nodeLogLevel                string
	noiseBudget                 time.Duration
	install, wrk                bool
	wrkRounds                   int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "bench/results", "directory for <date>.md and <date>.svg")
	fs.StringVar(&o.tmpRoot, "tmp", "", "parent of the run's scratch directory (default: the system temp dir)")
	fs.BoolVar(&o.keepTmp, "keep-tmp", false, "keep the scratch directory (server logs, nginx and Varnish state)")
	fs.StringVar(&o.ringcache, "ringcache", "bin/ringcache", "ringcache binary")
	fs.StringVar(&o.loadgen, "loadgen", "bin/bench-loadgen", "load generator binary (bench/cmd/loadgen)")
	fs.StringVar(&o.ceiling, "ceiling", "bin/bench-ceiling", "ceiling server binary (bench/cmd/ceiling)")
	fs.StringVar(&o.serverCPU, "server-cpu", "0", "CPU list for the servers under test (taskset -c)")
	fs.StringVar(&o.clientCPU, "client-cpu", "1", "CPU list for the load generator and the demo origin")
	fs.DurationVar(&o.dur, "d", 5*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds of the hit-path and forwarded-hit runs (median reported)")
	fs.IntVar(&o.conns, "c", 50, "connections of the load generator")
	fs.IntVar(&o.herd, "herd", 1000, "concurrent requests of the thundering herd")
	budget := fs.String("zipf-budget", "16MiB", "total cache budget of the Zipf scenario (bytes, KiB, MiB)")
	fs.IntVar(&o.zipfKeys, "zipf-keys", 100000, "keys of the Zipf scenario")
	fs.IntVar(&o.zipfWarm, "zipf-warmup", 200000, "requests before the Zipf measurement")
	fs.IntVar(&o.zipfRequests, "zipf-requests", 200000, "requests of the Zipf measurement")
	fs.IntVar(&o.churnKeys, "churn-keys", 10000, "warm keys of the membership-change scenario")
	fs.DurationVar(&o.churnDur, "churn-d", 15*time.Second, "load per membership-change phase")
	fs.IntVar(&o.costKeys, "cost-keys", 3000, "warm 1 KiB keys of the cluster-cost scenario")
	costCPUs := fs.String("cost-cpus", "", "a CPU for each node of the cluster-cost scenario's clusters, e.g. 2,3,4 (node 1 first; the single node takes node 1's); default: all on -server-cpu")
	rssBudget := fs.String("rss-budget", "64MiB", "cache budget of the memory-against-the-budget scenario (bytes, KiB, MiB)")
	fs.IntVar(&o.rssConns, "rss-conns", 8, "connections filling the node in the memory-against-the-budget scenario")
	fs.IntVar(&o.simKeys, "sim-keys", 1_000_000, "keys of the ring churn simulation")
	fs.IntVar(&o.restartKeys, "restart-keys", 1000000, "1 KiB entries of the warm-restart scenario")
	fs.StringVar(&o.restartBudget, "restart-budget", "2GiB", "cache_size of the warm-restart scenario (must hold -restart-keys entries of 1 KiB: about 1.7 KB each)")
	fs.DurationVar(&o.restartWindow, "restart-window", 2*time.Second, "window after the restarted process starts in which the warm-restart hit ratio is measured")
	fs.IntVar(&o.failoverKeys, "failover-keys", 10000, "warm keys of the failover scenario")
	fs.IntVar(&o.failoverClients, "failover-clients", 8, "concurrent clients of the failover scenario")
	fs.StringVar(&o.only, "only", "hit,miss,herd,zipf,cluster,memory,rss,sim,cost,failover", "scenarios to run (also: restart, the warm restart, which fills a node with -restart-keys entries first)")
	fs.StringVar(&o.nodeLogLevel, "node-log-level", "warn", "ringcache nodes' --log-level (their logs stay in the scratch dir; see -keep-tmp)")
	fs.DurationVar(&o.noiseBudget, "noise-budget", 2*time.Minute, "time the run may spend waiting out, and repeating runs disturbed by, other processes' CPU use")
	fs.BoolVar(&o.install, "install", true, "apt-get install nginx, varnish and wrk when missing")
	fs.BoolVar(&o.wrk, "wrk", true, "cross-check the hit path with wrk")
	fs.IntVar(&o.wrkRounds, "wrk-rounds", 3, "rounds of the wrk cross-check (at most -rounds)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.zipfBudget, err = parseBytes(*budget); err != nil {
		fmt.Fprintf(stderr, "bench: -zipf-budget: %v\n", err)
		return 2
	}
	if o.rssBudget, err = parseBytes(*rssBudget); err != nil {
		fmt.Fprintf(stderr, "bench: -rss-budget: %v\n", err)
		return 2
	}
	if o.costCPUs, err = parseCPUs(*costCPUs, 3); err != nil {
		fmt.Fprintf(stderr, "bench: -cost-cpus: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := preflight(ctx, &o, log); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	r, hw, err := runAll(ctx, o, log)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if ctx.Err() != nil {
		// Partial numbers would read as a result: write nothing.
		fmt.Fprintln(stderr, "bench: interrupted; no results written")
		return 1
	}
	md, svg, err := write(o, r, hw)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s and %s (%s)\n", md, svg, hw.took.Round(time.Second))
	for _, v := range r.verdicts {
		fmt.Fprintln(stdout, "  "+v)
	}
	if len(r.problems) > 0 {
		fmt.Fprintln(stderr, "bench: FAILURES:")
		for _, p := range r.problems {
			fmt.Fprintln(stderr, "  "+p)
		}
		return 1
	}
	return 0
}

// preflight checks the tools and binaries, installing nginx, Varnish and
// wrk when they are missing.
func preflight(ctx context.Context, o *options, log *slog.Logger) error {
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset not found (util-linux): it pins servers and load to separate cores")
	}
	if runtime.NumCPU() < 2 && o.serverCPU != o.clientCPU {
		return fmt.Errorf("%d CPU available: pass -server-cpu and -client-cpu (the same CPU) to run anyway, knowing the numbers mix server and load", runtime.NumCPU())
	}
	for _, b := range []*string{&o.ringcache, &o.loadgen, &o.ceiling} {
		abs, err := filepath.Abs(*b)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("binary %s: %w (run `make bench`, which builds it)", *b, err)
		}
		*b = abs
	}
	want := o.scenarios()
	if !want["hit"] && !want["miss"] && !want["herd"] {
		return nil // only ringcache runs: nginx, Varnish and wrk are not needed
	}
	var missing []string
	for _, p := range []struct{ bin, pkg string }{{"nginx", "nginx"}, {"varnishd", "varnish"}, {"wrk", "wrk"}} {
		if p.pkg == "wrk" && !o.wrk {
			continue
		}
		if !haveBinary(p.bin) {
			missing = append(missing, p.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !o.install {
		return fmt.Errorf("missing %s and -install=false", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing %s: run as root so that the benchmark can apt-get install them, or install them yourself", strings.Join(missing, ", "))
	}
	log.Info("installing peers", "packages", missing)
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 800))
		}
	}
	for _, b := range []string{"nginx", "varnishd"} {
		if !haveBinary(b) {
			return fmt.Errorf("%s still missing after apt-get install", b)
		}
	}
	return nil
}

// scenarios returns the set of scenarios -only names.
func (o *options) scenarios() map[string]bool {
	want := make(map[string]bool)
	for _, s := range strings.Split(o.only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	return want
}

func haveBinary(name string) bool {
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	_, err := os.Stat("/usr/sbin/" + name)
	return err == nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// hardware describes the machine and the run.
type hardware struct {
	cpu, nproc, kernel, mem string
	loadStart, loadEnd      string
	noise                   string
	versions                map[string]string // system name -> label with version
	nginxVersion            string            // "nginx 1.22.1"
	software                string
	started                 time.Time
	took                    time.Duration
}

func runAll(ctx context.Context, o options, log *slog.Logger) (*results, hardware, error) {
	hw := describe(o)
	hw.started = time.Now()
	tmp, err := os.MkdirTemp(o.tmpRoot, "ringcache-bench-")
	if err != nil {
		return nil, hw, fmt.Errorf("scratch dir: %w", err)
	}
	ps := &procs{dir: tmp}
	defer func() {
		ps.stopAll()
		if o.keepTmp {
			log.Info("scratch kept", "dir", tmp)
		} else {
			_ = os.RemoveAll(tmp)
		}
	}()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	e := &env{opts: o, procs: ps, tmp: tmp, log: log, secret: base64.StdEncoding.EncodeToString(secret),
		client: &http.Client{Timeout: 30 * time.Second}, started: hw.started,
		noise: &noise{budget: o.noiseBudget}}
	r := &results{}
	want := o.scenarios()

	if err := e.startOrigin(ctx); err != nil {
		return nil, hw, err
	}
	var sys singles
	if want["hit"] || want["miss"] || want["herd"] {
		var uris []string
		for _, hs := range hitSizes() {
			uris = append(uris, hitURI("ceiling", hs.size))
		}
		var err error
		if sys.ceiling, err = e.startCeiling(ctx, uris); err != nil {
			r.problem("ceiling: %v", err)
		}
		n, err := e.startNode(ctx, nodeOpts{name: "rc", cacheSize: "256MiB"})
		if err != nil {
			r.problem("ringcache: %v", err)
		}
		if n != nil {
			sys.ringcache = n.system
		}
		for i, c := range nginxConfigs() {
			if i > 0 && !want["hit"] {
				break // the other configurations run in the hit path only
			}
			s, err := e.startNginx(ctx, c)
			if err != nil {
				r.problem("%s: %v", c.name, err)
			}
			s.name = c.name
			sys.nginx = append(sys.nginx, s)
			hw.versions[c.name] = hw.nginxVersion + " " + c.label
		}
		if sys.varnish, err = e.startVarnish(ctx); err != nil {
			r.problem("varnish: %v", err)
		}
		sys.ceiling.name, sys.ringcache.name, sys.varnish.name = "ceiling", "ringcache", "varnish"
	}
	if want["hit"] && ctx.Err() == nil {
		e.hitPath(ctx, r, sys, hw.versions)
	}
	if want["miss"] && ctx.Err() == nil {
		e.missPath(ctx, r, sys, hw.versions)
	}
	herdTab := herdTable()
	var herdSec *section
	if (want["herd"] || want["cluster"]) && ctx.Err() == nil {
		herdSec = r.section("3. Thundering herd")
		herdSec.printf("%d requests for one cold key (`/herd/<system>?size=1024&delay=200ms&cc=max-age=60`), every connection opened first and all requests sent at once; the origin takes 200 ms. nginx runs with `proxy_cache_lock on`; Varnish and ringcache coalesce by default. Target: 1 origin request.\n\n", o.herd)
		if want["herd"] {
			for _, s := range sys.compared() {
				herdTab.Rows = append(herdTab.Rows, e.herd(ctx, r, s.name, hw.versions[s.name], []string{s.addr}))
			}
		}
	}
	// The single servers are done: free the server core for the clusters.
	for _, s := range sys.all() {
		if s.proc != nil {
			_ = s.proc.stop(syscall.SIGTERM, 10*time.Second)
		}
	}
	if want["zipf"] && ctx.Err() == nil {
		e.zipf(ctx, r)
	}
	if want["cluster"] && ctx.Err() == nil {
		e.cluster(ctx, r, &herdTab)
	}
	if herdSec != nil {
		herdSec.printf("%s\n", herdTab.Markdown())
	}
	if want["memory"] && ctx.Err() == nil {
		e.memory(ctx, r)
	}
	if want["rss"] && ctx.Err() == nil {
		e.rss(ctx, r)
	}
	if want["sim"] && ctx.Err() == nil {
		e.churnSim(ctx, r)
	}
	if want["cost"] && ctx.Err() == nil {
		e.clusterCost(ctx, r)
	}
	if want["restart"] && ctx.Err() == nil {
		e.restart(ctx, r)
	}
	if want["failover"] && ctx.Err() == nil {
		e.failover(ctx, r)
	}
	hw.loadEnd = loadavg()
	hw.noise = fmt.Sprintf("%d timed runs were repeated because other processes used more than %.0f%% of the CPUs during them, %d kept although disturbed (budget spent), and %s was spent waiting for a quiet machine (budget %v)",
		e.noise.repeats, noisyPct, e.noise.noisyRun, e.noise.waited.Round(time.Second), o.noiseBudget)
	hw.took = time.Since(hw.started)
	return r, hw, nil
}

func describe(o options) hardware {
	hw := hardware{cpu: "unknown CPU", versions: map[string]string{
		"ceiling": "ceiling (bare fasthttp)", "ringcache": "ringcache", "nginx": "nginx", "varnish": "Varnish",
	}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				hw.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	hw.nproc = strings.TrimSpace(output("nproc"))
	hw.kernel = strings.TrimSpace(output("uname", "-sr"))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			hw.mem = fmt.Sprintf("%.1f GiB RAM", kb/(1<<20))
		}
	}
	hw.loadStart = loadavg()
	ngx := strings.TrimPrefix(strings.TrimSpace(output("nginx", "-v")), "nginx version: nginx/")
	hw.nginxVersion = "nginx " + ngx
	hw.versions["nginx"] = hw.nginxVersion
	vv := output("varnishd", "-V")
	if i := strings.Index(vv, "varnish-"); i >= 0 {
		f := strings.FieldsFunc(vv[i+len("varnish-"):], func(r rune) bool { return r == ' ' || r == ')' || r == '\n' })
		if len(f) > 0 {
			hw.versions["varnish"] = "Varnish " + f[0]
		}
	}
	rev := "ringcache"
	if c := gitHead("."); c != "" {
		rev += " " + c + " (plus any uncommitted changes in the tree)"
	}
	wrk := strings.Fields(output("wrk", "-v"))
	wrkV := ""
	if len(wrk) >= 2 {
		wrkV = ", wrk " + wrk[1]
	}
	hw.software = fmt.Sprintf("%s, %s, %s, %s%s", rev, runtime.Version(), hw.nginxVersion, hw.versions["varnish"], wrkV)
	return hw
}

// gitHead reads the commit checked out in the repository at dir from
// .git's files (running git could write to the index), "" if unknown.
func gitHead(dir string) string {
	head, err := os.ReadFile(filepath.Join(dir, ".git", "HEAD"))
	if err != nil {
		return ""
	}
	ref, ok := strings.CutPrefix(strings.TrimSpace(string(head)), "ref: ")
	if !ok {
		return short(ref)
	}
	if b, err := os.ReadFile(filepath.Join(dir, ".git", ref)); err == nil {
		return short(strings.TrimSpace(string(b)))
	}
	packed, _ := os.ReadFile(filepath.Join(dir, ".git", "packed-refs"))
	for _, line := range strings.Split(string(packed), "\n") {
		if c, r, ok := strings.Cut(line, " "); ok && r == ref {
			return short(c)
		}
	}
	return ""
}

func short(commit string) string { return commit[:min(12, len(commit))] }

// output runs a command and returns its combined output, "" on failure
// to start (some tools, like nginx -v, print to stderr and exit 0; wrk -v
// exits 1).
func output(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return string(out)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// write renders the results into <out>/<date>.md and .svg.
func write(o options, r *results, hw hardware) (string, string, error) {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return "", "", fmt.Errorf("results dir: %w", err)
	}
	date := hw.started.Format("2006-01-02")
	mdPath := filepath.Join(o.out, date+".md")
	svgPath := filepath.Join(o.out, date+".svg")
	var b strings.Builder
	fmt.Fprintf(&b, "# ringcache benchmark, %s\n\n", date)
	fmt.Fprintf(&b, "- **Hardware:** %s, %s CPUs (nproc), %s, %s. Load average (1, 5, 15 min) at start %s, at end %s.\n", hw.cpu, hw.nproc, hw.mem, hw.kernel, hw.loadStart, hw.loadEnd)
	fmt.Fprintf(&b, "- **Software:** %s.\n", hw.software)
	fmt.Fprintf(&b, "- **Method:** servers under test pinned to CPU %s (`taskset`; Go servers with `GOMAXPROCS=1`, nginx with one worker, Varnish with one thread pool); the load generator (`bench/loadgen`: fasthttp client, closed loop, keep-alive, `GOMAXPROCS=1`) and the demo origin pinned to CPU %s. Every system sits in front of the same demo origin on loopback, as an ordinary shared cache (configs in `bench/cmd/bench/systems.go`). A run with any transport error, non-2xx answer, wrong body size or failed hit check is reported as FAILED, never as throughput.\n", o.serverCPU, o.clientCPU)
	fmt.Fprintf(&b, "- **Noise:** this machine is shared. \"Other CPU load\" is the share of both cores used during a run by processes outside the benchmark. Before each timed hit-path, miss-path, forwarded-hit and cluster-cost run, and before the warm restart, the driver waits for a quiet machine, and repeats a hit-path, miss-path or forwarded-hit run that others disturbed, keeping the quietest attempt: %s. Rounds are interleaved and the median reported; ratios from one run mean more than absolute numbers.\n", hw.noise)
	fmt.Fprintf(&b, "- **Run time:** %s (`make bench`).\n\n", hw.took.Round(time.Second))
	fmt.Fprintf(&b, "![chart](%s)\n\n", filepath.Base(svgPath))
	if len(r.verdicts) > 0 {
		b.WriteString("## Targets\n\n")
		for _, v := range r.verdicts {
			fmt.Fprintf(&b, "- %s\n", v)
		}
		b.WriteString("\n")
	}
	if len(r.problems) > 0 {
		b.WriteString("## Failures\n\n")
		for _, p := range r.problems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
		b.WriteString("\n")
	}
	for _, s := range r.sections {
		fmt.Fprintf(&b, "## %s\n\n%s", s.title, s.body.String())
	}
	for _, list := range []struct {
		title string
		items []string
	}{{"Where ringcache loses", r.notes}, {"Caveats", r.caveats}} {
		if len(list.items) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n", list.title)
		for _, n := range list.items {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(mdPath, []byte(b.String()), 0o644); err != nil {
		return "", "", fmt.Errorf("write results: %w", err)
	}
	chart := report.Chart{
		Title:    "ringcache vs nginx vs Varnish, " + date,
		Subtitle: fmt.Sprintf("%s, %s CPUs; servers on CPU %s, load on CPU %s; %d connections, keep-alive", hw.cpu, hw.nproc, o.serverCPU, o.clientCPU, o.conns),
		Panels:   r.panels,
	}
	if err := os.WriteFile(svgPath, chart.SVG(), 0o644); err != nil {
		return "", "", fmt.Errorf("write chart: %w", err)
	}
	return mdPath, svgPath, nil
}
