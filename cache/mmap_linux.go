package cache

import (
	"fmt"
	"os"
	"syscall"
)

// mapping is a file mapped read-only. Its pages come from the page cache,
// where a snapshot written shortly before still is: nothing is copied
// into the heap.
// A mapping that is not mapped (tests give one over memory of their own)
// leaves its memory alone.
type mapping struct {
	data   []byte
	mapped bool
}

func mapFile(f *os.File, size int) (*mapping, error) {
	if size == 0 {
		return &mapping{}, nil
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return &mapping{data: data, mapped: true}, nil
}

// populate maps the pages of [from, to) at once: one system call instead
// of a page fault per 64 KiB when they are read, which on a VM costs tens
// of microseconds each.
func (m *mapping) populate(from, to int) {
	from &^= osPageSize - 1
	if to = min(to, len(m.data)); m.mapped && from < to {
		if err := syscall.Madvise(m.data[from:to], madvPopulateRead); err != nil {
			_ = syscall.Madvise(m.data[from:to], syscall.MADV_WILLNEED) // kernels before 5.14: read ahead at least
		}
	}
}

// release drops the mapped pages of [from, to) (page-aligned) from the
// process; a later read faults them in again from the file.
func (m *mapping) release(from, to int) {
	if m.mapped && from < to {
		_ = syscall.Madvise(m.data[from:to], syscall.MADV_DONTNEED)
	}
}

// unmap ends the mapping: no byte of it may be read afterwards.
func (m *mapping) unmap() {
	if m.mapped {
		_ = syscall.Munmap(m.data)
	}
}

// madvPopulateRead is MADV_POPULATE_READ (Linux 5.14), which the syscall
// package does not name; older kernels refuse it and get MADV_WILLNEED.
const madvPopulateRead = 22
