package cluster

import (
	"bytes"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/internal/h1"
	"github.com/valyala/fasthttp"
)

var pathPrefix = []byte(PathPrefix)

// ClientGate keeps the peer protocol off a listener clients reach. Members
// reach a node only over peer TLS (PeerServer.Handler), so a client-side
// request that claims to come from one — forged, or a member's captured
// and replayed — is refused, whatever credentials it carries, and so is
// one for the peer endpoints. The refusal carries HeaderError, so a member
// of another release that still sends peer requests in plain HTTP falls
// back to the origin instead of relaying it. The zero ClientGate is ready.
type ClientGate struct{ refused atomic.Uint64 }

// Handler wraps h, the client listener's handler.
func (g *ClientGate) Handler(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch {
		case bytes.HasPrefix(ctx.Path(), pathPrefix):
			g.refused.Add(1)
			refuse(ctx, "peer endpoints are served to members over peer TLS only")
		case len(ctx.Request.Header.Peek(HeaderForwarded)) > 0:
			g.refused.Add(1)
			refuse(ctx, "peer requests are accepted over peer TLS only")
		default:
			h(ctx)
		}
	}
}

// Refused counts the requests the gate refused.
func (g *ClientGate) Refused() uint64 { return g.refused.Load() }

// Handler returns the handler of the peer listener, whose mutual TLS
// admits members only: the peer endpoints, and requests members forward,
// which must also carry a member's signature before forwarded serves them
// (as the key's owner, never forwarding them again).
func (s *PeerServer) Handler(forwarded fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch {
		case bytes.HasPrefix(ctx.Path(), pathPrefix):
			s.Handle(ctx)
		case len(ctx.Request.Header.Peek(HeaderForwarded)) == 0:
			h1.SetDate(&ctx.Response.Header, time.Now()) // the servers leave Date to handlers
			plainError(ctx, fasthttp.StatusForbidden, "peer listener: members only")
		default:
			if _, ok := s.auth.Authenticate(&ctx.Request); !ok {
				s.refused.Add(1)
				if s.log.Enabled(ctx, slog.LevelDebug) {
					s.log.Debug("forwarded request refused: bad credentials", "remote", ctx.RemoteAddr().String())
				}
				// A member whose signature we refuse (clock skew, a rotated
				// secret) must fall back to the origin, not relay this.
				refuse(ctx, "peer authentication failed")
				return
			}
			forwarded(ctx)
		}
	}
}

// refuse answers 403 with HeaderError: the sender, if a member, serves the
// request itself.
func refuse(ctx *fasthttp.RequestCtx, msg string) {
	h1.SetDate(&ctx.Response.Header, time.Now()) // the servers leave Date to handlers
	ctx.Response.Header.Set(HeaderError, "1")
	plainError(ctx, fasthttp.StatusForbidden, msg)
}
