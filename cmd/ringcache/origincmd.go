package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/ringcache/ringcache/node"
	"github.com/ringcache/ringcache/origin/demo"

	"github.com/spf13/pflag"
)

// originCmd runs the demo origin until ctx ends.
func originCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("ringcache origin", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ringcache origin [flags]\n\nA demo origin: any path answers 200; query parameters shape the\nresponse (cc, size, delay, status, etag, lm, vary, cookie, tags,\nexpires, age, chunked). GET /__origin/stats counts requests.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, _ := node.NewLogger(stderr, *level, "text")
	ln, err := node.Listen("listen", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "ringcache origin: %v\n", err)
		return 1
	}
	srv, done := startOrigin(ln, log)
	log.Info("demo origin serving", "listen", ln.Addr().String())
	<-ctx.Done()
	_ = srv.Shutdown()
	<-done
	return 0
}

// startOrigin serves the demo origin on ln; done closes when it stops.
func startOrigin(ln net.Listener, log *slog.Logger) (*demo.Server, <-chan struct{}) {
	srv := demo.New(demo.Options{Logger: log})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil {
			log.Error("demo origin stopped", "err", err)
		}
	}()
	return srv, done
}
