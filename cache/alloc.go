package cache

import "slices"

// sizeClasses are the Go runtime's size classes for small objects (up to
// 32 KiB): an allocation is served from the smallest class that holds it,
// so the rest of the slot is memory the request did not ask for and
// nothing else can use. The list is Go 1.26's; TestAllocSize checks it
// against the running runtime, so a toolchain that changes the classes
// fails a test instead of skewing the budget.
var sizeClasses = [...]int{
	8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024,
	1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096,
	4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288,
	13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768,
}

// maxSmallAlloc is the largest pointer-free allocation served from a size
// class. The runtime reserves 8 bytes of the largest class for objects
// with pointers and uses the same cut for all; larger allocations take
// whole pages of their own.
const (
	maxSmallAlloc = 32768 - 8
	pageSize      = 8192
)

// allocSize is what the Go allocator really gives a pointer-free
// allocation of n bytes (a []byte, a string): small ones are rounded up to
// their size class, large ones to whole 8 KiB pages. That is what the
// budget has to count: past 100 bytes an allocation takes up to 19% more
// than asked for (4097 bytes take 4864), and just past 32 KiB 25% (a
// 33 KB entry array takes 40 KiB).
func allocSize(n int) int {
	switch {
	case n <= 0:
		return 0 // no allocation at all: the runtime's zero-size base
	case n <= maxSmallAlloc:
		i, _ := slices.BinarySearch(sizeClasses[:], n)
		return sizeClasses[i]
	}
	return (n + pageSize - 1) &^ (pageSize - 1)
}
