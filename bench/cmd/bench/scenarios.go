package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ringcache/ringcache/bench/loadgen"
	"github.com/ringcache/ringcache/bench/report"
)

type loadResult = loadgen.Result

// results collects what the scenarios produced, in order.
type results struct {
	sections []*section
	panels   []report.Panel
	verdicts []string // target checks, one line each
	notes    []string // where ringcache loses, with the measured numbers
	caveats  []string // limits of the measurement itself
	problems []string // failures, reported loudly
}

func (r *results) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

type section struct {
	title string
	body  strings.Builder
}

func (r *results) section(title string) *section {
	s := &section{title: title}
	r.sections = append(r.sections, s)
	return s
}

func (r *results) problem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	r.problems = append(r.problems, p)
}

func (s *section) printf(format string, args ...any) { fmt.Fprintf(&s.body, format, args...) }

// Colors of the systems in the chart.
func colorOf(name string) string {
	switch {
	case strings.HasPrefix(name, "ceiling"):
		return "#9c9c9c"
	case strings.HasPrefix(name, "ringcache"):
		return "#f28e2b"
	case name == "nginx-basic":
		return "#8cd17d" // the configuration before issue 11, lighter
	case strings.HasPrefix(name, "nginx"):
		return "#59a14f"
	case strings.HasPrefix(name, "varnish"):
		return "#4e79a7"
	}
	return "#b07aa1"
}

// pick returns the median run by throughput of runs and their sorted
// throughputs, or why there is none.
func pick(runs []measured) (measured, []float64, string) {
	if why := whyFailed(runs); why != "" {
		return measured{}, nil, why
	}
	var rps []float64
	for _, m := range runs {
		rps = append(rps, m.res.RPS)
	}
	slices.Sort(rps)
	return medianBy(runs, func(m measured) float64 { return m.res.RPS }), rps, ""
}

// pickP99 returns the run with the median p99, or why there is none.
func pickP99(runs []measured) (measured, string) {
	if why := whyFailed(runs); why != "" {
		return measured{}, why
	}
	return medianBy(runs, func(m measured) float64 { return float64(m.res.P99) }), ""
}

// whyFailed says why runs measured nothing, "" when they all succeeded:
// one failed run fails the cell, since a run with errors measured nothing.
func whyFailed(runs []measured) string {
	if len(runs) == 0 {
		return "not run"
	}
	for _, m := range runs {
		if m.err != nil {
			return m.err.Error()
		}
		if m.res.Failed() {
			return "FAILED: " + m.res.FailureSummary()
		}
	}
	return ""
}

// medianBy returns the run in the middle of runs ordered by key (the lower
// middle for an even count).
func medianBy(runs []measured, key func(measured) float64) measured {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b measured) int { return cmp.Compare(key(a), key(b)) })
	return sorted[(len(sorted)-1)/2]
}

func hitURI(name string, size int) string {
	return fmt.Sprintf("/hit/%s/%d?size=%d&cc=max-age=3600", name, size, size)
}

// hitSize is a body size of the hit path.
type hitSize struct {
	label string
	size  int
}

func hitSizes() []hitSize { return []hitSize{{"1 KiB", 1024}, {"64 KiB", 65536}} }

// singles are the single-server systems of scenarios 1-3.
type singles struct {
	ceiling, ringcache, varnish system
	// nginx holds one system per nginxConfigs entry started: the first is
	// the one the miss path and the herd use, the others run in the hit
	// path only.
	nginx []system
}

// all is every system, in the order of the hit path's rounds.
func (s singles) all() []system { return append([]system{s.ceiling}, s.caches()...) }

// caches is every cache of the hit path.
func (s singles) caches() []system { return append([]system{s.ringcache}, s.peers()...) }

// peers is every configuration of nginx and Varnish.
func (s singles) peers() []system { return append(slices.Clone(s.nginx), s.varnish) }

// compared is one system per cache, for the miss path and the herd.
func (s singles) compared() []system {
	out := []system{s.ringcache}
	if len(s.nginx) > 0 {
		out = append(out, s.nginx[0])
	}
	return append(out, s.varnish)
}

// hitKey names one cell of the hit path: a system and a body size.
type hitKey struct {
	sys  string
	size int
}

// generator is one way of loading the hit path, with its runs.
type generator struct {
	name string // as the tables and verdicts name it
	runs map[hitKey][]measured
}

