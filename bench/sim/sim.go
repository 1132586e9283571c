// Package sim simulates what membership changes cost a ringcache cluster
// far larger than the machine the benchmarks run on: for a fixed, seeded
// population of URL-like keys with log-normal sizes and clusters of any
// size on the real ring (cluster.NewRing), how evenly the ring shares the
// keys and bytes, and for a join, a graceful leave, a crash, two crashes
// at once and a rolling restart, with R copies of every key on its first R
// owners (cluster.Ring.Owners), how many keys change owner, how many
// copies and bytes must move to restore R copies and how long that takes
// at a per-member rate, and what is lost. There is no network: only the
// ring and arithmetic.
//
// Every change is computed twice: on the key population, through
// Ring.Owners (counts of keys and bytes), and on the ring's arcs (layout),
// which stand for infinitely many keys: exact shares, and the copy loads
// of members holding far more keys than a sample can give each of 1,000
// members, from which the copy times come.
package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ringcache/ringcache/cluster"
)

// Config describes a simulation. DefaultConfig returns the report's.
type Config struct {
	// Members lists the cluster sizes simulated.
	Members []int
	// Keys is the number of keys in the population; every cluster size
	// places the same keys.
	Keys int
	// Sizes is the distribution of the keys' object sizes.
	Sizes SizeDist
	// Replicas lists the copy counts R compared: a key lives on its
	// first R owners. R=1 is ringcache today.
	Replicas []int
	// VNodes is the number of points per member of the ring, the default
	// hashring (0: cluster.DefaultVNodes, 160).
	VNodes int
	// Rate is what one member sends, and what one receives, per second
	// while copying keys, in bytes: a limit so that re-replication does
	// not starve requests.
	Rate float64
	// MemberStore is the bytes each member holds (copies included) in the
	// copy times: a cluster of members that hold that much each, not the
	// population, whose fixed bytes thin out as the cluster grows.
	MemberStore int64
	// Seed fixes the keys, their sizes, the member names and the members
	// picked for single events.
	Seed uint64
}

// DefaultConfig returns the report's configuration: 3, 10, 100 and 1,000
// members, 1,000,000 keys of DefaultSizes, R = 1 and 2, the default ring,
// 50 MB/s per member, members holding 8 GiB each for the copy times.
func DefaultConfig() Config {
	return Config{
		Members:     []int{3, 10, 100, 1000},
		Keys:        1_000_000,
		Sizes:       DefaultSizes,
		Replicas:    []int{1, 2},
		Rate:        50e6,
		MemberStore: 8 << 30,
		Seed:        12,
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Members) == 0 {
		errs = append(errs, errors.New("members: at least one cluster size"))
	}
	for _, n := range c.Members {
		if n < 3 || n > 4096 {
			errs = append(errs, fmt.Errorf("members: a cluster size must be in 3..4096 (got %d): two crashes need two members besides a third", n))
		}
	}
	if c.VNodes < 0 || c.VNodes > 1024 {
		errs = append(errs, fmt.Errorf("vnodes must be in 0..1024 (got %d)", c.VNodes))
	}
	if c.Keys <= 0 || c.Keys > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("keys must be in 1..%d (got %d)", math.MaxInt32, c.Keys))
	}
	if err := c.Sizes.validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Replicas) == 0 {
		errs = append(errs, errors.New("replicas: at least one R"))
	}
	for _, r := range c.Replicas {
		if r < 1 || r > 8 {
			errs = append(errs, fmt.Errorf("replicas: R must be in 1..8 (got %d)", r))
		}
	}
	if !(c.Rate > 0) {
		errs = append(errs, fmt.Errorf("rate must be > 0 bytes/s (got %v)", c.Rate))
	}
	if c.MemberStore <= 0 {
		errs = append(errs, fmt.Errorf("member store must be > 0 bytes (got %d)", c.MemberStore))
	}
	return errors.Join(errs...)
}

