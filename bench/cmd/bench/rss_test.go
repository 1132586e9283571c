package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestProcStatusBytes(t *testing.T) {
	status := "Name:\tringcache\nVmPeak:\t 1263412 kB\nVmHWM:\t  160500 kB\nVmRSS:\t  156012 kB\nThreads:\t8\n"
	for _, tc := range []struct {
		name string
		want int64
	}{{"VmRSS", 156012 << 10}, {"VmHWM", 160500 << 10}} {
		got, err := procStatusBytes(status, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("procStatusBytes(%s) = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if _, err := procStatusBytes(status, "VmSwap"); err == nil {
		t.Error("a missing line gave no error")
	}
	if _, err := procStatusBytes("VmRSS:\t12 pages\n", "VmRSS"); err == nil {
		t.Error("an unknown unit gave no error")
	}
}

func TestPromValues(t *testing.T) {
	text := `# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.0694656e+08
go_gc_gomemlimit_bytes 9.223372036854776e+18
ringcache_requests_total{outcome="hit"} 12
`
	m := promValues(text, "go_memstats_heap_inuse_bytes", "go_gc_gomemlimit_bytes", "ringcache_requests_total")
	if m["go_memstats_heap_inuse_bytes"] != 106946560 {
		t.Errorf("heap in use %v", m["go_memstats_heap_inuse_bytes"])
	}
	if _, ok := m["ringcache_requests_total"]; ok {
		t.Error("a labelled sample was read as the unlabelled one")
	}
	if m["go_gc_gomemlimit_bytes"] < 9e18 {
		t.Errorf("memory limit %v", m["go_gc_gomemlimit_bytes"])
	}
}

func TestHeapAlloc(t *testing.T) {
	profile := "heap profile: 1: 2 [3: 4] @ heap/1048576\n1: 2 [3: 4] @ 0x1 0x2\n\n# runtime.MemStats\n# Alloc = 72105720\n# TotalAlloc = 9\n# Sys = 10\n# HeapAlloc = 72105720\n# HeapSys = 11\n"
	got, err := heapAlloc(bufio.NewScanner(strings.NewReader(profile)))
	if err != nil || got != 72105720 {
		t.Fatalf("heapAlloc = %d, %v; want 72105720", got, err)
	}
	if _, err := heapAlloc(bufio.NewScanner(strings.NewReader("heap profile: 0\n"))); err == nil {
		t.Fatal("a profile without MemStats gave no error")
	}
}

func TestRSSGoal(t *testing.T) {
	if got, want := rssGoal(64<<20), int64(144<<20); got != want {
		t.Fatalf("rssGoal(64 MiB) = %d; want %d", got, want)
	}
}
