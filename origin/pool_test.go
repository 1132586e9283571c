package origin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// namedServer is an origin server that answers every request with its name
// (and the Host it was sent) and counts them; /healthz answers health.
// /hold/... requests wait until release is closed.
type namedServer struct {
	name     string
	url      string
	ln       *flakyListener
	requests atomic.Int64
	health   atomic.Int64 // status of /healthz; 0 means 200
	checks   atomic.Int64
	lastHost atomic.Value // string: Host of the last /healthz
	lastUA   atomic.Value // string: User-Agent of the last /healthz
	release  chan struct{}
}

func startNamed(t testing.TB, name string) *namedServer {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &namedServer{name: name, url: "http://" + raw.Addr().String(), ln: &flakyListener{Listener: raw}, release: make(chan struct{})}
	srv := &fasthttp.Server{Handler: s.handle}
	testutil.Serve(t, s.ln, srv.Serve, func() error { s.releaseAll(); return srv.Shutdown() })
	return s
}

func (s *namedServer) releaseAll() {
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

func (s *namedServer) handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	if path == "/healthz" {
		s.checks.Add(1)
		s.lastHost.Store(string(ctx.Host()))
		s.lastUA.Store(string(ctx.UserAgent()))
		status := int(s.health.Load())
		if status == 0 {
			status = 200
		}
		ctx.SetStatusCode(status)
		return
	}
	s.requests.Add(1)
	if strings.HasPrefix(path, "/hold/") {
		<-s.release
	}
	fmt.Fprintf(ctx, "%s Host=%s", s.name, ctx.Host())
}

// poolFetch sends GET path through f and returns the name of the server
// that answered, or the error.
func poolFetch(f interface {
	Fetch(context.Context, *fasthttp.Request, *fasthttp.Response) error
}, host, path string) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(path)
	req.Header.SetHost(host)
	if err := f.Fetch(context.Background(), req, resp); err != nil {
		return "", err
	}
	name, _, _ := strings.Cut(string(resp.Body()), " ")
	return name, nil
}

func newTestPool(t testing.TB, o PoolOptions, co ClientOptions) *Router {
	t.Helper()
	r, err := NewRouter(RouterOptions{Client: co, Pools: []PoolOptions{o}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func urls(servers ...*namedServer) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.url)
	}
	return out
}

// sequence fetches n times and returns who answered, "!" for an error.
func sequence(t testing.TB, r *Router, n int) string {
	t.Helper()
	var got []string
	for i := range n {
		name, err := poolFetch(r, "site.example", fmt.Sprintf("/r%d", i))
		if err != nil {
			t.Logf("request %d: %v", i, err)
			name = "!"
		}
		got = append(got, name)
	}
	return strings.Join(got, " ")
}

