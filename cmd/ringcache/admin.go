package main

import (
	"encoding/json"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ringcache/ringcache/cluster"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

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
		case "/cluster":
			n.clusterStatus(ctx)
		default:
			ctx.Error("not found\n", fasthttp.StatusNotFound)
		}
	}
}

// clusterView is the JSON of GET /cluster.
type clusterView struct {
	Self    string          `json:"self"`
	Ring    string          `json:"ring,omitempty"`
	Members []clusterMember `json:"members"`
}

type clusterMember struct {
	Name   string  `json:"name"`
	Gossip string  `json:"gossip,omitempty"`
	Peer   string  `json:"peer,omitempty"`
	Status string  `json:"status"`
	Share  float64 `json:"share"` // fraction of the key space it owns
}

// clusterStatus answers GET /cluster: this node, every member serf knows
// with its status, and each member's share of the ring.
func (n *node) clusterStatus(ctx *fasthttp.RequestCtx) {
	v := clusterView{Self: n.cfg.NodeName, Members: []clusterMember{}}
	if n.members == nil {
		v.Members = append(v.Members, clusterMember{Name: n.cfg.NodeName, Peer: n.Addr(), Status: "alive", Share: 1})
	} else {
		v.Ring = n.cfg.Ring
		shares := cluster.Shares(n.members.Ring(), 0)
		for _, m := range n.members.Members() {
			v.Members = append(v.Members, clusterMember{Name: m.Name, Gossip: m.GossipAddr, Peer: m.PeerAddr, Status: m.Status, Share: shares[m.Name]})
		}
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Name < v.Members[j].Name })
	b, _ := json.MarshalIndent(v, "", "  ")
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}
