package node

// Operating a node: purge (cluster-wide, by URL, tag, prefix, all),
// admin authentication, and live reload.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ringcache/ringcache/internal/testutil"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/config"
	"github.com/valyala/fasthttp"
)

const testToken = "admin-test-token-0123456789"

func TestAdminWritesNeedToken(t *testing.T) {
	for _, tc := range []struct {
		name, configured, sent string
		want                   int
	}{
		{"no token configured", "", "Bearer x", 401},
		{"missing Authorization", testToken, "", 401},
		{"wrong token", testToken, "Bearer wrong", 401},
		{"not a bearer", testToken, "Basic " + testToken, 401},
		{"right token", testToken, "Bearer " + testToken, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := startTestNode(t, func(c *config.Config) { c.AdminToken = tc.configured })
			hdr := []string{}
			if tc.sent != "" {
				hdr = []string{"Authorization", tc.sent}
			}
			r := tn.do(t, "POST", tn.adminURL("/purge?all=1"), nil, hdr...)
			if r.Status != tc.want {
				t.Fatalf("POST /purge: %d, want %d (%s)", r.Status, tc.want, r.Body)
			}
			// Profiles take the same token.
			r = tn.do(t, "GET", tn.adminURL("/debug/pprof/goroutine?debug=1"), nil, hdr...)
			if r.Status != tc.want || (tc.want == 200 && !strings.Contains(string(r.Body), "goroutine profile")) {
				t.Fatalf("GET /debug/pprof/goroutine: %d, want %d (%.100s)", r.Status, tc.want, r.Body)
			}
			// Read-only endpoints stay open.
			if r := tn.do(t, "GET", tn.adminURL("/stats"), nil); r.Status != 200 {
				t.Fatalf("GET /stats: %d", r.Status)
			}
		})
	}
}

