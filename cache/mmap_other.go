//go:build !linux

package cache

import (
	"io"
	"os"
)

// mapping holds a file read into memory. Elsewhere than on Linux (whose
// madvise advice the mapping relies on, and which the syscall package
// names only there) the snapshot is loaded into the heap whole.
type mapping struct {
	data   []byte
	mapped bool // never: the memory is the heap's
}

func mapFile(f *os.File, size int) (*mapping, error) {
	m := &mapping{data: make([]byte, size)}
	if _, err := io.ReadFull(f, m.data); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mapping) populate(from, to int) {}
func (m *mapping) release(from, to int)  {}
func (m *mapping) unmap()                {}
