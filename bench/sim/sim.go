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
	// Kind and VNodes are passed to cluster.NewRing ("" and 0: the
	// default ring, serialx/hashring's layout with 160 points per member).
	Kind   string
	VNodes int
	// Rate is what one member sends, and what one receives, per second
	// while copying keys, in bytes: a limit so that re-replication does
	// not starve requests.
	Rate float64
	// MemberStore is the bytes each member holds (copies included) in the
	// scaled times: the simulated population spreads a fixed number of
	// bytes over the cluster, so its own times shrink as the cluster
	// grows; copy times grow linearly with what each member holds.
	MemberStore int64
	// Seed fixes the keys, their sizes, the member names and the members
	// picked for single events.
	Seed uint64
}

// DefaultConfig returns the report's configuration: 3, 10, 100 and 1,000
// members, 1,000,000 keys of DefaultSizes, R = 1 and 2, the default ring,
// 50 MB/s per member, 8 GiB per member for the scaled times.
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
		if n < 3 || n > 10000 {
			errs = append(errs, fmt.Errorf("members: a cluster size must be in 3..10000 (got %d): two crashes need two members besides a third", n))
		}
	}
	if c.Keys <= 0 {
		errs = append(errs, fmt.Errorf("keys must be > 0 (got %d)", c.Keys))
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
	Points  int           // ring points (members × vnodes for a hashring)
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
	// Keys and Bytes are per-member counts of what each member holds.
	Keys, Bytes Stat
	// KeysFloor and BytesFloor are the relative standard deviations a
	// perfectly even ring would still show on this population, from
	// sampling alone: 1/√(keys per member), and for bytes
	// √((1+cv²)/(keys per member)) with cv the sizes' coefficient of
	// variation. A spread near its floor says the ring is as even as the
	// sample can tell.
	KeysFloor, BytesFloor float64
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
	Movement
	// Returns is, for a rolling restart, the part of Movement spent on
	// the members' returns: refilling each with what it holds again.
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
	// WorstKeys and WorstBytes the largest fractions of keys and of bytes
	// any pair loses (not necessarily the same pair).
	MeanKeys, WorstKeys, WorstBytes float64
	// Losing is the fraction of pairs whose crash loses any key.
	Losing float64
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
	cl := &Cluster{Members: n, Leaver: names[x], Joiner: names[joiner], Pair: [2]string{names[x], names[y]}}

	t0 := time.Now()
	full, err := u.ring(c.Kind, c.VNodes, members)
	if err != nil {
		return nil, err
	}
	cl.Build = time.Since(t0)
	cl.Points = n * vnodes(c)
	if c.Kind == cluster.KindRendezvous {
		cl.Points = n
	}
	maxR := slices.Max(c.Replicas)
	// One deeper than the largest R: the rolling restart reads where a key
	// goes while one of its holders is away from the full ring's list.
	t0 = time.Now()
	pFull := place(full, pop, u, maxR+1)
	cl.Place = time.Since(t0)

	others := func(skip ...uint16) []uint16 {
		var out []uint16
		for _, m := range members {
			if !slices.Contains(skip, m) {
				out = append(out, m)
			}
		}
		return out
	}
	var pJoin, pLeave, pTwo *Placement
	for _, s := range []struct {
		ids []uint16
		p   **Placement
	}{{all, &pJoin}, {others(x), &pLeave}, {others(x, y), &pTwo}} {
		r, err := u.ring(c.Kind, c.VNodes, s.ids)
		if err != nil {
			return nil, err
		}
		*s.p = place(r, pop, u, maxR)
	}

	nobody := make([]bool, len(names))
	goneX := slices.Clone(nobody)
	goneX[x] = true
	goneXY := slices.Clone(goneX)
	goneXY[y] = true
	for _, r := range c.Replicas {
		cl.Spread = append(cl.Spread, spread(pop, pFull, r, n, cv))
		leave := compare(pop, pFull, pLeave, r, nobody)
		crash := compare(pop, pFull, pLeave, r, goneX)
		rolling, killed := rollingRestart(pop, pFull, r, members, x)
		// The rolling restart reads the ring without each member off the
		// full ring's preference lists (cluster.Ring.Owners' contract);
		// the ring rebuilt without x must agree.
		if rolling.checked != leave {
			return nil, fmt.Errorf("R=%d: %s leaving: the full ring's preference lists say %+v, the rebuilt ring %+v", r, names[x], rolling.checked, leave)
		}
		if killed.checked != crash {
			return nil, fmt.Errorf("R=%d: %s crashing: the full ring's preference lists say %+v, the rebuilt ring %+v", r, names[x], killed.checked, crash)
		}
		cl.Events = append(cl.Events,
			Event{Name: EventJoin, R: r, Movement: compare(pop, pFull, pJoin, r, nobody)},
			Event{Name: EventLeave, R: r, Movement: leave},
			Event{Name: EventCrash, R: r, Movement: crash},
			Event{Name: EventTwoCrashes, R: r, Movement: compare(pop, pFull, pTwo, r, goneXY)},
			Event{Name: EventRolling, R: r, Movement: rolling.total, Returns: rolling.returns},
			Event{Name: EventRollingKill, R: r, Movement: killed.total, Returns: killed.returns},
		)
		cl.Pairs = append(cl.Pairs, pairs(pop, pFull, r, n))
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
// The ring without member m is not rebuilt: a key's first r owners on it
// are its first r+1 owners on the full ring, m left out (the contract of
// cluster.Ring.Owners), so full must be at least r+1 deep. Only keys m
// holds change. Steps start from the same state, so they are computed in
// parallel.
func rollingRestart(pop *Population, full *Placement, r int, members []uint16, check uint16) (graceful, killed restart) {
	n := len(full.member)
	// keys[counts[m]:counts[m+1]] lists the keys m holds: the only ones
	// its restart moves.
	counts := make([]int, n+1)
	for i := range pop.Len() {
		for _, h := range full.holders(i, r) {
			counts[h+1]++
		}
	}
	for m := 1; m <= n; m++ {
		counts[m] += counts[m-1]
	}
	keys := make([]int32, counts[n])
	next := slices.Clone(counts[:n])
	for i := range pop.Len() {
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
				size, old := pop.Size(int(i)), full.holders(int(i), r)
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

// spread summarises what each of the n members holds with r copies; cv is
// the coefficient of variation of the population's sizes.
func spread(pop *Population, full *Placement, r, n int, cv float64) Spread {
	keys, bytes := make([]float64, len(full.member)), make([]float64, len(full.member))
	for i := range pop.Len() {
		for _, h := range full.holders(i, r) {
			keys[h]++
			bytes[h] += float64(pop.Size(i))
		}
	}
	var ks, bs []float64
	for id, in := range full.member {
		if in {
			ks, bs = append(ks, keys[id]), append(bs, bytes[id])
		}
	}
	perMember := float64(pop.Len()) * float64(min(r, n)) / float64(n)
	return Spread{
		R: r, Keys: stat(ks), Bytes: stat(bs),
		KeysFloor:  1 / math.Sqrt(perMember),
		BytesFloor: math.Sqrt((1 + cv*cv) / perMember),
	}
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

// pairs computes what every pair of the n members crashing at once loses
// with r copies: with r=1 both members' keys; with r=2 the keys held by
// exactly that pair; with r>2 nothing.
func pairs(pop *Population, full *Placement, r, n int) Pairs {
	out := Pairs{R: r}
	npairs := float64(n) * float64(n-1) / 2
	keys, bytes := float64(pop.Len()), float64(pop.Bytes())
	switch r {
	case 1:
		k, b := make([]float64, len(full.member)), make([]float64, len(full.member))
		for i := range pop.Len() {
			h := full.holders(i, 1)[0]
			k[h]++
			b[h] += float64(pop.Size(i))
		}
		slices.Sort(k)
		slices.Sort(b)
		// Each member is in n-1 pairs: the mean is 2/n of the keys.
		out.MeanKeys = 2 / float64(n)
		out.WorstKeys = (k[len(k)-1] + k[len(k)-2]) / keys
		out.WorstBytes = (b[len(b)-1] + b[len(b)-2]) / bytes
		out.Losing = 1
	case 2:
		type loss struct{ keys, bytes int64 }
		byPair := make(map[uint32]loss)
		for i := range pop.Len() {
			h := full.holders(i, 2)
			a, b := min(h[0], h[1]), max(h[0], h[1])
			l := byPair[uint32(a)<<16|uint32(b)]
			l.keys++
			l.bytes += pop.Size(i)
			byPair[uint32(a)<<16|uint32(b)] = l
		}
		// Every key is held by exactly one pair: the mean is 1/C(n,2).
		out.MeanKeys = 1 / npairs
		for _, l := range byPair {
			out.WorstKeys = max(out.WorstKeys, float64(l.keys)/keys)
			out.WorstBytes = max(out.WorstBytes, float64(l.bytes)/bytes)
		}
		out.Losing = float64(len(byPair)) / npairs
	}
	return out
}