// Result is a whole simulation.
type Result struct {
	Config     Config
	Keys       int
	Bytes      int64   // sum of the population's sizes
	SizeMedian int64   // bytes
	SizeP99    int64   // bytes
	SizeCV     float64 // coefficient of variation of the sizes
	Clusters   []Cluster
	Took       time.Duration
}

// Cluster is the simulation of one cluster size.
type Cluster struct {
	Members int
	Points  int           // ring points: members × vnodes
	Build   time.Duration // cluster.NewRing for all members
	Place   time.Duration // preference lists of every key on the full ring
	// Spread is, per R, how evenly keys and bytes spread over members.
	Spread []Spread
	// Leaver, Joiner and Pair name the members picked (from Seed) for the
	// single events.
	Leaver, Joiner string
	Pair           [2]string
	Events         []Event
	// Pairs is, per R, what two crashes at once lose over all pairs.
	Pairs []Pairs
}

// Spread is how evenly one R's copies spread over the members.
type Spread struct {
	R int
	// Keys and Bytes are per-member counts of the population's keys and
	// bytes each member holds.
	Keys, Bytes Stat
	// KeysFloor and BytesFloor are the relative standard deviations a
	// perfectly even ring would still show on this population, from
	// sampling alone: 1/√(keys per member), and for bytes
	// √((1+cv²)/(keys per member)) with cv the sizes' coefficient of
	// variation.
	KeysFloor, BytesFloor float64
	// Ring is the share of the hash space each member holds: the spread
	// of infinitely many keys, free of sampling.
	Ring Stat
}

// Stat summarises a per-member quantity.
type Stat struct {
	Mean     float64
	Min, Max float64 // as fractions of Mean
	StdDev   float64 // relative to Mean
}

// Event is one membership change simulated with R copies.
type Event struct {
	Name string
	R    int
	// Movement counts the population's keys and bytes.
	Movement
	// Ring is the same change on the ring's arcs: its counts are shares of
	// the hash space in arcUnits, and its Busiest gives the copy time of
	// members holding Config.MemberStore each (Result.CopyTime).
	Ring Movement
	// Returns is, for a rolling restart, the part of Ring spent on the
	// members' returns: refilling each with what it holds again.
	Returns Movement
}

// Event names, in report order.
const (
	EventJoin        = "join"
	EventLeave       = "graceful leave"
	EventCrash       = "crash"
	EventTwoCrashes  = "two crashes at once"
	EventRolling     = "rolling restart"
	EventRollingKill = "rolling restart, no hand-off"
)

// Pairs is what two members crashing at once lose, over every pair.
type Pairs struct {
	R int
	// MeanKeys is the mean over all pairs of the fraction of keys lost;
	// WorstKeys and WorstBytes the largest fractions of the population's
	// keys and of its bytes any pair loses (not necessarily one pair).
	MeanKeys, WorstKeys, WorstBytes float64
	// Losing is the fraction of pairs whose crash loses a key of the
	// population.
	Losing float64
	// RingWorst and RingLosing are the same on the ring's arcs: the
	// largest share of the hash space a pair loses, and the fraction of
	// pairs that lose any (with infinitely many keys).
	RingWorst, RingLosing float64
}

// CopyTime is the time ring copy load busiest (a Movement's Busiest on
// the ring's arcs) takes at Config.Rate when each of the n members holds
// Config.MemberStore with r copies of every key.
func (res *Result) CopyTime(n, r int, busiest int64) time.Duration {
	bytes := float64(busiest) * arcUnit * float64(res.Config.MemberStore) * float64(n) / float64(min(r, n))
	return time.Duration(bytes / res.Config.Rate * float64(time.Second))
}

// Run simulates every cluster size of c.
func Run(c Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	pop, err := NewPopulation(c.Keys, c.Sizes, c.Seed)
	if err != nil {
		return nil, err
	}
	res := &Result{Config: c, Keys: pop.Len(), Bytes: pop.Bytes()}
	res.SizeMedian, res.SizeP99, res.SizeCV = sizeStats(pop)
	for _, n := range c.Members {
		cl, err := simulate(c, pop, res.SizeCV, n)
		if err != nil {
			return nil, fmt.Errorf("%d members: %w", n, err)
		}
		res.Clusters = append(res.Clusters, *cl)
	}
	res.Took = time.Since(start)
	return res, nil
}

