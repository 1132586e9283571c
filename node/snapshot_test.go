package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// restartNode starts a node from cfg as a restart would (the origin stays
// up) and returns it with its logs; Cleanup shuts it down.
func restartNode(t *testing.T, cfg config.Config) (*Node, *testutil.LogBuffer) {
	t.Helper()
	logs := &testutil.LogBuffer{}
	n, err := Start(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n, logs
}

// entriesOf copies what a node's store holds (not its hot copies), by key.
func entriesOf(n *Node) map[string]*cache.Entry {
	out := map[string]*cache.Entry{}
	n.store.Range(func(e *cache.Entry) bool {
		out[string(e.Key())] = e.Clone()
		return true
	})
	return out
}

// TestSnapshotWarmRestart: a node stopped with SIGTERM writes its store;
// a node started from the same configuration loads it before it serves,
// answers every URL from it with the Age it would have had without the
// restart, asks the origin for nothing, and uses the file once.
func TestSnapshotWarmRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ringcache.snapshot")
	// One key host: the restarted node listens on another port, which
	// would be another Host in its keys.
	tn := startTestNode(t, func(c *config.Config) { c.Snapshot, c.KeyHost = path, "site.test" })
	urls := []string{
		"/a?cc=max-age=600",
		"/aged?cc=max-age=600&age=100", // Age from upstream: InitialAge
		"/big?cc=max-age=600&size=200000",
		"/v?cc=max-age=600&vary=Accept-Encoding", // a Vary marker and a variant
	}
	for _, u := range urls {
		testutil.ExpectCacheStatus(t, u, tn.get(t, u, "Accept-Encoding", "gzip"), "stored")
	}
	tn.get(t, "/private?cc=private") // a pass marker: this node's own business
	before := entriesOf(tn.n)
	cfg := tn.n.Config()
	stopped := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tn.n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no snapshot after Shutdown: %v", err)
	}
	originBefore := tn.origin.srv.Requests()

	n, logs := restartNode(t, cfg)
	if !strings.Contains(logs.String(), "snapshot loaded") {
		t.Fatalf("the restart did not log its load:\n%s", logs)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the snapshot is still there after the load (%v): a crash later would load it again", err)
	}
	after := entriesOf(n)
	transferable := 0
	for k, e := range before {
		if !e.Transferable() {
			if _, ok := after[k]; ok {
				t.Errorf("pass marker %q came back", k)
			}
			continue
		}
		transferable++
		got, ok := after[k]
		if !ok {
			t.Errorf("%q lost in the restart", k)
			continue
		}
		if got.ResponseTime != e.ResponseTime || got.Expires != e.Expires || got.InitialAge != e.InitialAge ||
			got.Lifetime != e.Lifetime || got.Status != e.Status || got.Flags != e.Flags || !bytes.Equal(got.Body(), e.Body()) {
			t.Errorf("%q changed in the restart:\n%+v\n%+v", k, got, e)
		}
	}
	if len(after) != transferable || transferable < len(urls)+1 {
		t.Errorf("after the restart %d entries; want the %d of before (pass markers aside)", len(after), transferable)
	}

	c := &fasthttp.Client{ReadTimeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	for _, u := range urls {
		r, err := testutil.Do(c, fasthttp.MethodGet, "http://"+n.Addr()+u, nil, "Accept-Encoding", "gzip")
		if err != nil {
			t.Fatal(err)
		}
		testutil.ExpectCacheStatus(t, u+" after the restart", r, "; hit")
		if u == urls[1] {
			// The origin said Age: 100; the entry was stored before the
			// stop, so after the restart it is at least that old, and not
			// older than the time since.
			age := ageOf(t, u, r)
			if limit := 100 + int(time.Since(stopped).Seconds()) + 2; age < 100 || age > limit {
				t.Errorf("%s: Age %d after the restart; want 100..%d", u, age, limit)
			}
		}
	}
	if got := tn.origin.srv.Requests(); got != originBefore {
		t.Errorf("the restarted node asked the origin %d times; want 0", got-originBefore)
	}
	r, err := testutil.Do(c, fasthttp.MethodGet, "http://"+n.AdminAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := testutil.MetricValue(r.Body, `ringcache_snapshot_entries{op="load"}`); !ok || int(v) != transferable {
		t.Errorf(`ringcache_snapshot_entries{op="load"} = %v (%v); want %d`, v, ok, transferable)
	}
}

// TestSnapshotSkipsExpiredEntries: what expired while the node was down
// is not loaded.
func TestSnapshotSkipsExpiredEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	tn := startTestNode(t, func(c *config.Config) { c.Snapshot, c.StaleKeep = path, 0 })
	tn.get(t, "/long?cc=max-age=600")
	tn.get(t, "/short?cc=max-age=1")
	if len(entriesOf(tn.n)) != 2 {
		t.Fatal("want 2 entries before the stop")
	}
	cfg := tn.n.Config()
	if err := tn.n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The file is written; /short expires within the second that follows.
	testutil.WaitFor(t, 5*time.Second, func() bool {
		return time.Now().After(time.Unix(0, 0).Add(time.Duration(mustExpiry(t, path, "/short"))))
	}, "/short to expire")
	n, logs := restartNode(t, cfg)
	got := entriesOf(n)
	if len(got) != 1 || !strings.Contains(logs.String(), "skipped=1") {
		t.Fatalf("loaded %d entries; want only /long, and skipped=1 logged:\n%s", len(got), logs)
	}
}

