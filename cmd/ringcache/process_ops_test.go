package main

// What an operator meets first, with the real binary: startup failures
// (exit status 1, one line naming the setting and the address, no panic,
// nothing left running) and the environment a Kubernetes pod gives it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// cleanEnv is the test's environment without RINGCACHE_* variables, plus
// extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGCACHE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runToExit runs the binary with args and env until it exits (within
// procWait) and returns its exit status and output.
func runToExit(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	binary := buildBinary(t) // before the clock starts: building can take longer than procWait
	ctx, cancel := context.WithTimeout(context.Background(), procWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("ringcache %s still running after %s: %s", strings.Join(args, " "), procWait, out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	case err != nil:
		t.Fatalf("ringcache %s: %v", strings.Join(args, " "), err)
	}
	return 0, string(out)
}

// holdAfterFree takes a loopback address as testutil.HoldAddr does, one whose port
// follows a free one, and returns both.
func holdAfterFree(t *testing.T) (free, busy string) {
	t.Helper()
	for range 20 {
		busy := testutil.HoldAddr(t)
		free := shiftPort(busy, -1)
		ln, err := net.Listen("tcp", free)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", free)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return free, busy
	}
	t.Fatal("found no free port below a held one in 20 tries")
	return "", ""
}

func TestProcessStartupFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	busy := testutil.HoldAddr(t)
	beforeBusy, busy2 := holdAfterFree(t)
	missing := filepath.Join(t.TempDir(), "peer.pem")
	const secret = "process-test-secret-0123456789"
	serve := []string{"serve", "--origin", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}
	cluster := append(serve[1:len(serve):len(serve)], "--gossip", "127.0.0.1:0", "--peer-secret", secret)
	cluster = append([]string{"serve"}, cluster...)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"listen", append(serve, "--listen", busy), "ringcache serve: listen " + busy + ": address already in use"},
		{"admin", append(serve, "--admin", busy), "ringcache serve: admin " + busy + ": address already in use"},
		{"peer_listen", append(cluster, "--peer-listen", busy), "ringcache serve: peer_listen " + busy + ": address already in use"},
		{"gossip", append(cluster, "--gossip", busy), "ringcache serve: gossip " + busy + ": address already in use"},
		{"peer TLS files", append(cluster, "--peer-tls-cert", missing, "--peer-tls-key", missing, "--peer-tls-ca", missing),
			"ringcache serve: peer_tls_cert " + missing + ": no such file or directory"},
		{"tls_cert file", append(serve, "--tls-cert", missing, "--tls-key", missing),
			"ringcache serve: tls_cert " + missing + ": no such file or directory"},
		{"access log", append(serve, "--access-log", filepath.Dir(missing)),
			"ringcache serve: access_log " + filepath.Dir(missing) + ": is a directory"},
		{"demo origin", []string{"demo", "--origin-listen", busy, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--gossip", "127.0.0.1:0"},
			"ringcache demo: origin-listen " + busy + ": address already in use"},
		{"demo node", []string{"demo", "--origin-listen", "127.0.0.1:0", "--listen", busy, "--admin", "127.0.0.1:0", "--gossip", "127.0.0.1:0"},
			"ringcache demo: node-a: listen " + busy + ": address already in use"},
		// The second node fails after the first started: the first is
		// stopped on the way out.
		{"demo second node", []string{"demo", "--nodes", "2", "--origin-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--gossip", beforeBusy},
			"ringcache demo: node-b: gossip " + busy2 + ": address already in use"},
		{"origin", []string{"origin", "--listen", busy}, "ringcache origin: listen " + busy + ": address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runToExit(t, cleanEnv(), tc.args...)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if !strings.Contains(out, tc.want+"\n") {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Errorf("output shows a panic:\n%s", out)
			}
		})
	}
}

