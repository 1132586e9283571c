package main

import (
	"context"
	"sync"
	"time"
)

// This machine may be shared: other processes' CPU use during a timed run
// shows up as a slower server. Before a timed run the driver waits for a
// quiet machine, and a run during which others used the CPUs is repeated,
// keeping the quietest attempt. Both draw on one bounded budget, so the
// run time stays bounded; what was spent is reported.
const (
	// noisyPct is the share of all CPUs (percent) others may use during a
	// run before it is repeated.
	noisyPct = 5.0
	// maxRepeats bounds the repetitions of one run.
	maxRepeats = 2
	// quietSample is how long the machine is watched to call it quiet.
	quietSample = 300 * time.Millisecond
	// maxQuietWait bounds one wait for a quiet machine.
	maxQuietWait = 20 * time.Second
)

// noise accounts for the time spent avoiding other processes' load.
type noise struct {
	mu       sync.Mutex
	budget   time.Duration // left
	waited   time.Duration
	repeats  int
	noisyRun int // runs kept although noisy (budget exhausted)
}

func (n *noise) spend(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.budget -= d
}

func (n *noise) left() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.budget
}

// otherLoad samples, over quietSample, the share of all CPUs (percent)
// used by processes outside the benchmark.
func (e *env) otherLoad(ctx context.Context) float64 {
	busy0, total0, err := systemTicks()
	if err != nil {
		return 0
	}
	ours0 := e.ourTicks()
	select {
	case <-ctx.Done():
		return 0
	case <-time.After(quietSample):
	}
	busy1, total1, _ := systemTicks()
	ours1 := e.ourTicks()
	if total1 <= total0 {
		return 0
	}
	return max(0, 100*float64((busy1-busy0)-(ours1-ours0))/float64(total1-total0))
}

// waitQuiet waits, within the noise budget, until others use under
// noisyPct of the CPUs.
func (e *env) waitQuiet(ctx context.Context) {
	start := time.Now()
	for e.noise.left() > 0 && ctx.Err() == nil && time.Since(start) < maxQuietWait {
		if e.otherLoad(ctx) < noisyPct {
			break
		}
	}
	d := time.Since(start)
	if d > 2*quietSample {
		e.noise.spend(d)
		e.noise.mu.Lock()
		e.noise.waited += d
		e.noise.mu.Unlock()
	}
}

// loadClean is load for timed comparisons: it waits for a quiet machine
// and repeats a run others disturbed, returning the quietest attempt.
func (e *env) loadClean(ctx context.Context, a loadArgs) measured {
	e.waitQuiet(ctx)
	best := e.load(ctx, a)
	for i := 0; i < maxRepeats && best.err == nil && best.other >= noisyPct && e.noise.left() > 0 && ctx.Err() == nil; i++ {
		e.waitQuiet(ctx)
		start := time.Now()
		m := e.load(ctx, a)
		e.noise.spend(time.Since(start))
		e.noise.mu.Lock()
		e.noise.repeats++
		e.noise.mu.Unlock()
		if m.err == nil && m.other < best.other {
			best = m
		}
	}
	if best.err == nil && best.other >= noisyPct {
		e.noise.mu.Lock()
		e.noise.noisyRun++
		e.noise.mu.Unlock()
	}
	return best
}