func sizeStats(pop *Population) (median, p99 int64, cv float64) {
	s := slices.Clone(pop.sizes)
	slices.Sort(s)
	mean := float64(pop.Bytes()) / float64(len(s))
	var ss float64
	for _, v := range s {
		d := float64(v) - mean
		ss += d * d
	}
	return s[len(s)/2], s[len(s)*99/100], math.Sqrt(ss/float64(len(s))) / mean
}

// simulate runs every event on a cluster of n members.
func simulate(c Config, pop *Population, cv float64, n int) (*Cluster, error) {
	names := Names(n+1, c.Seed)
	u, err := newUniverse(names)
	if err != nil {
		return nil, err
	}
	all := make([]uint16, n+1)
	for i := range all {
		all[i] = uint16(i)
	}
	members, joiner := all[:n], all[n]
	rng := rand.New(rand.NewPCG(c.Seed, uint64(n)))
	x := members[rng.IntN(n)]
	y := members[rng.IntN(n-1)]
	if y >= x {
		y++
	}
	cl := &Cluster{Members: n, Points: n * vnodes(c), Leaver: names[x], Joiner: names[joiner], Pair: [2]string{names[x], names[y]}}

	t0 := time.Now()
	full, err := u.ring(c.VNodes, members)
	if err != nil {
		return nil, err
	}
	cl.Build = time.Since(t0)
	maxR := slices.Max(c.Replicas)
	// One deeper than the largest R: the rolling restart reads where a key
	// goes while one of its holders is away from the full ring's list.
	t0 = time.Now()
	keysFull := place(full, pop, u, maxR+1)
	cl.Place = time.Since(t0)

	// The rings after the single events, as the population and as arcs.
	lay := newLayout(u, vnodes(c))
	arcs := lay.weights()
	arcsFull := lay.place(u.set(members...), maxR+1)
	if err := lay.check(pop, keysFull, arcsFull); err != nil {
		return nil, err
	}
	others := func(skip ...uint16) []uint16 {
		var out []uint16
		for _, m := range members {
			if !slices.Contains(skip, m) {
				out = append(out, m)
			}
		}
		return out
	}
	type placed struct{ keys, arcs *Placement }
	var join, leave, two placed
	for _, s := range []struct {
		ids []uint16
		p   *placed
	}{{all, &join}, {others(x), &leave}, {others(x, y), &two}} {
		r, err := u.ring(c.VNodes, s.ids)
		if err != nil {
			return nil, err
		}
		s.p.keys, s.p.arcs = place(r, pop, u, maxR), lay.place(u.set(s.ids...), maxR)
		if err := lay.check(pop, s.p.keys, s.p.arcs); err != nil {
			return nil, err
		}
	}

	nobody, goneX, goneXY := u.set(), u.set(x), u.set(x, y)
	for _, r := range c.Replicas {
		keys, bytes := spread(pop.sizes, keysFull, r)
		_, ringShare := spread(arcs, arcsFull, r)
		perMember := float64(pop.Len()) * float64(min(r, n)) / float64(n)
		cl.Spread = append(cl.Spread, Spread{R: r, Keys: keys, Bytes: bytes, Ring: ringShare,
			KeysFloor: 1 / math.Sqrt(perMember), BytesFloor: math.Sqrt((1 + cv*cv) / perMember)})

		ev := make([]Event, 0, 6)
		for _, v := range []struct {
			w           []int64
			full        *Placement
			join, leave *Placement
			two         *Placement
			ring        bool
		}{{pop.sizes, keysFull, join.keys, leave.keys, two.keys, false}, {arcs, arcsFull, join.arcs, leave.arcs, two.arcs, true}} {
			leaveM := compare(v.w, v.full, v.leave, r, nobody)
			crashM := compare(v.w, v.full, v.leave, r, goneX)
			rolling, killed := rollingRestart(v.w, v.full, r, members, x)
			// The rolling restart reads the ring without each member off
			// the full ring's preference lists (Ring.Owners' contract);
			// the ring rebuilt without x must agree.
			if rolling.checked != leaveM || killed.checked != crashM {
				return nil, fmt.Errorf("R=%d: %s leaving (crashing): the full ring's preference lists say %+v (%+v), the rebuilt ring %+v (%+v)",
					r, names[x], rolling.checked, killed.checked, leaveM, crashM)
			}
			moves := []Movement{compare(v.w, v.full, v.join, r, nobody), leaveM, crashM, compare(v.w, v.full, v.two, r, goneXY), rolling.total, killed.total}
			if !v.ring {
				for i, name := range []string{EventJoin, EventLeave, EventCrash, EventTwoCrashes, EventRolling, EventRollingKill} {
					ev = append(ev, Event{Name: name, R: r, Movement: moves[i]})
				}
				continue
			}
			for i := range ev {
				ev[i].Ring = moves[i]
			}
			ev[4].Returns, ev[5].Returns = rolling.returns, killed.returns
		}
		cl.Events = append(cl.Events, ev...)

		p := pairs(pop.sizes, keysFull, r, n)
		ringPairs := pairs(arcs, arcsFull, r, n)
		p.RingWorst, p.RingLosing = ringPairs.WorstBytes, ringPairs.Losing
		cl.Pairs = append(cl.Pairs, p)
	}
	return cl, nil
}

