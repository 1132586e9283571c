package proxy

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/valyala/fasthttp"
)

// TestCoalescingSlowOrigin: an origin slower than the coalesce timeout must
// not scatter the herd. Before, every waiter fetched for itself once the
// timeout passed (20 clients behind a 12s origin made 20 origin requests);
// now they keep waiting, and one of them fetches again at most.
func TestCoalescingSlowOrigin(t *testing.T) {
	const clients = 20
	release := make(chan struct{})
	n := newNode(t, Options{CoalesceTimeout: 20 * time.Millisecond, OriginTimeout: time.Minute}, nil)
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open) // runs before the node's: a failed test leaves nothing blocked
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		<-release
		answer(n.clk, 200, "Cache-Control: max-age=60")(req, resp)
	})
	var wg sync.WaitGroup
	replies := make([]*fasthttp.Response, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = n.get("/slow")
		}()
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return counterValue(n.p.m.coalesced) == clients-1 }, "all but one request waiting")
	// Every waiter has outlasted the coalesce timeout while the origin
	// still holds the fetches.
	testutil.WaitFor(t, 10*time.Second, func() bool { return counterValue(n.p.m.coalesceOverdue) == clients-1 }, "every waiter past the coalesce timeout")
	open()
	wg.Wait()
	if got := n.origin.calls.Load(); got < 1 || got > 2 {
		t.Fatalf("origin calls = %d, want 1, or 2 with the hedge", got)
	}
	if got := counterValue(n.p.m.coalesceHedged); got != 1 {
		t.Errorf("hedged fetches = %v, want 1", got)
	}
	for i, r := range replies {
		if r.StatusCode() != 200 || !strings.HasPrefix(string(r.Body()), "body ") {
			t.Errorf("client %d: status %d, body %q", i, r.StatusCode(), r.Body())
		}
	}
	wantStatus(t, n.get("/slow"), 200, "")
	if got := n.origin.calls.Load(); got > 2 {
		t.Fatalf("origin calls = %d after a hit, want at most 2", got)
	}
}

// TestCoalescingWaitIsBounded: when neither the fetch nor its hedge answers
// within CoalesceTimeout + OriginTimeout, the waiters answer 504 rather than
// wait on, and still do not fetch for themselves.
func TestCoalescingWaitIsBounded(t *testing.T) {
	const clients = 5
	release := make(chan struct{})
	n := newNode(t, Options{CoalesceTimeout: 20 * time.Millisecond, OriginTimeout: 50 * time.Millisecond}, nil)
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	n.origin.set(func(req *fasthttp.Request, resp *fasthttp.Response) {
		<-release
		answer(n.clk, 200, "Cache-Control: max-age=60")(req, resp)
	})
	var wg sync.WaitGroup
	statuses := make(chan int, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- n.get("/stuck").StatusCode()
		}()
	}
	// The waiters that did not hedge give up on their own; then the
	// fetches may end.
	var timedOut int
	for timedOut < clients-2 {
		select {
		case s := <-statuses:
			if s != fasthttp.StatusGatewayTimeout {
				t.Fatalf("a waiter answered %d while both fetches hung, want 504", s)
			}
			timedOut++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d waiters gave up within 10s", timedOut, clients-2)
		}
	}
	open()
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("a fetching request answered %d, want 200", s)
		}
	}
	if got := n.origin.calls.Load(); got != 2 {
		t.Fatalf("origin calls = %d, want 2 (the fetch and its hedge)", got)
	}
}