// hitPath is scenario 1: one cached URL per system and size, requested by
// every connection; throughput and latency, every answer checked as a hit.
// wrk measures the same URLs as a cross-check: it spends less CPU per
// request than the Go generator, which can itself be the bottleneck in
// front of the fastest servers.
func (e *env) hitPath(ctx context.Context, r *results, sys singles, vers map[string]string) {
	sec := r.section("1. Hit path")
	sec.printf("One cached URL per system and body size, %d keep-alive connections, %v measured after %v of warm-up, rounds interleaved (every system in turn, then again); each table shows the median round by throughput and the range of all rounds. Every answer of the Go load generator is checked: status 200, exact body size, and the system's own hit marker (ringcache `Cache-Status: ...; hit`, nginx `X-Cache: HIT`, Varnish two ids in `X-Varnish`). wrk (`-t1 -c%d`, same pinning) checks only statuses, but the origin must see no request during all the hit runs, wrk's included. wrk costs less CPU per request than the Go generator: where the two disagree, the generator limited the server.\n\n",
		e.opts.conns, e.opts.dur, e.opts.warmup, e.opts.conns)
	sec.printf("nginx runs in %d configurations (`bench/cmd/bench/systems.go`), all with one worker, no access log (ringcache has none either), `keepalive_requests 1000000` and freshness from the origin's `Cache-Control`: **tuned** keeps hot cache files open (`open_file_cache max=10000 inactive=60s`, `open_file_cache_valid 60s`) and reads a body into one buffer (`output_buffers 1 128k`), with `sendfile off` (nginx's default: headers and a small body leave in one `writev`) or `sendfile on` (no copy of the body through user space, but two system calls and two segments); **basic** is the configuration this benchmark used before issue 11, `sendfile on` without the rest. Every target is judged against the fastest peer configuration at each size. Varnish: one thread pool (`thread_pools=1`; its 100 threads cover the connections), `malloc` storage, the builtin VCL, and its request log (VSL, the shared memory varnishlog and varnishncsa read; no reader runs) without the records it writes for every request (headers, timestamps, VCL calls: `vsl_mask`), as the others run without an access log.\n\n", len(sys.nginx))

	broken := make(map[string]string)
	for _, s := range sys.caches() {
		for _, hs := range hitSizes() {
			if err := e.warmHit(ctx, s, hitURI(s.name, hs.size), hs.size); err != nil {
				broken[s.name] = err.Error()
				r.problem("hit path: %v", err)
			}
		}
	}
	if err := e.originReset(ctx); err != nil {
		r.problem("hit path: %v", err)
		return
	}
	lg := generator{name: "Go load generator", runs: make(map[hitKey][]measured)}
	wrk := generator{name: "wrk", runs: make(map[hitKey][]measured)}
	for round := range e.opts.rounds {
		for _, hs := range hitSizes() {
			for _, s := range sys.all() {
				if broken[s.name] != "" || ctx.Err() != nil {
					continue
				}
				k := hitKey{s.name, hs.size}
				lg.runs[k] = append(lg.runs[k], e.loadClean(ctx, loadArgs{targets: []string{s.addr}, dur: e.opts.dur,
					warmup: e.opts.warmup, uri: hitURI(s.name, hs.size), size: hs.size, check: s.check, seed: round}))
				if e.opts.wrk && round < e.opts.wrkRounds {
					wrk.runs[k] = append(wrk.runs[k], e.wrkClean(ctx, s.addr, hitURI(s.name, hs.size)))
				}
			}
		}
	}
	if st, err := e.originStats(ctx); err != nil {
		r.problem("hit path: %v", err)
	} else if st.Requests > 0 {
		// A cache that went to the origin during a hit run was not serving hits.
		r.problem("hit path: the origin saw %d requests during the hit runs: %v", st.Requests, st.ByURI)
	}

	gens := []generator{lg}
	if e.opts.wrk {
		gens = append(gens, wrk)
	}
	for _, hs := range hitSizes() {
		var judged []hitJudgement
		for gi, g := range gens {
			judged = append(judged, e.hitTable(r, sec, g, hs, sys, vers, broken, gi == 0))
		}
		r.verdicts = append(r.verdicts, hitVerdicts(hs, judged)...)
	}
}

// hitJudgement is what one generator measured for ringcache and its
// reference points at one body size; ok is false when a cell failed.
type hitJudgement struct {
	gen            string
	ok             bool
	rc, ceil, peer float64 // requests/s; peer is the faster peer's
	rcP99, peerP99 time.Duration
}

// hitTable writes one generator's table for one body size, adds its chart
// panel when primary, and returns the numbers the targets are judged on.
func (e *env) hitTable(r *results, sec *section, g generator, hs hitSize, sys singles, vers, broken map[string]string, primary bool) hitJudgement {
	best := map[string]measured{}
	var peerBest float64
	peerP99 := time.Duration(1<<63 - 1)
	for _, s := range sys.all() {
		if m, _, why := pick(g.runs[hitKey{s.name, hs.size}]); why == "" {
			best[s.name] = m
		}
	}
	// The targets are judged against the best of every peer configuration.
	for _, s := range sys.peers() {
		if m, ok := best[s.name]; ok {
			peerBest = max(peerBest, m.res.RPS)
			peerP99 = min(peerP99, m.res.P99)
		}
	}
	ceil := best["ceiling"].res.RPS
	rounds := len(g.runs[hitKey{"ceiling", hs.size}])
	sec.printf("**%s bodies, %s** (median of %d rounds)\n\n", hs.label, g.name, rounds)
	t := report.Table{
		Header:     []string{"system", "requests/s", "× ceiling", "× faster peer", "p50", "p99", "rounds (req/s)", "server core busy", "other CPU load"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 7: true, 8: true},
	}
	panel := report.Panel{Title: fmt.Sprintf("Hit path, %s: requests/s (%s, median of %d rounds)", hs.label, g.name, rounds)}
	for _, s := range sys.all() {
		label := vers[s.name]
		m, rps, why := pick(g.runs[hitKey{s.name, hs.size}])
		if broken[s.name] != "" {
			why = broken[s.name]
		}
		if why != "" {
			t.Rows = append(t.Rows, []string{label, "FAILED", "", "", "", "", why})
			panel.Bars = append(panel.Bars, report.Bar{Label: label, Value: -1, Text: "FAILED", Color: colorOf(s.name)})
			r.problem("hit path %s (%s), %s: %s", hs.label, g.name, s.name, why)
			continue
		}
		t.Rows = append(t.Rows, []string{label, fmtInt(m.res.RPS), ratio(m.res.RPS, ceil), ratio(m.res.RPS, peerBest),
			fmtMs(m.res.P50), fmtMs(m.res.P99), fmtRange(rps), fmt.Sprintf("%.0f%%", m.serverBusy), fmt.Sprintf("%.0f%%", m.other)})
		panel.Bars = append(panel.Bars, report.Bar{Label: label, Value: m.res.RPS, Color: colorOf(s.name),
			Text: fmt.Sprintf("%s req/s  (%s ceiling)  p99 %s", fmtInt(m.res.RPS), ratio(m.res.RPS, ceil), fmtMs(m.res.P99))})
	}
	sec.printf("%s\n", t.Markdown())
	if primary {
		r.panels = append(r.panels, panel)
	}
	rc, ok := best["ringcache"]
	j := hitJudgement{gen: g.name, ok: ok && peerBest > 0 && ceil > 0, rc: rc.res.RPS, ceil: ceil, peer: peerBest, rcP99: rc.res.P99, peerP99: peerP99}
	if !ok {
		return j
	}
	for _, s := range sys.peers() {
		peer := s.name
		if m, ok := best[peer]; ok && m.res.RPS > rc.res.RPS {
			r.note("Hit path, %s (%s): %s served %s requests/s, %.2f× ringcache's %s.", hs.label, g.name, vers[peer], fmtInt(m.res.RPS), m.res.RPS/rc.res.RPS, fmtInt(rc.res.RPS))
		}
		if m, ok := best[peer]; ok && m.res.P99 < rc.res.P99 {
			r.note("Hit path, %s (%s): %s's p99 (%s) is below ringcache's (%s).", hs.label, g.name, vers[peer], fmtMs(m.res.P99), fmtMs(rc.res.P99))
		}
	}
	if c, ok := best["ceiling"]; ok && c.serverBusy < saturated {
		r.caveats = append(r.caveats, fmt.Sprintf("Hit path, %s (%s): the ceiling's core was %.0f%% busy, so the load generator (one core) set the pace, not the server: the ceiling is understated and ratios to it overstate how close the others come (ringcache's core: %.0f%%).", hs.label, g.name, c.serverBusy, rc.serverBusy))
	}
	return j
}

