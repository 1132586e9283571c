package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/bench/loadgen"
)

func TestFmtInt(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {71314.4, "71,314"}, {1234567, "1,234,567"}, {-1500, "-1,500"}}
	for _, tt := range tests {
		if got := fmtInt(tt.in); got != tt.want {
			t.Errorf("fmtInt(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"16MiB", 16 << 20}, {"512KiB", 512 << 10}, {"1GiB", 1 << 30}, {"1048576", 1 << 20}, {"100B", 100}}
	for _, tt := range tests {
		if got, err := parseBytes(tt.in); err != nil || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "12XB", "0"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}

const wrkOutput = `Running 5s test @ http://127.0.0.1:19100/hit
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   602.11us  412.00us  10.55ms   90.12%
    Req/Sec    85.77k     3.01k   89.99k    88.00%
  Latency Distribution
     50%  538.00us
     75%  701.00us
     90%    1.01ms
     99%    4.40ms
  426780 requests in 5.00s, 480.12MB read
%s
Requests/sec:  85356.04
Transfer/sec:     96.02MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(strings.Replace(wrkOutput, "%s\n", "", 1))
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 85356.04 || r.p50 != 538*time.Microsecond || r.p99 != 4400*time.Microsecond || r.failures != "" {
		t.Errorf("parsed %+v", r)
	}
	r, err = parseWrk(strings.Replace(wrkOutput, "%s", "  Socket errors: connect 0, read 3, write 0, timeout 0\n  Non-2xx or 3xx responses: 12", 1))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.failures, "Non-2xx or 3xx responses: 12") || !strings.Contains(r.failures, "read 3") {
		t.Errorf("failures not reported: %q", r.failures)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("output without a rate accepted")
	}
}

func TestParseWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{{"538.00us", 538 * time.Microsecond}, {"4.40ms", 4400 * time.Microsecond}, {"1.20s", 1200 * time.Millisecond}, {"2.00m", 2 * time.Minute}, {"x", 0}}
	for _, tt := range tests {
		if got := parseWrkDuration(tt.in); got != tt.want {
			t.Errorf("parseWrkDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPick(t *testing.T) {
	run := func(rps float64) measured { return measured{res: loadgen.Result{Requests: 1, RPS: rps}} }
	m, rps, why := pick([]measured{run(30), run(10), run(20)})
	if why != "" || m.res.RPS != 20 || rps[0] != 10 || rps[2] != 30 {
		t.Errorf("median of 10, 20, 30: got %v (%v) %q", m.res.RPS, rps, why)
	}
	failed := run(50)
	failed.res.Non2xx = 1
	if _, _, why := pick([]measured{run(30), failed}); !strings.Contains(why, "FAILED") {
		t.Errorf("a failed round must fail the cell, got %q", why)
	}
	if _, _, why := pick([]measured{{err: errors.New("no loadgen")}}); why != "no loadgen" {
		t.Errorf("error not reported: %q", why)
	}
	if _, _, why := pick(nil); why == "" {
		t.Error("no runs must not pass")
	}
}

func TestHitVerdicts(t *testing.T) {
	good := hitJudgement{gen: "g", ok: true, rc: 80, ceil: 90, peer: 40, rcP99: time.Millisecond, peerP99: 2 * time.Millisecond}
	slowCeil := good
	slowCeil.gen, slowCeil.ceil = "w", 200 // 0.4x the ceiling
	failed := hitJudgement{gen: "w"}
	tests := []struct {
		name string
		js   []hitJudgement
		want []bool // met, per 1 KiB target
	}{
		{"all met", []hitJudgement{good}, []bool{true, true, true}},
		{"one generator misses the ceiling", []hitJudgement{good, slowCeil}, []bool{true, false, true}},
		{"a failed generator judges nothing", []hitJudgement{good, failed}, []bool{false, false, false}},
	}
	for _, tt := range tests {
		got := hitVerdicts(hitSize{"1 KiB", 1024}, tt.js)
		if len(got) != len(tt.want) {
			t.Fatalf("%s: %d verdicts, want %d", tt.name, len(got), len(tt.want))
		}
		for i, v := range got {
			if met := strings.HasPrefix(v, "met: "); met != tt.want[i] {
				t.Errorf("%s: %q, want met=%v", tt.name, v, tt.want[i])
			}
		}
	}
	v := hitVerdicts(hitSize{"64 KiB", 65536}, []hitJudgement{{gen: "g", ok: true, rc: 30, peer: 31, ceil: 40}})
	if len(v) != 1 || !strings.HasPrefix(v[0], "MISSED: 64 KiB") {
		t.Errorf("64 KiB slower than the peer: %v", v)
	}
}

func TestPickP99(t *testing.T) {
	run := func(p99 time.Duration) measured {
		return measured{res: loadgen.Result{Requests: 1, RPS: 100, P99: p99}}
	}
	runs := []measured{run(3 * time.Millisecond), run(time.Millisecond), run(2 * time.Millisecond)}
	if m, why := pickP99(runs); why != "" || m.res.P99 != 2*time.Millisecond {
		t.Errorf("median p99 of 1, 2, 3 ms: got %v %q", m.res.P99, why)
	}
	if got := fmtP99s(runs); got != "1.00 ms – 3.00 ms" {
		t.Errorf("fmtP99s = %q", got)
	}
	failed := run(time.Millisecond)
	failed.res.CheckFailed = 1
	if _, why := pickP99(append(runs, failed)); !strings.Contains(why, "FAILED") {
		t.Errorf("a failed round must fail the cell, got %q", why)
	}
	if _, why := pickP99(nil); why == "" {
		t.Error("no runs must not pass")
	}
}

func TestParseCPUs(t *testing.T) {
	if got, err := parseCPUs("", 3); got != nil || err != nil {
		t.Errorf(`parseCPUs("") = %v, %v; want nil, nil`, got, err)
	}
	if got, err := parseCPUs("2, 3,4", 3); err != nil || strings.Join(got, " ") != "2 3 4" {
		t.Errorf(`parseCPUs("2, 3,4") = %q, %v`, got, err)
	}
	for _, bad := range []string{"2,3", "2,3,4,5", "a,b,c", "0-1,2,3", "1,,2", "-1,2,3"} {
		if _, err := parseCPUs(bad, 3); err == nil {
			t.Errorf("parseCPUs(%q) accepted", bad)
		}
	}
}
