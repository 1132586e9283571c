package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/node"
	"github.com/spf13/pflag"
)

// demoCmd starts the demo origin and a three-node cluster in front of it on
// loopback, already joined, prints what to try, and runs until ctx ends.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("ringcache demo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	originAddr := fs.String("origin-listen", "127.0.0.1:9000", "demo origin address")
	listen := fs.String("listen", "127.0.0.1:8080", "first node's proxy address; node i uses port+2i (port 0: any free port)")
	admin := fs.String("admin", "127.0.0.1:8081", "first node's admin address; node i uses port+2i")
	gossip := fs.String("gossip", "127.0.0.1:7946", "first node's gossip address; node i uses port+i")
	nodes := fs.Int("nodes", 3, "number of cache nodes")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *nodes < 1 || *nodes > 16 {
		fmt.Fprintf(stderr, "ringcache demo: --nodes must be 1..16 (got %d)\n", *nodes)
		return 2
	}
	log, _ := node.NewLogger(stderr, "warn", "text")
	oln, err := node.Listen("origin-listen", *originAddr)
	if err != nil {
		fmt.Fprintf(stderr, "ringcache demo: %v\n", err)
		return 1
	}
	osrv, odone := startOrigin(oln, log)
	defer func() { _ = osrv.Shutdown(); <-odone }()

	// A fresh secret per run: the demo cluster is private too.
	secret := randomBase64(32)
	var started []*node.Node
	defer func() {
		for _, n := range started {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.Shutdown(sctx)
			cancel()
		}
	}()
	for i := range *nodes {
		cfg := config.Default()
		cfg.NodeName = "node-" + string(rune('a'+i))
		cfg.Origin = "http://" + oln.Addr().String()
		cfg.Listen, cfg.Admin, cfg.Gossip = shiftPort(*listen, 2*i), shiftPort(*admin, 2*i), shiftPort(*gossip, i)
		cfg.CacheSize = 64 << 20
		cfg.KeyHost = "demo.local" // one site, reached through any node's address
		cfg.PeerSecret = secret
		cfg.HandoffTimeout = 3 * time.Second
		if i > 0 {
			cfg.Join = []string{started[0].GossipAddr()}
		}
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "ringcache demo: %v\n", err)
			return 2
		}
		n, err := node.Start(cfg, node.Options{Logger: log.With("node", cfg.NodeName)})
		if err != nil {
			fmt.Fprintf(stderr, "ringcache demo: %s: %v\n", cfg.NodeName, err)
			return 1
		}
		started = append(started, n)
	}
	// Generous: gossip converges in well under a second on loopback, but a
	// loaded machine must not turn the first thing a user runs into an error.
	if !waitJoined(ctx, started, 30*time.Second) {
		var views []string
		for _, n := range started {
			views = append(views, fmt.Sprintf("%s sees %d", n.Name(), len(n.Ring().Members())))
		}
		fmt.Fprintf(stderr, "ringcache demo: the nodes did not form one cluster of %d within 30s (%s)\n", len(started), strings.Join(views, ", "))
		return 1
	}
	printDemo(stdout, oln.Addr().String(), started)
	<-ctx.Done()
	return 0
}

// waitJoined polls until every node's ring holds every node.
func waitJoined(ctx context.Context, nodes []*node.Node, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		joined := true
		for _, n := range nodes {
			if len(n.Ring().Members()) != len(nodes) {
				joined = false
			}
		}
		if joined {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func printDemo(w io.Writer, origin string, nodes []*node.Node) {
	var b strings.Builder
	fmt.Fprintf(&b, "ringcache demo is running (Ctrl-C to stop)\n\n  demo origin   http://%s\n", origin)
	for _, n := range nodes {
		fmt.Fprintf(&b, "  cache node    http://%s   (%s, admin http://%s, gossip %s)\n", n.Addr(), n.Name(), n.AdminAddr(), n.GossipAddr())
	}
	a, c := nodes[0].Addr(), nodes[len(nodes)-1].Addr()
	fmt.Fprintf(&b, `
Try:
  curl -si 'http://%[1]s/hello?cc=max-age=60'         # fwd=uri-miss; stored — on the node that owns /hello
  curl -si 'http://%[2]s/hello?cc=max-age=60'         # another node: the owner's hit, forwarded (two Cache-Status members), or its own replica's (detail=replica)
  curl -si 'http://%[1]s/etag?cc=no-cache&etag=1'     # stored, revalidated with a 304 on every request
  curl -si 'http://%[1]s/slow?delay=2s&cc=max-age=30' # slow origin: the second call is instant, from any node
  curl -si 'http://%[1]s/private?cc=private'          # never stored
  curl -s  'http://%[3]s/__origin/stats'              # how many requests reached the origin
  curl -s  'http://%[4]s/cluster'                     # members, status and ring shares
  curl -s  'http://%[4]s/metrics' | grep ringcache_   # the node's metrics
`, a, c, origin, nodes[0].AdminAddr())
	io.WriteString(w, b.String())
}

// shiftPort adds delta to addr's port; port 0 (any free port) stays 0.
func shiftPort(addr string, delta int) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(p+delta))
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
