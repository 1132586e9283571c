package cache

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// benchEntries builds n entries with 1 KiB bodies spread over n/perKey keys,
// each entry its own pointer.
func benchEntries(n, perKey int) []*Entry {
	es := make([]*Entry, n)
	exp := time.Now().Add(time.Hour).UnixNano()
	for i := range es {
		es[i] = testEntry(fmt.Sprintf("GET http://example.com/objects/%06d", i/perKey), 1<<10)
		es[i].Expires = exp
	}
	return es
}

func BenchmarkGet(b *testing.B) {
	for _, k := range storeKinds() {
		b.Run(k.name, func(b *testing.B) {
			es := benchEntries(1<<12, 1)
			s := k.new(b, 1<<30)
			for _, e := range es {
				if !s.Set(e) {
					b.Fatal("Set refused")
				}
			}
			var misses atomic.Int64
			var seed atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(7919))
				for pb.Next() {
					if _, ok := s.Get(es[i%len(es)].Key()); !ok {
						misses.Add(1)
					}
					i++
				}
			})
			if m := misses.Load(); m != 0 {
				b.Fatalf("%d misses on a benchmark of hits", m)
			}
		})
	}
}

// BenchmarkSet cycles over more entries than the store holds, so most Sets
// evict; every key has two entries, so half the Sets overwrite.
func BenchmarkSet(b *testing.B) {
	for _, k := range storeKinds() {
		b.Run(k.name, func(b *testing.B) {
			es := benchEntries(1<<13, 2)
			s := k.new(b, int64(len(es)/8)*es[0].Cost())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Set(es[i%len(es)])
			}
		})
	}
}

// memReport is heap use per entry, in bytes.
type memReport struct {
	raw      float64 // key, header names and values, body
	entry    float64 // the rest of an entry as DecodeEntry builds it: Entry, field lengths, size-class rounding
	store    float64 // the store's bookkeeping
	overhead float64 // entry + store: the memory an entry costs beyond its key, header and body
	charged  float64 // Cost, what the budget counts for the whole entry: compare with raw + overhead
}

// measureMemory fills a store of kind k with n small entries (10-byte
// bodies, 3 header fields, one hour to live) and reads the live heap before
// and after.
func measureMemory(tb testing.TB, k storeKind, n int) memReport {
	s := k.new(tb, 1<<31, WithClock(func() int64 { return time.Now().UnixNano() })) // as the node runs; holds all n; fixed structures are allocated here, before the baseline
	exp := time.Now().Add(time.Hour).UnixNano()
	es := make([]*Entry, n)
	heap := func() float64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc)
	}
	h0 := heap()
	var raw int
	var charged int64
	var buf []byte
	for i := range es {
		id := fmt.Sprintf("%06d", i)
		proto := NewEntry([]byte("GET http://example.com/assets/img/"+id+".png"), []Field{
			{[]byte("Content-Type"), []byte("image/png")},
			{[]byte("Cache-Control"), []byte("max-age=3600")},
			{[]byte("Etag"), []byte(`"` + id + `"`)},
		}, []byte("0123456789"), Stale{})
		proto.Expires, proto.Status = exp, 200
		buf = proto.AppendBinary(buf[:0])
		e, err := DecodeEntry(buf) // the layout entries arrive in from peers
		if err != nil {
			tb.Fatal(err)
		}
		es[i] = e
		raw += len(e.Key()) + len(e.Body())
		for f := e.Fields(); f.Next(); {
			raw += len(f.Key()) + len(f.Value())
		}
		charged += e.Cost()
	}
	h1 := heap()
	for _, e := range es {
		if !s.Set(e) {
			tb.Fatalf("%s refused an entry while filling", k.name)
		}
	}
	h2 := heap()
	if st := s.Stats(); st.Items != int64(n) {
		tb.Fatalf("%s holds %d entries; want %d", k.name, st.Items, n)
	}
	runtime.KeepAlive(es)
	r := memReport{
		raw:   float64(raw) / float64(n),
		entry: (h1 - h0 - float64(raw)) / float64(n),
		store: (h2 - h1) / float64(n),
	}
	r.overhead = r.entry + r.store
	r.charged = float64(charged) / float64(n)
	return r
}

