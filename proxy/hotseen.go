package proxy

import (
	"hash/maphash"
	"sync/atomic"
)

// hotSeen remembers the keys recently kept as hot copies. A hot copy lives
// for HotTTL; without this memory its key would be sampled again after
// that (hotSample forwards on average), so a key that stays popular cost
// its owner about hotSample lookups per HotTTL instead of one. A slot
// holds one key's hash: a collision forgets a key (it is sampled again) or
// admits another at once (it takes one hot-cache entry), both harmless.
type hotSeen struct {
	seed  maphash.Seed
	slots [hotSeenSlots]atomic.Uint64
}

// hotSeenSlots bounds the memory of it (8 bytes each): enough for the
// popular keys of a hot cache of tens of MiB.
const hotSeenSlots = 1 << 14

func newHotSeen() *hotSeen { return &hotSeen{seed: maphash.MakeSeed()} }

// slot returns key's slot and the value marking it there (never 0, an
// empty slot).
func (h *hotSeen) slot(key []byte) (*atomic.Uint64, uint64) {
	x := maphash.Bytes(h.seed, key)
	return &h.slots[x%hotSeenSlots], x | 1
}

func (h *hotSeen) add(key []byte) {
	s, v := h.slot(key)
	if s.Load() != v {
		s.Store(v)
	}
}

func (h *hotSeen) has(key []byte) bool {
	s, v := h.slot(key)
	return s.Load() == v
}
