package health

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
)

// step is one call on a Monitor, or the clock moving, and what it must say.
type step struct {
	op   string        // "fail", "ok", "allow", "avail", "healthy" or "wait"
	d    time.Duration // fail: the pause reported; wait: how long
	want bool          // fail: opened; ok: recovered; allow, avail, healthy: the answer
}

func failure(pause time.Duration, opened bool) step { return step{op: "fail", d: pause, want: opened} }
func success(recovered bool) step                   { return step{op: "ok", want: recovered} }
func allow(want bool) step                          { return step{op: "allow", want: want} }
func avail(want bool) step                          { return step{op: "avail", want: want} }
func healthy(want bool) step                        { return step{op: "healthy", want: want} }
func wait(d time.Duration) step                     { return step{op: "wait", d: d} }

func TestSequences(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"threshold counts consecutive failures", Config{Threshold: 3, Pause: 2 * s, MaxPause: 2 * s}, []step{
			failure(0, false), failure(0, false), avail(true), allow(true), healthy(true),
			failure(2*s, true), avail(false), allow(false), healthy(false),
		}},
		{"a success resets the count", Config{Threshold: 3, Pause: 2 * s, MaxPause: 2 * s}, []step{
			failure(0, false), failure(0, false), success(false),
			failure(0, false), failure(0, false), failure(2*s, true),
		}},
		{"zero threshold means 1", Config{Pause: s, MaxPause: s}, []step{
			failure(s, true), healthy(false),
		}},
		{"negative threshold never pauses", Config{Threshold: -1, Pause: s, MaxPause: s}, []step{
			failure(0, false), failure(0, false), failure(0, false),
			avail(true), allow(true), healthy(true), success(false),
		}},
		{"success while healthy is no recovery", Config{Pause: s, MaxPause: s}, []step{
			success(false), success(false),
		}},
		// The origin's circuit breaker: a fixed cooldown, one probe per cooldown.
		{"allow lets one probe through per pause", Config{Threshold: 1, Pause: 10 * s, MaxPause: 10 * s}, []step{
			failure(10*s, true), allow(false), wait(9 * s), allow(false),
			wait(s), allow(true), allow(false), avail(false),
			failure(10*s, false), // the probe failed within its own pause: nothing changes
			wait(9 * s), allow(false), wait(s), allow(true),
			success(true), healthy(true), allow(true), success(false),
		}},
		{"allow doubles the pause with each probe up to the max", Config{Threshold: 1, Pause: s, MaxPause: 3 * s}, []step{
			failure(s, true), wait(s), allow(true), failure(2*s, false),
			wait(2*s - time.Millisecond), allow(false), wait(time.Millisecond), allow(true),
			failure(3*s, false), wait(3 * s), allow(true), failure(3*s, false),
			success(true), failure(s, true),
		}},
		// A peer: paused on its first failure, then open to all once the
		// pause is over, until a failure pauses it again for twice as long.
		{"available lets everyone through after the pause", Config{Threshold: 1, Pause: s, MaxPause: 10 * s}, []step{
			avail(true), failure(s, true), avail(false),
			failure(s, false), // in flight when the pause began: not extended
			wait(s - time.Millisecond), avail(false), wait(time.Millisecond), avail(true), avail(true),
			failure(2*s, false), avail(false), failure(2*s, false),
			wait(2 * s), avail(true), failure(4*s, false),
			wait(4 * s), avail(true), failure(8*s, false),
			wait(8 * s), failure(10*s, false), wait(10 * s), failure(10*s, false),
			wait(10 * s), avail(true), success(true), avail(true), success(false),
			failure(s, true), // the success reset the pause too
		}},
		{"a failure after the pause with no probe pauses again", Config{Threshold: 1, Pause: 2 * s, MaxPause: 2 * s}, []step{
			failure(2*s, true), wait(3 * s), failure(2*s, false), allow(false), avail(false),
			wait(2 * s), allow(true),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testutil.NewClock()
			tt.cfg.Clock = c.Now
			m := New(tt.cfg)
			var elapsed time.Duration
			for i, st := range tt.steps {
				at := fmt.Sprintf("step %d (%s at +%v)", i, st.op, elapsed)
				switch st.op {
				case "wait":
					c.Advance(st.d)
					elapsed += st.d
				case "fail":
					if d, opened := m.Failure(); d != st.d || opened != st.want {
						t.Fatalf("%s: Failure() = %v, %v; want %v, %v", at, d, opened, st.d, st.want)
					}
				case "ok":
					if got := m.Success(); got != st.want {
						t.Fatalf("%s: Success() = %v; want %v", at, got, st.want)
					}
				case "allow":
					if got := m.Allow(); got != st.want {
						t.Fatalf("%s: Allow() = %v; want %v", at, got, st.want)
					}
				case "avail":
					if got := m.Available(); got != st.want {
						t.Fatalf("%s: Available() = %v; want %v", at, got, st.want)
					}
				case "healthy":
					if got := m.Healthy(); got != st.want {
						t.Fatalf("%s: Healthy() = %v; want %v", at, got, st.want)
					}
				default:
					t.Fatalf("%s: unknown op", at)
				}
			}
		})
	}
}

func TestNewChecksPauses(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantPanic bool
	}{
		{"fixed", Config{Pause: time.Second, MaxPause: time.Second}, false},
		{"doubling", Config{Pause: time.Second, MaxPause: time.Minute}, false},
		{"disabled still needs a pause", Config{Threshold: -1}, true},
		{"zero pause", Config{MaxPause: time.Second}, true},
		{"negative pause", Config{Pause: -time.Second, MaxPause: time.Second}, true},
		{"max below pause", Config{Pause: 2 * time.Second, MaxPause: time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := recover() != nil; got != tt.wantPanic {
					t.Errorf("New panicked: %v; want %v", got, tt.wantPanic)
				}
			}()
			New(tt.cfg)
		})
	}
}

// Many requests asking at once when a pause ends: exactly one probes.
func TestAllowOneProbeUnderContention(t *testing.T) {
	c := testutil.NewClock()
	m := New(Config{Threshold: 1, Pause: time.Second, MaxPause: time.Second, Clock: c.Now})
	m.Failure()
	c.Advance(time.Second)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 32 {
		wg.Go(func() {
			<-start
			if m.Allow() {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != 1 {
		t.Errorf("%d callers allowed after the pause; want 1 probe", n)
	}
}

// The questions every request asks must stay free while all is well.
func TestHealthyPathAllocs(t *testing.T) {
	m := New(Config{Pause: time.Second, MaxPause: time.Second})
	if n := testing.AllocsPerRun(100, func() {
		m.Healthy()
		m.Available()
		m.Allow()
		m.Success()
	}); n != 0 {
		t.Errorf("healthy path allocates %.1f times; want 0", n)
	}
}

func BenchmarkHealthy(b *testing.B) {
	m := New(Config{Pause: time.Second, MaxPause: time.Second})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !m.Allow() || !m.Available() {
				b.Fatal("healthy monitor refused")
			}
			m.Success()
		}
	})
}
