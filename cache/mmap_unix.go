//go:build unix

package cache

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps f, of size bytes, read-only. Pages come from the page
// cache, where a snapshot written shortly before still is: nothing is
// copied into the heap. release drops the mapped pages of [from, to)
// (page-aligned) from the process, a later read faulting them in again
// from the file; unmap ends the mapping, after which no byte of it may be
// read.
func mapFile(f *os.File, size int) (data []byte, release func(from, to int), unmap func(), err error) {
	if size == 0 {
		return nil, func(int, int) {}, func() {}, nil
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED|mapPopulate)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mmap: %w", err)
	}
	release = func(from, to int) {
		if from < to {
			_ = syscall.Madvise(data[from:to], syscall.MADV_DONTNEED)
		}
	}
	return data, release, func() { _ = syscall.Munmap(data) }, nil
}
