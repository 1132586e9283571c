package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ringcache/ringcache/config"
)

// serveCmd runs one node until ctx ends (SIGINT/SIGTERM), then drains it.
func serveCmd(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(args, environ, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringcache serve: %v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	n, err := startNode(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "ringcache serve: %v\n", err)
		return 1
	}
	<-ctx.Done()
	log.Info("shutting down", "deadline", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
