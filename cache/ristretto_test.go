package cache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
)

func newTestRistretto(t *testing.T, maxBytes int64, opts ...Option) *Ristretto {
	t.Helper()
	r, err := NewRistretto(maxBytes, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// checkCountsMatchCache compares Stats' items and bytes with what ristretto
// holds and, with policyToo, the cost its policy charges. The policy's
// charge drifts when Sets of one key race inside ristretto (it can keep the
// cost of a value it refused, or apply two updates' costs in the other
// order than their values), so it is compared only after sequential use.
func checkCountsMatchCache(t *testing.T, r *Ristretto, policyToo bool) {
	t.Helper()
	r.c.Wait() // let queued deletes reach the policy
	var held int64
	var heldCost int64
	r.c.IterValues(func(e *Entry) bool { held++; heldCost += e.Cost(); return false })
	st := r.Stats()
	if st.Bytes != heldCost || st.Items != held {
		t.Fatalf("Stats: %d entries costing %d; ristretto holds %d costing %d", st.Items, st.Bytes, held, heldCost)
	}
	if used := r.c.MaxCost() - r.c.RemainingCost(); policyToo && used != st.Bytes {
		t.Fatalf("Stats().Bytes = %d; ristretto's policy charges %d", st.Bytes, used)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.setting) != 0 {
		t.Fatalf("%d Sets still marked in flight", len(r.setting))
	}
}

func TestRistrettoCountsFollowCache(t *testing.T) {
	per := testEntry("i000", 100).Cost()
	r := newTestRistretto(t, 30*per)
	for i := range 100 {
		r.Set(testEntry(fmt.Sprintf("i%03d", i), 100)) // evicts from i=30 on
		if i%10 == 9 {
			r.Delete(fmt.Appendf(nil, "i%03d", i-1))
			r.Set(testEntry(fmt.Sprintf("i%03d", i), 10))  // shrink in place
			r.Set(testEntry(fmt.Sprintf("i%03d", i), 150)) // grow: delete and insert
			checkCountsMatchCache(t, r, true)
		}
	}
	if st := r.Stats(); st.Evictions == 0 {
		t.Fatal("no evictions counted")
	}
}

// TestRistrettoPolicyRejects makes TinyLFU refuse a cold key in a full store
// of frequently read ones: Set must report it, and Stats must not count it.
func TestRistrettoPolicyRejects(t *testing.T) {
	if raceEnabled {
		t.Skip("reads do not reach ristretto's policy under the race detector")
	}
	per := testEntry("hot0", 100).Cost()
	r := newTestRistretto(t, 10*per)
	var hot [][]byte
	for i := range 10 {
		e := testEntry(fmt.Sprintf("hot%d", i), 100)
		if !r.Set(e) {
			t.Fatal("Set into an empty store refused")
		}
		hot = append(hot, e.Key())
	}
	// Reads reach the policy in lossy batches of 64, so read until a cold
	// key is refused rather than counting.
	var cold *Entry
	attempt := 0
	testutil.WaitFor(t, 10*time.Second, func() bool {
		for range 100 {
			for _, k := range hot {
				r.Get(k)
			}
		}
		attempt++
		cold = testEntry(fmt.Sprintf("cold%d", attempt), 100)
		return !r.Set(cold)
	}, "the policy never refused a cold key")
	mustMiss(t, r, string(cold.Key()))
	st := r.Stats()
	if st.Rejects != 1 {
		t.Fatalf("Rejects = %d; want 1", st.Rejects)
	}
	if st.Sets != uint64(10+attempt-1) {
		t.Fatalf("Sets = %d; want %d", st.Sets, 10+attempt-1)
	}
	checkCountsMatchCache(t, r, true)
}

func TestRistrettoPassesTTL(t *testing.T) {
	// Without an owned clock, ristretto's own TTL does the expiry.
	r := newTestRistretto(t, 1<<20)
	e := testEntry("ttl", 10)
	e.Expires = time.Now().Add(time.Hour).UnixNano()
	if !r.Set(e) {
		t.Fatal("Set refused")
	}
	// ristretto counts the TTL on its own wall clock from the Set.
	ttl, ok := r.c.GetTTL(e.Key())
	if !ok || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("ristretto TTL = %v, %v; want just under 1h", ttl, ok)
	}
	forever := testEntry("forever", 10)
	r.Set(forever)
	if ttl, ok := r.c.GetTTL(forever.Key()); !ok || ttl != 0 {
		t.Fatalf("ristretto TTL of an entry without Expires = %v, %v; want 0 (none)", ttl, ok)
	}
}

func TestRistrettoOwnClockSweeps(t *testing.T) {
	// With WithClock the store keeps expiry itself: ristretto gets no TTL
	// (its Get would read the wall clock on every hit) and the sweeper
	// reclaims what expired by the injected clock.
	clk := testutil.NewClock()
	r := newTestRistretto(t, 1<<20, WithClock(clk.UnixNano))
	e := testEntry("ttl", 10)
	e.Expires = clk.UnixNano() + int64(time.Hour)
	keep := testEntry("keep", 10)
	keep.Expires = clk.UnixNano() + int64(3*time.Hour)
	if !r.Set(e) || !r.Set(keep) {
		t.Fatal("Set refused")
	}
	if ttl, ok := r.c.GetTTL(e.Key()); !ok || ttl != 0 {
		t.Fatalf("ristretto TTL = %v, %v; want none", ttl, ok)
	}
	clk.Advance(2 * time.Hour)
	r.sweepExpired()
	if st := r.Stats(); st.Items != 1 || st.Evictions != 1 {
		t.Fatalf("after sweep: items %d evictions %d; want 1 and 1", st.Items, st.Evictions)
	}
	if _, ok := r.c.GetTTL(e.Key()); ok {
		t.Fatal("expired entry still held by ristretto")
	}
	if _, ok := r.Get(keep.Key()); !ok {
		t.Fatal("live entry swept")
	}
}

// TestRistrettoExpiresByItself waits for ristretto's cleanup (a 2.5 s ticker
// over 5 s buckets) to drop an expired entry and count the eviction.
func TestRistrettoExpiresByItself(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for ristretto's cleanup ticker")
	}
	r := newTestRistretto(t, 1<<20)
	e := testEntry("short", 10)
	e.Expires = time.Now().Add(time.Millisecond).UnixNano()
	if !r.Set(e) {
		t.Fatal("Set refused")
	}
	testutil.WaitFor(t, 30*time.Second, func() bool { return r.Stats().Items == 0 }, "expired entry still counted")
	if st := r.Stats(); st.Evictions != 1 || st.Bytes != 0 {
		t.Fatalf("Evictions %d Bytes %d; want 1, 0", st.Evictions, st.Bytes)
	}
	checkCountsMatchCache(t, r, true)
}

