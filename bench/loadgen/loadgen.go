// Package loadgen is the benchmarks' load generator: a fixed number of
// keep-alive connections, each sending its next request as soon as the last
// answer arrives (a closed loop, like wrk), for a fixed duration after a
// warm-up. Keys are fixed, Zipf-distributed, uniform, cycled, unique per
// request or swept once; latencies go into a log-linear histogram. A rate
// turns the closed loop into a schedule, to compare two systems at the
// same load.
//
// A run counts transport errors, non-2xx answers, answers of the wrong
// size and answers failing a header check as failures: a run with any
// failure is failed, and its throughput means nothing (an error page is
// fast and wrong).
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// KeyMode says how each request's key is chosen.
type KeyMode int

const (
	// KeysFixed sends Keys.URI as is.
	KeysFixed KeyMode = iota
	// KeysZipf draws key k in [0, N) from a Zipf distribution of exponent
	// S: key 0 is the most popular.
	KeysZipf
	// KeysUniform draws key k uniformly from [0, N).
	KeysUniform
	// KeysUnique gives every request its own key (0, 1, 2, ... across all
	// connections), so a cache misses every time.
	KeysUnique
	// KeysSweep requests keys 0..N-1 once each, then the run ends.
	KeysSweep
	// KeysCycle requests keys 0..N-1 in turn, over and over, across all
	// connections: every key is asked equally often (Uniform only in
	// expectation), give or take the requests in flight at either end of
	// the measured window.
	KeysCycle
)

// ParseKeyMode reads "fixed", "zipf", "uniform", "unique", "sweep" or
// "cycle".
func ParseKeyMode(s string) (KeyMode, error) {
	switch s {
	case "fixed":
		return KeysFixed, nil
	case "zipf":
		return KeysZipf, nil
	case "uniform":
		return KeysUniform, nil
	case "unique":
		return KeysUnique, nil
	case "sweep":
		return KeysSweep, nil
	case "cycle":
		return KeysCycle, nil
	}
	return 0, fmt.Errorf("unknown key mode %q (want fixed, zipf, uniform, unique, sweep or cycle)", s)
}

// Keys chooses request URIs.
type Keys struct {
	Mode KeyMode
	// URI is the request URI (path and query). In every mode but Fixed,
	// "{k}" in it is replaced by the key number.
	URI string
	// N is the number of keys for Zipf, Uniform, Sweep and Cycle.
	N int
	// S is the Zipf exponent; it must be > 1 (1.1 is a typical web cache
	// workload).
	S float64
	// Seed makes the key sequence reproducible; each connection derives
	// its own stream from it.
	Seed uint64
}

// Check is a header every answer must carry.
type Check struct {
	// Header is the field name, e.g. "Cache-Status".
	Header string
	// Contains lists substrings that must all appear in the field value
	// (case-sensitive); empty means the field must merely be present.
	Contains []string
}

// Config describes a run.
type Config struct {
	// Targets are host:port addresses. With several, each request goes to
	// one picked at random (or, in a burst, connection i goes to target i
	// modulo their number).
	Targets []string
	// Host is the Host header; "" means "bench.local".
	Host string
	// Concurrency is the number of connections, each with one request in
	// flight at a time.
	Concurrency int
	// Warmup runs the load this long before measuring; its answers are
	// not counted.
	Warmup time.Duration
	// Duration is how long the load is measured. Ignored for a burst and
	// a sweep, which end when their requests are done, and when Requests
	// is set.
	Duration time.Duration
	// Requests, when > 0, ends the run after this many requests (across
	// all connections) instead of after Duration, so that runs against
	// slower and faster systems see the same workload; there is no
	// warm-up.
	Requests int
	// Burst opens every connection first, then sends exactly one request
	// on each at the same moment: a thundering herd.
	Burst bool
	// Rate, when > 0, schedules Rate requests per second in all, shared by
	// the connections, instead of each connection sending its next request
	// as soon as its last answer arrives: two systems are then compared at
	// the same load, not each at its own saturation. Latency runs from a
	// request's actual start. The schedule keeps to the timer's resolution
	// (about a millisecond: requests due within it start together), and a
	// system that cannot keep up falls behind it, so RPS reads below Rate;
	// Concurrency must cover Rate times the latency. 0 means no schedule.
	Rate float64
	Keys Keys
	// Check, when set, is applied to every answer.
	Check *Check
	// BodySize, when > 0, is the exact body length every answer must have.
	BodySize int
	// Timeout bounds each request's write and read; 0 means 10s.
	Timeout time.Duration
}

