package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/spf13/pflag"
)

// demoCmd starts the demo origin and a cache node in front of it on
// loopback, prints what to try, and runs until ctx ends.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("ringcache demo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	originAddr := fs.String("origin-listen", "127.0.0.1:9000", "demo origin address")
	listen := fs.String("listen", "127.0.0.1:8080", "cache node address")
	admin := fs.String("admin", "127.0.0.1:8081", "cache node admin address")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := newLogger(stderr, "warn", "text")
	oln, err := net.Listen("tcp", *originAddr)
	if err != nil {
		fmt.Fprintf(stderr, "ringcache demo: origin listen %s: %v\n", *originAddr, err)
		return 1
	}
	osrv, odone := startOrigin(oln, log)
	defer func() { _ = osrv.Shutdown(); <-odone }()

	cfg := config.Default()
	cfg.Origin = "http://" + oln.Addr().String()
	cfg.Listen, cfg.Admin = *listen, *admin
	cfg.CacheSize = 64 << 20
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "ringcache demo: %v\n", err)
		return 2
	}
	n, err := startNode(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "ringcache demo: %v\n", err)
		return 1
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Shutdown(sctx)
	}()

	o, c, a := oln.Addr().String(), n.Addr(), n.AdminAddr()
	fmt.Fprintf(stdout, `ringcache demo is running (Ctrl-C to stop)

  demo origin   http://%[1]s
  cache node    http://%[2]s   (admin http://%[3]s)

Try:
  curl -si 'http://%[2]s/hello?cc=max-age=60'             # first: fwd=uri-miss; stored
  curl -si 'http://%[2]s/hello?cc=max-age=60'             # then:  hit; Age grows
  curl -si 'http://%[2]s/etag?cc=no-cache&etag=1'         # stored, revalidated with a 304 each time
  curl -si 'http://%[2]s/slow?delay=2s&cc=max-age=30'     # slow origin: the second call is instant
  curl -si 'http://%[2]s/private?cc=private'              # never stored
  curl -s  'http://%[1]s/__origin/stats'                  # how many requests reached the origin
  curl -s  'http://%[3]s/metrics' | grep ringcache_       # the node's metrics
`, o, c, a)
	<-ctx.Done()
	return 0
}
