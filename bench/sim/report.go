package sim

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ringcache/ringcache/bench/report"
	"github.com/ringcache/ringcache/cluster"
)

// Markdown renders the result: the model, a summary, the share spread,
// one table of membership changes per cluster size, and what two crashes
// at once lose over every pair.
func (res *Result) Markdown() string {
	c := res.Config
	var b strings.Builder
	fmt.Fprintf(&b, "%s URL-like keys (6 hosts; assets, images, pages, API answers with a query), object sizes log-normal with median %s and σ = %.1f, within %s and %s: median %s, mean %s, 99th percentile %s, %s in all. Members are named like a Deployment's pods (`%s`, ...); the ring is the default one (`%s`, %d points per member), built with `cluster.NewRing`, and a key's copies live on its first R owners (`Ring.Owners`). Seed %d: every run gives the same tables (but the build times).\n\n",
		fmtCount(float64(res.Keys)), fmtBytes(float64(c.Sizes.Median)), c.Sizes.Sigma, fmtBytes(float64(c.Sizes.Min)), fmtBytes(float64(c.Sizes.Max)),
		fmtBytes(float64(res.SizeMedian)), fmtBytes(float64(res.Bytes)/float64(res.Keys)), fmtBytes(float64(res.SizeP99)), fmtBytes(float64(res.Bytes)),
		Names(1, c.Seed)[0], cluster.KindHashRing, vnodes(c), c.Seed)
	b.WriteString("The events: a member **joins** and is sent copies of the keys it now holds; a member **leaves gracefully** (it can still send; copies come from a remaining holder when there is one, else from it: a hand-off); a member **crashes** (its copies are gone); **two crash at once**; a **rolling restart**: every member in turn leaves gracefully, the others copy what it held to the members next in line, and it comes back under the same name, empty, and is sent what it holds again; each step waits for the copies of the one before. \"No hand-off\": each member stops as if it crashed. A key is lost when no live member holds it (its next request goes to the origin). Copies restore R copies of every surviving key on its first R owners.\n\n")
	fmt.Fprintf(&b, "Keys and bytes are counted on the population. Shares and copy times are also computed on the ring itself: its points cut the hash space into arcs whose keys all share one preference list, so the same change applied to the arcs, each weighing its length, is what infinitely many keys would do. That matters for copy times: a member holding %s holds a quarter of a million objects, while this population gives each of 1,000 members a thousand or two, and the busiest of a crashed member's few hundred neighbours would look several times busier than it is. Copy time: every member holds %s (copies included), sends at most %s and receives at most %s (full duplex), and all work in parallel; the time is the busiest member's bytes over the rate, the least any schedule needs: after a crash, how long some keys have fewer than R copies.\n\n",
		fmtBytes(float64(c.MemberStore)), fmtBytes(float64(c.MemberStore)), fmtRate(c.Rate), fmtRate(c.Rate))

	b.WriteString(res.summary())
	b.WriteString("\n")

	b.WriteString("**Share spread**: what each member holds (with R=2, its own keys and its replicas); min and max as a share of the mean member, σ the standard deviation relative to the mean. The sampling floor is the σ a perfectly even ring would still show on this many keys; the ring's share is the member's share of the hash space, the spread infinitely many keys would show.\n\n")
	st := report.Table{
		Header:     []string{"members", "ring points", "NewRing", "R", "keys per member", "keys: min / max / σ", "bytes per member", "bytes: min / max / σ", "sampling floor σ: keys / bytes", "ring share: min / max / σ"},
		RightAlign: map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 6: true},
	}
	for _, cl := range res.Clusters {
		for i, s := range cl.Spread {
			row := []string{"", "", "", strconv.Itoa(s.R)}
			if i == 0 {
				row = []string{fmtCount(float64(cl.Members)), fmtCount(float64(cl.Points)), fmtDur(cl.Build), strconv.Itoa(s.R)}
			}
			st.Rows = append(st.Rows, append(row,
				fmtCount(s.Keys.Mean), spreadText(s.Keys),
				fmtBytes(s.Bytes.Mean), spreadText(s.Bytes),
				pct(s.KeysFloor)+" / "+pct(s.BytesFloor), spreadText(s.Ring)))
		}
	}
	b.WriteString(st.Markdown())
	b.WriteString("\n")

	for _, cl := range res.Clusters {
		fmt.Fprintf(&b, "**%s members**: `%s` leaves and crashes, `%s` joins, `%s` and `%s` crash together. Keys and bytes as a share of the population; the busiest member and the copy time from the ring, with %s per member.\n\n",
			fmtCount(float64(cl.Members)), cl.Leaver, cl.Joiner, cl.Pair[0], cl.Pair[1], fmtBytes(float64(c.MemberStore)))
		et := report.Table{
			Header: []string{"event", "R", "keys changing owner", "bytes changing owner", "copies", "bytes copied", "keys lost", "bytes lost",
				"busiest member sends or receives", "copy time at " + fmtRate(c.Rate)},
			RightAlign: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true},
		}
		for _, e := range cl.Events {
			busy, took := "", "0"
			if e.Ring.Busiest > 0 {
				busy = ofStore(float64(e.Ring.Busiest) * arcUnit * float64(cl.Members) / float64(min(e.R, cl.Members)))
				took = fmtDur(res.CopyTime(cl.Members, e.R, e.Ring.Busiest))
			}
			if e.Ring.Steps > 1 && e.Ring.Busiest > 0 {
				took += fmt.Sprintf(" (returns %s; longest step %s)", fmtDur(res.CopyTime(cl.Members, e.R, e.Returns.Busiest)), fmtDur(res.CopyTime(cl.Members, e.R, e.Ring.WorstStep)))
			}
			et.Rows = append(et.Rows, []string{e.Name, strconv.Itoa(e.R),
				countPct(e.OwnerKeys, res.Keys), pct(float64(e.OwnerBytes) / float64(res.Bytes)),
				fmtCount(float64(e.Copies)), fmt.Sprintf("%s (%s)", fmtBytes(float64(e.CopyBytes)), pct(float64(e.CopyBytes)/float64(res.Bytes))),
				countPct(e.LostKeys, res.Keys), pct(float64(e.LostBytes) / float64(res.Bytes)),
				busy, took})
		}
		b.WriteString(et.Markdown())
		b.WriteString("\n")
	}

	b.WriteString("**Two crashes at once, over every pair of members**: with R=1 a pair loses both members' keys; with R=2 the keys whose two copies were on exactly that pair (every key has one such pair, so the mean over pairs is 1 / (n choose 2) of the keys). \"Ring\": with infinitely many keys; \"population\": this population's keys and bytes (maxima taken separately).\n\n")
	pt := report.Table{
		Header:     []string{"members", "R", "pairs whose crash loses keys: ring / population", "mean loss", "worst pair: ring", "worst pair: population keys / bytes"},
		RightAlign: map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true},
	}
	for _, cl := range res.Clusters {
		for _, p := range cl.Pairs {
			pt.Rows = append(pt.Rows, []string{fmtCount(float64(cl.Members)), strconv.Itoa(p.R),
				pct(p.RingLosing) + " / " + pct(p.Losing),
				fmt.Sprintf("%s (%s keys)", pct(p.MeanKeys), fmtCount(p.MeanKeys*float64(res.Keys))),
				pct(p.RingWorst),
				fmt.Sprintf("%s (%s keys) / %s", pct(p.WorstKeys), fmtCount(p.WorstKeys*float64(res.Keys)), pct(p.WorstBytes))})
		}
	}
	b.WriteString(pt.Markdown())
	return b.String()
}