// TestMemoryPerEntry checks that Cost does not undercount what an entry
// really takes in the heap, for either store. Hash tables make the cost a
// sawtooth over the number of entries (ristretto's bookkeeping: 105-169
// bytes between 50k and 400k entries); at 100k both stores sit near the
// bottom of it and at 125k near the top, just after the tables doubled,
// where EntryOverhead must still cover it.
func TestMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("fills stores with 100k entries")
	}
	for _, n := range []int{100_000, 125_000} {
		for _, k := range storeKinds() {
			t.Run(fmt.Sprintf("%s/%d", k.name, n), func(t *testing.T) {
				r := measureMemory(t, k, n)
				t.Logf("%d entries: raw %.0f B, entry %.0f B, store %.0f B; overhead %.0f B; Cost %.0f B (EntryOverhead %d)",
					n, r.raw, r.entry, r.store, r.overhead, r.charged, EntryOverhead)
				if real := r.raw + r.overhead; real > r.charged {
					t.Errorf("an entry takes %.0f B of heap; Cost charges %.0f B", real, r.charged)
				}
			})
		}
	}
}

// memorySweep is the entry counts BenchmarkMemoryPerEntry fills: Go's hash
// tables double as they fill, so bytes per entry follow a sawtooth with a
// period of 2x; seven counts √2 apart cover three periods.
var memorySweep = []int{50_000, 70_711, 100_000, 141_421, 200_000, 282_843, 400_000}

// BenchmarkMemoryPerEntry reports the memory per entry measured over
// memorySweep: the mean (what a store filled to an arbitrary count costs)
// and the extremes. Run it with -benchtime=1x.
func BenchmarkMemoryPerEntry(b *testing.B) {
	for _, k := range storeKinds() {
		b.Run(k.name, func(b *testing.B) {
			var mean memReport
			lo, hi := math.Inf(1), math.Inf(-1)
			for range b.N {
				mean = memReport{}
				lo, hi = math.Inf(1), math.Inf(-1)
				for _, n := range memorySweep {
					r := measureMemory(b, k, n)
					mean.entry += r.entry / float64(len(memorySweep))
					mean.store += r.store / float64(len(memorySweep))
					mean.overhead += r.overhead / float64(len(memorySweep))
					mean.raw += r.raw / float64(len(memorySweep))
					mean.charged += r.charged / float64(len(memorySweep))
					lo, hi = min(lo, r.overhead), max(hi, r.overhead)
				}
			}
			b.ReportMetric(mean.entry, "entryB/entry")
			b.ReportMetric(mean.store, "storeB/entry")
			b.ReportMetric(mean.overhead, "overheadB/entry")
			b.ReportMetric(lo, "minB/entry")
			b.ReportMetric(hi, "maxB/entry")
			// What the budget charges beyond key, headers and body, against
			// overheadB/entry, what the heap really holds.
			b.ReportMetric(mean.charged-mean.raw, "chargedB/entry")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkSnapshot writes 20,000 entries of 1 KiB to a snapshot file
// (synced), and loads them: Load is the index a node builds before it
// serves; moved adds copying every entry into the store.
func BenchmarkSnapshot(b *testing.B) {
	const n = 20000
	src, err := NewRistretto(1 << 30)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	setMany(src, benchEntries(n, 1))
	path := filepath.Join(b.TempDir(), "snap")
	var size int64
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			s, err := SaveSnapshot(context.Background(), path, src, time.Now().UnixNano())
			if err != nil || s.Entries != n {
				b.Fatalf("%+v, %v", s, err)
			}
			size = s.Bytes
		}
		b.SetBytes(size)
	})
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, stage := range []string{"load", "moved"} {
		b.Run(stage, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				b.StopTimer()
				if err := os.WriteFile(path, data, 0o600); err != nil { // Load takes the file
					b.Fatal(err)
				}
				r, err := NewRistretto(1 << 30)
				if err != nil {
					b.Fatal(err)
				}
				w := NewWarm(r)
				b.StartTimer()
				if s, err := w.Load(path); err != nil || s.Entries != n {
					b.Fatalf("%+v, %v", s, err)
				}
				if stage == "moved" {
					<-w.Moved()
				}
				b.StopTimer()
				w.Close()
				b.StartTimer()
			}
		})
	}
}
