package main

// Tests of the ringcache program itself: its command line, exit codes,
// signals and subcommands, run as separate processes.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

func TestCLIErrors(t *testing.T) {
	yamlFile := filepath.Join(t.TempDir(), "ringcache.yaml")
	if err := os.WriteFile(yamlFile, []byte("store: arc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Listen on port 0 and no admin, so that a case that wrongly starts a
	// node cannot collide with anything; the cancelled context stops it.
	safe := []string{"--listen", "127.0.0.1:0", "--admin="}
	for _, tc := range []struct {
		name       string
		args, env  []string
		code       int
		stdout     []string
		stderr     []string
		safeListen bool
	}{
		{name: "bad cache size flag", args: []string{"serve", "--cache-size", "12XB", "--origin", "http://127.0.0.1:1"},
			code: 2, stderr: []string{"cache_size", "12XB"}, safeListen: true},
		{name: "serve help", args: []string{"serve", "--help"}, code: 0, stdout: []string{"--cache-size"}},
		{name: "unknown subcommand", args: []string{"frobnicate"}, code: 2, stderr: []string{"frobnicate"}},
		{name: "no subcommand", args: nil, code: 2, stderr: []string{"Usage"}},
		{name: "tls_cert without tls_key", args: []string{"serve", "--origin", "http://127.0.0.1:1", "--tls-cert", "/etc/tls/tls.crt"},
			code: 2, stderr: []string{`invalid tls_key "": is required with tls_cert (client TLS needs both)`}, safeListen: true},
		{name: "bad store in YAML", args: []string{"serve", "--config", yamlFile, "--origin", "http://127.0.0.1:1"},
			code: 2, stderr: []string{yamlFile, "store", "arc"}, safeListen: true},
		{name: "bad cache size in env", args: []string{"serve", "--origin", "http://127.0.0.1:1"}, env: []string{"RINGCACHE_CACHE_SIZE=bogus"},
			code: 2, stderr: []string{"RINGCACHE_CACHE_SIZE", "bogus"}, safeListen: true},
		// URLs the origin client refuses are configuration errors, named as such.
		{name: "origin with user info", args: []string{"serve", "--origin", "http://user@example.com"},
			code: 2, stderr: []string{`invalid origin "http://user@example.com" (flag --origin): must not have user info`}, safeListen: true},
		{name: "origin with a path in env", args: []string{"serve"}, env: []string{"RINGCACHE_ORIGIN=http://example.com/app"},
			code: 2, stderr: []string{`invalid origin "http://example.com/app" (env RINGCACHE_ORIGIN): must not have a path`}, safeListen: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			args := tc.args
			if tc.safeListen {
				args = append(append([]string(nil), args...), safe...)
			}
			var stdout, stderr bytes.Buffer
			code := run(ctx, args, tc.env, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, &stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, &stderr)
				}
			}
		})
	}
}

// waitMatch waits until re matches the buffer and returns its first group.
func waitMatch(t testing.TB, b *testutil.LogBuffer, re *regexp.Regexp, what string) string {
	t.Helper()
	var m []string
	testutil.WaitFor(t, 15*time.Second, func() bool { m = re.FindStringSubmatch(b.String()); return m != nil }, what)
	return m[1]
}

func TestDemoCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testutil.LogBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"demo", "--origin-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--gossip", "127.0.0.1:0"}, nil, &stdout, &stderr)
	}()
	addr := waitMatch(t, &stdout, regexp.MustCompile(`cache node\s+http://(\S+)`), "the demo to print the cache node's address")

	c := &fasthttp.Client{ReadTimeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	for i, want := range []string{"fwd=uri-miss", "hit"} {
		r, err := testutil.Do(c, fasthttp.MethodGet, "http://"+addr+"/hello?cc=max-age=60", nil)
		if err != nil {
			t.Fatal(err)
		}
		testutil.ExpectStatus(t, fmt.Sprintf("request %d", i), r, 200)
		testutil.ExpectCacheStatus(t, fmt.Sprintf("request %d", i), r, want)
	}
	c.CloseIdleConnections()
	cancel()
	select {
	case got := <-code:
		if got != 0 {
			t.Errorf("demo exited %d, want 0; stderr:\n%s", got, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not return after its context was cancelled")
	}
}

// The binary is built once per test run and shared by the process tests.
var bin struct {
	once      sync.Once
	dir, path string
	err       error
	out       []byte
}

// buildBinary builds the ringcache command (once) into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH: cannot build the ringcache binary for the process test")
	}
	bin.once.Do(func() {
		if bin.dir, bin.err = os.MkdirTemp("", "ringcache-test-bin"); bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "ringcache")
		bin.out, bin.err = exec.Command(goTool, "build", "-o", bin.path, ".").CombinedOutput()
	})
	if bin.err != nil {
		t.Fatalf("go build: %v\n%s", bin.err, bin.out)
	}
	return bin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

