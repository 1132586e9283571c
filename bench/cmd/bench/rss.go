package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ringcache/ringcache/bench/report"
)

// The memory goal of issue 9: a node's resident memory stays within
// rssGoalFactor × its budget plus rssGoalSlack at any fill level, so a
// sidecar's memory limit can be derived from cache_size. The node's own
// GOMEMLIMIT (cmd/ringcache/memlimit.go) is derived from the same line.
const (
	rssGoalFactor = 1.25
	rssGoalSlack  = 64 << 20
)

func rssGoal(budget int64) int64 { return int64(rssGoalFactor*float64(budget)) + rssGoalSlack }

// rssSizes are the body sizes of the memory scenario: small objects, where
// per-entry bookkeeping dominates; 32 KiB, just past the runtime's largest
// size class; and 1 MiB, page-rounded and few.
func rssSizes() []hitSize {
	return []hitSize{{"100 B", 100}, {"32 KiB", 32 << 10}, {"1 MiB", 1 << 20}}
}

// rssLevels are the fill levels measured, as multiples of the budget
// written: half full, full, and twice over, where every Set evicts.
var rssLevels = []float64{0.5, 1, 2}

// rssSample is one measurement of a node.
type rssSample struct {
	rss, peak   int64 // VmRSS, VmHWM
	heapInuse   int64 // go_memstats_heap_inuse_bytes: spans holding objects, live or not yet swept
	live        int64 // HeapAlloc right after a forced GC
	storeBytes  int64
	storeItems  int64
	memoryLimit int64 // go_gc_gomemlimit_bytes; 0 if the node does not export it
}

// rss is the memory scenario: for each object size a fresh node with
// budget -rss-budget is filled over HTTP from the demo origin, new keys
// only, to each fill level in turn; after each level its resident memory
// (current and peak), Go heap and store are read and compared with the
// budget and the goal line.
func (e *env) rss(ctx context.Context, r *results) {
	sec := r.section("8. Memory against the budget")
	budget := e.opts.rssBudget
	goal := rssGoal(budget)
	sec.printf("One node per object size with `--cache-size %s` (hot copies off, `--max-object-size 2MiB`), filled through its proxy listener from the demo origin with new keys only (`/rss/<size>/<level>/{k}?size=N&cc=max-age=3600`, %d connections, each key requested once), up to %s the budget. \"Written\" counts the store cost of the objects requested, as the node charges the first one; past 1× every Set evicts. After each level: VmRSS and VmHWM (the peak so far) from `/proc/<pid>/status`, the Go heap in use (`go_memstats_heap_inuse_bytes`), the live heap after a forced GC (`/debug/pprof/heap?gc=1`), and the store's own count. Goal: peak RSS ≤ %.2f × budget + %s = %s at every level.\n\n",
		fmtBytes(budget), e.opts.rssConns, levelsText(), rssGoalFactor, fmtBytes(rssGoalSlack), fmtBytes(goal))
	t := report.Table{
		Header:     []string{"object size", "written", "objects stored", "store bytes", "live heap", "heap in use", "RSS", "peak RSS", "peak ÷ budget", "goal"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true},
	}
	var limit int64
	panel := report.Panel{Title: fmt.Sprintf("Peak RSS with a %s budget, filled to %.0f× (goal %s)", fmtBytes(budget), rssLevels[len(rssLevels)-1], fmtBytes(goal))}
	for _, hs := range rssSizes() {
		if ctx.Err() != nil {
			return
		}
		rows, last, err := e.rssRun(ctx, budget, hs)
		t.Rows = append(t.Rows, rows...)
		if err != nil {
			r.problem("memory against the budget, %s objects: %v", hs.label, err)
			t.Rows = append(t.Rows, []string{hs.label, "FAILED", "", "", "", "", "", "", "", err.Error()})
			panel.Bars = append(panel.Bars, report.Bar{Label: hs.label, Text: "FAILED", Color: colorOf("ringcache")})
			continue
		}
		limit = max(limit, last.memoryLimit)
		ok := last.peak <= goal
		r.verdicts = append(r.verdicts, verdict(ok, fmt.Sprintf("peak RSS ≤ %.2f × budget + %s (%s) filling a %s budget to %.0f× with %s objects: %s (%.2f× the budget)",
			rssGoalFactor, fmtBytes(rssGoalSlack), fmtBytes(goal), fmtBytes(budget), rssLevels[len(rssLevels)-1], hs.label, fmtBytes(last.peak), float64(last.peak)/float64(budget))))
		if !ok {
			r.note("Memory: filling a %s budget with %s objects took the node to %s resident at peak, over the goal of %s.", fmtBytes(budget), hs.label, fmtBytes(last.peak), fmtBytes(goal))
		}
		panel.Bars = append(panel.Bars, report.Bar{Label: hs.label, Value: float64(last.peak) / (1 << 20),
			Text: fmt.Sprintf("%s (%.2f×)", fmtBytes(last.peak), float64(last.peak)/float64(budget)), Color: colorOf("ringcache")})
	}
	sec.printf("%s\n", t.Markdown())
	if limit > 0 {
		sec.printf("The nodes ran with a Go memory limit (GOMEMLIMIT) of %s, derived from the budget at start.\n\n", fmtBytes(limit))
	} else {
		sec.printf("The nodes exported no Go memory limit (`go_gc_gomemlimit_bytes`).\n\n")
	}
	r.panels = append(r.panels, panel)
}

func levelsText() string {
	var s []string
	for _, l := range rssLevels {
		s = append(s, strconv.FormatFloat(l, 'f', -1, 64)+"×")
	}
	return strings.Join(s, ", ")
}

