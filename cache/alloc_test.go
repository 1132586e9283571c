package cache

import (
	"runtime"
	"testing"
	"unsafe"
)

// roundedByRuntime is the capacity the runtime gives a byte slice of n:
// append to a nil slice asks the allocator for exactly n bytes and keeps
// the whole slot it got as capacity.
func roundedByRuntime(n int) int {
	return cap(append([]byte(nil), make([]byte, n)...))
}

func TestAllocSize(t *testing.T) {
	// Every class boundary and its neighbours, then sizes past the largest
	// class: page rounding.
	var sizes []int
	for _, c := range sizeClasses {
		sizes = append(sizes, c-1, c, c+1)
	}
	sizes = append(sizes, 1, maxSmallAlloc-1, maxSmallAlloc, maxSmallAlloc+1,
		33*1024, 40960, 40961, 1<<20, 1<<20+1, 1<<20+300, 8<<20+1)
	for _, n := range sizes {
		if got, want := allocSize(n), roundedByRuntime(n); got != want {
			t.Errorf("allocSize(%d) = %d; the runtime gives %d", n, got, want)
		}
	}
	for _, tc := range []struct{ n, want int }{
		{0, 0}, {1, 8}, {415, 416}, {417, 448}, {32768, 32768},
		{33 * 1024, 40960}, // the 32 KiB body with its header: 7 KiB unused
		{1<<20 + 300, 1<<20 + 8192},
	} {
		if got := allocSize(tc.n); got != tc.want {
			t.Errorf("allocSize(%d) = %d; want %d", tc.n, got, tc.want)
		}
	}
}

// TestAllocSizeHeap checks allocSize against the heap itself: what
// allocating arrays of a size adds to the runtime's count of allocated
// bytes. Enough arrays are made that the next size class or page up would
// show by far more than the few bytes anything else allocates meanwhile.
func TestAllocSizeHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's runtime allocates beside the arrays")
	}
	const noise = 4 << 10
	for _, n := range []int{100, 415, 3300, 33 * 1024, 1<<20 + 300} {
		keep := make([][]byte, max(16, (256<<10)/n))
		want := uint64(len(keep) * allocSize(n))
		// The least of three rounds: other goroutines (a store's, from an
		// earlier test) allocate now and then, never less.
		got := ^uint64(0)
		for range 3 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range keep {
				keep[i] = make([]byte, n)
			}
			runtime.ReadMemStats(&after)
			got = min(got, after.TotalAlloc-before.TotalAlloc)
		}
		if got < want || got > want+noise {
			t.Errorf("%d arrays of %d bytes took %d bytes (%.1f each); allocSize says %d each", len(keep), n, got, float64(got)/float64(len(keep)), allocSize(n))
		}
		runtime.KeepAlive(keep)
	}
}

// TestEntryStructSize: EntryOverhead counts the Entry struct at its size,
// which must be a size class of its own.
func TestEntryStructSize(t *testing.T) {
	if got := int(unsafe.Sizeof(Entry{})); got != entryStructSize || allocSize(got) != got {
		t.Fatalf("Entry is %d bytes (allocated as %d); EntryOverhead counts %d", got, allocSize(got), entryStructSize)
	}
}
