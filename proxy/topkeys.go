package proxy

import (
	"bytes"
	"sort"
	"sync"
	"sync/atomic"
)

// topKeys estimates the most requested keys with the space-saving
// algorithm over a sample of requests: fixed memory, no allocation on the
// request path, and a lock taken only for sampled requests.
type topKeys struct {
	// fullURLs keeps query strings in the keys shown; by default they are
	// cut, since queries carry tokens and session ids that /stats would
	// show to whoever reaches the admin port.
	fullURLs bool
	tick     atomic.Uint64
	mu       sync.Mutex
	slots    [topSlots]topSlot
}

const (
	topSlots   = 64
	topSample  = 16 // one request in topSample is counted
	topKeySize = 120
)

type topSlot struct {
	key   [topKeySize]byte
	n     int    // key length (truncated keys share a slot)
	count uint64 // estimated samples; over-counts by at most err
	err   uint64
}

// observe counts one request for key.
func (t *topKeys) observe(key []byte) {
	if t.tick.Add(1)%topSample != 0 {
		return
	}
	if !t.fullURLs {
		if i := bytes.IndexByte(key, '?'); i >= 0 {
			key = key[:i] // the key's path holds no '?': it starts the query
		}
	}
	key = key[:min(len(key), topKeySize)]
	t.mu.Lock()
	defer t.mu.Unlock()
	low := 0
	for i := range t.slots {
		s := &t.slots[i]
		if s.count > 0 && string(s.key[:s.n]) == string(key) {
			s.count++
			return
		}
		if s.count < t.slots[low].count {
			low = i
		}
	}
	// Space-saving: the new key takes the least counted slot and inherits
	// its count as possible error.
	s := &t.slots[low]
	s.err = s.count
	s.count++
	s.n = copy(s.key[:], key)
}

// KeyCount is a key's estimated share of requests.
type KeyCount struct {
	Key      string  `json:"key"`
	Requests uint64  `json:"requests"` // estimated, scaled up from the sample
	Share    float64 `json:"share"`    // of all requests seen
}

// top returns up to k keys, most requested first.
func (t *topKeys) top(k int) []KeyCount {
	total := t.tick.Load()
	t.mu.Lock()
	out := make([]KeyCount, 0, topSlots)
	for i := range t.slots {
		if s := &t.slots[i]; s.count > 0 {
			out = append(out, KeyCount{Key: string(s.key[:s.n]), Requests: s.count * topSample})
		}
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Requests > out[j].Requests })
	if len(out) > k {
		out = out[:k]
	}
	for i := range out {
		if total > 0 {
			out[i].Share = float64(out[i].Requests) / float64(total)
		}
	}
	return out
}

// Snapshot is a node's request statistics for the admin API.
type Snapshot struct {
	Requests map[string]uint64 `json:"requests"` // by outcome
	// HitRatio is the share of cacheable requests answered without the
	// origin: hits, stale hits, revalidations, takeovers and forwarded ones
	// do not count against it; misses, errors and stale-on-error do.
	HitRatio float64    `json:"hit_ratio"`
	TopKeys  []KeyCount `json:"top_keys"`
}

// Snapshot returns the proxy's counters and its most requested keys.
func (p *Proxy) Snapshot() Snapshot {
	s := Snapshot{Requests: map[string]uint64{}, TopKeys: p.top.top(10)}
	var served, fetched uint64
	for o := Outcome(0); o < numOutcomes; o++ {
		n := uint64(counterValue(p.m.requests[o]))
		s.Requests[o.String()] = n
		switch o {
		case Hit, StaleHit, Takeover:
			served += n
		case Miss, StaleError, Error, Revalidated:
			fetched += n
		}
	}
	if served+fetched > 0 {
		s.HitRatio = float64(served) / float64(served+fetched)
	}
	return s
}
