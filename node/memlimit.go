package node

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/ringcache/ringcache/config"
)

// The memory a node promises to stay within, which a container's limit
// can be derived from: resident memory ≤ memGoalFactor × budget +
// memGoalSlack, the budget being cache_size plus hot_cache_size when the
// hot cache is on. The factor leaves the garbage collector room to work
// in; the slack holds what does not grow with the budget (the binary,
// goroutine stacks, connection buffers, responses in flight).
const (
	memGoalFactor = 1.25
	memGoalSlack  = 64 << 20
	// memLimitMargin is the part of the slack the Go memory limit leaves
	// to memory it does not govern, mostly the binary's code and data
	// mapped from its file (about 11 MiB resident). With the cache full of
	// 1 MiB objects and more arriving, resident memory sits at the limit
	// plus that.
	memLimitMargin = 24 << 20
)

// MemoryGoal is the resident memory a node holding budget bytes of cache
// (cache_size, plus hot_cache_size in a cluster) stays within.
func MemoryGoal(budget int64) int64 {
	return int64(memGoalFactor*float64(budget)) + memGoalSlack
}

// memoryBudget is the bytes of cache a node built from cfg may hold: the
// store, and the hot cache when it has one.
func memoryBudget(cfg config.Config) int64 {
	b := cfg.CacheSize
	if hasHotCache(cfg) {
		b += cfg.HotCacheSize
	}
	return b
}

// memoryLimit is the Go memory limit for a node holding budget bytes of
// cache. Without one the garbage collector lets the heap grow to twice
// the live data before collecting (GOGC=100), so a full cache would take
// about twice its budget; with it, the collector runs more often as the
// process nears the limit instead.
func memoryLimit(budget int64) int64 {
	l := int64(memGoalFactor*float64(budget)) + memGoalSlack - memLimitMargin
	return l &^ (1<<20 - 1) // whole MiB, down: it reads better in the log
}

// ApplyMemoryLimit sets the process's Go memory limit from cfg's budgets,
// unless GOMEMLIMIT is set (to a size, or "off"): the operator's choice
// wins. It logs the limit in force either way. The limit is the
// process's: call it only where one process runs one node.
func ApplyMemoryLimit(cfg config.Config, log *slog.Logger) {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok && v != "" {
		log.Info("memory limit", "limit", formatLimit(debug.SetMemoryLimit(-1)), "source", "GOMEMLIMIT")
		return
	}
	budget := memoryBudget(cfg)
	limit := memoryLimit(budget)
	debug.SetMemoryLimit(limit)
	rule := fmt.Sprintf("%g × budget + %s", memGoalFactor, config.FormatBytes(memGoalSlack-memLimitMargin))
	log.Info("memory limit", "limit", formatLimit(limit), "source", rule, "budget", config.FormatBytes(budget))
}

// formatLimit writes a memory limit as a size, or "off" for the runtime's
// "no limit" (math.MaxInt64).
func formatLimit(l int64) string {
	if l >= 1<<62 {
		return "off"
	}
	return config.FormatBytes(l)
}
