package node

import (
	"bytes"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/ringcache/ringcache/config"
)

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		budget, want int64
	}{
		{32 << 20, 80 << 20},
		{64 << 20, 120 << 20},
		{256 << 20, 360 << 20},
		{1 << 30, 1320 << 20},
		{100_000_000, 159 << 20}, // 1.25 × 95.37 MiB + 40 MiB = 159.2 MiB, rounded down
	} {
		got := memoryLimit(tc.budget)
		if got != tc.want {
			t.Errorf("memoryLimit(%s) = %s; want %s", config.FormatBytes(tc.budget), config.FormatBytes(got), config.FormatBytes(tc.want))
		}
		// The limit plus what it does not govern stays on the goal line.
		if goal := MemoryGoal(tc.budget); got+memLimitMargin > goal {
			t.Errorf("memoryLimit(%s) + margin = %d exceeds the goal %d", config.FormatBytes(tc.budget), got+memLimitMargin, goal)
		}
	}
}

func TestMemoryBudget(t *testing.T) {
	base := config.Default()
	base.CacheSize, base.HotCacheSize = 64<<20, 16<<20
	cluster := base
	cluster.Gossip = "127.0.0.1:7946"
	noHot := cluster
	noHot.HotCacheSize = 0
	for _, tc := range []struct {
		name string
		cfg  config.Config
		want int64
	}{
		{"single node: no hot cache is built", base, 64 << 20},
		{"cluster: the hot cache counts", cluster, 80 << 20},
		{"cluster, hot cache off", noHot, 64 << 20},
	} {
		if got := memoryBudget(tc.cfg); got != tc.want {
			t.Errorf("%s: memoryBudget = %d; want %d", tc.name, got, tc.want)
		}
	}
}

// TestApplyMemoryLimit: the derived limit is set and logged, unless
// GOMEMLIMIT is set, which wins.
func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	cfg := config.Default()
	cfg.CacheSize = 64 << 20

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	t.Setenv("GOMEMLIMIT", "")
	ApplyMemoryLimit(cfg, log)
	if got := debug.SetMemoryLimit(-1); got != 120<<20 {
		t.Fatalf("limit %d after ApplyMemoryLimit; want %d", got, 120<<20)
	}
	if !strings.Contains(logs.String(), `msg="memory limit" limit=120MiB source="1.25 × budget + 40MiB" budget=64MiB`) {
		t.Fatalf("log: %s", logs.String())
	}

	debug.SetMemoryLimit(math.MaxInt64) // as the runtime starts with GOMEMLIMIT=off
	logs.Reset()
	t.Setenv("GOMEMLIMIT", "off")
	ApplyMemoryLimit(cfg, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit %d with GOMEMLIMIT=off; want none", got)
	}
	if !strings.Contains(logs.String(), `msg="memory limit" limit=off source=GOMEMLIMIT`) {
		t.Fatalf("log: %s", logs.String())
	}
}