// Result is what a run measured.
type Result struct {
	// Requests counts answers and errors in the measured window.
	Requests int64 `json:"requests"`
	// Errors are transport errors (refused, reset, timed out, malformed).
	Errors int64 `json:"errors"`
	// Non2xx are answers with a status outside 200..299.
	Non2xx int64 `json:"non_2xx"`
	// BadSize are answers whose body length differed from Config.BodySize.
	BadSize int64 `json:"bad_size"`
	// CheckFailed are answers failing Config.Check.
	CheckFailed int64 `json:"check_failed"`
	// Samples holds a few failure descriptions, to say why a run failed.
	Samples []string `json:"samples,omitempty"`

	Elapsed time.Duration `json:"elapsed_ns"`
	RPS     float64       `json:"rps"`
	Mean    time.Duration `json:"mean_ns"`
	P50     time.Duration `json:"p50_ns"`
	P90     time.Duration `json:"p90_ns"`
	P99     time.Duration `json:"p99_ns"`
	P999    time.Duration `json:"p999_ns"`
	Max     time.Duration `json:"max_ns"`
}

// Failures is the number of failed requests of every kind.
func (r Result) Failures() int64 { return r.Errors + r.Non2xx + r.BadSize + r.CheckFailed }

// Failed reports whether the run had any failure.
func (r Result) Failed() bool { return r.Failures() > 0 }

// FailureSummary describes the failures in one line, "" when none.
func (r Result) FailureSummary() string {
	if !r.Failed() {
		return ""
	}
	s := fmt.Sprintf("%d of %d requests failed (errors %d, non-2xx %d, wrong size %d, header check %d)",
		r.Failures(), r.Requests, r.Errors, r.Non2xx, r.BadSize, r.CheckFailed)
	if len(r.Samples) > 0 {
		s += ": " + strings.Join(r.Samples, "; ")
	}
	return s
}

const maxSamples = 5

// run is the state the workers of one Run share.
type run struct {
	cfg     Config
	clients []*fasthttp.HostClient
	hist    *Histogram
	prefix  []byte // URI before "{k}", or all of it
	suffix  []byte // URI after "{k}"
	keyed   bool   // the URI has a "{k}" to fill in
	check   [][]byte

	measureStart time.Time
	measureEnd   time.Time
	stop         atomic.Bool
	next         atomic.Int64 // Unique, Sweep and Cycle key counter
	paceStart    time.Time    // when slot 0 of a Rate schedule is due
	slot         atomic.Int64 // next slot of a Rate schedule
	issued       atomic.Int64 // requests started, against Config.Requests

	requests, errs, non2xx, badSize, checkFailed atomic.Int64

	mu      sync.Mutex
	samples []string
}

// Run generates the load cfg describes and returns what it measured. An
// error means the run could not be made (bad config, nothing to connect
// to); failed requests are counted in the Result instead.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := validate(&cfg); err != nil {
		return Result{}, err
	}
	r := &run{cfg: cfg, hist: NewHistogram()}
	if i := strings.Index(cfg.Keys.URI, "{k}"); i >= 0 && cfg.Keys.Mode != KeysFixed {
		r.prefix = []byte(cfg.Keys.URI[:i])
		r.suffix = []byte(cfg.Keys.URI[i+3:])
		r.keyed = true
	} else {
		r.prefix = []byte(cfg.Keys.URI)
	}
	if cfg.Check != nil {
		for _, c := range cfg.Check.Contains {
			r.check = append(r.check, []byte(c))
		}
	}

	// Pre-opened connections for a burst, handed out by Dial so that the
	// herd's requests do not queue behind connection setup.
	pools := make([]chan net.Conn, len(cfg.Targets))
	defer func() {
		for _, p := range pools {
			for len(p) > 0 {
				_ = (<-p).Close()
			}
		}
	}()
	for i, addr := range cfg.Targets {
		pools[i] = make(chan net.Conn, cfg.Concurrency)
		pool := pools[i]
		r.clients = append(r.clients, &fasthttp.HostClient{
			Addr: addr,
			Dial: func(addr string) (net.Conn, error) {
				select {
				case c := <-pool:
					return c, nil
				default:
					return fasthttp.DialTimeout(addr, cfg.Timeout)
				}
			},
			MaxConns:                  cfg.Concurrency,
			MaxConnWaitTimeout:        cfg.Timeout,
			ReadTimeout:               cfg.Timeout,
			WriteTimeout:              cfg.Timeout,
			MaxIdleConnDuration:       time.Minute,
			MaxIdemponentCallAttempts: 1, // a retry would hide a failure
			NoDefaultUserAgentHeader:  true,
			DisablePathNormalizing:    true,
			MaxResponseBodySize:       64 << 20,
		})
	}
	if cfg.Burst {
		for i := range cfg.Concurrency {
			t := i % len(cfg.Targets)
			c, err := net.DialTimeout("tcp", cfg.Targets[t], cfg.Timeout)
			if err != nil {
				return Result{}, fmt.Errorf("burst: open connection %d to %s: %w", i, cfg.Targets[t], err)
			}
			pools[t] <- c
		}
	}

	start := time.Now()
	r.paceStart = start
	r.measureStart = start.Add(cfg.Warmup)
	r.measureEnd = r.measureStart.Add(cfg.Duration)
	if r.untimed() {
		r.measureStart = start
		r.measureEnd = start.Add(100 * 365 * 24 * time.Hour) // ends when the work does
	}
	stopCtx := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopCtx()
	if !r.untimed() {
		t := time.AfterFunc(time.Until(r.measureEnd), func() { r.stop.Store(true) })
		defer t.Stop()
	}

	var wg sync.WaitGroup
	release := make(chan struct{})
	for i := range cfg.Concurrency {
		w := r.newWorker(i)
		wg.Go(func() {
			if cfg.Burst {
				<-release
				w.once()
				return
			}
			w.loop()
		})
	}
	close(release)
	wg.Wait()
	elapsed := time.Since(r.measureStart)
	if !r.untimed() {
		elapsed = min(elapsed, cfg.Duration)
	}
	for _, c := range r.clients {
		c.CloseIdleConnections()
	}
	return r.result(elapsed), ctx.Err()
}