// ofStore writes f, a multiple of a member's store, as a percentage or,
// from twice the store up, as a multiple.
func ofStore(f float64) string {
	switch {
	case f >= 100:
		return fmtCount(f) + "× a member's store"
	case f >= 2:
		return sig3(f) + "× a member's store"
	}
	return pct(f) + " of a member's store"
}

// summary is one line per cluster size and R with the numbers a plan
// needs.
func (res *Result) summary() string {
	c := res.Config
	var b strings.Builder
	fmt.Fprintf(&b, "**Summary**: copy times at %s per member, members holding %s each; \"—\": nothing to copy (with R=1 a crashed member's keys are lost: the origin serves them again on demand). Two crashes: the share of keys lost by the mean pair of members and by the worst, on the ring.\n\n",
		fmtRate(c.Rate), fmtBytes(float64(c.MemberStore)))
	t := report.Table{
		Header: []string{"members", "R", "join: keys changing owner", "join: filling the new member", "graceful leave: copies take",
			"crash: keys lost", "crash: keys have < R copies for", "two crashes: keys lost, mean / worst pair",
			"rolling restart: copies take (longest step)", "rolling restart, no hand-off: keys lost"},
		RightAlign: map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true},
	}
	for _, cl := range res.Clusters {
		for _, p := range cl.Pairs {
			ev := func(name string) Event {
				for _, e := range cl.Events {
					if e.Name == name && e.R == p.R {
						return e
					}
				}
				return Event{}
			}
			dur := func(busiest int64) string {
				if busiest == 0 {
					return "—"
				}
				return fmtDur(res.CopyTime(cl.Members, p.R, busiest))
			}
			join, leave, crash, rolling := ev(EventJoin), ev(EventLeave), ev(EventCrash), ev(EventRolling)
			roll := dur(rolling.Ring.Busiest)
			if rolling.Ring.Busiest > 0 {
				roll += " (" + dur(rolling.Ring.WorstStep) + ")"
			}
			t.Rows = append(t.Rows, []string{fmtCount(float64(cl.Members)), strconv.Itoa(p.R),
				pct(float64(join.OwnerKeys) / float64(res.Keys)), dur(join.Ring.Busiest), dur(leave.Ring.Busiest),
				pct(float64(crash.LostKeys) / float64(res.Keys)), dur(crash.Ring.Busiest),
				pct(p.MeanKeys) + " / " + pct(p.RingWorst),
				roll, pct(float64(ev(EventRollingKill).LostKeys) / float64(res.Keys))})
		}
	}
	b.WriteString(t.Markdown())
	return b.String()
}