// mustExpiry reads the Expires of the entry whose path starts with prefix
// from the snapshot at path.
func mustExpiry(t *testing.T, path, prefix string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var exp int64
	if _, err := cache.ScanSnapshot(data, func(e *cache.Entry, _ int) bool {
		if strings.HasPrefix(string(cache.KeyPath(cache.PrimaryKey(e.Key()))), prefix) {
			exp = e.Expires
		}
		return true
	}); err != nil || exp == 0 {
		t.Fatalf("no entry %s in %s (%v)", prefix, path, err)
	}
	return exp
}

// TestSnapshotPeriodicAndPurge: with snapshot_interval the node keeps a
// recent snapshot; a purge removes it at once, so a crash right after
// cannot bring the purged entry back; Close (a crash, for the others)
// writes none, and the next start loads the last periodic one.
func TestSnapshotPeriodicAndPurge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	const token = "snapshot-test-token-0123456789"
	tn := startTestNode(t, func(c *config.Config) {
		c.Snapshot, c.SnapshotInterval, c.AdminToken = path, 20*time.Millisecond, token
	})
	tn.get(t, "/keep?cc=max-age=600")
	tn.get(t, "/gone?cc=max-age=600")
	hasEntries := func(want int) func() bool {
		return func() bool {
			data, err := os.ReadFile(path)
			if err != nil {
				return false
			}
			s, err := cache.ScanSnapshot(data, func(*cache.Entry, int) bool { return true })
			return err == nil && s.Entries == int64(want)
		}
	}
	testutil.WaitFor(t, 10*time.Second, hasEntries(2), "a periodic snapshot of both entries")

	r := tn.do(t, fasthttp.MethodPost, tn.adminURL("/purge?url=/gone?cc=max-age=600"), nil, "Authorization", "Bearer "+token)
	testutil.ExpectStatus(t, "purge", r, 200)
	if data, err := os.ReadFile(path); err == nil {
		// Written again since the purge: without the purged entry.
		if _, err := cache.ScanSnapshot(data, func(e *cache.Entry, _ int) bool {
			if strings.Contains(string(e.Key()), "/gone") {
				t.Errorf("the snapshot still holds the purged entry %q", e.Key())
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, hasEntries(1), "a periodic snapshot without the purged entry")

	tn.get(t, "/late?cc=max-age=600") // after the last periodic snapshot, maybe
	cfg := tn.n.Config()
	cfg.SnapshotInterval = 0
	if err := tn.n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, _ := restartNode(t, cfg)
	got := entriesOf(n)
	if _, ok := got[keyFor(t, got, "/keep")]; !ok {
		t.Errorf("/keep not loaded from the periodic snapshot: %v", keys(got))
	}
	if k := keyFor(t, got, "/gone"); k != "" {
		t.Errorf("the purged entry came back: %q", k)
	}
}

func keys(m map[string]*cache.Entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// keyFor finds the key whose path starts with path.
func keyFor(t *testing.T, m map[string]*cache.Entry, path string) string {
	t.Helper()
	for k := range m {
		if strings.HasPrefix(string(cache.KeyPath(cache.PrimaryKey([]byte(k)))), path) {
			return k
		}
	}
	return ""
}

// TestSnapshotCorruptStillStarts: a damaged snapshot is reported, naming
// the file and the offset, and the node starts with what precedes the
// damage; a file that is not a snapshot is left alone.
func TestSnapshotCorruptStillStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	tn := startTestNode(t, func(c *config.Config) { c.Snapshot = path })
	for i := range 50 {
		tn.get(t, fmt.Sprintf("/c%d?cc=max-age=600&size=4000", i))
	}
	cfg := tn.n.Config()
	if err := tn.n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)*3/4], 0o600); err != nil {
		t.Fatal(err)
	}
	n, logs := restartNode(t, cfg)
	if l := logs.String(); !strings.Contains(l, "snapshot corrupt") || !strings.Contains(l, path) || !strings.Contains(l, "offset=") {
		t.Fatalf("the damage is not reported with the file and the offset:\n%s", l)
	}
	if got := len(entriesOf(n)); got == 0 || got >= 50 {
		t.Errorf("%d entries loaded from three quarters of a snapshot of 50", got)
	}

	other := filepath.Join(t.TempDir(), "notes")
	if err := os.WriteFile(other, []byte("not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Snapshot = other
	n2, logs := restartNode(t, cfg)
	if !strings.Contains(logs.String(), "not a ringcache snapshot") {
		t.Errorf("a foreign file is not reported:\n%s", logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); string(b) != "not a snapshot" {
		t.Errorf("the foreign file changed: %q", b)
	}
}

// TestSnapshotClusterRestartSameName: a member stopped with SIGTERM hands
// its entries off and still writes them all; started again under its name
// it rejoins holding them, and its keys are hits there.
func TestSnapshotClusterRestartSameName(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, 2, func(cfg *config.Config) { cfg.Snapshot = filepath.Join(dir, cfg.NodeName+".snap") })
	for i := range 60 {
		if _, err := c.get(c.nodes[0], fmt.Sprintf("/k%d?cc=max-age=600", i)); err != nil {
			t.Fatal(err)
		}
	}
	n1 := c.nodes[1]
	held := entriesOf(n1)
	if len(held) == 0 {
		t.Fatal("n1 owns none of 60 keys")
	}
	cfg := n1.Config()
	c.stop(1, true)
	data, err := os.ReadFile(cfg.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	if _, err := cache.ScanSnapshot(data, func(e *cache.Entry, _ int) bool { written[string(e.Key())] = true; return true }); err != nil {
		t.Fatal(err)
	}
	for k := range held {
		if !written[k] {
			t.Errorf("%q, handed off at the leave, is missing from the snapshot", k)
		}
	}

	c.waitConverged(1)
	back := c.start(c.names[1]) // the same snapshot path, from the same name
	c.nodes[1] = back
	c.waitConverged(2)
	originBefore := c.originRequests()
	hits := 0
	for k := range held {
		path := string(cache.KeyPath(cache.PrimaryKey([]byte(k))))
		r, err := c.get(back, path)
		if err != nil {
			t.Fatal(err)
		}
		// From its own store, loaded before it rejoined: not taken over
		// from the member that held the key meanwhile.
		if cs := r.CacheStatus(); strings.Contains(cs, "n1; hit") && !strings.Contains(cs, "previous-owner") {
			hits++
		}
	}
	if hits != len(held) || c.originRequests() != originBefore {
		t.Errorf("after the restart n1 answered %d of its %d keys itself; the origin was asked %d times",
			hits, len(held), c.originRequests()-originBefore)
	}
}

// TestSnapshotClusterRestartCatchesUp: a member restarted from its
// snapshot starts with what it held, and what was filled while it was
// down comes to it from the members that held those keys meanwhile (the
// previous owner, the rebalance after it rejoined), not from the origin:
// after the restart no key, old or new, asked of any member, reaches the
// origin.
func TestSnapshotClusterRestartCatchesUp(t *testing.T) {
	dir := t.TempDir()
	// No hot cache: its copies would answer keys the test means to ask
	// of their holders.
	c := startCluster(t, 3, func(cfg *config.Config) {
		cfg.Snapshot, cfg.HotCacheSize = filepath.Join(dir, cfg.NodeName+".snap"), 0
	})
	const keys = 200
	fill := func(prefix string) []string {
		var paths []string
		for i := range keys {
			p := fmt.Sprintf("/%s-%d?cc=max-age=600", prefix, i)
			if r, err := c.get(c.nodes[0], p); err != nil || r.Status != 200 {
				t.Fatalf("GET %s: %v %d", p, err, r.Status)
			}
			paths = append(paths, p)
		}
		return paths
	}
	before := fill("before")
	c.waitReplicated()
	held := len(entriesOf(c.nodes[1]))
	c.stop(1, true) // hands off, writes its snapshot
	c.waitConverged(2)
	during := fill("during") // n1 misses these
	c.waitReplicated()

	n1 := c.start(c.names[1])
	c.nodes[1] = n1
	r, err := c.get(n1, "/") // any answer: n1 serves
	if err != nil {
		t.Fatal(err)
	}
	m, err := testutil.Do(c.client, fasthttp.MethodGet, "http://"+n1.AdminAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := testutil.MetricValue(m.Body, `ringcache_snapshot_entries{op="load"}`); !ok || int(v) != held {
		t.Fatalf(`n1 loaded %v entries (%v) from its snapshot; it held %d (status of / %d)`, v, ok, held, r.Status)
	}
	c.waitConverged(3)
	owned := 0
	for _, p := range during {
		if o, _ := n1.Ring().Owner([]byte("site.test" + p)); o.Name == "n1" {
			owned++
		}
	}
	if owned == 0 {
		t.Fatalf("n1 owns none of the %d keys filled while it was down: nothing was measured", keys)
	}
	base := c.originRequests()
	for _, n := range c.live() {
		for _, p := range append(before, during...) {
			if r, err := c.get(n, p); err != nil || r.Status != 200 {
				t.Fatalf("GET %s of %s: %v %d", p, n.Name(), err, r.Status)
			}
		}
	}
	if got := c.originRequests() - base; got != 0 {
		t.Errorf("after n1's restart the origin was asked %d times for %d keys (n1 owns %d of those filled while it was down); want 0",
			got, 2*keys, owned)
	}
}