// saturated is the server-core use (percent) above which a server, not its
// load generator, is taken to set the pace.
const saturated = 90

// hitVerdicts judges the hit-path targets at one size; a target is met only
// if every generator's numbers meet it.
func hitVerdicts(hs hitSize, js []hitJudgement) []string {
	type target struct {
		what string
		ok   func(j hitJudgement) bool
		show func(j hitJudgement) string
	}
	targets := []target{{"64 KiB hits at least as fast as the faster peer",
		func(j hitJudgement) bool { return j.rc >= j.peer },
		func(j hitJudgement) string { return fmt.Sprintf("%.2f×", j.rc/j.peer) }}}
	if hs.size == 1024 {
		targets = []target{
			{"1 KiB hits ≥ 1.3× the faster peer",
				func(j hitJudgement) bool { return j.rc >= 1.3*j.peer },
				func(j hitJudgement) string { return fmt.Sprintf("%.2f×", j.rc/j.peer) }},
			{"1 KiB hits ≥ 0.7× the ceiling (aim 0.85×)",
				func(j hitJudgement) bool { return j.rc >= 0.7*j.ceil },
				func(j hitJudgement) string { return fmt.Sprintf("%.2f×", j.rc/j.ceil) }},
			{"1 KiB p99 below both peers'",
				func(j hitJudgement) bool { return j.rcP99 < j.peerP99 },
				func(j hitJudgement) string { return fmt.Sprintf("%s vs %s", fmtMs(j.rcP99), fmtMs(j.peerP99)) }},
		}
	}
	var out []string
	for _, t := range targets {
		ok := len(js) > 0
		var parts []string
		for _, j := range js {
			if !j.ok {
				ok = false
				parts = append(parts, "not measured ("+j.gen+": a run failed)")
				continue
			}
			ok = ok && t.ok(j)
			parts = append(parts, t.show(j)+" ("+j.gen+")")
		}
		out = append(out, verdict(ok, t.what+": "+strings.Join(parts, ", ")))
	}
	return out
}

// missPath is scenario 2: every request a new key, from an origin that
// takes 20 ms; what each cache adds over asking the origin directly.
func (e *env) missPath(ctx context.Context, r *results, sys singles, vers map[string]string) {
	sec := r.section("2. Miss path (origin answers after 20 ms)")
	sec.printf("Every request asks for a new key (`/miss/<system>/<n>?size=1024&cc=max-age=3600&delay=20ms`), so every request misses and is fetched and stored; %d connections, %v measured after %v of warm-up. The origin must receive at least one request per measured request. Overheads are relative to the origin asked directly by the same load generator.\n\n",
		e.opts.conns, e.opts.dur, e.opts.warmup)
	origin := system{name: "origin", addr: e.oAddr}
	t := report.Table{
		Header:     []string{"path", "requests/s", "× origin", "p50", "p99", "p50 added", "p99 added", "origin requests"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true},
	}
	panel := report.Panel{Title: "Miss path, 20 ms origin: p50 latency (lower is better)"}
	var base, rcMiss loadResult
	for _, s := range append([]system{origin}, sys.compared()...) {
		if ctx.Err() != nil {
			return
		}
		label := vers[s.name]
		if s.name == "origin" {
			label = "origin alone"
		}
		if err := e.originReset(ctx); err != nil {
			r.problem("miss path: %v", err)
			return
		}
		m := e.loadClean(ctx, loadArgs{targets: []string{s.addr}, dur: e.opts.dur, warmup: e.opts.warmup,
			uri: "/miss/" + s.name + "/{k}?size=1024&cc=max-age=3600&delay=20ms", keys: "unique", size: 1024})
		st, err := e.originStats(ctx)
		why := ""
		switch {
		case m.err != nil:
			why = m.err.Error()
		case m.res.Failed():
			why = "FAILED: " + m.res.FailureSummary()
		case err != nil:
			why = err.Error()
		case st.Requests < m.res.Requests:
			why = fmt.Sprintf("the origin saw %d requests for %d measured misses", st.Requests, m.res.Requests)
		}
		if why != "" {
			t.Rows = append(t.Rows, []string{label, "FAILED", "", "", "", "", "", why})
			panel.Bars = append(panel.Bars, report.Bar{Label: label, Value: -1, Text: "FAILED", Color: colorOf(s.name)})
			r.problem("miss path, %s: %s", s.name, why)
			continue
		}
		if s.name == "origin" {
			base = m.res
		}
		if s.name == "ringcache" {
			rcMiss = m.res
		} else if s.name != "origin" && rcMiss.Requests > 0 && m.res.P50 < rcMiss.P50 {
			r.note("Miss path: %s adds less to the median latency than ringcache (%s vs %s over the origin's %s).", label, fmtMsDelta(m.res.P50-base.P50), fmtMsDelta(rcMiss.P50-base.P50), fmtMs(base.P50))
		}
		t.Rows = append(t.Rows, []string{label, fmtInt(m.res.RPS), ratio(m.res.RPS, base.RPS), fmtMs(m.res.P50), fmtMs(m.res.P99),
			fmtMsDelta(m.res.P50 - base.P50), fmtMsDelta(m.res.P99 - base.P99), fmtInt(float64(st.Requests))})
		panel.Bars = append(panel.Bars, report.Bar{Label: label, Value: float64(m.res.P50) / 1e6, Color: colorOf(s.name),
			Text: fmt.Sprintf("p50 %s  p99 %s  %s req/s", fmtMs(m.res.P50), fmtMs(m.res.P99), fmtInt(m.res.RPS))})
	}
	sec.printf("%s\n", t.Markdown())
	r.panels = append(r.panels, panel)
}

