package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// TestProcessSIGHUPRules: the operator's rules come from the config file
// and SIGHUP replaces them in the running process; a file whose rules do
// not compile is refused, naming the rule, and the running rules stay.
func TestProcessSIGHUPRules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	binary := buildBinary(t)
	orig := startChild(t, binary, "origin", "--listen", "127.0.0.1:0")
	originAddr := waitMatch(t, orig.stderr, regexp.MustCompile(`msg="demo origin serving" listen=(\S+)`), "the origin process to log its address")

	file := filepath.Join(t.TempDir(), "ringcache.yaml")
	writeConfig := func(rules string) {
		t.Helper()
		y := fmt.Sprintf("origin: http://%s\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\nrules:\n%s", originAddr, rules)
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("  - path_prefix: /r\n    bypass: true\n")
	srv := startChild(t, binary, "serve", "--config", file)
	addr := waitMatch(t, srv.stderr, regexp.MustCompile(`msg="ringcache serving" (?:.* )?listen=(\S+)`), "the serve process to log its address")
	c := &fasthttp.Client{ReadTimeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	get := func(what string, parts ...string) {
		t.Helper()
		r, err := testutil.Do(c, "GET", "http://"+addr+"/r?cc=max-age=600", nil)
		if err != nil {
			t.Fatal(err)
		}
		testutil.ExpectStatus(t, what, r, 200)
		testutil.ExpectCacheStatus(t, what, r, parts...)
	}
	get("bypassed", "fwd=bypass", "detail=rule")

	reloads := regexp.MustCompile(`msg=reloaded (.*)`)
	writeConfig("  - path_prefix: /r\n    max_ttl: 30s\n")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if line := waitMatch(t, srv.stderr, reloads, "the reload to be logged"); !strings.Contains(line, "rules") {
		t.Errorf("reload log %q: want rules applied", line)
	}
	get("capped", "fwd=uri-miss", "ttl=30", "stored")
	get("hit", "hit")

	// A rule that does not compile: refused, named, and the running rules
	// stay (the stored entry still answers, capped).
	writeConfig("  - path_regex: '(unclosed'\n    ttl: 1h\n")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line := waitMatch(t, srv.stderr, regexp.MustCompile(`(reload failed.*)`), "the failed reload to be logged")
	if !strings.Contains(line, "rules[0].path_regex") {
		t.Errorf("failed reload log %q does not name rules[0].path_regex", line)
	}
	get("after a failed reload", "hit")

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
