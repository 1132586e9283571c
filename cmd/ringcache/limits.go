package main

import (
	"bytes"
	"net"

	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/internal/connlimit"
	"github.com/ringcache/ringcache/internal/reqbody"
	"github.com/ringcache/ringcache/internal/streamconn"
	"github.com/valyala/fasthttp"
)

// What a node holds per connection is bounded here and in newServer:
// request bodies stream (bodyGate), connections are capped in total
// (fasthttp's Concurrency, max_conns) and per client address (guard,
// max_conns_per_ip), and write_timeout bounds each write rather than a whole
// response (guard), so a slow client can still download a large body.

// bodyGate puts h behind reqbody's checks: bodies over limit are refused
// with 413, small ones are read whole within one budget, larger ones reach
// the proxy as streams it relays. In a cluster the peer endpoints and
// requests claiming to come from a peer are read whole first, up to limit:
// their handlers need the body (handoff batches; the peer signature covers
// a digest of the body), so they get it as before streaming, and within the
// budget, so forged claims cannot make the node hold unbounded bodies.
func (n *node) bodyGate(h fasthttp.RequestHandler, limit int64) fasthttp.RequestHandler {
	o := reqbody.Options{Limit: limit, Reject: rejectBody}
	if n.peers != nil {
		o.Whole = fromPeer
	}
	return reqbody.Handler(h, o)
}

var pathPeers = []byte(cluster.PathPrefix)

// fromPeer reports whether ctx is for a peer endpoint or claims to come
// from a peer.
func fromPeer(ctx *fasthttp.RequestCtx) bool {
	return bytes.HasPrefix(ctx.Path(), pathPeers) || len(ctx.Request.Header.Peek(cluster.HeaderForwarded)) > 0
}

// rejectBody answers a request whose body the gate refused, as badRequest
// answers those fasthttp refuses. A member whose request is refused for
// lack of memory here serves it itself instead (HeaderError).
func rejectBody(ctx *fasthttp.RequestCtx, status int) {
	ctx.Error(fasthttp.StatusMessage(status)+"\n", status)
	if status == fasthttp.StatusServiceUnavailable && fromPeer(ctx) {
		ctx.Response.Header.Set(cluster.HeaderError, "1")
	}
}

// guard wraps a server's TCP listener (beneath any TLS): write_timeout
// becomes an idle timeout per write, and with perIP > 0 one client address
// gets at most perIP connections, the others a 503.
func (n *node) guard(ln net.Listener, perIP int) net.Listener {
	return streamconn.IdleWrites(connlimit.PerIP(ln, perIP), n.cfg.WriteTimeout)
}