// herd is scenario 3: a thousand requests for one cold key at once.
func (e *env) herd(ctx context.Context, r *results, name, label string, targets []string) []string {
	uri := "/herd/" + name + "?size=1024&delay=200ms&cc=max-age=60"
	if err := e.originReset(ctx); err != nil {
		r.problem("herd: %v", err)
		return []string{label, "FAILED", "", "", "", err.Error()}
	}
	m := e.load(ctx, loadArgs{targets: targets, conns: e.opts.herd, burst: true, uri: uri, size: 1024, deadline: 90 * time.Second})
	st, err := e.originStats(ctx)
	switch {
	case m.err != nil:
		r.problem("herd, %s: %v", label, m.err)
		return []string{label, "FAILED", "", "", "", m.err.Error()}
	case err != nil:
		r.problem("herd, %s: %v", label, err)
		return []string{label, "FAILED", "", "", "", err.Error()}
	}
	r.verdicts = append(r.verdicts, verdict(st.Requests == 1 && !m.res.Failed(),
		fmt.Sprintf("thundering herd, %s: %d origin request(s) for %d concurrent requests", label, st.Requests, m.res.Requests)))
	fails := ""
	if m.res.Failed() {
		fails = m.res.FailureSummary()
		r.problem("herd, %s: %s", label, fails)
	}
	return []string{label, fmtInt(float64(m.res.Requests)), fmt.Sprint(st.Requests), fmtMs(m.res.P50), fmtMs(m.res.Max), fails}
}

func herdTable() report.Table {
	return report.Table{Header: []string{"system", "concurrent requests", "origin requests", "p50", "slowest", "failures"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true}}
}

// zipf is scenario 4: a Zipf workload over a cache budget that holds a
// fraction of the keys, split three ways.
func (e *env) zipf(ctx context.Context, r *results) {
	sec := r.section("4. Zipf workload: a cluster pools its memory")
	total := e.opts.zipfBudget
	per := total / 3
	sec.printf("Zipf s=1.1 over %s keys (`/zipf/<k>?size=100`, 100-byte bodies), %d connections; %s requests to warm up, then %s measured (the same workload whatever each setup's speed); hit ratio = 1 − origin requests / requests during the measured run. Total cache budget %s: the cluster and the independent nodes get a third each (%s). Hot copies are off (`--hot-cache-size 0`) so the cluster uses no memory beyond its budget. All nodes share the server core. Every node: `--max-object-size 1MiB` (the default 8MiB must not exceed the cache size).\n\n",
		fmtInt(float64(e.opts.zipfKeys)), e.opts.conns, fmtInt(float64(e.opts.zipfWarm)), fmtInt(float64(e.opts.zipfRequests)), fmtBytes(total), fmtBytes(per))
	t := report.Table{Header: []string{"setup", "hit ratio", "requests", "origin requests", "requests/s", "failures"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true}}
	panel := report.Panel{Title: fmt.Sprintf("Zipf s=1.1, %s keys, %s in total: hit ratio", fmtInt(float64(e.opts.zipfKeys)), fmtBytes(total))}
	setups := []struct {
		label, bar, color string
		start             func() ([]*rcNode, error)
	}{
		{"3-node cluster, 1/3 of the memory each (two copies of each key, the default)", "cluster, 1/3 each", "#f28e2b", func() ([]*rcNode, error) {
			return e.startCluster(ctx, []string{"z1", "z2", "z3"}, nodeOpts{cacheSize: fmt.Sprint(per), hotCache: "0", maxObject: "1MiB"}, nil)
		}},
		{"3-node cluster, 1/3 of the memory each, one copy of each key (`--replicas 1`)", "cluster, one copy", "#ffbe7d", func() ([]*rcNode, error) {
			return e.startCluster(ctx, []string{"y1", "y2", "y3"}, nodeOpts{cacheSize: fmt.Sprint(per), hotCache: "0", maxObject: "1MiB", replicas: "1"}, nil)
		}},
		{"1 node, all of the memory", "one node, all", "#e6a157", func() ([]*rcNode, error) {
			n, err := e.startNode(ctx, nodeOpts{name: "zone", cacheSize: fmt.Sprint(total), maxObject: "1MiB"})
			return []*rcNode{n}, err
		}},
		{"3 independent nodes, 1/3 each (client picks one at random)", "independent, 1/3 each", "#b07aa1", func() ([]*rcNode, error) {
			var nodes []*rcNode
			for _, name := range []string{"i1", "i2", "i3"} {
				n, err := e.startNode(ctx, nodeOpts{name: name, cacheSize: fmt.Sprint(per), maxObject: "1MiB"})
				if err != nil {
					return nodes, err
				}
				nodes = append(nodes, n)
			}
			return nodes, nil
		}},
	}
	ratios := make([]float64, len(setups))
	for i, su := range setups {
		if ctx.Err() != nil {
			return
		}
		row, ratio := e.zipfRun(ctx, r, su.label, su.start)
		t.Rows = append(t.Rows, row)
		ratios[i] = ratio
		bar := report.Bar{Label: su.bar, Value: ratio, Color: su.color}
		if ratio >= 0 {
			bar.Text = fmt.Sprintf("%.1f%% hits", 100*ratio)
		} else {
			bar.Text = "FAILED"
		}
		panel.Bars = append(panel.Bars, bar)
	}
	sec.printf("%s\n", t.Markdown())
	c, one, s, ind := ratios[0], ratios[1], ratios[2], ratios[3]
	if c >= 0 && one >= 0 && s >= 0 && ind >= 0 {
		sec.printf("With two copies of each key (what a crash costs in memory: half the distinct capacity) the cluster's hit ratio is %s points from one node holding all the memory, and %s points over three independent caches, whose misses are %.2f× the cluster's. With one copy it is %s points from one node: the cluster pools its memory, and loses a member's share when it crashes.\n\n",
			points(c-s), points(c-ind), (1-ind)/max(1-c, 1e-9), points(one-s))
		if s-one > 0.01 {
			r.note("Zipf: the 3-node cluster's hit ratio with one copy of each key (%.1f%%) is %.1f points below one node with all the memory (%.1f%%).", 100*one, 100*(s-one), 100*s)
		}
	}
	r.panels = append(r.panels, panel)
}

