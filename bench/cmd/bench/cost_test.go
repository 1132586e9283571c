package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/node"
	"github.com/ringcache/ringcache/proxy"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{1, 2, 9}, 2}, {[]float64{1, 2, 4, 9}, 3}}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseRequests(t *testing.T) {
	// The node's own JSON, so that a renamed field fails here rather than
	// as "?" in a report.
	body, err := json.Marshal(node.StatsView{Node: "n1", Proxy: proxy.Snapshot{Requests: map[string]uint64{"hit": 7, "forwarded": 3}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseRequests(body)
	if err != nil || got["hit"] != 7 || got["forwarded"] != 3 {
		t.Errorf("parseRequests = %v, %v; want hit 7, forwarded 3", got, err)
	}
	if _, err := parseRequests([]byte(`{"node":"n1"}`)); err == nil {
		t.Error("stats without requests accepted")
	}
	if _, err := parseRequests([]byte(`<html>`)); err == nil {
		t.Error("not JSON accepted")
	}
}

func TestLocalShare(t *testing.T) {
	before := map[string]uint64{"hit": 100, "forwarded": 50, "miss": 9}
	after := map[string]uint64{"hit": 130, "forwarded": 120, "miss": 20}
	if got := localShare(before, after); got != 0.3 {
		t.Errorf("30 hits and 70 forwarded: share %v, want 0.3", got)
	}
	if got := localShare(before, before); got != -1 {
		t.Errorf("no requests: share %v, want -1", got)
	}
}

// costRuns makes one run per total CPU per request, split over nodes.
func costRuns(nodes int, totals ...time.Duration) []costRun {
	var out []costRun
	for _, tot := range totals {
		c := costRun{local: 1}
		for range nodes {
			c.perNode = append(c.perNode, tot/time.Duration(nodes))
		}
		out = append(out, c)
	}
	return out
}

func TestPairedRatiosAndMedianRun(t *testing.T) {
	one := costRuns(1, 10*time.Microsecond, 20*time.Microsecond, 10*time.Microsecond)
	cl := costRuns(3, 15*time.Microsecond, 24*time.Microsecond, 30*time.Microsecond)
	got := pairedRatios(cl, one)
	want := []float64{1.2, 1.5, 3} // round by round, then sorted
	if len(got) != len(want) {
		t.Fatalf("pairedRatios = %v, want %v", got, want)
	}
	for i := range want {
		if d := got[i] - want[i]; d > 1e-9 || d < -1e-9 {
			t.Errorf("pairedRatios = %v, want %v", got, want)
		}
	}
	if got := pairedRatios(cl, one[:1]); len(got) != 1 {
		t.Errorf("a missing round is not paired: %v", got)
	}
	if m := medianRun(cl); m.total() != 24*time.Microsecond {
		t.Errorf("medianRun total %v, want 24µs", m.total())
	}
}

func TestCostVerdicts(t *testing.T) {
	us := time.Microsecond
	// Saturated rounds, then paced ones (which cost more per hit).
	setups := func() []*costSetup {
		return []*costSetup{
			{label: "one node", short: "one", phases: [2]loadRuns{{runs: costRuns(1, 20*us, 20*us, 20*us)}, {runs: costRuns(1, 40*us, 40*us, 40*us)}}},
			{label: "cold", what: "hot cache off", short: "cold", goal: costGoalCold,
				phases: [2]loadRuns{{runs: costRuns(3, 28*us, 29*us, 40*us)}, {runs: costRuns(3, 80*us, 80*us, 80*us)}}},
			{label: "hot", what: "hot cache on", short: "hot", goal: costGoalHot,
				phases: [2]loadRuns{{runs: costRuns(3, 25*us, 26*us, 20*us)}, {runs: costRuns(3, 44*us, 44*us, 44*us)}}},
		}
	}
	e := &env{opts: options{costKeys: 3000}}

	r := &results{}
	e.costReport(r, r.section("9"), setups(), 5000)
	// Judged on the saturated rounds' paired ratios: 1.45× (met, ≤ 1.5×)
	// and 1.25× (missed, > 1.2×); the paced ones are shown beside.
	if len(r.verdicts) != 2 || !strings.HasPrefix(r.verdicts[0], "met: ") || !strings.Contains(r.verdicts[0], ": 1.45×") ||
		!strings.Contains(r.verdicts[0], "at the same load (5,000 requests/s) 2.00×") ||
		!strings.HasPrefix(r.verdicts[1], "MISSED: ") || !strings.Contains(r.verdicts[1], ": 1.25×") ||
		!strings.Contains(r.verdicts[1], "at the same load (5,000 requests/s) 1.10×") {
		t.Errorf("verdicts %q", r.verdicts)
	}
	if len(r.notes) != 1 || len(r.caveats) != 1 || !strings.Contains(r.caveats[0], "2.1×") {
		t.Errorf("notes %q, caveats %q (want the missed goal and the throughput estimate 3 ÷ 1.45)", r.notes, r.caveats)
	}
	if body := r.sections[0].body.String(); !strings.Contains(body, "At the same load") || strings.Count(body, "| one node |") != 2 {
		t.Errorf("want a table per load:\n%s", body)
	}

	r = &results{}
	s := setups()
	s[0].phases[0].why = "one node: FAILED"
	e.costReport(r, r.section("9"), s, 5000)
	for _, v := range r.verdicts {
		if !strings.HasPrefix(v, "MISSED: ") || !strings.Contains(v, "not measured") {
			t.Errorf("without the single node nothing is judged: %q", v)
		}
	}
	if len(r.verdicts) != 2 {
		t.Errorf("%d verdicts, want 2", len(r.verdicts))
	}
}
