package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// benchHost is the Host every request carries; ringcache nodes key on it
// with --key-host so that every node of a cluster agrees.
const benchHost = "bench.local"

// env is what every scenario needs: binaries, CPUs, the origin, and the
// processes started so far.
type env struct {
	opts    options
	procs   *procs
	tmp     string
	log     *slog.Logger
	client  *http.Client
	secret  string
	origin  *proc
	oAddr   string // origin host:port
	started time.Time
	noise   *noise
}

// system is a server under test: where it listens and how a hit is
// recognised in its answers.
type system struct {
	name  string
	addr  string
	proc  *proc
	check []string // header, then substrings a hit's header value contains
}

func (s system) checkArgs() (string, []string) {
	if len(s.check) == 0 {
		return "", nil
	}
	return s.check[0], s.check[1:]
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// get fetches uri from addr with the benchmark's Host.
func (e *env) get(ctx context.Context, addr, uri string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+uri, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Host = benchHost
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func (e *env) post(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// waitFor polls cond until it returns nil, the process dies, or timeout.
func (e *env) waitFor(ctx context.Context, p *proc, timeout time.Duration, what string, cond func() error) error {
	return e.waitEvery(ctx, p, timeout, 50*time.Millisecond, what, cond)
}

// waitEvery is waitFor polling every interval.
func (e *env) waitEvery(ctx context.Context, p *proc, timeout, interval time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if p != nil {
			if derr := p.died(); derr != nil {
				return fmt.Errorf("%s: %w", what, derr)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %v: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// answers waits until addr answers uri with 200.
func (e *env) answers(ctx context.Context, p *proc, addr, uri string) error {
	return e.waitFor(ctx, p, 20*time.Second, p.name+" answering on "+addr, func() error {
		resp, _, err := e.get(ctx, addr, uri)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", uri, resp.StatusCode)
		}
		return nil
	})
}

// originStats is the part of the demo origin's /__origin/stats used here.
type originStats struct {
	Requests int64            `json:"requests"`
	ByURI    map[string]int64 `json:"by_uri"`
}

func (e *env) startOrigin(ctx context.Context) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	// The origin shares the load generator's core: it is idle during hit
	// runs and must not take the core of the server under test.
	p, err := e.procs.start("origin", e.opts.clientCPU, nil, e.opts.ringcache, "origin", "--listen", addr, "--log-level", "warn")
	if err != nil {
		return err
	}
	e.origin, e.oAddr = p, addr
	return e.waitFor(ctx, p, 20*time.Second, "demo origin", func() error {
		_, err := e.originStats(ctx)
		return err
	})
}

func (e *env) originStats(ctx context.Context) (originStats, error) {
	var st originStats
	resp, body, err := e.get(ctx, e.oAddr, "/__origin/stats")
	if err != nil {
		return st, fmt.Errorf("origin stats: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("origin stats: status %d", resp.StatusCode)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("origin stats: %w", err)
	}
	return st, nil
}

func (e *env) originReset(ctx context.Context) error {
	if err := e.post(ctx, "http://"+e.oAddr+"/__origin/reset"); err != nil {
		return fmt.Errorf("origin reset: %w", err)
	}
	return nil
}

// nodeOpts configures one ringcache node.
type nodeOpts struct {
	name       string
	cacheSize  string // e.g. "256MiB"
	hotCache   string // "" leaves the default
	replicas   string // "" leaves the default (2)
	maxObject  string // "" leaves the default (8MiB, which must fit in cacheSize)
	adminToken string // "" leaves admin writes and profiles refused
	cluster    bool   // run gossip
	join       string // gossip address of a member, "" for the first node
	cpu        string // taskset CPU list; "" means -server-cpu
	logLevel   string // "" leaves -node-log-level
	extra      []string
	// healthPoll, when set, polls /healthz that often (and for up to two
	// minutes) instead of every 50 ms for 20 s.
	healthPoll time.Duration
}

// rcNode is a running ringcache node.
type rcNode struct {
	system
	admin  string
	gossip string
}

func (e *env) startNode(ctx context.Context, o nodeOpts) (*rcNode, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	level := e.opts.nodeLogLevel
	if o.logLevel != "" {
		level = o.logLevel
	}
	args := []string{"serve", "--listen", listen, "--admin", admin, "--origin", "http://" + e.oAddr,
		"--cache-size", o.cacheSize, "--log-level", level, "--node-name", o.name, "--key-host", benchHost}
	args = append(args, o.extra...)
	if o.hotCache != "" {
		args = append(args, "--hot-cache-size", o.hotCache)
	}
	if o.replicas != "" {
		args = append(args, "--replicas", o.replicas)
	}
	if o.maxObject != "" {
		args = append(args, "--max-object-size", o.maxObject)
	}
	if o.adminToken != "" {
		args = append(args, "--admin-token", o.adminToken)
	}
	n := &rcNode{admin: admin}
	if o.cluster {
		if n.gossip, err = freePort(); err != nil {
			return nil, err
		}
		args = append(args, "--gossip", n.gossip, "--peer-secret", e.secret)
		if o.join != "" {
			args = append(args, "--join", o.join)
		}
	}
	cpu := o.cpu
	if cpu == "" {
		cpu = e.opts.serverCPU
	}
	p, err := e.procs.start("ringcache-"+o.name, cpu, []string{"GOMAXPROCS=1"}, e.opts.ringcache, args...)
	if err != nil {
		return nil, err
	}
	// A single node names itself "ringcache" in Cache-Status; a cluster
	// member uses its node name.
	hit := "ringcache; hit"
	if o.cluster {
		hit = o.name + "; hit"
	}
	n.system = system{name: "ringcache", addr: listen, proc: p, check: []string{"Cache-Status", hit}}
	poll, timeout := 50*time.Millisecond, 20*time.Second
	if o.healthPoll > 0 {
		poll, timeout = o.healthPoll, 2*time.Minute
	}
	err = e.waitEvery(ctx, p, timeout, poll, "ringcache node "+o.name, func() error {
		resp, _, err := e.get(ctx, admin, "/healthz")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: status %d", resp.StatusCode)
		}
		return nil
	})
	return n, err
}

// clusterView is the part of a node's GET /cluster used here.
type clusterView struct {
	Self    string `json:"self"`
	Members []struct {
		Name   string  `json:"name"`
		Status string  `json:"status"`
		Share  float64 `json:"share"`
	} `json:"members"`
}

func (e *env) clusterOf(ctx context.Context, n *rcNode) (clusterView, error) {
	var v clusterView
	resp, body, err := e.get(ctx, n.admin, "/cluster")
	if err != nil {
		return v, err
	}
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("/cluster: status %d", resp.StatusCode)
	}
	return v, json.Unmarshal(body, &v)
}

// alive returns the names of the members n sees alive, and their shares.
func (v clusterView) alive() map[string]float64 {
	out := make(map[string]float64)
	for _, m := range v.Members {
		if m.Status == "alive" {
			out[m.Name] = m.Share
		}
	}
	return out
}

// waitMembers waits until every node in nodes sees exactly want alive.
func (e *env) waitMembers(ctx context.Context, nodes []*rcNode, want []string) error {
	for _, n := range nodes {
		err := e.waitFor(ctx, n.proc, 30*time.Second, n.proc.name+" seeing members "+strings.Join(want, ","), func() error {
			v, err := e.clusterOf(ctx, n)
			if err != nil {
				return err
			}
			got := v.alive()
			if len(got) != len(want) {
				return fmt.Errorf("sees %d alive members %v", len(got), got)
			}
			for _, w := range want {
				if _, ok := got[w]; !ok {
					return fmt.Errorf("does not see %s alive (sees %v)", w, got)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// startCluster starts nodes named names configured as base, each joining
// the first, and waits until all see each other. Node i runs on cpus[i]
// when there is one, else on base's CPU.
func (e *env) startCluster(ctx context.Context, names []string, base nodeOpts, cpus []string) ([]*rcNode, error) {
	var nodes []*rcNode
	for i, name := range names {
		o := base
		o.name, o.cluster = name, true
		if i < len(cpus) {
			o.cpu = cpus[i]
		}
		if i > 0 {
			o.join = nodes[0].gossip
		}
		n, err := e.startNode(ctx, o)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, e.waitMembers(ctx, nodes, names)
}

func stopNodes(nodes []*rcNode) {
	for _, n := range nodes {
		_ = n.proc.stop(syscall.SIGTERM, 40*time.Second)
	}
}

// nginxConfig is one way of configuring nginx in front of the origin.
type nginxConfig struct {
	name  string // system name, in URIs and logs
	label string // after the version in tables
	// Sendfile serves cached bodies with sendfile(2): no copy through user
	// space, but the headers and the body leave in two system calls (and
	// two segments), which for small bodies costs more than the copy.
	Sendfile bool
	// Tuned keeps the descriptors of hot cache files open (no open, fstat
	// and close per hit) and reads a body into one 128 KiB buffer (without
	// sendfile, one read and one write per hit up to 128 KiB).
	Tuned bool
}

// nginxConfigs are the configurations the hit path compares, so that
// ringcache is judged against nginx at its best for each body size, and
// the configuration used before issue 11 is shown beside them. The first
// is the one the miss path and the herd use.
func nginxConfigs() []nginxConfig {
	return []nginxConfig{
		{name: "nginx", label: "tuned (sendfile off)", Tuned: true},
		{name: "nginx-sendfile", label: "tuned, sendfile on", Tuned: true, Sendfile: true},
		{name: "nginx-basic", label: "basic (sendfile on, as before issue 11)", Sendfile: true},
	}
}

// nginxConf is the nginx configuration, a text/template over Dir, Origin,
// Listen and the nginxConfig.
const nginxConf = `# Written by the ringcache benchmark: an ordinary shared cache in front of the demo origin.
daemon off;
master_process on;
# One worker, pinned with the master by taskset to the server core.
worker_processes 1;
# Root workers can write the cache directory below without a chown.
user root;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  # ringcache runs without an access log too.
  access_log off;
{{- if .Sendfile}}
  # Cached bodies are files: sendfile serves them without a copy. No
  # tcp_nopush: with it, a 64 KiB answer on loopback waits for a delayed
  # ACK (40 ms) and nginx drops to ~1,000 requests/s.
  sendfile on;
{{- else}}
  # nginx's default: a hit's body is read into a buffer and leaves with
  # its headers in one writev, cheaper than sendfile for small bodies.
  sendfile off;
{{- end}}
{{- if .Tuned}}
  # Without it every hit opens, stats and closes its cache file.
  open_file_cache max=10000 inactive=60s;
  open_file_cache_valid 60s;
  # One buffer for a whole 64 KiB body (the default, 2 32k, takes two
  # reads and two writes without sendfile).
  output_buffers 1 128k;
{{- end}}
  # The load generator keeps its connections open; nginx's default closes
  # each after 1,000 requests.
  keepalive_requests 1000000;
  client_body_temp_path {{.Dir}}/client_temp;
  proxy_temp_path {{.Dir}}/proxy_temp;
  fastcgi_temp_path {{.Dir}}/fastcgi_temp;
  uwsgi_temp_path {{.Dir}}/uwsgi_temp;
  scgi_temp_path {{.Dir}}/scgi_temp;
  proxy_cache_path {{.Dir}}/cache levels=1:2 keys_zone=bench:64m max_size=2g inactive=1h use_temp_path=off;
  upstream origin {
    server {{.Origin}};
    keepalive 128;
  }
  server {
    listen {{.Listen}} backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Freshness comes from the origin's Cache-Control, as for the other
      # caches: no proxy_cache_valid.
      proxy_cache bench;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_lock_age 10s;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`

// writeNginxConf writes c's configuration for an nginx rooted at dir.
func writeNginxConf(path string, c nginxConfig, dir, origin, listen string) error {
	tmpl, err := template.New("nginx").Parse(nginxConf)
	if err != nil {
		return err
	}
	var conf bytes.Buffer
	if err := tmpl.Execute(&conf, struct {
		nginxConfig
		Dir, Origin, Listen string
	}{c, dir, origin, listen}); err != nil {
		return err
	}
	return os.WriteFile(path, conf.Bytes(), 0o644)
}

func (e *env) startNginx(ctx context.Context, c nginxConfig) (system, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	listen, err := freePort()
	if err != nil {
		return system{}, err
	}
	dir := filepath.Join(e.tmp, c.name)
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o755); err != nil {
		return system{}, fmt.Errorf("nginx dir: %w", err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := writeNginxConf(confPath, c, dir, e.oAddr, listen); err != nil {
		return system{}, fmt.Errorf("nginx config: %w", err)
	}
	p, err := e.procs.start(c.name, e.opts.serverCPU, nil, bin, "-c", confPath, "-p", dir, "-e", "stderr")
	if err != nil {
		return system{}, err
	}
	s := system{name: c.name, addr: listen, proc: p, check: []string{"X-Cache", "HIT"}}
	return s, e.answers(ctx, p, listen, "/__ready?cc=no-store")
}

// varnishQuiet are the VSL records Varnish writes for every request.
// VSL, its shared-memory log, is what varnishlog and varnishncsa read:
// Varnish's access log. ringcache and nginx run without one, so Varnish
// leaves these out (on a busy two-core machine they cost it about 6% of
// its CPU time per 1 KiB hit and 9% per 64 KiB hit).
var varnishQuiet = []string{
	"Begin", "End", "Link", "ReqStart", "ReqMethod", "ReqURL", "ReqProtocol", "ReqHeader", "ReqUnset", "ReqAcct",
	"RespProtocol", "RespStatus", "RespReason", "RespHeader", "RespUnset",
	"BereqHeader", "BereqUnset", "BerespHeader", "BerespUnset",
	"Timestamp", "VCL_call", "VCL_return", "VCL_use", "Hit",
}

// varnishMask is the vsl_mask parameter that leaves out varnishQuiet.
func varnishMask() string {
	return "-" + strings.Join(varnishQuiet, ",-")
}

func (e *env) startVarnish(ctx context.Context) (system, error) {
	bin, err := exec.LookPath("varnishd")
	if err != nil {
		bin = "/usr/sbin/varnishd"
	}
	listen, err := freePort()
	if err != nil {
		return system{}, err
	}
	dir := filepath.Join(e.tmp, "varnish")
	// One thread pool for one core (its 100 threads at least cover the
	// connections); the builtin VCL is an ordinary shared cache honouring
	// the origin's Cache-Control.
	p, err := e.procs.start("varnish", e.opts.serverCPU, nil, bin,
		"-F", "-a", listen, "-b", e.oAddr, "-s", "malloc,256m", "-n", dir, "-p", "thread_pools=1",
		"-p", "vsl_mask="+varnishMask())
	if err != nil {
		return system{}, err
	}
	// A hit's X-Varnish carries two ids: this request's and the one that
	// fetched the object.
	s := system{name: "varnish", addr: listen, proc: p, check: []string{"X-Varnish", " "}}
	return s, e.answers(ctx, p, listen, "/__ready?cc=no-store")
}

func (e *env) startCeiling(ctx context.Context, uris []string) (system, error) {
	listen, err := freePort()
	if err != nil {
		return system{}, err
	}
	args := []string{"-listen", listen, "-origin", "http://" + e.oAddr}
	for _, u := range uris {
		args = append(args, "-uri", u)
	}
	p, err := e.procs.start("ceiling", e.opts.serverCPU, []string{"GOMAXPROCS=1"}, e.opts.ceiling, args...)
	if err != nil {
		return system{}, err
	}
	s := system{name: "ceiling", addr: listen, proc: p}
	return s, e.answers(ctx, p, listen, uris[0])
}

// warmHit requests uri until s answers with a verified hit: the first
// answer may be a miss, the second must be a hit of the right size.
func (e *env) warmHit(ctx context.Context, s system, uri string, size int) error {
	var last string
	for i := range 3 {
		resp, body, err := e.get(ctx, s.addr, uri)
		if err != nil {
			return fmt.Errorf("%s: GET %s: %w", s.name, uri, err)
		}
		if resp.StatusCode != http.StatusOK || len(body) != size {
			return fmt.Errorf("%s: GET %s: status %d, %d bytes (want 200, %d bytes)", s.name, uri, resp.StatusCode, len(body), size)
		}
		h, subs := s.checkArgs()
		if h == "" {
			return nil
		}
		v := resp.Header.Get(h)
		ok := resp.Header.Values(h) != nil
		for _, sub := range subs {
			ok = ok && strings.Contains(v, sub)
		}
		if ok && i > 0 {
			return nil
		}
		last = fmt.Sprintf("%s: %q", h, v)
	}
	return fmt.Errorf("%s: GET %s is not served as a hit (last %s)", s.name, uri, last)
}

// measured is one load run and how busy the machine was with other work.
type measured struct {
	res loadResult
	// other is the share (percent of all cores) of CPU time used during
	// the run by processes that are not part of the benchmark.
	other float64
	// serverBusy is the CPU time the servers used during the run, in
	// percent of one core: well under 100 on the server core means the
	// load generator, not the server, set the pace.
	serverBusy float64
	err        error // the run could not be made
}

// loadArgs are the load generator's flags.
type loadArgs struct {
	targets  []string
	conns    int
	dur      time.Duration
	warmup   time.Duration
	requests int // > 0: a run of this many requests instead of dur
	burst    bool
	rate     float64 // > 0: requests/s on a schedule (see loadgen.Config.Rate)
	uri      string
	keys     string // fixed, zipf, uniform, unique, sweep, cycle
	n        int
	size     int
	check    []string // header, substrings
	seed     int
	deadline time.Duration // kill the load generator after this long
}

// load runs the load generator pinned to the client CPU.
func (e *env) load(ctx context.Context, a loadArgs) measured {
	if a.conns == 0 {
		a.conns = e.opts.conns
	}
	if a.keys == "" {
		a.keys = "fixed"
	}
	args := []string{"-target", strings.Join(a.targets, ","), "-c", strconv.Itoa(a.conns),
		"-d", a.dur.String(), "-warmup", a.warmup.String(), "-uri", a.uri, "-keys", a.keys,
		"-n", strconv.Itoa(a.n), "-size", strconv.Itoa(a.size), "-seed", strconv.Itoa(a.seed + 1)}
	if a.burst {
		args = append(args, "-burst", "-timeout", "30s")
	}
	if a.requests > 0 {
		args = append(args, "-requests", strconv.Itoa(a.requests))
	}
	if a.rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(a.rate, 'f', 0, 64))
	}
	if len(a.check) > 0 {
		args = append(args, "-check-header", a.check[0])
		for _, c := range a.check[1:] {
			args = append(args, "-check-contains", c)
		}
	}
	limit := a.deadline
	if limit == 0 {
		limit = a.warmup + a.dur + 60*time.Second
	}
	lctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(lctx, "taskset", append([]string{"-c", e.opts.clientCPU, e.opts.loadgen}, args...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	busy0, total0, _ := systemTicks()
	ours0, srv0 := e.ourTicks(), e.serverTicks()
	err := cmd.Run()
	busy1, total1, _ := systemTicks()
	ours1, srv1 := e.ourTicks(), e.serverTicks()

	m := measured{serverBusy: busyPct(srv1-srv0, total1-total0)}
	if err != nil {
		m.err = fmt.Errorf("load generator: %w: %s", err, strings.TrimSpace(stderr.String()))
		return m
	}
	if err := json.Unmarshal(stdout.Bytes(), &m.res); err != nil {
		m.err = fmt.Errorf("load generator output: %w", err)
		return m
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && total1 > total0 {
		lg := time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds() * clockTicks
		other := float64(busy1-busy0) - float64(ours1-ours0) - lg
		m.other = max(0, 100*other/float64(total1-total0))
	}
	e.log.Info("load", "targets", a.targets, "uri", a.uri, "rps", int(m.res.RPS), "p99", m.res.P99,
		"failures", m.res.Failures(), "server_cpu_pct", int(m.serverBusy), "other_cpu_pct", int(m.other))
	return m
}

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// serverTicks is the CPU time used so far by the servers under test (every
// process started here but the origin).
func (e *env) serverTicks() int64 {
	var t int64
	for _, pid := range e.procs.pids(e.origin) {
		t += cpuTicks(pid)
	}
	return t
}

// busyPct converts ticks used over an interval in which the machine's
// CPUs together accounted total ticks into percent of one core.
func busyPct(used, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return 100 * float64(used) / (float64(total) / float64(runtime.NumCPU()))
}

// ourTicks is the CPU time used so far by the servers and the driver.
func (e *env) ourTicks() int64 {
	t := cpuTicks(os.Getpid())
	for _, pid := range e.procs.pids(nil) {
		t += cpuTicks(pid)
	}
	return t
}

// wrkResult is what a wrk run reported.
type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	failures string // "" when none
}

// wrkClean runs wrk (one thread and -c connections, like the load
// generator) on a quiet machine; a wrk run with failures is an error.
func (e *env) wrkClean(ctx context.Context, addr, uri string) measured {
	e.waitQuiet(ctx)
	secs := max(1, int(e.opts.dur.Round(time.Second)/time.Second))
	wctx, cancel := context.WithTimeout(ctx, e.opts.dur+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(wctx, "taskset", "-c", e.opts.clientCPU, "wrk", "-t1", "-c"+strconv.Itoa(e.opts.conns),
		"-d"+strconv.Itoa(secs)+"s", "--latency", "-H", "Host: "+benchHost, "http://"+addr+uri)
	busy0, total0, _ := systemTicks()
	ours0, srv0 := e.ourTicks(), e.serverTicks()
	out, err := cmd.CombinedOutput()
	busy1, total1, _ := systemTicks()
	ours1, srv1 := e.ourTicks(), e.serverTicks()
	m := measured{serverBusy: busyPct(srv1-srv0, total1-total0)}
	if err != nil {
		m.err = fmt.Errorf("wrk: %w: %s", err, out)
		return m
	}
	w, err := parseWrk(string(out))
	if err != nil {
		m.err = err
		return m
	}
	if w.failures != "" {
		m.err = errors.New("FAILED: wrk: " + w.failures)
		return m
	}
	m.res = loadResult{Requests: 1, RPS: w.rps, P50: w.p50, P99: w.p99}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && total1 > total0 {
		wk := time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds() * clockTicks
		m.other = max(0, 100*(float64(busy1-busy0)-float64(ours1-ours0)-wk)/float64(total1-total0))
	}
	e.log.Info("wrk", "target", addr, "uri", uri, "rps", int(w.rps), "p99", w.p99, "server_cpu_pct", int(m.serverBusy), "other_cpu_pct", int(m.other))
	return m
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var fails []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			r.p50 = parseWrkDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.p99 = parseWrkDuration(f[1])
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx"):
			fails = append(fails, strings.TrimSpace(line))
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors:"):
			fails = append(fails, strings.TrimSpace(line))
		}
	}
	if r.rps == 0 {
		return r, errors.New("wrk: no Requests/sec in its output: " + out)
	}
	r.failures = strings.Join(fails, "; ")
	return r, nil
}

// parseWrkDuration reads wrk's "538.00us", "4.40ms", "1.20s", "2.00m".
func parseWrkDuration(s string) time.Duration {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return time.Duration(f * float64(u.unit))
		}
	}
	return 0
}