func vnodes(c Config) int {
	if c.VNodes == 0 {
		return cluster.DefaultVNodes
	}
	return c.VNodes
}

// restart is a rolling restart: every member in turn leaves and returns.
type restart struct {
	total   Movement // the whole restart
	returns Movement // the part of it spent on the returns
	checked Movement // the leave step of the member asked for
}

// close ends member m's step: its leave, then its return.
func (s *restart) close(leave, back *tally, check bool) {
	var out, ret Movement
	leave.step(&out)
	back.step(&ret)
	if check {
		s.checked = out
	}
	s.total.add(out)
	s.total.add(ret)
	s.returns.add(ret)
}

func (s *restart) add(o restart) {
	s.total.add(o.total)
	s.returns.add(o.returns)
	if o.checked.Steps > 0 {
		s.checked = o.checked
	}
}

// rollingRestart restarts every member in turn: it leaves, the others copy
// what it held to the members next in line, then it returns under the same
// name, empty, and the keys it holds again are copied back to it. Each step
// waits for the copies of the one before, so the steps' windows add up.
// graceful is the restart where each member leaves gracefully (it can hand
// its keys off), killed the one where each stops as if it crashed. Both
// return the leave step of member check alone.
//
// w weighs each item (a key, or an arc of the ring) placed in full. The
// ring without member m is not rebuilt: a key's first r owners on it
// are its first r+1 owners on the full ring, m left out (the contract of
// cluster.Ring.Owners), so full must be at least r+1 deep. Only keys m
// holds change. Steps start from the same state, so they are computed in
// parallel.
func rollingRestart(w []int64, full *Placement, r int, members []uint16, check uint16) (graceful, killed restart) {
	n := len(full.member)
	// keys[counts[m]:counts[m+1]] lists the keys m holds: the only ones
	// its restart moves.
	counts := make([]int, n+1)
	for i := range w {
		for _, h := range full.holders(i, r) {
			counts[h+1]++
		}
	}
	for m := 1; m <= n; m++ {
		counts[m] += counts[m-1]
	}
	keys := make([]int32, counts[n])
	next := slices.Clone(counts[:n])
	for i := range w {
		for _, h := range full.holders(i, r) {
			keys[next[h]] = int32(i)
			next[h]++
		}
	}

	var mu sync.Mutex
	parallel(len(members), 1, func(lo, hi int) {
		var g, k restart
		staying, all := slices.Clone(full.member), full.member
		nobody, gone := make([]bool, n), make([]bool, n)
		away := make([]uint16, 0, r)
		gLeave, gBack, kLeave, kBack := newTally(n), newTally(n), newTally(n), newTally(n)
		for _, m := range members[lo:hi] {
			staying[m], gone[m] = false, true
			for _, i := range keys[counts[m]:counts[m+1]] {
				size, old := w[i], full.holders(int(i), r)
				away = withoutMember(away[:0], full.lists[int(i)*full.depth:(int(i)+1)*full.depth], m, r)
				gLeave.key(size, old, away, nobody, staying)
				gBack.key(size, away, old, nobody, all)
				if kLeave.key(size, old, away, gone, staying) {
					kBack.owner(size, away, old) // nobody has it to give back
				} else {
					kBack.key(size, away, old, nobody, all)
				}
			}
			g.close(gLeave, gBack, m == check)
			k.close(kLeave, kBack, m == check)
			staying[m], gone[m] = true, false
		}
		mu.Lock()
		graceful.add(g)
		killed.add(k)
		mu.Unlock()
	})
	return graceful, killed
}

