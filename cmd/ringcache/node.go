package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/origin"
	"github.com/ringcache/ringcache/proxy"
	"github.com/ringcache/ringcache/proxy/httpcache"
	"github.com/ringcache/ringcache/proxy/store"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// node is one running ringcache node: its store, origin client, proxy, and
// the proxy and admin listeners. Nothing in it is global, so tests and the
// demo run several in one process.
type node struct {
	log     *slog.Logger
	clock   *proxy.Clock
	store   store.Store
	origin  *origin.Client
	proxy   *proxy.Proxy
	reg     *prometheus.Registry
	srv     *fasthttp.Server
	ln      net.Listener
	admin   *fasthttp.Server
	adminLn net.Listener
	access  io.Closer
	serving atomic.Bool
	done    chan struct{} // closed when the proxy listener stops serving
}

// startNode builds a node from cfg and starts serving. On error nothing is
// left running.
func startNode(cfg config.Config, log *slog.Logger) (n *node, err error) {
	n = &node{log: log, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	defer func() {
		if err != nil {
			n.closeAll()
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// One coarse clock for the store and the proxy: time.Now is slow on VMs.
	n.clock = proxy.NewClock(time.Millisecond)
	if n.store, err = store.New(cfg.Store, cfg.CacheSize, store.WithClock(n.clock.Now)); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	proxy.RegisterStore(n.reg, n.store)
	metrics := proxy.NewMetrics(n.reg)
	n.origin, err = origin.NewClient(origin.ClientOptions{
		URL:             cfg.Origin,
		ConnectTimeout:  cfg.OriginConnectTimeout,
		ResponseTimeout: cfg.OriginTimeout,
		MaxConns:        cfg.OriginMaxConns,
		PreserveHost:    cfg.PreserveHost,
		Observe:         metrics.ObserveOrigin,
		Logger:          log,
	})
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	popt := proxyOptions(cfg, metrics, log)
	popt.Clock = n.clock.Now
	n.proxy = proxy.New(popt, n.store, n.origin)

	handler := n.proxy.Handler
	if cfg.AccessLog != "" {
		w, file, err := openAccessLog(cfg.AccessLog)
		if err != nil {
			return nil, err
		}
		al := newAccessLogger(w, file)
		n.access = al
		handler = al.wrap(handler)
	}
	n.srv = &fasthttp.Server{
		Handler:                       handler,
		ErrorHandler:                  badRequest,
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		MaxRequestBodySize:            int(cfg.MaxRequestBody),
		ReadBufferSize:                16 << 10, // room for large cookies and tokens
		NoDefaultServerHeader:         true,     // the origin's Server header passes through
		NoDefaultContentType:          true,     // never invent a type the origin did not send
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		Logger:                        fasthttpLogger{log},
		SecureErrorLogMessage:         true,
		DisableHeaderNamesNormalizing: false,
	}
	if n.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.Admin != "" {
		if n.adminLn, err = net.Listen("tcp", cfg.Admin); err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", cfg.Admin, err)
		}
		n.admin = &fasthttp.Server{Handler: n.adminHandler(), Logger: fasthttpLogger{log}, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		go func() {
			if err := n.admin.Serve(n.adminLn); err != nil {
				log.Error("admin listener stopped", "err", err)
			}
		}()
	}
	n.serving.Store(true)
	go func() {
		defer close(n.done)
		if err := n.srv.Serve(n.ln); err != nil {
			log.Error("proxy listener stopped", "err", err)
		}
	}()
	log.Info("ringcache serving", "listen", n.ln.Addr().String(), "origin", cfg.Origin, "admin", n.AdminAddr(),
		"store", cfg.Store, "cache_size", config.FormatBytes(cfg.CacheSize))
	return n, nil
}

// proxyOptions maps the configuration onto the proxy's own options.
func proxyOptions(cfg config.Config, m *proxy.Metrics, log *slog.Logger) proxy.Options {
	o := proxy.Options{
		Key: proxy.KeyOptions{IgnoreQuery: cfg.IgnoreQuery, SortQuery: cfg.SortQuery},
		Policy: httpcache.Policy{
			DefaultTTL:     int64(cfg.DefaultTTL / time.Second),
			MaxHeuristic:   int64(cfg.MaxHeuristicTTL / time.Second),
			NoHeuristic:    cfg.MaxHeuristicTTL == 0,
			StripSetCookie: cfg.StripSetCookie,
		},
		MaxObjectSize:   cfg.MaxObjectSize,
		StaleKeep:       cfg.StaleKeep,
		PassTTL:         cfg.PassTTL,
		CoalesceTimeout: cfg.CoalesceTimeout,
		Metrics:         m,
		Logger:          log,
	}
	// In the configuration 0 means "off"; in proxy.Options it means "default".
	if o.StaleKeep == 0 {
		o.StaleKeep = -1
	}
	if o.PassTTL == 0 {
		o.PassTTL = -1
	}
	return o
}

// Addr is the proxy listener's address.
func (n *node) Addr() string { return n.ln.Addr().String() }

// AdminAddr is the admin listener's address, or "" when it is off.
func (n *node) AdminAddr() string {
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}

func (n *node) adminHandler() fasthttp.RequestHandler {
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	return func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/healthz":
			if !n.serving.Load() {
				ctx.Error("draining\n", fasthttp.StatusServiceUnavailable)
				return
			}
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ok\n")
		case "/metrics":
			metrics(ctx)
		default:
			ctx.Error("not found\n", fasthttp.StatusNotFound)
		}
	}
}

// Shutdown stops accepting requests, lets those in flight finish until ctx
// ends, then releases everything.
func (n *node) Shutdown(ctx context.Context) error {
	n.serving.Store(false)
	err := n.srv.ShutdownWithContext(ctx)
	<-n.done
	n.closeAll()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("drain: %w", err)
	}
	return err
}

func (n *node) closeAll() {
	if n.proxy != nil {
		n.proxy.Close()
	}
	if n.admin != nil {
		_ = n.admin.Shutdown()
	}
	if n.ln != nil && n.srv == nil {
		_ = n.ln.Close()
	}
	if n.adminLn != nil && n.admin == nil {
		_ = n.adminLn.Close()
	}
	if n.origin != nil {
		n.origin.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
	if n.access != nil {
		_ = n.access.Close()
	}
	if n.clock != nil {
		n.clock.Stop()
	}
}

// badRequest answers requests fasthttp could not parse: a clear 4xx, never
// a crash or a dropped connection without a word.
func badRequest(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = fasthttp.StatusRequestEntityTooLarge
	case errors.As(err, &small):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	}
	ctx.Error(fasthttp.StatusMessage(status)+"\n", status)
}

// fasthttpLogger routes fasthttp's own messages (bad requests, mostly) to
// slog at debug level: a malformed request is the client's problem.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated by config
	opts := &slog.HandlerOptions{Level: lv}
	if format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func openAccessLog(path string) (io.Writer, io.Closer, error) {
	if path == "-" {
		return os.Stdout, nopCloser{}, nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("access_log: %w", err)
	}
	return f, f, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
