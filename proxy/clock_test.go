package proxy

import (
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
)

// TestClockParksAndWakes: an unread clock stops ticking, and the first read
// after that returns the current time, not the time it parked at.
func TestClockParksAndWakes(t *testing.T) {
	c := NewClock(time.Millisecond)
	t.Cleanup(c.Stop)
	testutil.WaitFor(t, 10*time.Second, c.parked.Load, "the unread clock to park")
	parkedAt := c.now.Load()
	// Wait past the park on the wall clock, polling time.Now, not c.
	testutil.WaitFor(t, 10*time.Second, func() bool { return time.Now().UnixNano() > parkedAt+int64(20*time.Millisecond) }, "time to pass")
	if ticked := c.now.Load(); ticked != parkedAt {
		t.Fatalf("a parked clock ticked: %d -> %d", parkedAt, ticked)
	}
	before := time.Now().UnixNano()
	if got := c.Now(); got < before {
		t.Fatalf("the first read after parking returned %d, before %d", got, before)
	}
	// Read, it ticks again.
	base := c.Now()
	testutil.WaitFor(t, 10*time.Second, func() bool { return c.Now() > base }, "the clock to tick again")
	if c.parked.Load() {
		t.Fatal("a clock being read is parked")
	}
}

// TestClockLagsLittle: while read, Now never lags the wall clock by
// much more than its resolution (the scheduler may delay a tick on a busy
// machine, so the bound is generous).
func TestClockLagsLittle(t *testing.T) {
	c := NewClock(time.Millisecond)
	t.Cleanup(c.Stop)
	end := time.Now().Add(50 * time.Millisecond)
	for i := 0; i < 1e7 && time.Now().Before(end); i++ {
		if lag := time.Now().UnixNano() - c.Now(); lag > int64(time.Second) {
			t.Fatalf("clock lags %v", time.Duration(lag))
		}
	}
}