// A pod in a namespace with Services named ringcache and ringcache-peers
// gets their variables; the node starts, and a misspelt setting in the
// environment is a warning with a suggestion.
func TestProcessKubernetesServiceVariables(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	listenRE := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)
	orig := startChild(t, buildBinary(t), "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, listenRE, "the origin process to log its address")

	env := cleanEnv(
		"RINGCACHE_ORIGIN=http://"+originAddr, "RINGCACHE_LISTEN=127.0.0.1:0", "RINGCACHE_ADMIN=127.0.0.1:0",
		"RINGCACHE_CACHE_SISE=1GiB",
		"RINGCACHE_SERVICE_HOST=10.96.0.11",
		"RINGCACHE_SERVICE_PORT=8080",
		"RINGCACHE_SERVICE_PORT_HTTP=8080",
		"RINGCACHE_PORT=tcp://10.96.0.11:8080",
		"RINGCACHE_PORT_8080_TCP=tcp://10.96.0.11:8080",
		"RINGCACHE_PORT_8080_TCP_PROTO=tcp",
		"RINGCACHE_PORT_8080_TCP_PORT=8080",
		"RINGCACHE_PORT_8080_TCP_ADDR=10.96.0.11",
		"RINGCACHE_PEERS_SERVICE_HOST=10.96.0.12",
		"RINGCACHE_PEERS_SERVICE_PORT=7946",
		"RINGCACHE_PEERS_PORT=tcp://10.96.0.12:7946",
	)
	srv := startChildEnv(t, buildBinary(t), env, "serve")
	waitMatch(t, srv.stderr, regexp.MustCompile(`(ringcache serving)`), "the node to start")
	out := srv.stderr.String()
	if !strings.Contains(out, "unknown environment variable RINGCACHE_CACHE_SISE ignored (did you mean RINGCACHE_CACHE_SIZE?)") {
		t.Errorf("no warning for RINGCACHE_CACHE_SISE:\n%s", out)
	}
	if strings.Contains(out, "RINGCACHE_PORT") || strings.Contains(out, "RINGCACHE_SERVICE") || strings.Contains(out, "RINGCACHE_PEERS") {
		t.Errorf("Kubernetes' variables reported:\n%s", out)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
		if srv.err != nil {
			t.Errorf("serve exited with %v, want status 0:\n%s", srv.err, srv.stderr.String())
		}
	case <-time.After(procWait):
		t.Fatal("serve did not exit after SIGTERM")
	}
}

// `ringcache version` and `--version` name the build, and the node's
// ringcache_build_info says the same.
func TestProcessVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	code, out := runToExit(t, cleanEnv(), "version")
	versionRE := regexp.MustCompile(`^ringcache (\S+) \((go\S+) \w+/\w+, revision ([^,)]+)(, modified)?\)\n$`)
	m := versionRE.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("ringcache version: exit %d, output %q", code, out)
	}
	if code, out2 := runToExit(t, cleanEnv(), "--version"); code != 0 || out2 != out {
		t.Errorf("ringcache --version: exit %d, %q; want %q", code, out2, out)
	}

	listenRE := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)
	srv := startChildEnv(t, buildBinary(t), cleanEnv(), "serve", "--origin", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	waitMatch(t, srv.stderr, listenRE, "the node to start")
	admin := waitMatch(t, srv.stderr, regexp.MustCompile(`admin=(127\.0\.0\.1:\d+)`), "the admin address")
	c := &fasthttp.Client{}
	defer c.CloseIdleConnections()
	r, err := testutil.Do(c, "GET", "http://"+admin+"/metrics", nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("GET /metrics: %v %d", err, r.Status)
	}
	series := fmt.Sprintf(`ringcache_build_info{goversion=%q,revision=%q,version=%q}`, m[2], m[3], m[1])
	if v, ok := testutil.MetricValue(r.Body, series); !ok || v != 1 {
		t.Errorf("/metrics lacks %s 1:\n%s", series, grepLines(r.Body, "ringcache_build_info"))
	}
}

// grepLines returns the lines of b holding s.
func grepLines(b []byte, s string) string {
	var out []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