// rssRun fills one node with objects of one size through every level and
// returns a table row per level and the last sample.
func (e *env) rssRun(ctx context.Context, budget int64, hs hitSize) ([][]string, rssSample, error) {
	token := e.secret // any secret will do: only this driver talks to the admin listener
	n, err := e.startNode(ctx, nodeOpts{name: "rss", cacheSize: fmt.Sprint(budget), hotCache: "0", maxObject: "2MiB", adminToken: token})
	if n != nil {
		defer stopNodes([]*rcNode{n})
	}
	if err != nil {
		return nil, rssSample{}, err
	}
	prefix := fmt.Sprintf("/rss/%d/", hs.size)
	query := fmt.Sprintf("?size=%d&cc=max-age=3600", hs.size)
	// The first object tells what the node charges for one: the fill
	// levels are in store cost, so that 1× is just enough to fill it.
	resp, body, err := e.get(ctx, n.addr, prefix+"probe"+query)
	if err != nil {
		return nil, rssSample{}, fmt.Errorf("probe: %w", err)
	}
	if resp.StatusCode != http.StatusOK || len(body) != hs.size {
		return nil, rssSample{}, fmt.Errorf("probe: status %d, %d bytes", resp.StatusCode, len(body))
	}
	s, err := e.rssSample(ctx, n, token)
	if err != nil {
		return nil, rssSample{}, err
	}
	if s.storeItems != 1 || s.storeBytes <= 0 {
		return nil, rssSample{}, fmt.Errorf("probe: the store holds %d items, %d bytes; want 1 item", s.storeItems, s.storeBytes)
	}
	per := s.storeBytes
	written := per
	var rows [][]string
	for i, level := range rssLevels {
		keys := int(math.Ceil((level*float64(budget) - float64(written)) / float64(per)))
		if keys > 0 {
			m := e.load(ctx, loadArgs{targets: []string{n.addr}, conns: e.opts.rssConns, uri: fmt.Sprintf("%sl%d/{k}%s", prefix, i, query),
				keys: "sweep", n: keys, size: hs.size, deadline: 10 * time.Minute})
			if m.err != nil {
				return rows, s, m.err
			}
			if m.res.Failed() {
				return rows, s, fmt.Errorf("fill to %g×: %s", level, m.res.FailureSummary())
			}
			written += int64(keys) * per
		}
		if s, err = e.rssSample(ctx, n, token); err != nil {
			return rows, s, err
		}
		rows = append(rows, []string{hs.label, fmt.Sprintf("%.2f×", float64(written)/float64(budget)), fmtInt(float64(s.storeItems)),
			fmtBytes(s.storeBytes), fmtBytes(s.live), fmtBytes(s.heapInuse), fmtBytes(s.rss), fmtBytes(s.peak),
			fmt.Sprintf("%.2f×", float64(s.peak)/float64(budget)), metOrMissed(s.peak <= rssGoal(budget))})
		e.log.Info("rss", "size", hs.size, "level", level, "items", s.storeItems, "store", s.storeBytes,
			"live", s.live, "heap_inuse", s.heapInuse, "rss", s.rss, "peak", s.peak, "limit", s.memoryLimit)
	}
	return rows, s, nil
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// rssSample reads the node's memory: the kernel's view first, then the
// Go runtime's, and last the live heap, whose forced GC would otherwise
// shrink what the others see.
func (e *env) rssSample(ctx context.Context, n *rcNode, token string) (rssSample, error) {
	var s rssSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.proc.pid()))
	if err != nil {
		return s, fmt.Errorf("read the node's memory: %w", err)
	}
	if s.rss, err = procStatusBytes(string(status), "VmRSS"); err != nil {
		return s, err
	}
	if s.peak, err = procStatusBytes(string(status), "VmHWM"); err != nil {
		return s, err
	}
	resp, body, err := e.get(ctx, n.admin, "/metrics")
	if err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	m := promValues(string(body), "go_memstats_heap_inuse_bytes", "go_gc_gomemlimit_bytes")
	s.heapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	// The runtime's "no limit" is math.MaxInt64, which a float64 cannot
	// convert back.
	if l := m["go_gc_gomemlimit_bytes"]; l < math.MaxInt64/2 {
		s.memoryLimit = int64(l)
	}
	resp, body, err = e.get(ctx, n.admin, "/stats")
	if err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	var st struct{ Store struct{ Bytes, Items int64 } }
	if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("stats: status %d: %v", resp.StatusCode, err)
	}
	s.storeBytes, s.storeItems = st.Store.Bytes, st.Store.Items
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return s, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	hr, err := e.client.Do(req)
	if err != nil {
		return s, fmt.Errorf("heap profile: %w", err)
	}
	defer hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		return s, fmt.Errorf("heap profile: status %d", hr.StatusCode)
	}
	if s.live, err = heapAlloc(bufio.NewScanner(hr.Body)); err != nil {
		return s, fmt.Errorf("heap profile: %w", err)
	}
	return s, nil
}

// procStatusBytes reads a "Name:   1234 kB" line of /proc/<pid>/status.
func procStatusBytes(status, name string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status: unexpected %s line %q", name, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status: %s: %w", name, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc status: no %s line", name)
}

// promValues returns the values of the named unlabelled samples in a
// Prometheus text exposition.
func promValues(text string, names ...string) map[string]float64 {
	out := make(map[string]float64, len(names))
	for _, line := range strings.Split(text, "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, want := range names {
			if name == want {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					out[name] = f
				}
			}
		}
	}
	return out
}

// heapAlloc finds "# HeapAlloc = N" in a heap profile in text form
// (debug=1), which ends with the runtime's MemStats.
func heapAlloc(sc *bufio.Scanner) (int64, error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no HeapAlloc line")
}