func (e *env) zipfRun(ctx context.Context, r *results, label string, start func() ([]*rcNode, error)) ([]string, float64) {
	nodes, err := start()
	defer stopNodes(nodes)
	if err != nil {
		r.problem("zipf, %s: %v", label, err)
		return []string{label, "FAILED", "", "", "", err.Error()}, -1
	}
	var targets []string
	for _, n := range nodes {
		targets = append(targets, n.addr)
	}
	args := loadArgs{targets: targets, requests: e.opts.zipfWarm, uri: "/zipf/{k}?size=100&cc=max-age=3600",
		keys: "zipf", n: e.opts.zipfKeys, size: 100, seed: 11, deadline: 5 * time.Minute}
	warm := e.load(ctx, args)
	if warm.err != nil || warm.res.Failed() {
		why := fmt.Sprint(warm.err)
		if warm.err == nil {
			why = warm.res.FailureSummary()
		}
		r.problem("zipf, %s: warm-up: %s", label, why)
		return []string{label, "FAILED", "", "", "", "warm-up: " + why}, -1
	}
	if err := e.originReset(ctx); err != nil {
		r.problem("zipf: %v", err)
		return []string{label, "FAILED", "", "", "", err.Error()}, -1
	}
	args.requests, args.seed = e.opts.zipfRequests, 12
	m := e.load(ctx, args)
	st, err := e.originStats(ctx)
	switch {
	case m.err != nil:
		err = m.err
	case m.res.Failed():
		err = fmt.Errorf("%s", m.res.FailureSummary())
	}
	if err != nil || m.res.Requests == 0 {
		r.problem("zipf, %s: %v", label, err)
		return []string{label, "FAILED", "", "", "", fmt.Sprint(err)}, -1
	}
	ratio := 1 - float64(st.Requests)/float64(m.res.Requests)
	return []string{label, fmt.Sprintf("%.1f%%", 100*ratio), fmtInt(float64(m.res.Requests)), fmtInt(float64(st.Requests)), fmtInt(m.res.RPS), ""}, ratio
}

// findOwned returns a URI that node a forwards to owner b, confirmed by
// the two-member Cache-Status of a forwarded hit.
func (e *env) findOwned(ctx context.Context, a, b *rcNode, bName string) (string, error) {
	for i := range 500 {
		uri := fmt.Sprintf("/fwd/%d?size=1024&cc=max-age=3600", i)
		resp, _, err := e.get(ctx, a.addr, uri)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s via %s: status %d", uri, a.proc.name, resp.StatusCode)
		}
		if !strings.HasPrefix(resp.Header.Get("Cache-Status"), bName+";") {
			continue
		}
		// Now stored at b: later requests through a must be b's hit,
		// forwarded — unless a holds the key's replica, which answers
		// once its copy lands (milliseconds): such a key is skipped.
		replica := false
		for try := 0; try < 5 && !replica; try++ {
			if try > 0 {
				time.Sleep(40 * time.Millisecond) // time for a copy to land
			}
			resp, _, err = e.get(ctx, a.addr, uri)
			if err != nil {
				return "", err
			}
			cs := resp.Header.Get("Cache-Status")
			if replica = strings.Contains(cs, "detail=replica"); replica {
				break
			}
			if !strings.HasPrefix(cs, bName+"; hit") || !strings.Contains(cs, ", ") {
				return "", fmt.Errorf("GET %s via %s: Cache-Status %q is not %s's hit forwarded", uri, a.proc.name, cs, bName)
			}
		}
		if !replica {
			return uri, nil
		}
	}
	return "", fmt.Errorf("none of 500 URIs is owned by %s", bName)
}

