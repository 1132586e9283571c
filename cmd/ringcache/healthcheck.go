package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/node"
	"github.com/spf13/pflag"
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
	if err := node.CheckHealth(u, *timeout); err != nil {
		fmt.Fprintf(stderr, "ringcache healthcheck: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %s\n", u)
	return 0
}

// defaultHealthURL is the admin /healthz of a node configured by environ:
// RINGCACHE_ADMIN (the last entry wins, as in config.Load) or the built-in
// default.
func defaultHealthURL(environ []string) (string, error) {
	const key = "RINGCACHE_ADMIN"
	admin := config.Default().Admin
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			admin = v
		}
	}
	u, err := node.HealthURL(admin)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w; pass --url", key, admin, err)
	}
	return u, nil
}
