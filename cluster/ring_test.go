package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/serialx/hashring"
)

var ringKinds = []string{KindHashRing, KindRendezvous}

func testNodes(names ...string) []Node {
	out := make([]Node, len(names))
	for i, n := range names {
		out[i] = Node{Name: n, Addr: fmt.Sprintf("127.0.0.1:%d", 9000+i)}
	}
	return out
}

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%02d", i)
	}
	return out
}

// urlKeys returns n URL-like cache keys, the shape the proxy hashes.
func urlKeys(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "cdn.example.org/img/%d/photo-%d.jpg?w=%d", i%97, i, 100+i%7)
	}
	return out
}

func mustRing(t testing.TB, kind string, nodes []Node) Ring {
	t.Helper()
	r, err := NewRing(kind, nodes, 0)
	if err != nil {
		t.Fatalf("NewRing(%q): %v", kind, err)
	}
	return r
}

func owners(t testing.TB, r Ring, keys [][]byte) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		n, ok := r.Owner(k)
		if !ok {
			t.Fatalf("Owner(%q) = false on a ring of %d", k, len(r.Members()))
		}
		out[i] = n.Name
	}
	return out
}

func TestNewRingErrors(t *testing.T) {
	tests := []struct {
		name    string
		kind    string
		nodes   []Node
		vnodes  int
		wantErr string // substring; "" means success
	}{
		{"default kind", "", testNodes("a", "b"), 0, ""},
		{"hashring", KindHashRing, testNodes("a"), 10, ""},
		{"rendezvous", KindRendezvous, testNodes("a"), 0, ""},
		{"empty ring", KindHashRing, nil, 0, ""},
		{"unknown kind lists valid ones", "maglev", testNodes("a"), 0, `unknown ring kind "maglev" (valid: hashring, rendezvous)`},
		{"duplicate name", KindRendezvous, []Node{{Name: "a", Addr: "x:1"}, {Name: "a", Addr: "y:1"}}, 0, `duplicate ring node name "a"`},
		{"empty name", KindHashRing, []Node{{Addr: "x:1"}}, 0, "empty name"},
		{"negative vnodes", KindHashRing, testNodes("a"), -1, "vnodes must be"},
		{"huge vnodes", KindHashRing, testNodes("a"), maxVNodes + 1, "vnodes must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRing(tt.kind, tt.nodes, tt.vnodes)
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Fatalf("NewRing: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewRing error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestRingEmptyAndSingle(t *testing.T) {
	for _, kind := range ringKinds {
		t.Run(kind, func(t *testing.T) {
			empty := mustRing(t, kind, nil)
			if n, ok := empty.Owner([]byte("k")); ok {
				t.Fatalf("empty ring owner = %v, want none", n)
			}
			if s := Shares(empty, 100); len(s) != 0 {
				t.Fatalf("Shares(empty) = %v", s)
			}
			one := mustRing(t, kind, testNodes("solo"))
			for _, k := range urlKeys(100) {
				if n, ok := one.Owner(k); !ok || n.Name != "solo" || n.Addr != "127.0.0.1:9000" {
					t.Fatalf("Owner(%q) = %v, %v; want solo", k, n, ok)
				}
			}
			if n, ok := one.Owner(nil); !ok || n.Name != "solo" {
				t.Fatalf("Owner(nil) = %v, %v", n, ok)
			}
		})
	}
}

func TestRingMembersSortedAndCopied(t *testing.T) {
	in := testNodes("c", "a", "b")
	for _, kind := range ringKinds {
		r := mustRing(t, kind, in)
		got := r.Members()
		want := []Node{in[1], in[2], in[0]}
		if !slices.Equal(got, want) {
			t.Fatalf("%s Members() = %v, want %v", kind, got, want)
		}
	}
	if in[0].Name != "c" {
		t.Fatalf("NewRing reordered the caller's slice: %v", in)
	}
}

// Owners depend on the set of nodes only; membership snapshots arrive in
// any order, and two nodes must agree.
func TestRingInsertionOrder(t *testing.T) {
	keys := urlKeys(2000)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kind := range ringKinds {
		t.Run(kind, func(t *testing.T) {
			nodes := testNodes(nodeNames(7)...)
			want := owners(t, mustRing(t, kind, nodes), keys)
			for range 5 {
				shuffled := slices.Clone(nodes)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				got := owners(t, mustRing(t, kind, shuffled), keys)
				if i := firstDiff(got, want); i >= 0 {
					t.Fatalf("order %v: key %q owned by %s, want %s", shuffled, keys[i], got[i], want[i])
				}
			}
		})
	}
}

func firstDiff(a, b []string) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// A join moves about 1/N of the keys, all of them to the new node; a leave
// moves only the leaver's keys.
func TestRingStability(t *testing.T) {
	keys := urlKeys(10000)
	for _, kind := range ringKinds {
		t.Run(kind, func(t *testing.T) {
			three := testNodes("node-a", "node-b", "node-c")
			four := append(slices.Clone(three), Node{Name: "node-d", Addr: "127.0.0.1:9100"})
			before := owners(t, mustRing(t, kind, three), keys)
			after := owners(t, mustRing(t, kind, four), keys)

			moved := 0
			for i := range keys {
				if before[i] == after[i] {
					continue
				}
				moved++
				if after[i] != "node-d" {
					t.Fatalf("join: key %q moved %s -> %s, want only moves to node-d", keys[i], before[i], after[i])
				}
			}
			frac := float64(moved) / float64(len(keys))
			t.Logf("%s: join of a 4th node moved %.1f%% of keys", kind, 100*frac)
			if frac < 0.15 || frac > 0.35 {
				t.Fatalf("join moved %.3f of keys, want about 0.25", frac)
			}

			// Remove node-b from the four.
			without := []Node{four[0], four[2], four[3]}
			afterLeave := owners(t, mustRing(t, kind, without), keys)
			moved = 0
			for i := range keys {
				if after[i] == afterLeave[i] {
					continue
				}
				moved++
				if after[i] != "node-b" {
					t.Fatalf("leave: key %q moved %s -> %s though node-b left", keys[i], after[i], afterLeave[i])
				}
			}
			t.Logf("%s: leave of node-b moved %.1f%% of keys", kind, 100*float64(moved)/float64(len(keys)))
		})
	}
}

func TestRingShareSpread(t *testing.T) {
	keys := urlKeys(10000)
	for _, kind := range ringKinds {
		t.Run(kind, func(t *testing.T) {
			r := mustRing(t, kind, testNodes("node-a", "node-b", "node-c"))
			counts := map[string]int{}
			for _, name := range owners(t, r, keys) {
				counts[name]++
			}
			for _, n := range r.Members() {
				share := float64(counts[n.Name]) / float64(len(keys))
				t.Logf("%s: %s owns %.1f%%", kind, n.Name, 100*share)
				if share < 0.25 || share > 0.42 {
					t.Errorf("%s owns %.3f of keys, want 0.25..0.42", n.Name, share)
				}
			}
		})
	}
}

func TestShares(t *testing.T) {
	for _, kind := range ringKinds {
		r := mustRing(t, kind, testNodes(nodeNames(4)...))
		s := Shares(r, 0)
		if len(s) != 4 {
			t.Fatalf("%s Shares has %d entries, want 4: %v", kind, len(s), s)
		}
		sum := 0.0
		for name, f := range s {
			if f < 0.15 || f > 0.35 {
				t.Errorf("%s share of %s = %.3f, want about 0.25", kind, name, f)
			}
			sum += f
		}
		if sum < 0.999 || sum > 1.001 {
			t.Errorf("%s shares sum to %v, want 1", kind, sum)
		}
		again := Shares(r, 0)
		for name, f := range s {
			if again[name] != f {
				t.Fatalf("Shares is not deterministic: %v vs %v", s, again)
			}
		}
	}
}

// Pins the allocation cost of Owner: none for rendezvous, and the two the
// serialx/hashring API forces (string->[]byte copy, boxed hash key).
func TestOwnerAllocs(t *testing.T) {
	key := []byte("cdn.example.org/img/1/photo-1.jpg?w=100")
	limits := map[string]float64{KindRendezvous: 0, KindHashRing: 2}
	for _, kind := range ringKinds {
		r := mustRing(t, kind, testNodes(nodeNames(8)...))
		got := testing.AllocsPerRun(200, func() { r.Owner(key) })
		if got > limits[kind] {
			t.Errorf("%s Owner allocates %.1f times, want <= %.0f", kind, got, limits[kind])
		}
	}
}

func BenchmarkOwner(b *testing.B) {
	keys := urlKeys(1024)
	for _, kind := range ringKinds {
		for _, size := range []int{3, 32} {
			b.Run(fmt.Sprintf("%s/%d", kind, size), func(b *testing.B) {
				r := mustRing(b, kind, testNodes(nodeNames(size)...))
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for b.Loop() {
					r.Owner(keys[i&1023])
					i++
				}
			})
		}
	}
}

func BenchmarkNewRing(b *testing.B) {
	for _, kind := range ringKinds {
		b.Run(kind+"/32", func(b *testing.B) {
			nodes := testNodes(nodeNames(32)...)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewRing(kind, nodes, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestHashRingMatchesLibrary: the hashring kind places keys exactly as
// serialx/hashring does with the same points (weights of vnodes, xxhash),
// though it looks them up without the library's string API.
func TestHashRingMatchesLibrary(t *testing.T) {
	for _, size := range []int{2, 3, 7} {
		nodes := testNodes(nodeNames(size)...)
		weights := map[string]int{}
		for _, n := range nodes {
			weights[n.Name] = DefaultVNodes
		}
		lib := hashring.NewWithHashAndWeights(weights, func(b []byte) hashring.HashKey { return libPoint(xxhash.Sum64(b)) })
		ours := mustRing(t, KindHashRing, nodes)
		for _, key := range urlKeys(10000) {
			want, _ := lib.GetNode(string(key))
			if got, _ := ours.Owner(key); got.Name != want {
				t.Fatalf("%d nodes, key %q: owner %s, the library says %s", size, key, got.Name, want)
			}
		}
	}
}

type libPoint uint64

func (p libPoint) Less(other hashring.HashKey) bool { return p < other.(libPoint) }

// TestRingOwnerAllocs: a lookup on either ring kind allocates nothing,
// so a forwarded hit does not either.
func TestRingOwnerAllocs(t *testing.T) {
	keys := urlKeys(64)
	for _, kind := range ringKinds {
		r := mustRing(t, kind, testNodes(nodeNames(5)...))
		i := 0
		if got := testing.AllocsPerRun(500, func() { r.Owner(keys[i&63]); i++ }); got != 0 {
			t.Errorf("%s: Owner allocates %.1f times, want 0", kind, got)
		}
	}
}

// TestRingOwners: the preference list starts with the owner, holds
// distinct members, and its second member is exactly who owns the key once
// the owner leaves (so a replica kept there is the next owner's copy).
func TestRingOwners(t *testing.T) {
	names := nodeNames(5)
	for _, kind := range ringKinds {
		r := mustRing(t, kind, testNodes(names...))
		var buf []Node
		for _, key := range urlKeys(2000) {
			buf = r.Owners(buf[:0], key, 3)
			owner, _ := r.Owner(key)
			if len(buf) != 3 || buf[0] != owner {
				t.Fatalf("%s: Owners(%q) = %v, owner %v", kind, key, buf, owner)
			}
			if buf[1].Name == buf[0].Name || buf[2].Name == buf[0].Name || buf[2].Name == buf[1].Name {
				t.Fatalf("%s: Owners(%q) repeats a member: %v", kind, key, buf)
			}
			without := mustRing(t, kind, Others(r, owner.Name))
			if next, _ := without.Owner(key); next != buf[1] {
				t.Fatalf("%s: after %s leaves, %q goes to %s, not the first replica %s", kind, owner.Name, key, next.Name, buf[1].Name)
			}
		}
		if got := r.Owners(nil, urlKeys(1)[0], 9); len(got) != 5 {
			t.Fatalf("%s: Owners beyond the ring's size = %d members, want 5", kind, len(got))
		}
		dst, key := make([]Node, 0, 3), urlKeys(1)[0]
		if n := testing.AllocsPerRun(200, func() { dst = r.Owners(dst[:0], key, 3) }); n != 0 {
			t.Fatalf("%s: Owners allocates %.1f times", kind, n)
		}
	}
}
