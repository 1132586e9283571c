package loadgen

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is log-linear, like HdrHistogram with two significant
// digits: values below 2·subCount ns are exact, and every power of two
// above is split into subCount equal buckets, so a bucket's width is under
// 1/subCount (0.8%) of its values. Counting is one atomic add, so workers
// share a histogram without locks; memory is fixed however long the run.
const (
	subBits  = 7
	subCount = 1 << subBits
	// maxBits bounds the recorded range to 2^40 ns (about 18 minutes);
	// larger values land in the last bucket.
	maxBits    = 40
	maxValue   = 1<<maxBits - 1
	numBuckets = 2*subCount + (maxBits-subBits-1)*subCount
)

// bucketOf maps a value in nanoseconds to its bucket index.
func bucketOf(v uint64) int {
	if v > maxValue {
		v = maxValue
	}
	if v < 2*subCount {
		return int(v)
	}
	// shift brings v into [subCount, 2·subCount).
	shift := bits.Len64(v) - (subBits + 1)
	return 2*subCount + (shift-1)*subCount + int(v>>shift) - subCount
}

// bucketHigh is the largest value that falls into bucket i: quantiles
// report it, so they never understate a latency.
func bucketHigh(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	shift := (i-2*subCount)/subCount + 1
	m := uint64((i-2*subCount)%subCount + subCount)
	return (m+1)<<shift - 1
}

// Histogram counts latencies. The zero value is not usable; use
// NewHistogram. Safe for concurrent Record.
type Histogram struct {
	counts []atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]atomic.Uint64, numBuckets)}
}

// Record counts one latency; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max is the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean is the average recorded value, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// recorded values fall, rounded up to its bucket's upper bound and capped
// at Max. It returns 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max.Load()))
		}
	}
	return h.Max()
}
