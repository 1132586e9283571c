package node

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net/url"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/origin"
	"github.com/ringcache/ringcache/proxy"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"
)

// AdminHandler serves the admin endpoints: /healthz, /metrics, /cluster,
// /stats, the status page, and, with the admin token, /purge and the Go
// profiles under /debug/pprof/.
func (n *Node) AdminHandler() fasthttp.RequestHandler {
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	return func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/":
			serveStatusPage(ctx)
		case "/healthz":
			if !n.serving.Load() {
				ctx.Error("draining\n", fasthttp.StatusServiceUnavailable)
				return
			}
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ok\n")
		case "/metrics":
			metrics(ctx)
		case "/cluster":
			n.clusterStatus(ctx)
		case "/stats":
			n.stats(ctx)
		case "/purge":
			n.purge(ctx)
		default:
			// Profiles show internals and cost CPU: token only, like writes.
			if bytes.HasPrefix(ctx.Path(), []byte("/debug/pprof/")) {
				if n.authorized(ctx) {
					pprofhandler.PprofHandler(ctx)
				}
				return
			}
			ctx.Error("not found\n", fasthttp.StatusNotFound)
		}
	}
}

// ClusterView is the JSON of the admin GET /cluster.
type ClusterView struct {
	Self    string          `json:"self"`
	Ring    string          `json:"ring,omitempty"`
	Members []ClusterMember `json:"members"`
}

// ClusterMember is one member in a ClusterView.
type ClusterMember struct {
	Name   string  `json:"name"`
	Gossip string  `json:"gossip,omitempty"`
	Peer   string  `json:"peer,omitempty"`
	Status string  `json:"status"`
	Share  float64 `json:"share"` // fraction of the key space it owns
}

// clusterStatus answers GET /cluster: this node, every member serf knows
// with its status, and each member's share of the ring.
func (n *Node) clusterStatus(ctx *fasthttp.RequestCtx) {
	v := ClusterView{Self: n.name, Members: []ClusterMember{}}
	if n.members == nil {
		v.Members = append(v.Members, ClusterMember{Name: n.name, Peer: n.Addr(), Status: "alive", Share: 1})
	} else {
		v.Ring = n.ring
		shares := cluster.Shares(n.members.Ring(), 0)
		for _, m := range n.members.Members() {
			v.Members = append(v.Members, ClusterMember{Name: m.Name, Gossip: m.GossipAddr, Peer: m.PeerAddr, Status: m.Status, Share: shares[m.Name]})
		}
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Name < v.Members[j].Name })
	writeJSON(ctx, v)
}

// authorized checks the bearer token of an admin write (or profile)
// request. Without a configured token every such request is refused: they
// are never open.
func (n *Node) authorized(ctx *fasthttp.RequestCtx) bool {
	token := *n.adminToken.Load()
	got, ok := bytes.CutPrefix(ctx.Request.Header.Peek("Authorization"), []byte("Bearer "))
	if token != "" && ok && subtle.ConstantTimeCompare(got, []byte(token)) == 1 {
		return true
	}
	msg := "admin writes need Authorization: Bearer <admin_token>\n"
	if token == "" {
		msg = "admin writes are disabled: set admin_token (or admin_token_file)\n"
	}
	ctx.Error(msg, fasthttp.StatusUnauthorized)
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="ringcache admin"`) // after Error, which resets headers
	return false
}

// purge answers POST /purge?url=/path | ?tag=T | ?prefix=/p | ?all=1 (or a
// JSON body with those fields; url may also be absolute, naming the host):
// the purge runs on every member, and the reply says how many entries went.
func (n *Node) purge(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Error("POST only\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set("Allow", "POST") // after Error, which resets headers
		return
	}
	if !n.authorized(ctx) {
		return
	}
	var req struct {
		URL    string `json:"url"`
		Host   string `json:"host"`
		Tag    string `json:"tag"`
		Prefix string `json:"prefix"`
		All    bool   `json:"all"`
	}
	if body := ctx.PostBody(); len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			ctx.Error("bad JSON body: "+err.Error()+"\n", fasthttp.StatusBadRequest)
			return
		}
	}
	args := ctx.QueryArgs()
	for _, f := range []struct {
		dst  *string
		name string
	}{{&req.URL, "url"}, {&req.Host, "host"}, {&req.Tag, "tag"}, {&req.Prefix, "prefix"}} {
		if v := args.Peek(f.name); len(v) > 0 {
			*f.dst = string(v)
		}
	}
	if a := string(args.Peek("all")); a == "1" || a == "true" {
		req.All = true
	}
	p := cache.Purge{URL: req.URL, Host: req.Host, Tag: req.Tag, Prefix: req.Prefix, All: req.All}
	if u, err := url.Parse(p.URL); err == nil && u.Host != "" {
		p.Host, p.URL = u.Host, u.RequestURI()
	}
	if err := p.Validate(); err != nil {
		ctx.Error(err.Error()+"\n", fasthttp.StatusBadRequest)
		return
	}
	purged, err := n.proxy.PurgeCluster(ctx, p)
	n.log.Info("purge", "kind", p.Kind(), "url", p.URL, "tag", p.Tag, "prefix", p.Prefix, "purged", purged, "err", err)
	writeJSON(ctx, cache.NewPurgeReply(purged, err))
}

// StatsView is the JSON of the admin GET /stats, what the status page shows.
type StatsView struct {
	Node   string         `json:"node"`
	Uptime float64        `json:"uptime_seconds"`
	Proxy  proxy.Snapshot `json:"proxy"`
	Store  cache.Stats    `json:"store"`
	// Origins are the origin servers, pool by pool.
	Origins []origin.ServerStatus `json:"origins"`
}

func (n *Node) stats(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, StatsView{
		Node: n.name, Uptime: time.Since(n.startedAt).Seconds(),
		Proxy: n.proxy.Snapshot(), Store: n.store.Stats(), Origins: n.origins.Status(),
	})
}

func writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(append(b, '\n'))
}
