package sim

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cluster"
)

// fixture is a small cluster: a universe of named members and a
// population of keys to place on rings of them.
type fixture struct {
	t   *testing.T
	u   *universe
	pop *Population
}

func newFixture(t *testing.T, keys int, names ...string) *fixture {
	t.Helper()
	u, err := newUniverse(names)
	if err != nil {
		t.Fatal(err)
	}
	pop, err := NewPopulation(keys, DefaultSizes, 7)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, u: u, pop: pop}
}

func (f *fixture) ring(ids ...uint16) cluster.Ring {
	f.t.Helper()
	r, err := f.u.ring(0, ids)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// owned counts the keys (and their bytes) whose owner on r is one of names,
// straight from Ring.Owner.
func (f *fixture) owned(r cluster.Ring, names ...string) (keys, bytes int64) {
	for i := range f.pop.Len() {
		n, _ := r.Owner(f.pop.Key(i))
		if slices.Contains(names, n.Name) {
			keys++
			bytes += f.pop.Size(i)
		}
	}
	return keys, bytes
}

func (f *fixture) bools(ids ...uint16) []bool {
	b := make([]bool, len(f.u.names))
	for _, id := range ids {
		b[id] = true
	}
	return b
}

func TestTallyKey(t *testing.T) {
	all := []bool{true, true, true, true}
	for _, tc := range []struct {
		name          string
		old, new      []uint16
		gone, staying []bool
		owner, lost   bool
		copies        int64
		sender        []uint16 // who sends each copy, in new's order
	}{
		{name: "unchanged", old: []uint16{0, 1}, new: []uint16{0, 1}, gone: make([]bool, 4), staying: all},
		{name: "joiner becomes owner", old: []uint16{0, 1}, new: []uint16{3, 0}, gone: make([]bool, 4), staying: all,
			owner: true, copies: 1, sender: []uint16{0}},
		{name: "owner crashes, R=2", old: []uint16{0, 1}, new: []uint16{1, 2}, gone: []bool{true, false, false, false}, staying: []bool{false, true, true, true},
			owner: true, copies: 1, sender: []uint16{1}},
		{name: "owner crashes, R=1", old: []uint16{0}, new: []uint16{1}, gone: []bool{true, false, false, false}, staying: []bool{false, true, true, true},
			owner: true, lost: true},
		{name: "owner leaves gracefully, R=1: it hands off", old: []uint16{0}, new: []uint16{1}, gone: make([]bool, 4), staying: []bool{false, true, true, true},
			owner: true, copies: 1, sender: []uint16{0}},
		{name: "owner leaves gracefully, R=2: the replica sends", old: []uint16{0, 1}, new: []uint16{1, 2}, gone: make([]bool, 4), staying: []bool{false, true, true, true},
			owner: true, copies: 1, sender: []uint16{1}},
		{name: "both holders crash", old: []uint16{0, 1}, new: []uint16{2, 3}, gone: []bool{true, true, false, false}, staying: []bool{false, false, true, true},
			owner: true, lost: true},
		{name: "member returns empty", old: []uint16{1, 2}, new: []uint16{0, 1}, gone: make([]bool, 4), staying: all,
			owner: true, copies: 1, sender: []uint16{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTally(4)
			if lost := tl.key(1000, tc.old, tc.new, tc.gone, tc.staying); lost != tc.lost {
				t.Errorf("lost = %v, want %v", lost, tc.lost)
			}
			m := tl.m
			if (m.OwnerKeys == 1) != tc.owner || m.OwnerBytes != m.OwnerKeys*1000 {
				t.Errorf("owner changes %d keys %d bytes, want owner change %v", m.OwnerKeys, m.OwnerBytes, tc.owner)
			}
			if m.Copies != tc.copies || m.CopyBytes != tc.copies*1000 {
				t.Errorf("copies %d (%d bytes), want %d", m.Copies, m.CopyBytes, tc.copies)
			}
			if want := map[bool]int64{true: 1}[tc.lost]; m.LostKeys != want || m.LostBytes != want*1000 {
				t.Errorf("lost %d keys %d bytes, want %d", m.LostKeys, m.LostBytes, want)
			}
			wantSent := make([]int64, 4)
			for _, s := range tc.sender {
				wantSent[s] += 1000
			}
			if !slices.Equal(tl.sent, wantSent) {
				t.Errorf("sent %v, want %v", tl.sent, wantSent)
			}
			var recv int64
			for _, r := range tl.recv {
				recv += r
			}
			if recv != tc.copies*1000 {
				t.Errorf("received %d bytes in all, want %d", recv, tc.copies*1000)
			}
		})
	}
}

// On two members with R=2 both hold every key: a crash loses nothing and
// there is nobody to copy to. With R=1 a crash loses exactly the dead
// member's share, and a graceful leave hands all of it to the other.
func TestTwoMembers(t *testing.T) {
	f := newFixture(t, 20000, "web-a", "web-b")
	both, onlyB := f.ring(0, 1), f.ring(1)
	full, after := place(both, f.pop, f.u, 2), place(onlyB, f.pop, f.u, 2)
	aKeys, aBytes := f.owned(both, "web-a")
	if aKeys == 0 || aKeys == int64(f.pop.Len()) {
		t.Fatalf("web-a owns %d of %d keys: the test needs a split", aKeys, f.pop.Len())
	}
	goneA := f.bools(0)

	crash2 := compare(f.pop.sizes, full, after, 2, goneA)
	if crash2.LostKeys != 0 || crash2.Copies != 0 || crash2.Busiest != 0 {
		t.Errorf("R=2 crash: %+v, want nothing lost or copied", crash2)
	}
	if crash2.OwnerKeys != aKeys || crash2.OwnerBytes != aBytes {
		t.Errorf("R=2 crash: %d keys (%d bytes) change owner, want web-a's %d (%d)", crash2.OwnerKeys, crash2.OwnerBytes, aKeys, aBytes)
	}

	crash1 := compare(f.pop.sizes, full, after, 1, goneA)
	if crash1.LostKeys != aKeys || crash1.LostBytes != aBytes || crash1.Copies != 0 {
		t.Errorf("R=1 crash: %+v, want web-a's %d keys (%d bytes) lost, no copies", crash1, aKeys, aBytes)
	}

	leave1 := compare(f.pop.sizes, full, after, 1, f.bools())
	if leave1.LostKeys != 0 || leave1.Copies != aKeys || leave1.CopyBytes != aBytes || leave1.Busiest != aBytes {
		t.Errorf("R=1 graceful leave: %+v, want web-a's %d keys (%d bytes) copied, all sent by web-a", leave1, aKeys, aBytes)
	}
}

// With R=2 on three members, two crashes at once lose exactly the keys
// whose two copies were on the two; with R=1, the keys either owned.
func TestTwoCrashes(t *testing.T) {
	f := newFixture(t, 20000, "web-a", "web-b", "web-c")
	abc, c := f.ring(0, 1, 2), f.ring(2)
	full, after := place(abc, f.pop, f.u, 2), place(c, f.pop, f.u, 2)
	var pairKeys, pairBytes int64
	var buf []cluster.Node
	for i := range f.pop.Len() {
		buf = abc.Owners(buf[:0], f.pop.Key(i), 2)
		if !slices.ContainsFunc(buf, func(n cluster.Node) bool { return n.Name == "web-c" }) {
			pairKeys++
			pairBytes += f.pop.Size(i)
		}
	}
	gone := f.bools(0, 1)
	m2 := compare(f.pop.sizes, full, after, 2, gone)
	if m2.LostKeys != pairKeys || m2.LostBytes != pairBytes || m2.Copies != 0 {
		t.Errorf("R=2: %+v, want %d keys (%d bytes) lost and no copies", m2, pairKeys, pairBytes)
	}
	abKeys, abBytes := f.owned(abc, "web-a", "web-b")
	m1 := compare(f.pop.sizes, full, after, 1, gone)
	if m1.LostKeys != abKeys || m1.LostBytes != abBytes {
		t.Errorf("R=1: %+v, want %d keys (%d bytes) lost", m1, abKeys, abBytes)
	}
	p := pairs(f.pop.sizes, full, 2, 3)
	if math.Abs(p.MeanKeys-1.0/3) > 1e-12 || p.Losing != 1 {
		t.Errorf("pairs: %+v, want a mean loss of 1/3 and every pair losing", p)
	}
}

// A member that joins receives every copy (it holds nothing yet), and
// only keys it now owns change owner.
func TestJoin(t *testing.T) {
	f := newFixture(t, 20000, "web-a", "web-b", "web-c", "web-d")
	before, after := f.ring(0, 1, 2), f.ring(0, 1, 2, 3)
	pb, pa := place(before, f.pop, f.u, 2), place(after, f.pop, f.u, 2)
	dKeys, dBytes := f.owned(after, "web-d")
	var heldKeys, heldBytes int64
	var buf []cluster.Node
	for i := range f.pop.Len() {
		buf = after.Owners(buf[:0], f.pop.Key(i), 2)
		if slices.ContainsFunc(buf, func(n cluster.Node) bool { return n.Name == "web-d" }) {
			heldKeys++
			heldBytes += f.pop.Size(i)
		}
	}
	m := compare(f.pop.sizes, pb, pa, 2, f.bools())
	if m.OwnerKeys != dKeys || m.OwnerBytes != dBytes {
		t.Errorf("%d keys (%d bytes) change owner, want web-d's %d (%d)", m.OwnerKeys, m.OwnerBytes, dKeys, dBytes)
	}
	if m.Copies != heldKeys || m.CopyBytes != heldBytes || m.Busiest != heldBytes || m.LostKeys != 0 {
		t.Errorf("%+v, want %d copies (%d bytes), all received by web-d, nothing lost", m, heldKeys, heldBytes)
	}
}

// rebuiltRollingRestart is what rollingRestart computes, the slow way: a
// ring rebuilt without each member in turn. Only for changes that lose
// nothing (the placements stand for who holds a key).
func (f *fixture) rebuiltRollingRestart(r int, kill bool) (total, returns Movement) {
	var ids []uint16
	for i := range f.u.names {
		ids = append(ids, uint16(i))
	}
	full := place(f.ring(ids...), f.pop, f.u, r)
	for _, m := range ids {
		var rest []uint16
		for _, id := range ids {
			if id != m {
				rest = append(rest, id)
			}
		}
		away := place(f.ring(rest...), f.pop, f.u, r)
		gone := f.bools()
		if kill {
			gone = f.bools(m)
		}
		total.add(compare(f.pop.sizes, full, away, r, gone))
		back := compare(f.pop.sizes, away, full, r, f.bools())
		total.add(back)
		returns.add(back)
	}
	return total, returns
}

func TestRollingRestartMatchesRebuiltRings(t *testing.T) {
	f := newFixture(t, 5000, "web-a", "web-b", "web-c", "web-d", "web-e")
	ids := []uint16{0, 1, 2, 3, 4}
	full := place(f.ring(ids...), f.pop, f.u, 3)
	for _, tc := range []struct {
		r    int
		kill bool
	}{{1, false}, {2, false}, {2, true}} {
		graceful, killed := rollingRestart(f.pop.sizes, full, tc.r, ids, 3)
		got := graceful
		if tc.kill {
			got = killed
		}
		wantTotal, wantReturns := f.rebuiltRollingRestart(tc.r, tc.kill)
		if got.total != wantTotal || got.returns != wantReturns {
			t.Errorf("R=%d kill=%v: rolling restart %+v (returns %+v), rebuilt rings %+v (returns %+v)", tc.r, tc.kill, got.total, got.returns, wantTotal, wantReturns)
		}
		if got.total.OwnerKeys != 2*int64(f.pop.Len()) || got.total.Steps != 2*len(ids) || got.total.LostKeys != 0 {
			t.Errorf("R=%d kill=%v: %+v, want every key to change owner twice in %d steps and none lost", tc.r, tc.kill, got.total, 2*len(ids))
		}
		if got.checked.Steps != 1 || got.checked.Busiest == 0 {
			t.Errorf("R=%d kill=%v: web-d's leave step %+v", tc.r, tc.kill, got.checked)
		}
	}
	// R=1 without a hand-off: every key is lost once, when its owner stops.
	_, killed := rollingRestart(f.pop.sizes, full, 1, ids, 0)
	if k := killed.total; k.LostKeys != int64(f.pop.Len()) || k.LostBytes != f.pop.Bytes() || k.Copies != 0 || k.OwnerKeys != 2*int64(f.pop.Len()) {
		t.Errorf("R=1 without hand-off: %+v, want every key lost, none copied, each changing owner twice", k)
	}
}

// pairs agrees with crashing every pair for real.
func TestPairsMatchesCrashes(t *testing.T) {
	f := newFixture(t, 5000, "web-a", "web-b", "web-c", "web-d", "web-e", "web-f")
	ids := []uint16{0, 1, 2, 3, 4, 5}
	full := place(f.ring(ids...), f.pop, f.u, 2)
	for _, r := range []int{1, 2} {
		var sum, worst, worstBytes float64
		losing := 0
		for i, x := range ids {
			for _, y := range ids[i+1:] {
				var rest []uint16
				for _, id := range ids {
					if id != x && id != y {
						rest = append(rest, id)
					}
				}
				m := compare(f.pop.sizes, full, place(f.ring(rest...), f.pop, f.u, 2), r, f.bools(x, y))
				frac := float64(m.LostKeys) / float64(f.pop.Len())
				sum += frac
				worst = max(worst, frac)
				worstBytes = max(worstBytes, float64(m.LostBytes)/float64(f.pop.Bytes()))
				if m.LostKeys > 0 {
					losing++
				}
			}
		}
		got := pairs(f.pop.sizes, full, r, len(ids))
		want := Pairs{R: r, MeanKeys: sum / 15, WorstKeys: worst, WorstBytes: worstBytes, Losing: float64(losing) / 15}
		if math.Abs(got.MeanKeys-want.MeanKeys) > 1e-12 || got.WorstKeys != want.WorstKeys || got.WorstBytes != want.WorstBytes || got.Losing != want.Losing {
			t.Errorf("R=%d: pairs %+v, crashing each pair %+v", r, got, want)
		}
	}
}

func smallConfig() Config {
	c := DefaultConfig()
	c.Members = []int{3, 20}
	c.Keys = 20000
	return c
}

func TestRunIsDeterministicAndConsistent(t *testing.T) {
	a, err := Run(smallConfig())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(smallConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Result{a, b} {
		r.Took = 0
		for i := range r.Clusters {
			r.Clusters[i].Build, r.Clusters[i].Place = 0, 0
		}
	}
	if a.Markdown() != b.Markdown() {
		t.Error("two runs with one seed differ")
	}
	for _, cl := range a.Clusters {
		ev := map[string]Event{}
		for _, e := range cl.Events {
			ev[e.Name+"/"+strconv.Itoa(e.R)] = e
		}
		keys := int64(a.Keys)
		if e := ev[EventCrash+"/2"]; e.LostKeys != 0 || e.Copies == 0 {
			t.Errorf("%d members, R=2: a crash %+v, want copies and nothing lost", cl.Members, e)
		}
		if crash, leave := ev[EventCrash+"/1"], ev[EventLeave+"/1"]; crash.LostKeys != leave.Copies || crash.LostKeys != crash.OwnerKeys || crash.LostKeys == 0 {
			t.Errorf("%d members, R=1: a crash loses %d keys, a graceful leave copies %d, %d change owner: want equal", cl.Members, crash.LostKeys, leave.Copies, crash.OwnerKeys)
		}
		if e := ev[EventRolling+"/1"]; e.Copies != 2*keys || e.CopyBytes != 2*a.Bytes || e.LostKeys != 0 {
			t.Errorf("%d members, R=1 rolling restart: %+v, want every key handed off and back", cl.Members, e)
		}
		if e := ev[EventRollingKill+"/1"]; e.LostKeys != keys {
			t.Errorf("%d members, R=1 rolling restart without hand-off loses %d keys, want all %d", cl.Members, e.LostKeys, keys)
		}
		if e := ev[EventRolling+"/2"]; e.Copies != 4*keys || e.LostKeys != 0 {
			t.Errorf("%d members, R=2 rolling restart: %+v, want 2 copies of each key out and 2 back", cl.Members, e)
		}
		for _, s := range cl.Spread {
			if s.Keys.Min > 1 || s.Keys.Max < 1 || s.Keys.StdDev <= 0 {
				t.Errorf("%d members: spread %+v", cl.Members, s)
			}
			// The ring's shares are what the keys show, less sampling.
			if tol := 3*s.KeysFloor + 0.005; math.Abs(s.Ring.StdDev-s.Keys.StdDev) > tol || math.Abs(s.Ring.Max-s.Keys.Max) > 2*tol {
				t.Errorf("%d members, R=%d: ring shares %+v, keys %+v", cl.Members, s.R, s.Ring, s.Keys)
			}
		}
		// So are the shares of keys that move.
		for _, e := range cl.Events {
			for _, m := range []struct {
				name       string
				keys, ring float64
			}{
				{"changing owner", float64(e.OwnerKeys) / float64(keys), float64(e.Ring.OwnerBytes) * arcUnit},
				{"copies", float64(e.Copies) / float64(keys), float64(e.Ring.CopyBytes) * arcUnit},
				{"lost", float64(e.LostKeys) / float64(keys), float64(e.Ring.LostBytes) * arcUnit},
			} {
				if math.Abs(m.keys-m.ring) > 0.02*max(1, m.ring) {
					t.Errorf("%d members, R=%d, %s: %.4f of the keys %s, %.4f of the ring", cl.Members, e.R, e.Name, m.keys, m.name, m.ring)
				}
			}
		}
	}
}

func TestPopulation(t *testing.T) {
	p, err := NewPopulation(100000, DefaultSizes, 3)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := NewPopulation(100000, DefaultSizes, 3)
	seen := make(map[string]bool, p.Len())
	var sizes []int64
	for i := range p.Len() {
		k := string(p.Key(i))
		if seen[k] {
			t.Fatalf("key %q twice", k)
		}
		seen[k] = true
		if k != string(q.Key(i)) || p.Size(i) != q.Size(i) {
			t.Fatalf("key %d differs between two populations from one seed", i)
		}
		if !strings.Contains(k, ".example") || !strings.Contains(k, "/") {
			t.Errorf("key %q is not shaped like a URL", k)
		}
		if s := p.Size(i); s < DefaultSizes.Min || s > DefaultSizes.Max {
			t.Errorf("size %d outside [%d, %d]", s, DefaultSizes.Min, DefaultSizes.Max)
		}
		sizes = append(sizes, p.Size(i))
	}
	slices.Sort(sizes)
	if med := float64(sizes[len(sizes)/2]); math.Abs(med/float64(DefaultSizes.Median)-1) > 0.03 {
		t.Errorf("median size %.0f, want within 3%% of %d", med, DefaultSizes.Median)
	}
	if _, err := NewPopulation(10, SizeDist{Median: 10, Min: 20, Max: 30}, 1); err == nil {
		t.Error("a median below the minimum size was accepted")
	}
}

func TestNames(t *testing.T) {
	names := Names(1001, 5)
	shape := regexp.MustCompile(`^web-[` + podAlphabet + `]{10}-[` + podAlphabet + `]{5}$`)
	seen := map[string]bool{}
	for _, n := range names {
		if !shape.MatchString(n) || seen[n] {
			t.Fatalf("name %q: not a pod name, or seen twice", n)
		}
		seen[n] = true
	}
	if !slices.Equal(Names(1000, 5), names[:1000]) {
		t.Error("Names(n) is not a prefix of Names(n+1)")
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := Config{Members: []int{2}, Replicas: []int{0}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("a config of zeros validated")
	}
	for _, want := range []string{"cluster size", "keys", "size distribution", "R must", "rate", "member store"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors %q do not mention %q", err, want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{pct(0.0931), "9.31%"}, {pct(0.5), "50.0%"}, {pct(2), "200%"}, {pct(2e-6), "0.000200%"}, {pct(0), "0%"},
		{fmtBytes(16 << 10), "16 KiB"}, {fmtBytes(1.5 * (1 << 30)), "1.50 GiB"}, {fmtBytes(200), "200 B"},
		{fmtDur(66 * time.Millisecond), "66.0 ms"}, {fmtDur(172 * time.Second), "2.87 min"}, {fmtDur(49 * time.Hour), "49.0 h"}, {fmtDur(95 * time.Hour), "3.96 days"},
		{fmtCount(1234567), "1,234,567"}, {fmtCount(12), "12"},
		{fmtRate(50e6), "50 MB/s"},
		{ofStore(0.049), "4.90% of a member's store"}, {ofStore(11.56), "11.6× a member's store"}, {ofStore(1031), "1,031× a member's store"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// The simulation's copy of the ring's layout places every key where
// Ring.Owners does, on the full ring and on rings of fewer members.
func TestLayoutMatchesRing(t *testing.T) {
	f := newFixture(t, 50000, Names(12, 1)...)
	lay := newLayout(f.u, cluster.DefaultVNodes)
	var sum int64
	for _, w := range lay.weights() {
		sum += w
	}
	if full := int64(1) << 48; sum > full || sum < full-int64(len(lay.points)) {
		t.Errorf("arc weights sum to %d, want 2^48 less at most one unit per arc", sum)
	}
	for _, ids := range [][]uint16{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {1, 3, 5}} {
		keys := place(f.ring(ids...), f.pop, f.u, 3)
		arcs := lay.place(f.u.set(ids...), 3)
		if err := lay.check(f.pop, keys, arcs); err != nil {
			t.Errorf("%d members: %v", len(ids), err)
		}
	}
	// A layout that is not the ring's is caught.
	other := newLayout(f.u, cluster.DefaultVNodes-1)
	if err := other.check(f.pop, place(f.ring(0, 1, 2), f.pop, f.u, 1), other.place(f.u.set(0, 1, 2), 1)); err == nil {
		t.Error("a layout with 159 points per member passed the check")
	}
}

// The ring's arcs and a large population agree on the shares that move,
// and the arcs' copy time is the leaver's share of the store at the rate.
func TestRingAgreesWithPopulation(t *testing.T) {
	f := newFixture(t, 200000, Names(11, 2)...)
	ids := []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	lay := newLayout(f.u, cluster.DefaultVNodes)
	arcs := lay.weights()
	full := f.u.set(ids...)
	joined := f.u.set(append(ids, 10)...)
	keysFull, keysJoin := place(f.ring(ids...), f.pop, f.u, 2), place(f.ring(append(ids, 10)...), f.pop, f.u, 2)
	arcsFull, arcsJoin := lay.place(full, 2), lay.place(joined, 2)
	for _, r := range []int{1, 2} {
		k := compare(f.pop.sizes, keysFull, keysJoin, r, f.u.set())
		a := compare(arcs, arcsFull, arcsJoin, r, f.u.set())
		kShare, aShare := float64(k.OwnerKeys)/float64(f.pop.Len()), float64(a.OwnerBytes)*arcUnit
		if math.Abs(kShare-aShare) > 0.005 {
			t.Errorf("R=%d join: %.4f of the keys change owner, %.4f of the ring", r, kShare, aShare)
		}
		kCopies, aCopies := float64(k.Copies)/float64(f.pop.Len()), float64(a.CopyBytes)*arcUnit
		if math.Abs(kCopies-aCopies) > 0.01 {
			t.Errorf("R=%d join: %.4f copies per key, %.4f on the ring", r, kCopies, aCopies)
		}
	}
	// R=1, web-0 leaves: it sends its whole share; with members holding
	// MemberStore each, that takes its share × n × MemberStore / rate.
	leave := compare(arcs, arcsFull, lay.place(f.u.set(ids[1:]...), 1), 1, f.u.set())
	_, share := spread(arcs, arcsFull, 1)
	res := &Result{Config: DefaultConfig()}
	want := float64(res.Config.MemberStore) / res.Config.Rate // a mean member's store at the rate, in seconds
	got := res.CopyTime(10, 1, leave.Busiest).Seconds()
	var first float64
	for i, w := range arcs {
		if arcsFull.holders(i, 1)[0] == 0 {
			first += float64(w)
		}
	}
	if rel := first / share.Mean; math.Abs(got/(want*rel)-1) > 1e-9 {
		t.Errorf("R=1 leave takes %.3f s, want %.3f s (web-0 holds %.3f of a mean member)", got, want*rel, rel)
	}
}
