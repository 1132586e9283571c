package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// healthServer serves status on /healthz at 127.0.0.1:0 and returns its
// base URL.
func healthServer(t *testing.T, status int) string {
	t.Helper()
	return "http://" + testutil.ServeLoopback(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) != "/healthz" {
			ctx.Error("not found\n", fasthttp.StatusNotFound)
			return
		}
		ctx.SetStatusCode(status)
		ctx.SetBodyString("state\n")
	})
}

// silentAddr accepts connections and never answers, until the test ends.
func silentAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestHealthcheck(t *testing.T) {
	ok := healthServer(t, fasthttp.StatusOK)
	draining := healthServer(t, fasthttp.StatusServiceUnavailable)
	dead := testutil.FreeAddr(t)
	silent := silentAddr(t)

	tests := []struct {
		name    string
		args    []string
		environ []string
		code    int
		stderr  string // substring; "" means stderr must be empty
	}{
		{"200 is healthy", []string{"--url", ok + "/healthz"}, nil, 0, ""},
		{"503 while draining", []string{"--url", draining + "/healthz"}, nil, 1, "status 503"},
		{"404 is not healthy", []string{"--url", ok + "/nope"}, nil, 1, "status 404"},
		{"nothing listening", []string{"--url", "http://" + dead + "/healthz"}, nil, 1, "GET http://" + dead},
		{"no answer within the timeout", []string{"--url", "http://" + silent + "/healthz", "--timeout", "300ms"}, nil, 1, "timeout"},
		{"default URL from RINGCACHE_ADMIN, wildcard host", nil,
			[]string{"RINGCACHE_ADMIN=0.0.0.0:" + strings.TrimPrefix(ok, "http://127.0.0.1:")}, 0, ""},
		{"RINGCACHE_ADMIN pointing at a dead port", nil, []string{"RINGCACHE_ADMIN=" + dead}, 1, "GET http://" + dead + "/healthz"},
		{"admin disabled", nil, []string{"RINGCACHE_ADMIN="}, 1, "admin listener is disabled"},
		{"not a URL", []string{"--url", "127.0.0.1:8081/healthz"}, nil, 1, "want http://host:port/path"},
		{"unknown flag", []string{"--nope"}, nil, 1, "unknown flag"},
		{"stray argument", []string{"now"}, nil, 1, `unexpected argument "now"`},
		{"zero timeout", []string{"--url", ok + "/healthz", "--timeout", "0s"}, nil, 1, "--timeout must be positive"},
		{"help", []string{"--help"}, nil, 0, "Usage: ringcache healthcheck"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"healthcheck"}, tc.args...)
			code := run(context.Background(), args, tc.environ, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			if tc.stderr == "" && stderr.Len() > 0 {
				t.Errorf("unexpected stderr: %s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.stderr)
			}
			if code == 0 && tc.stderr == "" && !strings.HasPrefix(stdout.String(), "ok: ") {
				t.Errorf("stdout %q: want an ok line", stdout.String())
			}
		})
	}
}

func TestDefaultHealthURL(t *testing.T) {
	tests := []struct {
		environ []string
		want    string
		err     string
	}{
		{nil, "http://127.0.0.1:8081/healthz", ""}, // config's default admin address
		{[]string{"RINGCACHE_ADMIN=0.0.0.0:9081"}, "http://127.0.0.1:9081/healthz", ""},
		{[]string{"RINGCACHE_ADMIN=:9081"}, "http://127.0.0.1:9081/healthz", ""},
		{[]string{"RINGCACHE_ADMIN=[::]:9081"}, "http://[::1]:9081/healthz", ""},
		{[]string{"RINGCACHE_ADMIN=10.1.2.3:9081"}, "http://10.1.2.3:9081/healthz", ""},
		{[]string{"RINGCACHE_ADMIN=admin.local:9081"}, "http://admin.local:9081/healthz", ""},
		{[]string{"RINGCACHE_ADMIN=127.0.0.1:1", "RINGCACHE_ADMIN=127.0.0.1:2"}, "http://127.0.0.1:2/healthz", ""}, // last wins, as in config.Load
		{[]string{"RINGCACHE_ADMIN_TOKEN=x", "RINGCACHE_ADMINX=1:2"}, "http://127.0.0.1:8081/healthz", ""},
		{[]string{"RINGCACHE_ADMIN="}, "", "disabled"},
		{[]string{"RINGCACHE_ADMIN=8081"}, "", "RINGCACHE_ADMIN=\"8081\""},
	}
	for _, tc := range tests {
		got, err := defaultHealthURL(tc.environ)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want one containing %q", tc.environ, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: got %q, %v; want %q", tc.environ, got, err, tc.want)
		}
	}
}