func TestNumCounters(t *testing.T) {
	for _, tc := range []struct{ maxBytes, want int64 }{
		{1, minCounters},
		{1 << 20, minCounters}, // 256 entries of 4 KiB: 2560 counters, raised
		{1 << 30, 10 << 18},    // 2^18 entries of 4 KiB
		{1 << 50, maxCounters},
	} {
		if got := numCounters(tc.maxBytes); got != tc.want {
			t.Errorf("numCounters(%d) = %d; want %d", tc.maxBytes, got, tc.want)
		}
	}
}

// TestRistrettoCountsAfterRaces races Sets, overwrites and Deletes of a few
// keys, then compares the counts with what ristretto holds.
func TestRistrettoCountsAfterRaces(t *testing.T) {
	per := testEntry("k0", 200).Cost()
	r := newTestRistretto(t, 12*per)
	const workers, ops = 4, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range ops {
				key := fmt.Sprintf("k%d", rng.IntN(16))
				if rng.IntN(8) == 0 {
					r.Delete([]byte(key))
				} else {
					r.Set(testEntry(key, rng.IntN(400)))
				}
			}
		}()
	}
	wg.Wait()
	checkCountsMatchCache(t, r, false)
}

// TestRistrettoSetBatch: a batch is counted as its entries one by one
// would be.
func TestRistrettoSetBatch(t *testing.T) {
	clk := testutil.NewClock()
	r := newTestRistretto(t, 1<<20, WithClock(clk.UnixNano))
	var es []*Entry
	for i := range 100 {
		es = append(es, testEntry(fmt.Sprintf("b%03d", i), 100))
	}
	expired := testEntry("expired", 10)
	expired.Expires = clk.UnixNano()
	es = append(es, expired, testEntry("huge", 2<<20))
	if kept := r.setBatch(es); kept != 100 {
		t.Fatalf("setBatch kept %d; want 100 (not the expired one nor the one over budget)", kept)
	}
	if kept := r.setBatch(es[:10]); kept != 10 {
		t.Fatalf("setBatch of stored entries kept %d; want 10", kept)
	}
	if st := r.Stats(); st.Items != 100 || st.Rejects != 2 {
		t.Fatalf("Stats %+v; want 100 items, 2 rejects", st)
	}
	checkCountsMatchCache(t, r, true)
}