// cluster runs scenarios 3 (on a cluster), 5 and 6 on one 3-node cluster.
func (e *env) cluster(ctx context.Context, r *results, herdRows *report.Table) {
	nodes, err := e.startCluster(ctx, []string{"a", "b", "c"}, nodeOpts{cacheSize: "64MiB", hotCache: "0"}, nil)
	defer func() { stopNodes(nodes) }()
	if err != nil {
		r.problem("cluster: %v", err)
		return
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	herdRows.Rows = append(herdRows.Rows, e.herd(ctx, r, "cluster", "ringcache 3-node cluster (requests spread over the nodes)",
		[]string{a.addr, b.addr, c.addr}))

	e.forwarded(ctx, r, a, b)
	if ctx.Err() != nil {
		return
	}
	d := e.churn(ctx, r, a, b, c)
	if d != nil {
		nodes = append(nodes, d)
	}
}

// The forwarded-hit goals of issue 11.
const (
	fwdGoalThroughput = 0.5 // × a local hit's requests/s, a core per node
	fwdGoalP99        = 2.0 // × a local hit's p99 at the same load
)

// forwarded is scenario 5: a hit asked of a node that does not own the
// key, served there from the owner's entry, vs the same hit asked of the
// owner; at saturation, and at the same scheduled load for latency.
func (e *env) forwarded(ctx context.Context, r *results, a, b *rcNode) {
	sec := r.section("5. Forwarded hits")
	uri, err := e.findOwned(ctx, a, b, "b")
	if err != nil {
		r.problem("forwarded hits: %v", err)
		sec.printf("FAILED: %v\n\n", err)
		return
	}
	sec.printf("A 1 KiB URL owned by node b (`%s`), hot copies off, asked of b (a local hit) or of node a, which does not own it: a looks the entry up at b over the lookup exchange (small binary frames on one persistent mutual-TLS connection per peer, ALPN `ringcache-frames/1`, many lookups in flight, writes batched) and serves it through its own hit path. The answer reads as b's relayed answer did (`b; hit; ttl=N, a; fwd=miss; fwd-status=200; detail=peer`; both members checked on every answer; a hit of the key's replica holder, relayed by a, also counts: failover takes it when b is slower than its stall grace). Both nodes share the server core, so here a forwarded hit pays for both nodes' work on one core; with a core per node it would be paced by the busier of the two, estimated below from CPU per request. %d connections, %v measured after %v of warm-up, %d rounds interleaved, median. Goals (issue 11): forwarded-hit throughput ≥ %.1f× a local hit's with a core per node; p99 ≤ %.0f× a local hit's at the same load.\n\n",
		uri, e.opts.conns, e.opts.dur, e.opts.warmup, e.opts.rounds, fwdGoalThroughput, fwdGoalP99)
	local := loadArgs{targets: []string{b.addr}, dur: e.opts.dur, warmup: e.opts.warmup, uri: uri, size: 1024,
		check: []string{"Cache-Status", "b; hit"}}
	fwd := local
	fwd.targets = []string{a.addr}
	// b's hit relayed by a; when b answers a lookup slower than its stall
	// grace (possible with every node on one saturated core), failover
	// takes the key's replica holder's hit instead, which is as correct.
	fwd.check = []string{"Cache-Status", "; hit; ", ", a; "}
	var lr, fr []measured
	for round := range e.opts.rounds {
		local.seed, fwd.seed = round, round
		lr = append(lr, e.loadClean(ctx, local))
		fr = append(fr, e.loadClean(ctx, fwd))
	}
	lm, lrps, lwhy := pick(lr)
	fm, frps, fwhy := pick(fr)
	t := report.Table{Header: []string{"path", "requests/s", "× local hit", "p50", "p99", "rounds (req/s)"}, RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true}}
	panel := report.Panel{Title: "Forwarded hit vs local hit, 1 KiB: requests/s (both nodes on one core)"}
	for _, row := range []struct {
		label string
		m     measured
		rps   []float64
		why   string
	}{{"local hit (owner asked)", lm, lrps, lwhy}, {"forwarded hit (non-owner asked)", fm, frps, fwhy}} {
		if row.why != "" {
			t.Rows = append(t.Rows, []string{row.label, "FAILED", "", "", "", row.why})
			r.problem("forwarded hits, %s: %s", row.label, row.why)
			panel.Bars = append(panel.Bars, report.Bar{Label: row.label, Value: -1, Text: "FAILED", Color: "#f28e2b"})
			continue
		}
		t.Rows = append(t.Rows, []string{row.label, fmtInt(row.m.res.RPS), ratio(row.m.res.RPS, lm.res.RPS), fmtMs(row.m.res.P50), fmtMs(row.m.res.P99), fmtRange(row.rps)})
		panel.Bars = append(panel.Bars, report.Bar{Label: strings.SplitN(row.label, " (", 2)[0], Value: row.m.res.RPS, Color: "#f28e2b",
			Text: fmt.Sprintf("%s req/s (%s local)  p99 %s", fmtInt(row.m.res.RPS), ratio(row.m.res.RPS, lm.res.RPS), fmtMs(row.m.res.P99))})
	}
	sec.printf("**At saturation** (each path as fast as it goes, both nodes on the one server core)\n\n%s\n", t.Markdown())
	r.panels = append(r.panels, panel)
	if lwhy != "" || fwhy != "" || ctx.Err() != nil {
		r.verdicts = append(r.verdicts, verdict(false, "forwarded hits: not measured (a run failed)"))
		return
	}
	shared := fm.res.RPS / lm.res.RPS

	// Where the time goes: CPU per request of each node, from one more
	// run of each kind without warm-up (so every request is counted).
	local.warmup, fwd.warmup = 0, 0
	_, lc := e.cpuPerRequest(ctx, local, a.proc, b.proc)
	_, fc := e.cpuPerRequest(ctx, fwd, a.proc, b.proc)
	tput := fmt.Sprintf("%.2f× measured with both nodes on one core (the estimate for a core per node needs the CPU runs, which failed)", shared)
	est := shared
	if lc != nil && fc != nil {
		// A core per node: the local hit is paced by b alone, the
		// forwarded one by the busier of a and b.
		est = float64(lc[1]) / float64(max(fc[0], fc[1]))
		busier := "a"
		if fc[1] > fc[0] {
			busier = "b"
		}
		sec.printf("CPU per request (one more run of each, all requests counted): local hit %s on b; forwarded hit %s on a (the node asked) + %s on b (the owner) = %s, %.2f× the local hit's. With a core per node the forwarded hit would be paced by the busier node, %s: about %s ÷ %s = **%.2f×** a local hit's requests/s (an estimate; measured above with both nodes on one core: %.2f×).\n\n",
			fmtUs(lc[1]), fmtUs(fc[0]), fmtUs(fc[1]), fmtUs(fc[0]+fc[1]), float64(fc[0]+fc[1])/float64(lc[1]), busier, fmtUs(lc[1]), fmtUs(max(fc[0], fc[1])), est, shared)
		tput = fmt.Sprintf("%.2f× estimated from CPU per request (%s per local hit on b; %s on a + %s on b per forwarded one), %.2f× measured with both nodes on one core", est, fmtUs(lc[1]), fmtUs(fc[0]), fmtUs(fc[1]), shared)
	}
	r.verdicts = append(r.verdicts, verdict(est >= fwdGoalThroughput, fmt.Sprintf("forwarded-hit throughput ≥ %.1f× a local hit's, a core per node: %s", fwdGoalThroughput, tput)))
	r.note("Forwarded hits: %.2f× a local hit's requests/s with both nodes on one core (%s vs %s), about %.2f× with a core per node. A forwarded hit costs a lookup frame each way on a persistent TLS connection, and the owner's work on the entry, on top of the asking node's hit path. In production the hot cache (on by default, off here) answers popular keys on the node asked.",
		shared, fmtInt(fm.res.RPS), fmtInt(lm.res.RPS), est)
	e.forwardedLatency(ctx, r, sec, local, fwd, fm.res.RPS)
}