func spreadText(s Stat) string {
	return pct(s.Min) + " / " + pct(s.Max) + " / " + pct(s.StdDev)
}

func countPct(n int64, of int) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%s (%s)", fmtCount(float64(n)), pct(float64(n)/float64(of)))
}

// pct writes a fraction as a percentage with three significant digits
// (at least one decimal below 100%): 0.0931 -> "9.31%", 2e-6 -> "0.000200%".
func pct(f float64) string {
	p := f * 100
	switch {
	case p == 0:
		return "0%"
	case p >= 100:
		return fmt.Sprintf("%.0f%%", p)
	case p >= 10:
		return fmt.Sprintf("%.1f%%", p)
	}
	digits := 2 - int(math.Floor(math.Log10(p)))
	return strconv.FormatFloat(p, 'f', digits, 64) + "%"
}

// fmtCount writes n rounded, with thousands separators: 71314 -> "71,314".
func fmtCount(n float64) string {
	s := strconv.FormatInt(int64(math.Round(n)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && c != '-' && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtBytes writes a byte count in binary units, three significant digits.
func fmtBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	u := 0
	for n >= 1024 && u < len(units)-1 {
		n /= 1024
		u++
	}
	switch {
	case u == 0 || n >= 100 || n == math.Trunc(n):
		return fmt.Sprintf("%.0f %s", n, units[u])
	case n >= 10:
		return fmt.Sprintf("%.1f %s", n, units[u])
	}
	return fmt.Sprintf("%.2f %s", n, units[u])
}

// fmtRate writes a rate in decimal megabytes per second, as links and
// limits are usually stated.
func fmtRate(bytesPerSec float64) string {
	return strconv.FormatFloat(bytesPerSec/1e6, 'f', -1, 64) + " MB/s"
}

// fmtDur writes a duration with a unit that keeps it readable: ms, s, min,
// h or days.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + " ms"
	case d < 100*time.Second:
		return sig3(d.Seconds()) + " s"
	case d < 100*time.Minute:
		return sig3(d.Minutes()) + " min"
	case d < 72*time.Hour:
		return sig3(d.Hours()) + " h"
	}
	return sig3(d.Hours()/24) + " days"
}

// sig3 writes x with three significant digits and no exponent (all the
// digits left of the point when there are more).
func sig3(x float64) string {
	switch {
	case x >= 99.95:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 9.995:
		return strconv.FormatFloat(x, 'f', 1, 64)
	case x >= 0.9995:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}