func TestPoolRoundRobin(t *testing.T) {
	a, b, c := startNamed(t, "a"), startNamed(t, "b"), startNamed(t, "c")
	dead := "http://" + freeAddr(t)
	tests := []struct {
		name    string
		servers []string
		want    string
	}{
		{"one server", urls(a), "a a a a"},
		{"in turn", urls(a, b, c), "a b c a b c a"},
		// The dead server is tried once: connection refused, so the request
		// goes on to the next server and the client never sees it. Its
		// circuit (threshold 1 here) then keeps it out, and a and c take
		// equal turns rather than c taking the dead server's too.
		{"dead server passed over", []string{a.url, dead, c.url}, "a c a c a c"},
		{"dead first", []string{dead, b.url}, "b b b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestPool(t, PoolOptions{Servers: tt.servers}, ClientOptions{FailThreshold: 1, Cooldown: time.Hour})
			if got := sequence(t, r, len(strings.Fields(tt.want))); got != tt.want {
				t.Errorf("answered by %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPoolLeastConns(t *testing.T) {
	a, b := startNamed(t, "a"), startNamed(t, "b")
	r := newTestPool(t, PoolOptions{Servers: urls(a, b), Balance: LeastConns}, ClientOptions{})

	// Idle servers take turns.
	if got := sequence(t, r, 4); got != "a b a b" {
		t.Fatalf("idle servers answered %q, want a b a b", got)
	}

	// One request held on a: everything else goes to the idle b.
	held := make(chan string, 1)
	go func() {
		name, err := poolFetch(r, "site.example", "/hold/1")
		if err != nil {
			name = err.Error()
		}
		held <- name
	}()
	pa := r.Pools()[0].servers[0].c
	testutil.WaitFor(t, 10*time.Second, func() bool { return pa.InFlight() == 1 && a.requests.Load() == 3 }, "the held request to reach a")
	if got := sequence(t, r, 5); got != "b b b b b" {
		t.Errorf("with a busy, answered by %q, want b every time", got)
	}
	a.releaseAll()
	if name := <-held; name != "a" {
		t.Errorf("held request: %s", name)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return pa.InFlight() == 0 }, "a to be idle")
	if got := sequence(t, r, 2); got != "a b" && got != "b a" {
		t.Errorf("idle again: %q, want one each", got)
	}
}

// TestPoolBreakerPerServer: a failing server's circuit opens on its own;
// the other serves every request meanwhile, and the first comes back once
// its probe, after the cooldown, succeeds.
func TestPoolBreakerPerServer(t *testing.T) {
	a, b := startNamed(t, "a"), startNamed(t, "b")
	clock := testutil.NewClock()
	r := newTestPool(t, PoolOptions{Servers: urls(a, b)}, ClientOptions{FailThreshold: 2, Cooldown: 10 * time.Second, Clock: clock.Now})
	pool := r.Pools()[0]
	ca, cb := pool.servers[0].c, pool.servers[1].c

	if got := sequence(t, r, 2); got != "a b" {
		t.Fatalf("answered by %q, want a b", got)
	}
	// a breaks: its listener closes every connection, which the client
	// sees after sending (not a refused connection), so each failure
	// reaches the client as an error until a's circuit opens.
	a.ln.broken.Store(true)
	ca.Close()
	var errs int
	for i := 0; errs < 2; i++ {
		if i > 10 {
			t.Fatal("a never failed twice")
		}
		if _, err := poolFetch(r, "site.example", fmt.Sprintf("/f%d", i)); err != nil {
			errs++
		}
	}
	if ca.Healthy() || !cb.Healthy() {
		t.Fatalf("circuits: a healthy %v, b healthy %v; want a open, b closed", ca.Healthy(), cb.Healthy())
	}
	acceptedA := a.ln.accepted.Load()
	if got := sequence(t, r, 6); got != "b b b b b b" {
		t.Errorf("with a's circuit open, answered by %q, want b every time", got)
	}
	if a.ln.accepted.Load() != acceptedA {
		t.Error("a was sent requests while its circuit was open")
	}
	st := r.Status()
	if st[0].Up || !st[0].CircuitOpen || !st[1].Up || st[1].CircuitOpen {
		t.Errorf("status %+v, want a down (circuit open), b up", st)
	}

	// a recovers; after the cooldown one request probes it and closes the
	// circuit, and a is back in rotation.
	a.ln.broken.Store(false)
	clock.Advance(10 * time.Second)
	got := sequence(t, r, 4)
	if !ca.Healthy() || !strings.Contains(got, "a") {
		t.Fatalf("after the cooldown: answered by %q, a healthy %v; want a back", got, ca.Healthy())
	}
	if got := sequence(t, r, 4); got != "a b a b" && got != "b a b a" {
		t.Errorf("after recovery, answered by %q, want turns", got)
	}
}

// TestPoolAllCircuitsOpen: with every circuit open, a request fails fast
// with ErrUnavailable, as with one origin, and nothing is sent.
func TestPoolAllCircuitsOpen(t *testing.T) {
	r := newTestPool(t, PoolOptions{Servers: []string{"http://" + freeAddr(t), "http://" + freeAddr(t)}},
		ClientOptions{FailThreshold: 1, Cooldown: time.Hour})
	if _, err := poolFetch(r, "x", "/1"); err == nil || !NotSent(err) {
		t.Fatalf("first request: %v, want a connection error", err)
	}
	st := r.Status()
	if !st[0].CircuitOpen || !st[1].CircuitOpen {
		t.Fatalf("status %+v: one request should have tried (and opened) both", st)
	}
	for i := range 3 {
		if _, err := poolFetch(r, "x", "/2"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("request %d with every circuit open: %v, want ErrUnavailable", i, err)
		}
	}
	if st := r.Status(); st[0].Requests != 1 || st[1].Requests != 1 {
		t.Errorf("round trips %d and %d, want 1 each (the first request's)", st[0].Requests, st[1].Requests)
	}
}

func TestPoolHealthCheck(t *testing.T) {
	a, b := startNamed(t, "a"), startNamed(t, "b")
	r := newTestPool(t, PoolOptions{
		Servers: urls(a, b),
		// An hour apart: the test runs the checks itself with checkOnce.
		HealthCheck: HealthCheck{Path: "/healthz", Interval: time.Hour, Status: 204, Host: "health.example"},
	}, ClientOptions{})
	pool := r.Pools()[0]
	check := func() {
		for _, s := range pool.servers {
			pool.checkOnce(s)
		}
	}
	// The first round of checks starts at once; it fails (200 is not the
	// 204 expected). Wait for it, so that it cannot land after ours.
	testutil.WaitFor(t, 10*time.Second, func() bool {
		st := r.Status()
		return st[0].HealthCheck == "failing" && st[1].HealthCheck == "failing"
	}, "the first checks to fail (200, want 204)")
	if h, ua := a.lastHost.Load(), a.lastUA.Load(); h != "health.example" || ua != checkUserAgent {
		t.Errorf("check sent Host %q, User-Agent %q; want health.example, %s", h, ua, checkUserAgent)
	}
	// Every server failing: the checks are ignored rather than the site
	// taken down.
	if got := sequence(t, r, 4); got != "a b a b" {
		t.Errorf("every check failing: answered by %q, want a b a b (tried anyway)", got)
	}

	a.health.Store(204)
	check()
	st := r.Status()
	if !st[0].Up || st[0].HealthCheck != "passing" || st[1].Up || st[1].HealthCheck != "failing" {
		t.Fatalf("status %+v, want a up and passing, b down and failing", st)
	}
	if got := sequence(t, r, 4); got != "a a a a" {
		t.Errorf("b failing its check: answered by %q, want a only", got)
	}

	b.health.Store(204)
	a.health.Store(503)
	check()
	if got := sequence(t, r, 4); got != "b b b b" {
		t.Errorf("a failing its check: answered by %q, want b only", got)
	}

	// A server that cannot be reached fails its check too.
	a.health.Store(204)
	b.ln.broken.Store(true)
	check()
	if st := r.Status(); st[1].HealthCheck != "failing" {
		t.Errorf("unreachable b: health check %q, want failing", st[1].HealthCheck)
	}
	b.ln.broken.Store(false)
	check()
	if got := sequence(t, r, 2); got != "a b" && got != "b a" {
		t.Errorf("both passing again: answered by %q, want one each", got)
	}
}

// TestPoolHealthCheckLoop: the checks run every interval on their own, a
// failing server is left out, one that passes again is taken back, and
// Close stops the checks (TestMain's goleak finds any left running).
func TestPoolHealthCheckLoop(t *testing.T) {
	a, b := startNamed(t, "a"), startNamed(t, "b")
	r, err := NewRouter(RouterOptions{Pools: []PoolOptions{{
		Servers:     urls(a, b),
		HealthCheck: HealthCheck{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	status := func() string {
		var s []string
		for _, st := range r.Status() {
			s = append(s, fmt.Sprintf("%s:%s", st.Server, st.HealthCheck))
		}
		return strings.Join(s, " ")
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return a.checks.Load() >= 2 && b.checks.Load() >= 2 }, "two rounds of checks")

	b.health.Store(500)
	testutil.Eventually(t, 10*time.Second, func() bool { return r.Status()[1].HealthCheck == "failing" },
		func() string { return "b's check to fail; status " + status() })
	if got := sequence(t, r, 3); got != "a a a" {
		t.Errorf("b failing: answered by %q, want a only", got)
	}
	b.health.Store(200)
	testutil.Eventually(t, 10*time.Second, func() bool { return r.Status()[1].HealthCheck == "passing" },
		func() string { return "b's check to pass again; status " + status() })
	if got := sequence(t, r, 2); got != "a b" && got != "b a" {
		t.Errorf("b passing again: answered by %q, want one each", got)
	}

	r.Close()
	r.Close() // idempotent
}

// TestPoolTunnels: Dial goes to the servers in turn too, past one that
// refuses connections.
func TestPoolTunnels(t *testing.T) {
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lnA.Close()
	var mu sync.Mutex
	accepted := 0
	go func() {
		for {
			c, err := lnA.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			c.Close()
		}
	}()
	r := newTestPool(t, PoolOptions{Servers: []string{"http://" + freeAddr(t), "http://" + lnA.Addr().String()}},
		ClientOptions{FailThreshold: 1, Cooldown: time.Hour})
	for i := range 3 {
		conn, err := r.Dial(context.Background(), upgradeRequest("/ws", "x"))
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conn.Close()
	}
	// A dial completes when the kernel has the connection, perhaps before
	// the accept loop took it.
	testutil.WaitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return accepted > 0
	}, "the live server to accept a tunnel")
}

func TestPoolOptionsValidation(t *testing.T) {
	ok := "http://127.0.0.1:1"
	many := make([]string, MaxServers+1)
	for i := range many {
		many[i] = fmt.Sprintf("http://10.0.0.%d", i)
	}
	tests := []struct {
		name string
		o    PoolOptions
		want string // "" for success
	}{
		{"fine", PoolOptions{Servers: []string{ok}, Balance: LeastConns, HealthCheck: HealthCheck{Path: "/h?x=1"}}, ""},
		{"no servers", PoolOptions{}, "no servers"},
		{"too many", PoolOptions{Servers: many}, "65 servers, at most 64"},
		{"bad url", PoolOptions{Servers: []string{"ftp://x"}}, `origin url "ftp://x": want an http:// or https:// URL`},
		{"balance", PoolOptions{Servers: []string{ok}, Balance: "random"}, `balance "random": want round_robin or least_conns`},
		{"check path", PoolOptions{Servers: []string{ok}, HealthCheck: HealthCheck{Path: "healthz"}}, "health check path: want a path starting with /"},
		{"check path space", PoolOptions{Servers: []string{ok}, HealthCheck: HealthCheck{Path: "/a b"}}, "health check path: want a path"},
		{"check without path", PoolOptions{Servers: []string{ok}, HealthCheck: HealthCheck{Interval: 1}}, "health check path: missing"},
		{"check status", PoolOptions{Servers: []string{ok}, HealthCheck: HealthCheck{Path: "/h", Status: 99}}, "health check status: must be an HTTP status, from 100 to 599"},
		{"check interval", PoolOptions{Servers: []string{ok}, HealthCheck: HealthCheck{Path: "/h", Interval: -1}}, "health check interval: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRouter(RouterOptions{Pools: []PoolOptions{tt.o}})
			if r != nil {
				r.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// BenchmarkPoolFetch is BenchmarkClientFetch through a Router with two
// pools and two servers in the default one: what routing and balancing add
// to a round trip (allocations included).
func BenchmarkPoolFetch(b *testing.B) {
	_, ln1 := startServer(b)
	_, ln2 := startServer(b)
	r, err := NewRouter(RouterOptions{Pools: []PoolOptions{
		{Servers: []string{"http://" + ln1.Addr().String(), "http://" + ln2.Addr().String()}, Balance: LeastConns},
		{Hosts: []string{"other.example"}, Servers: []string{"http://" + ln1.Addr().String()}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	benchFetch(b, r, "Site.Example:8080")
}
