package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/node"
)

// serveCmd runs one node until ctx ends (SIGINT/SIGTERM), then drains it.
func serveCmd(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cfg, warnings, err := config.Load(args, environ, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		for _, w := range warnings {
			fmt.Fprintf(stderr, "ringcache serve: warning: %s\n", w)
		}
		fmt.Fprintf(stderr, "ringcache serve: %v\n", err)
		return 2
	}
	log, level := node.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	for _, w := range warnings {
		log.Warn(w)
	}
	node.ApplyMemoryLimit(cfg, log) // here, not in node.Start: the limit is the process's, and tests and the demo run several nodes in one
	n, err := node.Start(cfg, node.Options{Logger: log, LogLevel: level})
	if err != nil {
		fmt.Fprintf(stderr, "ringcache serve: %v\n", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-hup:
			next, warnings, err := config.Load(args, os.Environ(), io.Discard)
			for _, w := range warnings {
				log.Warn(w)
			}
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			applied, skipped := n.Reload(next)
			log.Info("reloaded", "applied", applied, "needs_restart", skipped)
		}
	}
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
