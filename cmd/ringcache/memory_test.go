package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/node"

	"github.com/valyala/fasthttp"
)

// TestProcessMemoryWithinBudget: a serve process filled twice over with
// 32 KiB objects, then twice over with 1 MiB ones (so the store evicts all
// along), stays within the memory it documents: peak resident memory ≤
// 1.25 × cache_size + 64 MiB. The peak is the kernel's high-water mark
// (VmHWM), so the check does not depend on when it is read.
func TestProcessMemoryWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and fills a node process")
	}
	t.Setenv("GOMEMLIMIT", "") // the node derives its own; the child inherits this
	const budget = 64 << 20
	bin := buildBinary(t)
	orig := startChild(t, bin, "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, regexp.MustCompile(`msg="demo origin serving" listen=(\S+)`), "the origin process to log its address")
	srv := startChild(t, bin, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin", "http://"+originAddr,
		"--cache-size", strconv.Itoa(budget), "--max-object-size", "2MiB")
	serving := regexp.MustCompile(`msg="ringcache serving" (?:.* )?listen=(\S+)`)
	addr := waitMatch(t, srv.stderr, serving, "the serve process to log its address")
	admin := waitMatch(t, srv.stderr, regexp.MustCompile(`msg="ringcache serving" (?:.* )?admin=(\S+)`), "the serve process to log its admin address")
	limit := waitMatch(t, srv.stderr, regexp.MustCompile(`msg="memory limit" limit=(\S+)`), "the serve process to log its memory limit")
	t.Logf("memory limit %s", limit)

	c := &fasthttp.Client{ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second, MaxConnsPerHost: 16}
	defer c.CloseIdleConnections()
	goal := node.MemoryGoal(budget)
	for _, size := range []int{32 << 10, 1 << 20} {
		fillNode(t, c, addr, size, 2*budget/size)
		peak := vmHWM(t, srv.cmd.Process.Pid)
		stored := storeBytes(t, c, admin)
		t.Logf("after %d objects of %d bytes: peak RSS %.1f MiB (goal %.0f MiB), store %.1f MiB",
			2*budget/size, size, float64(peak)/(1<<20), float64(goal)/(1<<20), float64(stored)/(1<<20))
		if stored < budget/2 {
			t.Fatalf("the store holds %d bytes after being filled twice over; want at least half of %d", stored, budget)
		}
		if peak > goal {
			t.Errorf("filling with %d-byte objects took the node to %.1f MiB resident at peak; the bound is %.0f MiB (1.25 × %d MiB + 64 MiB)",
				size, float64(peak)/(1<<20), float64(goal)/(1<<20), budget>>20)
		}
	}
}

// fillNode requests n new objects of size bytes from the node at addr
// over 8 connections, each once, and fails the test on any error.
func fillNode(t *testing.T, c *fasthttp.Client, addr string, size, n int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				url := fmt.Sprintf("http://%s/fill/%d/%d?size=%d&cc=max-age=3600", addr, size, i, size)
				r, err := testutil.Do(c, fasthttp.MethodGet, url, nil)
				if err == nil && (r.Status != fasthttp.StatusOK || len(r.Body) != size) {
					err = fmt.Errorf("GET %s: status %d, %d bytes", url, r.Status, len(r.Body))
				}
				if err != nil {
					errs <- err
					next.Store(int64(n)) // the others stop at their next request
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// vmHWM is a process's peak resident memory, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the node's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// storeBytes reads the store's byte count from the admin /stats.
func storeBytes(t *testing.T, c *fasthttp.Client, admin string) int64 {
	t.Helper()
	r, err := testutil.Do(c, fasthttp.MethodGet, "http://"+admin+"/stats", nil)
	if err != nil || r.Status != fasthttp.StatusOK {
		t.Fatalf("GET /stats: status %d, %v", r.Status, err)
	}
	var st node.StatsView
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	return st.Store.Bytes
}
