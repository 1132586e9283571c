package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ringcache/ringcache/bench/sim"
)

// churnSim is scenario 9 (issue 12's "plan past this machine"): the
// simulation of package bench/sim, in process. No servers and no network:
// the real ring (cluster.NewRing) over 3 to 1,000 members and arithmetic,
// deterministic, so only its run time changes between runs.
func (e *env) churnSim(ctx context.Context, r *results) {
	if ctx.Err() != nil {
		return
	}
	sec := r.section("9. Ring churn at scale (simulation)")
	c := sim.DefaultConfig()
	c.Keys = e.opts.simKeys
	cpu0 := cpuTicks(os.Getpid())
	res, err := sim.Run(c)
	if err != nil {
		r.problem("ring churn simulation: %v", err)
		return
	}
	cpu := time.Duration(float64(cpuTicks(os.Getpid())-cpu0) * float64(time.Second) / clockTicks)
	sec.printf("Not a measurement: `bench/sim` places one population of keys on the ring a cluster of each size would build and counts what each membership change moves; `go run ./bench/cmd/sim` prints the same tables. Section 6 measures the 3-node case with R=1 and the hand-off ringcache does today; R=2 is a design not built yet.\n\n%s\nSimulated in %s (%s of CPU time, both cores).\n\n",
		res.Markdown(), res.Took.Round(10*time.Millisecond), cpu.Round(10*time.Millisecond))
	ok, lost, sizes := true, int64(0), ""
	for i, cl := range res.Clusters {
		for _, ev := range cl.Events {
			if ev.Name == sim.EventCrash && ev.R == 2 {
				ok, lost = ok && ev.LostKeys == 0, lost+ev.LostKeys
			}
		}
		if i > 0 {
			sizes += ", "
		}
		sizes += fmtInt(float64(cl.Members))
	}
	r.verdicts = append(r.verdicts, verdict(ok, fmt.Sprintf("simulation, R=2: one crash loses no key with %s members (%d lost)", sizes, lost)))
}
