// Command ceiling serves, from memory and with no cache logic, the bodies
// it fetched once from an origin at startup: the upper bound a cache hit is
// compared with. Every -uri is fetched from -origin and answered as is.
//
//	ceiling -listen 127.0.0.1:9100 -origin http://127.0.0.1:9000 -uri '/hit?size=1024'
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ringcache/ringcache/bench/ceiling"
	"github.com/valyala/fasthttp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// uriList collects repeated -uri flags.
type uriList []string

func (u *uriList) String() string     { return strings.Join(*u, " ") }
func (u *uriList) Set(s string) error { *u = append(*u, s); return nil }

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9100", "address to listen on")
	originURL := fs.String("origin", "", "origin base URL the bodies are fetched from, e.g. http://127.0.0.1:9000")
	var uris uriList
	fs.Var(&uris, "uri", "request URI to serve (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *originURL == "" || len(uris) == 0 {
		fmt.Fprintln(stderr, "ceiling: -origin and at least one -uri are required")
		return 2
	}
	bodies := make(map[string]ceiling.Body, len(uris))
	for _, u := range uris {
		b, err := fetch(*originURL + u)
		if err != nil {
			fmt.Fprintf(stderr, "ceiling: %v\n", err)
			return 1
		}
		bodies[u] = b
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "ceiling: %v\n", err)
		return 1
	}
	srv := &fasthttp.Server{Handler: ceiling.New(bodies).Serve, Name: "ceiling"}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
	}()
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintf(stderr, "ceiling: serve: %v\n", err)
		return 1
	}
	return 0
}

func fetch(url string) (ceiling.Body, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return ceiling.Body{}, fmt.Errorf("fetch %s: %w", url, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return ceiling.Body{}, fmt.Errorf("fetch %s: status %d", url, resp.StatusCode())
	}
	return ceiling.Body{
		ContentType: string(resp.Header.ContentType()),
		Bytes:       append([]byte(nil), resp.Body()...),
	}, nil
}