// child is a process the test started; Cleanup kills it if still running.
type child struct {
	cmd    *exec.Cmd
	stderr *testutil.LogBuffer
	exited chan struct{}
	err    error // valid once exited is closed
}

func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	return startChildEnv(t, bin, nil, args...)
}

// startChildEnv is startChild with exactly env as the environment (nil:
// the test's own).
func startChildEnv(t *testing.T, bin string, env []string, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(bin, args...), stderr: &testutil.LogBuffer{}, exited: make(chan struct{})}
	c.cmd.Env = env
	c.cmd.Stderr = c.stderr
	c.cmd.Stdout = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", bin, args, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill() // only the PID this test started
			<-c.exited
		}
	})
	return c
}

func TestProcessGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	listenRE := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)

	orig := startChild(t, bin, "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, listenRE, "the origin process to log its address")

	const shutdownTimeout = 10 * time.Second
	srv := startChild(t, bin, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--origin", "http://"+originAddr, "--shutdown-timeout", shutdownTimeout.String())
	addr := waitMatch(t, srv.stderr, listenRE, "the serve process to log its address")
	admin := waitMatch(t, srv.stderr, regexp.MustCompile(`admin=(127\.0\.0\.1:\d+)`), "the serve process to log its admin address")

	c := &fasthttp.Client{ReadTimeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	testutil.WaitFor(t, 15*time.Second, func() bool {
		r, err := testutil.Do(c, fasthttp.MethodGet, "http://"+admin+"/healthz", nil)
		return err == nil && r.Status == 200
	}, "/healthz of the serve process")

	for i, want := range []string{"fwd=uri-miss", "hit"} {
		r, err := testutil.Do(c, fasthttp.MethodGet, "http://"+addr+"/a?cc=max-age=60", nil)
		if err != nil {
			t.Fatal(err)
		}
		testutil.ExpectStatus(t, fmt.Sprintf("request %d", i), r, 200)
		testutil.ExpectCacheStatus(t, fmt.Sprintf("request %d", i), r, want)
	}
	requestsRE := regexp.MustCompile(`"requests":(\d+)`)
	originRequests := func() int64 {
		r, err := testutil.Do(c, fasthttp.MethodGet, "http://"+originAddr+"/__origin/stats", nil)
		if err != nil || r.Status != 200 {
			return -1
		}
		m := requestsRE.FindSubmatch(r.Body)
		if m == nil {
			return -1
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	if n := originRequests(); n != 1 {
		t.Fatalf("origin process requests = %d after miss+hit, want 1", n)
	}

	// 20 slow requests in flight when SIGTERM arrives. The delay leaves a
	// wide margin for a loaded machine to send the signal in time.
	const inflight = 20
	var wg sync.WaitGroup
	replies := make([]testutil.Reply, inflight)
	errs := make([]error, inflight)
	done := make([]time.Time, inflight)
	for i := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = testutil.Do(c, fasthttp.MethodGet, fmt.Sprintf("http://%s/slow%d?delay=1500ms&cc=max-age=60", addr, i), nil)
			done[i] = time.Now()
		}()
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return originRequests() == 1+inflight }, "all slow requests to reach the origin")
	signalled := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	wg.Wait()
	for i := range inflight {
		if errs[i] != nil {
			t.Errorf("in-flight request %d: %v", i, errs[i])
			continue
		}
		testutil.ExpectStatus(t, fmt.Sprintf("in-flight request %d", i), replies[i], 200)
		if done[i].Before(signalled) {
			t.Errorf("in-flight request %d finished before SIGTERM: the test did not exercise draining", i)
		}
	}
	select {
	case <-srv.exited:
		if srv.err != nil {
			t.Errorf("serve exited with %v, want status 0; output:\n%s", srv.err, srv.stderr.String())
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatalf("serve did not exit within the shutdown timeout; output:\n%s", srv.stderr.String())
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
		r, err := testutil.Do(c, "POST", "http://"+admin+"/purge?all=1", nil, "Authorization", "Bearer "+token)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
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