// forwardedLatency compares the p99 of local and forwarded hits at one
// scheduled load, half what the forwarded path sustains on the shared
// core, so that neither path runs saturated and queueing does not stand in
// for the cost of the hop.
func (e *env) forwardedLatency(ctx context.Context, r *results, sec *section, local, fwd loadArgs, fwdRPS float64) {
	rate := math.Round(fwdRPS / 2)
	local.rate, fwd.rate = rate, rate
	local.warmup, fwd.warmup = e.opts.warmup, e.opts.warmup
	var lr, fr []measured
	for round := range e.opts.rounds {
		local.seed, fwd.seed = round, round
		lr = append(lr, e.loadClean(ctx, local))
		fr = append(fr, e.loadClean(ctx, fwd))
	}
	lm, lwhy := pickP99(lr)
	fm, fwhy := pickP99(fr)
	t := report.Table{Header: []string{"path", "requests/s", "p50", "p99", "p99 × local hit", "p99 of the rounds"}, RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true}}
	for _, row := range []struct {
		label string
		runs  []measured
		m     measured
		why   string
	}{{"local hit (owner asked)", lr, lm, lwhy}, {"forwarded hit (non-owner asked)", fr, fm, fwhy}} {
		if row.why != "" {
			t.Rows = append(t.Rows, []string{row.label, "FAILED", "", "", "", row.why})
			r.problem("forwarded hits at %s requests/s, %s: %s", fmtInt(rate), row.label, row.why)
			continue
		}
		t.Rows = append(t.Rows, []string{row.label, fmtInt(row.m.res.RPS), fmtMs(row.m.res.P50), fmtMs(row.m.res.P99),
			ratio(float64(row.m.res.P99), float64(lm.res.P99)), fmtP99s(row.runs)})
	}
	sec.printf("**At the same load**: %s requests/s on a schedule (`-rate`, half what the forwarded path sustained above), the median round by p99\n\n%s\n", fmtInt(rate), t.Markdown())
	what := fmt.Sprintf("p99 of a forwarded hit ≤ %.0f× a local hit's at the same load (%s requests/s)", fwdGoalP99, fmtInt(rate))
	if lwhy != "" || fwhy != "" {
		r.verdicts = append(r.verdicts, verdict(false, what+": not measured (a run failed)"))
		return
	}
	for _, m := range []measured{lm, fm} {
		if m.res.RPS < 0.9*rate {
			r.caveats = append(r.caveats, fmt.Sprintf("Forwarded hits at the same load: a run reached %s of the %s requests/s scheduled, so the two paths did not see quite the same load.", fmtInt(m.res.RPS), fmtInt(rate)))
			break
		}
	}
	x := float64(fm.res.P99) / float64(lm.res.P99)
	r.verdicts = append(r.verdicts, verdict(x <= fwdGoalP99, fmt.Sprintf("%s: %.2f× (%s vs %s)", what, x, fmtMs(fm.res.P99), fmtMs(lm.res.P99))))
}

// fmtP99s writes the smallest and largest p99 of runs.
func fmtP99s(runs []measured) string {
	var lo, hi time.Duration
	for i, m := range runs {
		if i == 0 || m.res.P99 < lo {
			lo = m.res.P99
		}
		hi = max(hi, m.res.P99)
	}
	return fmtMs(lo) + " – " + fmtMs(hi)
}

// cpuPerRequest runs a once on a quiet machine and returns the run and the
// CPU time each of ps used per request (user and system, the kernel's
// network work included), nil if the run failed. Every request of the run
// is counted: a must have no warm-up.
func (e *env) cpuPerRequest(ctx context.Context, a loadArgs, ps ...*proc) (measured, []time.Duration) {
	e.waitQuiet(ctx)
	before := make([]int64, len(ps))
	for i, p := range ps {
		before[i] = cpuTicks(p.pid())
	}
	m := e.load(ctx, a)
	if m.err != nil || m.res.Failed() || m.res.Requests == 0 {
		return m, nil
	}
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		ticks := cpuTicks(p.pid()) - before[i]
		out[i] = time.Duration(float64(ticks) * float64(time.Second) / clockTicks / float64(m.res.Requests))
	}
	return m, out
}

