package main

// Operating a node: purge (cluster-wide, by URL, tag, prefix, all),
// admin authentication, and live reload.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

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
			if r.status != tc.want {
				t.Fatalf("POST /purge: %d, want %d (%s)", r.status, tc.want, r.body)
			}
			// Profiles take the same token.
			r = tn.do(t, "GET", tn.adminURL("/debug/pprof/goroutine?debug=1"), nil, hdr...)
			if r.status != tc.want || (tc.want == 200 && !strings.Contains(string(r.body), "goroutine profile")) {
				t.Fatalf("GET /debug/pprof/goroutine: %d, want %d (%.100s)", r.status, tc.want, r.body)
			}
			// Read-only endpoints stay open.
			if r := tn.do(t, "GET", tn.adminURL("/stats"), nil); r.status != 200 {
				t.Fatalf("GET /stats: %d", r.status)
			}
		})
	}
}

// purgeVia posts an admin purge and returns the count it reports.
func purgeVia(t *testing.T, c *fasthttp.Client, admin, query string, body []byte) int {
	t.Helper()
	r, err := do(c, "POST", "http://"+admin+"/purge"+query, body, "Authorization", "Bearer "+testToken)
	if err != nil || r.status != 200 {
		t.Fatalf("purge %s: %v %d %s", query, err, r.status, r.body)
	}
	var reply struct {
		Purged int    `json:"purged"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &reply); err != nil || reply.Error != "" {
		t.Fatalf("purge %s reply %s: %v", query, r.body, err)
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
					if r, err := do(c.client, "GET", "http://"+n.Addr()+u, nil, "Accept", accept); err != nil || r.status != 200 {
						t.Fatalf("GET %s: %v %d", u, err, r.status)
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
			for _, st := range []cache.Store{n.store, n.hot} {
				st.Range(func(e *cache.Entry) bool {
					if strings.Contains(string(e.Key()), path+"?") {
						t.Fatalf("%s still holds %q after the purge", n.cfg.NodeName, e.Key())
					}
					return true
				})
			}
		}
	}
	admin := nodes[1].AdminAddr()

	fill()
	if got := purgeVia(t, c.client, admin, "?url=/p0?cc=max-age=600%26tags=all%2520t0", nil); got < 1 {
		t.Fatalf("URL purge dropped %d", got)
	}
	missEverywhere(urls[0])

	fill()
	if got := purgeVia(t, c.client, admin, "", []byte(`{"url":"/v?cc=max-age=600&vary=Accept"}`)); got != 2 {
		t.Fatalf("URL purge of a Vary'd URL dropped %d, want both variants", got)
	}

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
		if items := n.store.Stats().Items + n.hot.Stats().Items; items != 0 {
			t.Fatalf("%s holds %d entries after purge all", n.cfg.NodeName, items)
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
	r, err := do(c.client, "PURGE", "http://"+nodes[0].Addr()+u, nil)
	if err != nil || r.status != 200 || !strings.Contains(string(r.body), `"purged":1`) {
		t.Fatalf("PURGE: %v %d %s", err, r.status, r.body)
	}
	for _, n := range nodes {
		if items := n.store.Stats().Items + n.hot.Stats().Items; items != 0 {
			t.Fatalf("PURGE left %d entries on %s", items, n.cfg.NodeName)
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
	if r := tn.get(t, "/nottl"); !strings.Contains(r.cacheStatus(), "hit") {
		t.Fatalf("default_ttl not applied after reload: %q", r.cacheStatus())
	}
	r := tn.do(t, "POST", tn.adminURL("/purge?all=1"), nil, "Authorization", "Bearer "+testToken)
	if r.status != 200 || !strings.Contains(string(r.body), `"purged": 1`) {
		t.Fatalf("purge with the reloaded token: %d %s", r.status, r.body)
	}
	// A second reload compares with what was applied.
	if applied, _ := tn.n.Reload(next); len(applied) != 0 {
		t.Fatalf("second reload applied %v again", applied)
	}
}

func TestProcessSIGHUPReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	binary := buildBinary(t)
	listenRE := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)
	orig := startChild(t, binary, "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, listenRE, "the origin process to log its address")

	file := filepath.Join(t.TempDir(), "ringcache.yaml")
	writeConfig := func(token, level, size string) {
		t.Helper()
		y := fmt.Sprintf("origin: http://%s\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\nadmin_token: %s\nlog_level: %s\ncache_size: %s\n", originAddr, token, level, size)
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("first-token-0123456789", "info", "64MiB")
	srv := startChild(t, binary, "serve", "--config", file)
	admin := waitMatch(t, srv.stderr, regexp.MustCompile(`admin=(127\.0\.0\.1:\d+)`), "the serve process to log its admin address")
	c := &fasthttp.Client{ReadTimeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	purgeStatus := func(token string) int {
		r, err := do(c, "POST", "http://"+admin+"/purge?all=1", nil, "Authorization", "Bearer "+token)
		if err != nil {
			t.Fatal(err)
		}
		return r.status
	}
	if s := purgeStatus("first-token-0123456789"); s != 200 {
		t.Fatalf("first token: %d", s)
	}

	writeConfig("second-token-0123456789", "debug", "128MiB")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line := waitMatch(t, srv.stderr, regexp.MustCompile(`msg=reloaded (.*)`), "the reload to be logged")
	if !strings.Contains(line, "applied=\"[admin_token log_level]\"") && !strings.Contains(line, "applied=[admin_token log_level]") {
		t.Errorf("reload log %q: want admin_token and log_level applied", line)
	}
	if !strings.Contains(line, "cache_size") {
		t.Errorf("reload log %q: want cache_size reported as needing a restart", line)
	}
	if s := purgeStatus("first-token-0123456789"); s != 401 {
		t.Fatalf("old token after reload: %d, want 401", s)
	}
	if s := purgeStatus("second-token-0123456789"); s != 200 {
		t.Fatalf("new token after reload: %d, want 200", s)
	}

	// A broken file is refused and the running configuration stays.
	if err := os.WriteFile(file, []byte("cache_size: lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMatch(t, srv.stderr, regexp.MustCompile(`(reload failed)`), "the failed reload to be logged")
	if s := purgeStatus("second-token-0123456789"); s != 200 {
		t.Fatalf("token after a failed reload: %d, want 200", s)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
		if srv.err != nil {
			t.Fatalf("serve exited with %v", srv.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
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
