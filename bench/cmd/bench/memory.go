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

// memory measures bytes per cached entry with the store's own benchmark
// (100,000 entries with 10-byte bodies and three header fields, heap
// measured after GC): the Entry struct and the store's bookkeeping, beyond
// the key, header and body (header fields counted with their 48 B slice
// headers).
func (e *env) memory(ctx context.Context, r *results) {
	sec := r.section("7. Memory per cached entry")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "BenchmarkMemoryPerEntry", "-benchtime", "1x", "./proxy/store")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.problem("memory benchmark: %v: %s", err, tail(string(out), 400))
		return
	}
	t := report.Table{
		Header:     []string{"store", "overhead per entry", "of which the store's bookkeeping", "Entry struct + field slices (3 fields)"},
		RightAlign: map[int]bool{1: true, 2: true, 3: true},
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
		over := metric["overheadB/entry"]
		t.Rows = append(t.Rows, []string{name, fmt.Sprintf("%.0f B", over), fmt.Sprintf("%.0f B", metric["storeB/entry"]), fmt.Sprintf("%.0f B", metric["entryB/entry"])})
		r.verdicts = append(r.verdicts, verdict(over < memoryTarget, fmt.Sprintf("memory per entry beyond body and headers under %d B, %s store: %.0f B", memoryTarget, name, over)))
		if over >= memoryTarget {
			r.note("Memory per entry, %s store: %.0f B beyond the key, headers and body, over the %d B target: the Entry struct (128 B: three slices, timings, flags) and %.0f B of store bookkeeping (ristretto's item and policy maps, plus the index that lets the store be iterated for handoff and purge). Packing key, fields and body into one buffer with offsets, and iterating ristretto directly instead of keeping an index, would bring it under the target; the LRU store already is.", name, over, memoryTarget, metric["storeB/entry"])
		}
	}
	sec.printf("From `go test -bench BenchmarkMemoryPerEntry ./proxy/store`: 100,000 entries with 10-byte bodies and three header fields, heap measured after a GC. Overhead is what an entry costs beyond its key, headers (each field with its 48 B of slice headers) and body: the Entry struct and the store's bookkeeping. Target: under %d B.\n\n%s\n", memoryTarget, t.Markdown())
}

// lastDash returns what follows the last '-' (the GOMAXPROCS suffix).
func lastDash(s string) string {
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		return s[i+1:]
	}
	return ""
}
