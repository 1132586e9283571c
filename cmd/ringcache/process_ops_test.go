package main

// What an operator meets first, with the real binary: the environment a
// Kubernetes pod gives it.

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
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
