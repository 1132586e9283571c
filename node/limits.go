package node

import (
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
// the proxy as streams it relays. On the peer listener every body is read
// whole first, up to limit: its handlers need the body (handoff batches;
// the peer signature covers a digest of the body), and within the budget.
func bodyGate(h fasthttp.RequestHandler, limit int64, peers bool) fasthttp.RequestHandler {
	o := reqbody.Options{Limit: limit, Reject: rejectBody}
	if peers {
		o.Whole = func(*fasthttp.RequestCtx) bool { return true }
		o.Reject = rejectPeerBody
	}
	return reqbody.Handler(h, o)
}

// rejectBody answers a request whose body the gate refused, as badRequest
// answers those fasthttp refuses.
func rejectBody(ctx *fasthttp.RequestCtx, status int) {
	ctx.Error(fasthttp.StatusMessage(status)+"\n", status)
}

// rejectPeerBody is rejectBody for members: one refused for lack of memory
// here serves the request itself instead (HeaderError).
func rejectPeerBody(ctx *fasthttp.RequestCtx, status int) {
	rejectBody(ctx, status)
	if status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set(cluster.HeaderError, "1")
	}
}

// guard wraps a server's TCP listener (beneath any TLS): write_timeout
// becomes an idle timeout per write, and with perIP > 0 one client address
// gets at most perIP connections, the others a 503.
func (n *Node) guard(ln net.Listener, perIP int) net.Listener {
	return streamconn.IdleWrites(connlimit.PerIP(ln, perIP), n.cfg.WriteTimeout)
}
