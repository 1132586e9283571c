// Command ringcache is a distributed HTTP cache: a fasthttp reverse proxy
// that stores origin responses per RFC 9111 and, in a cluster, splits the
// key space between its nodes.
//
//	ringcache serve   run a cache node in front of an origin
//	ringcache origin  run the demo origin (for the quick start, tests, benches)
//	ringcache demo    run a demo origin and a cache node on loopback
//	ringcache version print the version, Go release and VCS revision
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ringcache/ringcache/internal/buildinfo"
)

const usage = `ringcache: a distributed HTTP cache

Usage:
  ringcache serve  [flags]   run a cache node in front of an origin (--help for flags)
  ringcache origin [flags]   run the demo origin server
  ringcache demo   [flags]   run a demo origin and a cache node on loopback
  ringcache healthcheck [flags]  exit 0 if the admin /healthz answers 200 (container HEALTHCHECK)
  ringcache version          print the version, Go release and revision (also --version)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run executes one subcommand and returns the process exit code: 0 on
// success, 1 when the program failed while running, 2 on bad usage or
// configuration.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], environ, stdout, stderr)
	case "origin":
		return originCmd(ctx, args[1:], stdout, stderr)
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheckCmd(args[1:], environ, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
	}
	fmt.Fprintf(stderr, "ringcache: unknown command %q\n\n%s", args[0], usage)
	return 2
}
