// Command sim runs the ring-churn simulation of package bench/sim and
// writes its tables as Markdown: share spread, and what a join, a graceful
// leave, a crash, two crashes and a rolling restart cost clusters of 3 to
// 1,000 members with one and two copies of every key. No network, no
// servers: the real ring and arithmetic. See bench/README.md.
//
//	go run ./bench/cmd/sim                      # the report's tables
//	go run ./bench/cmd/sim -members 10,100 -keys 200000 -rate 100
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringcache/ringcache/bench/sim"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	c := sim.DefaultConfig()
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	members := fs.String("members", joinInts(c.Members), "cluster sizes, comma-separated")
	replicas := fs.String("replicas", joinInts(c.Replicas), "copies per key (R) to compare, comma-separated")
	fs.IntVar(&c.Keys, "keys", c.Keys, "keys in the population")
	median := fs.Float64("median-kib", float64(c.Sizes.Median)/1024, "median object size, KiB (log-normal)")
	fs.Float64Var(&c.Sizes.Sigma, "sigma", c.Sizes.Sigma, "standard deviation of the log of the object size")
	rate := fs.Float64("rate", c.Rate/1e6, "copy rate limit per member and direction, MB/s")
	store := fs.Float64("member-store-gib", float64(c.MemberStore)/(1<<30), "bytes each member holds (copies included) in the copy times, GiB")
	fs.IntVar(&c.VNodes, "vnodes", c.VNodes, "points per member on a hashring (0: the default, 160)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the keys, sizes, names and picked members")
	out := fs.String("o", "", "write the Markdown to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var errs []error
	var err error
	if c.Members, err = parseInts(*members); err != nil {
		errs = append(errs, fmt.Errorf("-members: %w", err))
	}
	if c.Replicas, err = parseInts(*replicas); err != nil {
		errs = append(errs, fmt.Errorf("-replicas: %w", err))
	}
	c.Sizes.Median = int64(*median * 1024)
	c.Rate = *rate * 1e6
	c.MemberStore = int64(*store * (1 << 30))
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		fmt.Fprintf(stderr, "sim: %v\n", err)
		return 2
	}

	cpu0 := cpuTime()
	res, err := sim.Run(c)
	if err != nil {
		fmt.Fprintf(stderr, "sim: %v\n", err)
		return 1
	}
	md := res.Markdown() + "\n" + runLine(res.Took, cpuTime()-cpu0) + "\n"
	if *out == "" {
		_, err = io.WriteString(stdout, md)
	} else {
		err = os.WriteFile(*out, []byte(md), 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sim: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "sim: %s\n", runLine(res.Took, cpuTime()-cpu0))
	return 0
}

// runLine says how long the simulation took, and on what.
func runLine(took, cpu time.Duration) string {
	return fmt.Sprintf("Simulated in %s (%s of CPU time, %d CPUs, %s).",
		took.Round(10*time.Millisecond), cpu.Round(10*time.Millisecond), runtime.NumCPU(), runtime.Version())
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("want comma-separated integers (got %q)", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
