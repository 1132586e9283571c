package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/spf13/pflag"
	"github.com/valyala/fasthttp"
)

// healthcheckCmd probes a node's admin /healthz and reports the result in
// its exit status, for container runtimes whose image has neither a shell
// nor curl (the Dockerfile's HEALTHCHECK). It exits 0 when the URL answers
// 200 and 1 otherwise: bad usage included, because Docker reserves exit
// status 2 for health checks.
func healthcheckCmd(args, environ []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("ringcache healthcheck", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "", "URL to GET (default http://$RINGCACHE_ADMIN/healthz, a wildcard host replaced by loopback)")
	timeout := fs.Duration("timeout", 2*time.Second, "deadline for the whole request")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ringcache healthcheck [flags]\n\nExits 0 when the URL answers 200, 1 otherwise.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "ringcache healthcheck: %v\n", err)
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ringcache healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "ringcache healthcheck: --timeout must be positive (got %s)\n", *timeout)
		return 1
	}
	u := *target
	if u == "" {
		var err error
		if u, err = defaultHealthURL(environ); err != nil {
			fmt.Fprintf(stderr, "ringcache healthcheck: %v\n", err)
			return 1
		}
	}
	if err := probeHealth(u, *timeout); err != nil {
		fmt.Fprintf(stderr, "ringcache healthcheck: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %s\n", u)
	return 0
}

// defaultHealthURL is the admin /healthz of a node configured by environ:
// RINGCACHE_ADMIN (the last entry wins, as in config.Load) or the built-in
// default. A wildcard host is what a container listens on, not an address
// to dial, so it becomes loopback of the same family.
func defaultHealthURL(environ []string) (string, error) {
	const key = "RINGCACHE_ADMIN"
	admin := config.Default().Admin
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			admin = v
		}
	}
	if admin == "" {
		return "", errors.New("the admin listener is disabled (RINGCACHE_ADMIN is empty); pass --url")
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w", key, admin, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

// probeHealth GETs target and succeeds only on a 200 within timeout.
func probeHealth(target string, timeout time.Duration) error {
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q: want http://host:port/path", target)
	}
	c := &fasthttp.Client{
		Name:                "ringcache-healthcheck",
		MaxResponseBodySize: 64 << 10, // /healthz says "ok"; anything big is not it
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(target)
	req.Header.SetMethod(fasthttp.MethodGet)
	// No idle connection outlives the probe (tests call it in process).
	req.SetConnectionClose()
	if err := c.DoTimeout(req, resp, timeout); err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		body := strings.TrimSpace(string(resp.Body()))
		if len(body) > 200 {
			body = body[:200] + "..."
		}
		return fmt.Errorf("GET %s: status %d: %s", target, code, body)
	}
	return nil
}
