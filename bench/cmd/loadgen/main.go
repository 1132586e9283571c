// Command loadgen drives HTTP load at one or more targets and prints the
// result as JSON on stdout (a one-line summary goes to stderr). The bench
// driver runs it pinned to its own core; it is usable by hand too:
//
//	loadgen -target 127.0.0.1:8080 -c 50 -d 10s -uri '/hit?size=1024&cc=max-age=600' \
//	  -check-header Cache-Status -check-contains '; hit' -size 1024
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ringcache/ringcache/bench/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run returns 0 when the load ran (failed requests are in the JSON and
// the summary), 1 when it could not run and 2 for bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		targets  = fs.String("target", "", "comma-separated host:port list; requests pick one at random")
		host     = fs.String("host", "", `Host header (default "bench.local")`)
		conns    = fs.Int("c", 50, "connections (requests in flight)")
		dur      = fs.Duration("d", 10*time.Second, "measured duration")
		requests = fs.Int("requests", 0, "end after this many requests instead of -d (no warm-up)")
		warmup   = fs.Duration("warmup", time.Second, "unmeasured load before the measurement")
		burst    = fs.Bool("burst", false, "open every connection, then send one request on each at once")
		rate     = fs.Float64("rate", 0, "requests per second in all, on a schedule (0: each connection as fast as answers come)")
		uri      = fs.String("uri", "/", `request URI; "{k}" is replaced by the key number`)
		keys     = fs.String("keys", "fixed", "fixed, zipf, uniform, unique, sweep or cycle")
		n        = fs.Int("n", 0, "number of keys (zipf, uniform, sweep, cycle)")
		s        = fs.Float64("s", 1.1, "Zipf exponent (> 1)")
		seed     = fs.Uint64("seed", 1, "random seed")
		size     = fs.Int("size", 0, "exact body size every answer must have (0: any)")
		header   = fs.String("check-header", "", "a header every answer must carry")
		contains stringList
		timeout  = fs.Duration("timeout", 10*time.Second, "per-request read and write timeout")
	)
	fs.Var(&contains, "check-contains", "a substring the checked header must contain (repeatable; taken verbatim)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	mode, err := loadgen.ParseKeyMode(*keys)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	cfg := loadgen.Config{
		Targets:     splitList(*targets),
		Host:        *host,
		Concurrency: *conns,
		Warmup:      *warmup,
		Duration:    *dur,
		Requests:    *requests,
		Burst:       *burst,
		Rate:        *rate,
		Keys:        loadgen.Keys{Mode: mode, URI: *uri, N: *n, S: *s, Seed: *seed},
		BodySize:    *size,
		Timeout:     *timeout,
	}
	if *header != "" {
		cfg.Check = &loadgen.Check{Header: *header, Contains: contains}
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "loadgen: %d requests in %v: %.0f req/s, p50 %v, p99 %v, max %v\n",
		res.Requests, res.Elapsed.Round(time.Millisecond), res.RPS, res.P50, res.P99, res.Max)
	if res.Failed() {
		fmt.Fprintf(stderr, "loadgen: FAILED: %s\n", res.FailureSummary())
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	return 0
}

// stringList collects a repeated flag verbatim (no trimming: " " is a
// meaningful substring, e.g. two ids in X-Varnish).
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
