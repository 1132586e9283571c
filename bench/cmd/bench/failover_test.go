package main

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	var samples []sample
	for i := range 200 {
		samples = append(samples, sample{at: time.Duration(i) * time.Millisecond, d: time.Duration(i+1) * time.Millisecond, bad: i%50 == 0})
	}
	samples = append(samples, sample{at: 150 * time.Millisecond, d: 300 * time.Millisecond})
	w := window(samples, 100*time.Millisecond, 200*time.Millisecond)
	// 100 samples of 101..200 ms and one of 300 ms.
	if w.n != 101 || w.errs != 2 || w.over != 1 {
		t.Errorf("n %d errs %d over %d, want 101, 2, 1", w.n, w.errs, w.over)
	}
	if w.max != 300*time.Millisecond || w.maxAt != 150*time.Millisecond {
		t.Errorf("max %v at %v, want 300ms at 150ms", w.max, w.maxAt)
	}
	if w.p50 != 151*time.Millisecond || w.p99 != 200*time.Millisecond {
		t.Errorf("p50 %v p99 %v, want 151ms, 200ms", w.p50, w.p99)
	}
	if e := window(samples, time.Hour, 2*time.Hour); e.n != 0 || e.row("x")[1] != "0" {
		t.Errorf("empty window: %+v", e)
	}
}