// withoutMember appends to dst the first r members of list other than m.
func withoutMember(dst, list []uint16, m uint16, r int) []uint16 {
	for _, h := range list {
		if len(dst) == r || h == none {
			break
		}
		if h != m {
			dst = append(dst, h)
		}
	}
	return dst
}

// spread summarises the items (weights w) each member of full holds with
// r copies: by count and by weight.
func spread(w []int64, full *Placement, r int) (count, weight Stat) {
	counts, weights := make([]float64, len(full.member)), make([]float64, len(full.member))
	for i, wi := range w {
		for _, h := range full.holders(i, r) {
			counts[h]++
			weights[h] += float64(wi)
		}
	}
	var cs, ws []float64
	for id, in := range full.member {
		if in {
			cs, ws = append(cs, counts[id]), append(ws, weights[id])
		}
	}
	return stat(cs), stat(ws)
}

func sq(x float64) float64 { return x * x }

func stat(v []float64) Stat {
	var sum float64
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	var ss float64
	for _, x := range v {
		ss += sq(x - mean)
	}
	return Stat{Mean: mean, Min: slices.Min(v) / mean, Max: slices.Max(v) / mean, StdDev: math.Sqrt(ss/float64(len(v))) / mean}
}

// pairs computes what every pair of the n members of full crashing at
// once loses with r copies of the items (weights w): with r=1 both
// members' items; with r=2 the items held by exactly that pair; with r>2
// nothing.
func pairs(w []int64, full *Placement, r, n int) Pairs {
	out := Pairs{R: r}
	npairs := float64(n) * float64(n-1) / 2
	var total float64
	for _, wi := range w {
		total += float64(wi)
	}
	items := float64(len(w))
	switch r {
	case 1:
		k, b := make([]float64, len(full.member)), make([]float64, len(full.member))
		for i, wi := range w {
			h := full.holders(i, 1)[0]
			k[h]++
			b[h] += float64(wi)
		}
		slices.Sort(k)
		slices.Sort(b)
		// Each member is in n-1 pairs: the mean is 2/n of the keys.
		out.MeanKeys = 2 / float64(n)
		out.WorstKeys = (k[len(k)-1] + k[len(k)-2]) / items
		out.WorstBytes = (b[len(b)-1] + b[len(b)-2]) / total
		out.Losing = 1
	case 2:
		type loss struct{ items, weight int64 }
		byPair := make(map[uint32]loss)
		for i, wi := range w {
			h := full.holders(i, 2)
			pair := uint32(min(h[0], h[1]))<<16 | uint32(max(h[0], h[1]))
			l := byPair[pair]
			l.items++
			l.weight += wi
			byPair[pair] = l
		}
		// Every key is held by exactly one pair: the mean is 1/C(n,2).
		out.MeanKeys = 1 / npairs
		for _, l := range byPair {
			out.WorstKeys = max(out.WorstKeys, float64(l.items)/items)
			out.WorstBytes = max(out.WorstBytes, float64(l.weight)/total)
		}
		out.Losing = float64(len(byPair)) / npairs
	}
	return out
}
