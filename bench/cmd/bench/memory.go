package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ringcache/ringcache/bench/report"
)

// memoryTarget is issue 5's bound on what a cached entry costs beyond its
// body and headers.
const memoryTarget = 200

// memory measures bytes per cached entry with the store's own benchmark:
// stores filled with 50,000 to 400,000 entries (10-byte bodies, three
// header fields), heap measured after GC. Overhead is everything an entry
// costs beyond its key, header names and values, and body; the verdict
// takes the mean over the fill levels, since Go's hash tables make the
// cost a sawtooth over the entry count.
func (e *env) memory(ctx context.Context, r *results) {
	sec := r.section("7. Memory per cached entry")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "BenchmarkMemoryPerEntry", "-benchtime", "1x", "./cache")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.problem("memory benchmark: %v: %s", err, tail(string(out), 400))
		return
	}
	t := report.Table{
		Header:     []string{"store", "overhead per entry (mean)", "range over fill levels", "of which the store's bookkeeping (mean)", "Entry struct, lengths, rounding", "charged to the budget"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true},
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "BenchmarkMemoryPerEntry/") {
			continue
		}
		metric := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				metric[f[i+1]] = v
			}
		}
		name := strings.TrimSuffix(strings.TrimPrefix(f[0], "BenchmarkMemoryPerEntry/"), "-"+lastDash(f[0]))
		over, charged := metric["overheadB/entry"], metric["chargedB/entry"]
		t.Rows = append(t.Rows, []string{name,
			fmt.Sprintf("%.0f B", over),
			fmt.Sprintf("%.0f–%.0f B", metric["minB/entry"], metric["maxB/entry"]),
			fmt.Sprintf("%.0f B", metric["storeB/entry"]),
			fmt.Sprintf("%.0f B", metric["entryB/entry"]),
			fmt.Sprintf("%.0f B", charged)})
		r.verdicts = append(r.verdicts, verdict(over < memoryTarget, fmt.Sprintf("memory per entry beyond body and headers under %d B, %s store: %.0f B (mean; %.0f–%.0f B)", memoryTarget, name, over, metric["minB/entry"], metric["maxB/entry"])))
		r.verdicts = append(r.verdicts, verdict(charged >= metric["maxB/entry"], fmt.Sprintf("the budget charges an entry at least what it takes, %s store: %.0f B charged beyond body and headers, at most %.0f B taken", name, charged, metric["maxB/entry"])))
		if over >= memoryTarget {
			r.note("Memory per entry, %s store: %.0f B on average beyond the key, headers and body, over the %d B target; %.0f B of it is the store's bookkeeping.", name, over, memoryTarget, metric["storeB/entry"])
		} else if metric["maxB/entry"] >= memoryTarget {
			r.note("Memory per entry, %s store: under the %d B target on average (%.0f B), but up to %.0f B just after the store's hash tables double (ristretto keeps two Go maps per item, its store's 48-byte items and its policy's costs: %.0f B of bookkeeping on average).", name, memoryTarget, over, metric["maxB/entry"], metric["storeB/entry"])
		}
	}
	sec.printf("From `go test -bench BenchmarkMemoryPerEntry ./cache`: stores filled with 50,000 to 400,000 entries (seven counts √2 apart) with 10-byte bodies and three header fields, heap measured after a GC, store built as the node builds it. Overhead is everything an entry costs beyond its key, header names and values, and body: the 48-byte Entry struct, the field lengths, size-class rounding and the store's bookkeeping. Go's hash tables double as they fill, so the cost is a sawtooth over the entry count; the mean is what a store filled to an arbitrary count pays. \"Charged to the budget\" is what `Entry.Cost` counts beyond key, headers and body: it must cover the top of the range, or `cache_size` would understate memory. Target: under %d B.\n\n%s\n", memoryTarget, t.Markdown())
}

// lastDash returns what follows the last '-' (the GOMAXPROCS suffix).
func lastDash(s string) string {
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		return s[i+1:]
	}
	return ""
}