// purgeVia posts an admin purge and returns the count it reports.
func purgeVia(t *testing.T, c *fasthttp.Client, admin, query string, body []byte) int {
	t.Helper()
	r, err := testutil.Do(c, "POST", "http://"+admin+"/purge"+query, body, "Authorization", "Bearer "+testToken)
	if err != nil || r.Status != 200 {
		t.Fatalf("purge %s: %v %d %s", query, err, r.Status, r.Body)
	}
	var reply struct {
		Purged int    `json:"purged"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &reply); err != nil || reply.Error != "" {
		t.Fatalf("purge %s reply %s: %v", query, r.Body, err)
	}
	return reply.Purged
}

func TestClusterPurge(t *testing.T) {
	c := startCluster(t, 3, func(cfg *config.Config) { cfg.AdminToken = testToken })
	nodes := c.live()
	urls := []string{}
	for i := range 12 {
		urls = append(urls, fmt.Sprintf("/p%d?cc=max-age=600&tags=all%%20t%d", i, i%3))
	}
	urls = append(urls, "/img/a?cc=max-age=600", "/img/b?cc=max-age=600", "/v?cc=max-age=600&vary=Accept")
	fill := func() {
		for _, u := range urls {
			for _, n := range nodes { // every node asks: owners store, others may keep hot copies
				for _, accept := range []string{"a", "b"} {
					if r, err := testutil.Do(c.client, "GET", "http://"+n.Addr()+u, nil, "Accept", accept); err != nil || r.Status != 200 {
						t.Fatalf("GET %s: %v %d", u, err, r.Status)
					}
				}
			}
		}
	}
	// missEverywhere checks that no node holds u any more, in its store or
	// as a hot copy (asking would refill the owner, so look inside).
	missEverywhere := func(u string) {
		t.Helper()
		path, _, _ := strings.Cut(u, "?")
		for _, n := range nodes {
			n.Range(func(e *cache.Entry) bool {
				if strings.Contains(string(e.Key()), path+"?") {
					t.Fatalf("%s still holds %q after the purge", n.Name(), e.Key())
				}
				return true
			})
		}
	}
	admin := nodes[1].AdminAddr()

	fill()
	if got := purgeVia(t, c.client, admin, "?url=/p0?cc=max-age=600%26tags=all%2520t0", nil); got < 1 {
		t.Fatalf("URL purge dropped %d", got)
	}
	missEverywhere(urls[0])

	fill()
	// Both variants, on every member holding them (replicas count too).
	if got := purgeVia(t, c.client, admin, "", []byte(`{"url":"/v?cc=max-age=600&vary=Accept"}`)); got < 2 {
		t.Fatalf("URL purge of a Vary'd URL dropped %d, want both variants", got)
	}
	missEverywhere("/v?cc=max-age=600&vary=Accept")

	fill()
	if got := purgeVia(t, c.client, admin, "?tag=t1", nil); got < 4 {
		t.Fatalf("tag purge dropped %d, want >= 4", got)
	}
	for i := 1; i < 12; i += 3 {
		missEverywhere(urls[i])
	}

	fill()
	if got := purgeVia(t, c.client, admin, "?prefix=/img/", nil); got < 2 {
		t.Fatalf("prefix purge dropped %d", got)
	}
	missEverywhere("/img/a?cc=max-age=600")

	fill()
	if got := purgeVia(t, c.client, admin, "?all=1", nil); got < len(urls) {
		t.Fatalf("purge all dropped %d, want >= %d", got, len(urls))
	}
	for _, n := range nodes {
		if items := n.Stats().Store.Items + n.Stats().Hot.Items; items != 0 {
			t.Fatalf("%s holds %d entries after purge all", n.Name(), items)
		}
	}
}

func TestPurgeMethodFromLoopback(t *testing.T) {
	c := startCluster(t, 2, nil)
	nodes := c.live()
	u := "/pm?cc=max-age=600"
	for _, n := range nodes {
		c.get(n, u)
	}
	r, err := testutil.Do(c.client, "PURGE", "http://"+nodes[0].Addr()+u, nil)
	// One entry, counted on each member that held it (owner, replica).
	if err != nil || r.Status != 200 || !strings.Contains(string(r.Body), `"purged":`) || strings.Contains(string(r.Body), `"purged":0`) {
		t.Fatalf("PURGE: %v %d %s", err, r.Status, r.Body)
	}
	for _, n := range nodes {
		if items := n.Stats().Store.Items + n.Stats().Hot.Items; items != 0 {
			t.Fatalf("PURGE left %d entries on %s", items, n.Name())
		}
	}
}

func TestReload(t *testing.T) {
	tn := startTestNode(t, nil)
	next := tn.cfg
	next.AdminToken = testToken
	next.DefaultTTL = 60e9
	next.CacheSize *= 2
	applied, skipped := tn.n.Reload(next)
	if strings.Join(applied, ",") != "admin_token,default_ttl" || strings.Join(skipped, ",") != "cache_size" {
		t.Fatalf("applied %v, skipped %v", applied, skipped)
	}
	// default_ttl applies to new fetches; the new token works at once.
	tn.get(t, "/nottl")
	if r := tn.get(t, "/nottl"); !strings.Contains(r.CacheStatus(), "hit") {
		t.Fatalf("default_ttl not applied after reload: %q", r.CacheStatus())
	}
	r := tn.do(t, "POST", tn.adminURL("/purge?all=1"), nil, "Authorization", "Bearer "+testToken)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"purged": 1`) {
		t.Fatalf("purge with the reloaded token: %d %s", r.Status, r.Body)
	}
	// A second reload compares with what was applied.
	if applied, _ := tn.n.Reload(next); len(applied) != 0 {
		t.Fatalf("second reload applied %v again", applied)
	}
}

func TestReachablePeerAddress(t *testing.T) {
	for _, tc := range []struct{ addr, advertise, gossip, want string }{
		{"127.0.0.1:8080", "", "127.0.0.1:7946", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "10.1.2.3:7946", "0.0.0.0:7946", "10.1.2.3:8080"},
		{"0.0.0.0:8080", "", "192.168.5.6:7946", "192.168.5.6:8080"},
		{"[::]:8080", "", "[fd00::2]:7946", "[fd00::2]:8080"},
	} {
		if got := reachable(tc.addr, tc.advertise, tc.gossip); got != tc.want {
			t.Errorf("reachable(%q, %q, %q) = %q, want %q", tc.addr, tc.advertise, tc.gossip, got, tc.want)
		}
	}
	// Nothing named: never publish a wildcard, use the private IP memberlist picks.
	if got := reachable("0.0.0.0:8080", "", "0.0.0.0:7946"); strings.HasPrefix(got, "0.0.0.0") {
		if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
			t.Errorf("published %q although the host has private IP %s", got, ip)
		}
	}
}