func validate(cfg *Config) error {
	switch {
	case len(cfg.Targets) == 0:
		return errors.New("loadgen: no targets")
	case cfg.Concurrency < 1:
		return fmt.Errorf("loadgen: concurrency %d < 1", cfg.Concurrency)
	case cfg.Requests < 0:
		return fmt.Errorf("loadgen: requests %d < 0", cfg.Requests)
	case cfg.Rate < 0:
		return fmt.Errorf("loadgen: rate %v < 0", cfg.Rate)
	case cfg.Rate > 0 && cfg.Burst:
		return errors.New("loadgen: a burst has no rate")
	case !cfg.Burst && cfg.Keys.Mode != KeysSweep && cfg.Requests == 0 && cfg.Duration <= 0:
		return fmt.Errorf("loadgen: duration %v <= 0", cfg.Duration)
	case cfg.Keys.URI == "" || cfg.Keys.URI[0] != '/':
		return fmt.Errorf("loadgen: uri %q must start with /", cfg.Keys.URI)
	case (cfg.Keys.Mode == KeysZipf || cfg.Keys.Mode == KeysUniform || cfg.Keys.Mode == KeysSweep || cfg.Keys.Mode == KeysCycle) && cfg.Keys.N < 1:
		return fmt.Errorf("loadgen: %d keys < 1", cfg.Keys.N)
	case cfg.Keys.Mode == KeysZipf && cfg.Keys.S <= 1:
		return fmt.Errorf("loadgen: zipf exponent %v must be > 1", cfg.Keys.S)
	}
	if cfg.Host == "" {
		cfg.Host = "bench.local"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return nil
}

// untimed reports whether the run ends when its work is done rather than
// after a duration.
func (r *run) untimed() bool {
	return r.cfg.Burst || r.cfg.Keys.Mode == KeysSweep || r.cfg.Requests > 0
}

func (r *run) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < maxSamples {
		r.samples = append(r.samples, fmt.Sprintf(format, args...))
	}
}

func (r *run) result(elapsed time.Duration) Result {
	r.mu.Lock()
	samples := append([]string(nil), r.samples...)
	r.mu.Unlock()
	res := Result{
		Requests:    r.requests.Load(),
		Errors:      r.errs.Load(),
		Non2xx:      r.non2xx.Load(),
		BadSize:     r.badSize.Load(),
		CheckFailed: r.checkFailed.Load(),
		Samples:     samples,
		Elapsed:     elapsed,
		Mean:        r.hist.Mean(),
		P50:         r.hist.Quantile(0.50),
		P90:         r.hist.Quantile(0.90),
		P99:         r.hist.Quantile(0.99),
		P999:        r.hist.Quantile(0.999),
		Max:         r.hist.Max(),
	}
	if elapsed > 0 {
		res.RPS = float64(res.Requests) / elapsed.Seconds()
	}
	return res
}

