package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// snapNode runs `ringcache serve` processes one after another on one
// proxy address with one snapshot file, as restarts of one node.
type snapNode struct {
	t          *testing.T
	bin        string
	originAddr string
	addr       string // the proxy address, fixed after the first start
	snapshot   string
	c          *fasthttp.Client
}

func newSnapNode(t *testing.T) *snapNode {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	orig := startChild(t, bin, "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`), "the origin process to log its address")
	s := &snapNode{t: t, bin: bin, originAddr: originAddr, addr: "127.0.0.1:0",
		snapshot: filepath.Join(t.TempDir(), "ringcache.snapshot"), c: &fasthttp.Client{ReadTimeout: 20 * time.Second}}
	t.Cleanup(s.c.CloseIdleConnections)
	return s
}

// start starts a serve process and waits until its /healthz answers 200.
func (s *snapNode) start(extra ...string) (*child, string) {
	s.t.Helper()
	args := append([]string{"serve", "--listen", s.addr, "--admin", "127.0.0.1:0", "--origin", "http://" + s.originAddr,
		"--snapshot", s.snapshot, "--shutdown-timeout", "20s"}, extra...)
	p := startChild(s.t, s.bin, args...)
	s.addr = waitMatch(s.t, p.stderr, regexp.MustCompile(`msg="ringcache serving" (?:.* )?listen=(\S+)`), "the serve process to log its address")
	admin := waitMatch(s.t, p.stderr, regexp.MustCompile(`msg="ringcache serving" (?:.* )?admin=(\S+)`), "the serve process to log its admin address")
	testutil.WaitFor(s.t, 15*time.Second, func() bool {
		r, err := testutil.Do(s.c, fasthttp.MethodGet, "http://"+admin+"/healthz", nil)
		return err == nil && r.Status == 200
	}, "/healthz of the serve process")
	return p, admin
}

func (s *snapNode) get(path string) testutil.Reply {
	s.t.Helper()
	r, err := testutil.Do(s.c, fasthttp.MethodGet, "http://"+s.addr+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	testutil.ExpectStatus(s.t, path, r, 200)
	return r
}

// fill requests n URLs, the first of which the origin says are 100 s old.
func (s *snapNode) fill(n int) []string {
	s.t.Helper()
	var urls []string
	for i := range n {
		u := fmt.Sprintf("/snap/%d?cc=max-age=3600&size=2000", i)
		if i == 0 {
			u += "&age=100"
		}
		testutil.ExpectCacheStatus(s.t, u, s.get(u), "stored")
		urls = append(urls, u)
	}
	return urls
}

func (s *snapNode) originRequests() int64 {
	s.t.Helper()
	r, err := testutil.Do(s.c, fasthttp.MethodGet, "http://"+s.originAddr+"/__origin/stats", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	m := regexp.MustCompile(`"requests":(\d+)`).FindSubmatch(r.Body)
	if m == nil {
		s.t.Fatalf("origin stats: %s", r.Body)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// stop signals p and waits for it to exit, with status 0 unless killed.
func (s *snapNode) stop(p *child, sig syscall.Signal) {
	s.t.Helper()
	s.c.CloseIdleConnections()
	if err := p.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-p.exited:
		if sig != syscall.SIGKILL && p.err != nil {
			s.t.Fatalf("serve exited with %v after %v; output:\n%s", p.err, sig, p.stderr)
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("serve did not exit after %v; output:\n%s", sig, p.stderr)
	}
}

// expectHits requests urls and fails unless each is a hit and the origin
// was asked nothing. The entry the origin said was 100 s old must be
// served at least that old.
func (s *snapNode) expectHits(urls []string, stopped time.Time) {
	s.t.Helper()
	before := s.originRequests()
	for _, u := range urls {
		r := s.get(u)
		testutil.ExpectCacheStatus(s.t, u+" after the restart", r, "; hit")
		if strings.Contains(u, "age=100") {
			age, err := strconv.Atoi(r.Header["Age"])
			if limit := 100 + int(time.Since(stopped).Seconds()) + 2; err != nil || age < 100 || age > limit {
				s.t.Errorf("%s: Age %q after the restart; want 100..%d", u, r.Header["Age"], limit)
			}
		}
	}
	if n := s.originRequests() - before; n != 0 {
		s.t.Errorf("the restarted node asked the origin %d times; want 0", n)
	}
}

// TestProcessSnapshotRestart: SIGTERM writes the snapshot, and the next
// process loads it before it reports healthy and serves every URL as a
// hit, with its age.
func TestProcessSnapshotRestart(t *testing.T) {
	s := newSnapNode(t)
	p, _ := s.start()
	urls := s.fill(50)
	s.stop(p, syscall.SIGTERM)
	stopped := time.Now()
	if !strings.Contains(p.stderr.String(), `msg="snapshot written"`) {
		t.Fatalf("no snapshot written at SIGTERM:\n%s", p.stderr)
	}

	p, _ = s.start()
	out := p.stderr.String()
	loaded, serving := strings.Index(out, `msg="snapshot loaded"`), strings.Index(out, `msg="ringcache serving"`)
	if loaded < 0 || serving < loaded || !strings.Contains(out, "entries=50 ") {
		t.Fatalf("want the 50 entries loaded before serving:\n%s", out)
	}
	s.expectHits(urls, stopped)
	s.stop(p, syscall.SIGTERM)
}

// TestProcessSnapshotAfterSIGKILL: with snapshot_interval, a node killed
// outright restarts from its last periodic snapshot.
func TestProcessSnapshotAfterSIGKILL(t *testing.T) {
	s := newSnapNode(t)
	p, admin := s.start("--snapshot-interval", "100ms")
	urls := s.fill(20)
	testutil.WaitFor(t, 15*time.Second, func() bool {
		r, err := testutil.Do(s.c, fasthttp.MethodGet, "http://"+admin+"/metrics", nil)
		if err != nil {
			return false
		}
		v, ok := testutil.MetricValue(r.Body, `ringcache_snapshot_entries{op="write"}`)
		return ok && v == float64(len(urls))
	}, "a periodic snapshot of every entry")
	s.stop(p, syscall.SIGKILL)
	stopped := time.Now()

	p, _ = s.start()
	if out := p.stderr.String(); !strings.Contains(out, `msg="snapshot loaded"`) || !strings.Contains(out, "entries=20 ") {
		t.Fatalf("the periodic snapshot was not loaded:\n%s", out)
	}
	s.expectHits(urls, stopped)
	s.stop(p, syscall.SIGTERM)
}

// TestProcessSnapshotTruncated: a snapshot cut short is reported, naming
// the file and the offset, and the node starts and serves anyway.
func TestProcessSnapshotTruncated(t *testing.T) {
	s := newSnapNode(t)
	p, _ := s.start()
	urls := s.fill(100) // several 64 KiB blocks: half the file holds whole ones
	s.stop(p, syscall.SIGTERM)
	data, err := os.ReadFile(s.snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.snapshot, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	p, _ = s.start()
	out := p.stderr.String()
	if !strings.Contains(out, `msg="snapshot corrupt: using the entries before the damage"`) ||
		!strings.Contains(out, "snapshot="+s.snapshot) || !regexp.MustCompile(`offset=\d+`).MatchString(out) {
		t.Fatalf("the truncated snapshot is not reported with its file and offset:\n%s", out)
	}
	hits := 0
	for _, u := range urls {
		if strings.Contains(s.get(u).CacheStatus(), "; hit") {
			hits++
		}
	}
	if hits == 0 || hits == len(urls) {
		t.Errorf("%d of %d URLs were hits from half a snapshot; want some, not all", hits, len(urls))
	}
	s.stop(p, syscall.SIGTERM)
}