// churn is scenario 6: a member joins, then one leaves, while every key of
// a warm set keeps being requested. It returns the joined node.
func (e *env) churn(ctx context.Context, r *results, a, b, c *rcNode) *rcNode {
	sec := r.section("6. Membership change under load")
	n := e.opts.churnKeys
	uri := "/churn/{k}?size=1024&cc=max-age=3600"
	sec.printf("Nodes a, b, c hold %s warm keys (`%s`, swept once through the cluster). Then, under uniform load over those keys (20 connections, %v per phase), node d joins (3 → 4 members), and afterwards node c is stopped with SIGTERM (4 → 3: it hands its entries off and exits). Every origin request during a phase is a refetch of a key the cluster had; every non-2xx or transport error is counted. \"A plain ring\" is what a cache that forgets moved keys would refetch: the moved share of the key space times the keys.\n\n",
		fmtInt(float64(n)), uri, e.opts.churnDur)
	fail := func(format string, args ...any) *rcNode {
		msg := fmt.Sprintf(format, args...)
		r.problem("membership change: %s", msg)
		sec.printf("FAILED: %s\n\n", msg)
		return nil
	}
	if err := e.originReset(ctx); err != nil {
		return fail("%v", err)
	}
	warm := e.load(ctx, loadArgs{targets: []string{a.addr, b.addr, c.addr}, conns: 20, uri: uri, keys: "sweep", n: n, size: 1024, deadline: 3 * time.Minute})
	if warm.err != nil || warm.res.Failed() {
		return fail("warm-up sweep: %v %s", warm.err, warm.res.FailureSummary())
	}
	if st, err := e.originStats(ctx); err != nil || st.Requests != int64(n) {
		return fail("warm-up sweep: the origin saw %d requests for %d keys (%v)", st.Requests, n, err)
	}
	t := report.Table{Header: []string{"change", "requests", "origin refetches", "a plain ring", "errors", "converged / exited after"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true}}

	// phase runs load on targets while change runs 3 s in.
	phase := func(targets []string, change func() (string, error)) (measured, int64, string, error) {
		if err := e.originReset(ctx); err != nil {
			return measured{}, 0, "", err
		}
		done := make(chan measured, 1)
		go func() {
			done <- e.load(ctx, loadArgs{targets: targets, conns: 20, dur: e.opts.churnDur, uri: uri, keys: "uniform", n: n, size: 1024, seed: 21})
		}()
		var took string
		var cerr error
		select {
		case <-time.After(3 * time.Second):
			took, cerr = change()
		case <-ctx.Done():
			cerr = ctx.Err()
		}
		m := <-done
		st, err := e.originStats(ctx)
		if cerr == nil {
			cerr = err
		}
		return m, st.Requests, took, cerr
	}

	var d *rcNode
	jm, jref, jtook, err := phase([]string{a.addr, b.addr, c.addr}, func() (string, error) {
		t0 := time.Now()
		var err error
		d, err = e.startNode(ctx, nodeOpts{name: "d", cacheSize: "64MiB", hotCache: "0", cluster: true, join: a.gossip})
		if err != nil {
			return "", err
		}
		if err := e.waitMembers(ctx, []*rcNode{a, b, c, d}, []string{"a", "b", "c", "d"}); err != nil {
			return "", err
		}
		return time.Since(t0).Round(10*time.Millisecond).String() + " (all see 4 members)", nil
	})
	if err != nil {
		fail("join: %v", err)
		return d
	}
	after, err := e.clusterOf(ctx, a)
	if err != nil {
		fail("cluster view: %v", err)
		return d
	}
	dShare := after.alive()["d"]
	cShare := after.alive()["c"]
	t.Rows = append(t.Rows, e.churnRow(r, "d joins (3 → 4)", jm, jref, dShare*float64(n), jtook))

	lm, lref, ltook, err := phase([]string{a.addr, b.addr, d.addr}, func() (string, error) {
		t0 := time.Now()
		if err := c.proc.stop(syscall.SIGTERM, 60*time.Second); err != nil {
			return "", fmt.Errorf("node c did not exit cleanly after SIGTERM: %w; log: %s", err, c.proc.logTail())
		}
		return time.Since(t0).Round(10*time.Millisecond).String() + " (c exited 0)", nil
	})
	if err != nil {
		fail("leave: %v", err)
		return d
	}
	t.Rows = append(t.Rows, e.churnRow(r, "c leaves by SIGTERM (4 → 3)", lm, lref, cShare*float64(n), ltook))
	sec.printf("%s\n", t.Markdown())
	r.panels = append(r.panels, report.Panel{
		Title: fmt.Sprintf("Membership change under load, %s warm keys: origin refetches (lower is better)", fmtInt(float64(n))),
		Bars: []report.Bar{
			{Label: "join: ringcache", Value: float64(jref), Text: fmtInt(float64(jref)), Color: "#f28e2b"},
			{Label: "join: a plain ring", Value: dShare * float64(n), Text: "≈" + fmtInt(dShare*float64(n)), Color: "#9c9c9c"},
			{Label: "leave: ringcache", Value: float64(lref), Text: fmtInt(float64(lref)), Color: "#f28e2b"},
			{Label: "leave: a plain ring", Value: cShare * float64(n), Text: "≈" + fmtInt(cShare*float64(n)), Color: "#9c9c9c"},
		},
	})
	if jref > 0 {
		r.note("Join under load: %s keys were refetched from the origin while d joined (a plain ring: ≈%s).", fmtInt(float64(jref)), fmtInt(dShare*float64(n)))
	}
	if lref > 0 {
		r.note("Graceful leave under load: %s of the ≈%s keys c owned were refetched from the origin (%.0f%%), although c exited cleanly (%s): its entries did not reach their new owners before requests for them did.",
			fmtInt(float64(lref)), fmtInt(cShare*float64(n)), 100*float64(lref)/max(1, cShare*float64(n)), ltook)
	}
	return d
}

func (e *env) churnRow(r *results, label string, m measured, refetch int64, plain float64, took string) []string {
	if m.err != nil {
		r.problem("membership change, %s: %v", label, m.err)
		return []string{label, "FAILED", "", "", "", m.err.Error()}
	}
	r.verdicts = append(r.verdicts, verdict(m.res.Failures() == 0,
		fmt.Sprintf("membership change, %s: %d errors, %d origin refetches (a plain ring: ≈%.0f)", label, m.res.Failures(), refetch, plain)))
	errs := fmt.Sprint(m.res.Failures())
	if m.res.Failed() {
		errs += ": " + m.res.FailureSummary()
	}
	return []string{label, fmtInt(float64(m.res.Requests)), fmtInt(float64(refetch)), fmt.Sprintf("≈%s", fmtInt(plain)), errs, took}
}

// points writes a difference of ratios in percentage points, "+1.2".
func points(d float64) string {
	if d > -0.0005 && d < 0.0005 {
		return "0.0"
	}
	return fmt.Sprintf("%+.1f", 100*d)
}

func verdict(ok bool, s string) string {
	if ok {
		return "met: " + s
	}
	return "MISSED: " + s
}