// worker is one connection's request loop; it owns its buffers and random
// stream, so the loop allocates nothing.
type worker struct {
	r    *run
	id   int
	rng  *rand.Rand
	zipf *rand.Zipf
	uri  []byte
	req  *fasthttp.Request
	resp *fasthttp.Response
}

func (r *run) newWorker(id int) *worker {
	w := &worker{
		r:    r,
		id:   id,
		rng:  rand.New(rand.NewPCG(r.cfg.Keys.Seed, uint64(id)+1)),
		req:  fasthttp.AcquireRequest(),
		resp: fasthttp.AcquireResponse(),
		uri:  make([]byte, 0, len(r.prefix)+len(r.suffix)+20),
	}
	if r.cfg.Keys.Mode == KeysZipf {
		w.zipf = rand.NewZipf(w.rng, r.cfg.Keys.S, 1, uint64(r.cfg.Keys.N-1))
	}
	w.req.Header.SetMethod(fasthttp.MethodGet)
	w.req.Header.SetHost(r.cfg.Host)
	return w
}

// nextURI builds the next request URI into w.uri; false means the sweep
// is over.
func (w *worker) nextURI() bool {
	r := w.r
	if !r.keyed {
		w.uri = append(w.uri[:0], r.prefix...)
		return true
	}
	var k int64
	switch r.cfg.Keys.Mode {
	case KeysZipf:
		k = int64(w.zipf.Uint64())
	case KeysUniform:
		k = int64(w.rng.IntN(r.cfg.Keys.N))
	case KeysUnique:
		k = r.next.Add(1) - 1
	case KeysSweep:
		k = r.next.Add(1) - 1
		if k >= int64(r.cfg.Keys.N) {
			return false
		}
	case KeysCycle:
		k = (r.next.Add(1) - 1) % int64(r.cfg.Keys.N)
	}
	w.uri = append(w.uri[:0], r.prefix...)
	w.uri = strconv.AppendInt(w.uri, k, 10)
	w.uri = append(w.uri, r.suffix...)
	return true
}

func (w *worker) client() *fasthttp.HostClient {
	cs := w.r.clients
	switch {
	case len(cs) == 1:
		return cs[0]
	case w.r.cfg.Burst:
		return cs[w.id%len(cs)]
	}
	return cs[w.rng.IntN(len(cs))]
}

func (w *worker) loop() {
	defer w.release()
	for !w.r.stop.Load() {
		if n := w.r.cfg.Requests; n > 0 && w.r.issued.Add(1) > int64(n) {
			return
		}
		if !w.nextURI() {
			return
		}
		if !w.do() {
			return
		}
	}
}

func (w *worker) once() {
	defer w.release()
	if w.nextURI() {
		w.do()
	}
}

func (w *worker) release() {
	fasthttp.ReleaseRequest(w.req)
	fasthttp.ReleaseResponse(w.resp)
}

// do sends one request and records it if it started inside the measured
// window; false means the window is over.
func (w *worker) do() bool {
	r := w.r
	w.req.SetRequestURIBytes(w.uri)
	w.req.Header.SetHost(r.cfg.Host)
	if r.cfg.Rate > 0 {
		due := r.paceStart.Add(time.Duration(float64(r.slot.Add(1)-1) * float64(time.Second) / r.cfg.Rate))
		if !due.Before(r.measureEnd) {
			return false
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
	}
	t0 := time.Now()
	err := w.client().Do(w.req, w.resp)
	d := time.Since(t0)
	if t0.Before(r.measureStart) {
		return true
	}
	if !t0.Before(r.measureEnd) {
		return false
	}
	r.requests.Add(1)
	r.hist.Record(d)
	if err != nil {
		r.errs.Add(1)
		r.fail("GET %s: %v", w.uri, err)
		return true
	}
	if code := w.resp.StatusCode(); code < 200 || code > 299 {
		r.non2xx.Add(1)
		r.fail("GET %s: status %d", w.uri, code)
		return true
	}
	if n := r.cfg.BodySize; n > 0 && len(w.resp.Body()) != n {
		r.badSize.Add(1)
		r.fail("GET %s: body of %d bytes, want %d", w.uri, len(w.resp.Body()), n)
		return true
	}
	if c := r.cfg.Check; c != nil {
		v := w.resp.Header.Peek(c.Header)
		ok := v != nil
		for _, sub := range r.check {
			ok = ok && bytes.Contains(v, sub)
		}
		if !ok {
			r.checkFailed.Add(1)
			r.fail("GET %s: %s is %q, want it to contain %q", w.uri, c.Header, v, c.Contains)
		}
	}
	return true
}
