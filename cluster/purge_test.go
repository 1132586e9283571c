package cluster

import (
	"context"
	"strings"
	"testing"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/valyala/fasthttp"
)

func TestBroadcastPurge(t *testing.T) {
	nodes, _ := startTestCluster(t, testutil.NewClock(), "a", "b", "c")
	for _, n := range nodes[1:] {
		for _, k := range []string{"h/x", "h/y"} {
			n.local.st.Set(testEntry(k, 10, 0))
		}
	}
	got, err := nodes[0].peers.Broadcast(context.Background(), cache.Purge{Host: "h", URL: "/x", At: 42})
	if err != nil || got != 2 {
		t.Fatalf("Broadcast = %d, %v; want 2 (one entry on each other member)", got, err)
	}
	for _, n := range nodes[1:] {
		if len(n.local.purges) != 1 || n.local.purges[0].At != 42 || n.local.purges[0].URL != "/x" {
			t.Fatalf("%s received %+v", n.name, n.local.purges)
		}
		if _, ok := n.local.st.Get([]byte("h/y")); !ok {
			t.Fatalf("%s lost an entry the purge did not name", n.name)
		}
	}
	if len(nodes[0].local.purges) != 0 {
		t.Fatal("Broadcast applied the purge on the sender too: that is the caller's job")
	}
	// A member that is down is reported; the others still purge.
	nodes[2].stop(t)
	got, err = nodes[0].peers.Broadcast(context.Background(), cache.Purge{All: true})
	if err == nil || !strings.Contains(err.Error(), "purge on c") || got != 1 {
		t.Fatalf("Broadcast with c down = %d, %v; want 1 and an error naming c", got, err)
	}
}

func TestPurgeEndpointRefusals(t *testing.T) {
	nodes, _ := startTestCluster(t, testutil.NewClock(), "a", "b")
	b := nodes[1]
	hc := memberClient(b.addr)
	defer hc.CloseIdleConnections()
	post := func(body string, sign bool) int {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod("POST")
		req.SetRequestURI(PathPrefix + "purge")
		req.Header.SetHost(b.addr)
		req.URI().SetScheme("https")
		req.SetBodyString(body)
		if sign {
			nodes[0].peers.signer.Sign(req)
		}
		if err := hc.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode()
	}
	if code := post(`{"all":true}`, false); code != 401 {
		t.Fatalf("unsigned purge: %d, want 401", code)
	}
	for _, body := range []string{`{`, `{}`, `{"url":"x"}`, `{"all":true,"tag":"t"}`} {
		if code := post(body, true); code != 400 {
			t.Fatalf("purge %s: %d, want 400", body, code)
		}
	}
	if len(b.local.purges) != 0 {
		t.Fatalf("refused purges were applied: %+v", b.local.purges)
	}
	if st := b.ps.Stats(); st.Unauthorized != 1 || st.Malformed != 4 {
		t.Fatalf("stats %+v; want 1 unauthorized, 4 malformed", st)
	}
}
