package cluster

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/h1"
	"github.com/ringcache/ringcache/internal/opt"
	"github.com/valyala/fasthttp"
)

// Authenticator checks a peer request's credentials; PeerSet and *Signer
// implement it.
type Authenticator interface {
	Authenticate(req *fasthttp.Request) (from string, ok bool)
}

// PeerServerStats are counters since the PeerServer was made.
type PeerServerStats struct {
	Unauthorized uint64 // peer endpoint requests refused for missing or bad credentials
	Refused      uint64 // forwarded requests refused for missing or bad credentials
	Lookups      uint64 // entry lookups served (hit or miss)
	LookupHits   uint64 // lookups that found an entry
	Accepted     uint64 // handed-off entries Local.Accept kept
	Rejected     uint64 // handed-off entries Local.Accept refused
	Malformed    uint64 // handoff frames dropped: bad length or undecodable entry
	ReplicasIn   uint64 // replica copies received and kept
}

// PeerServerOptions configures a PeerServer. Zero values mean the default.
type PeerServerOptions struct {
	// MaxEntryBytes is the largest encoded entry a handoff frame may hold;
	// longer frames are dropped as malformed. The request body as a whole is
	// bounded by the fasthttp server's MaxRequestBodySize. Default
	// DefaultMaxEntryBytes.
	MaxEntryBytes int64
	// Timeout bounds the rest of a lookup frame once its first bytes came:
	// a half-written frame ends the connection. Default DefaultPeerTimeout.
	Timeout time.Duration
	// Clock is this node's time in unix nanoseconds, sent with each lookup
	// answer so the asker can read entries on its own clock. Default
	// time.Now.
	Clock func() int64
	// Logger receives dropped frames and refused requests. Nil discards.
	Logger *slog.Logger
}

// PeerServer serves members: lookups over the lookup exchange
// (ServeFrames), and the HTTP endpoints under PathPrefix to authenticated
// members only:
//
//	POST PathPrefix+"handoff"  frames: uvarint length + encoded entry
//	POST PathPrefix+"purge"    a cache.Purge as JSON
//
// A handoff is answered {"accepted":N,"rejected":M,"malformed":K}. Bad
// frames are counted and skipped (or, when the framing itself is lost, end
// the batch); they never fail the request.
type PeerServer struct {
	local    Local
	auth     Authenticator
	maxEntry int64
	timeout  time.Duration
	now      func() int64
	log      *slog.Logger

	unauthorized, refused, lookups, hits, accepted, rejected, malformed atomic.Uint64
	replicasIn                                                          atomic.Uint64
}

// NewPeerServer returns a PeerServer answering from local and admitting
// requests auth accepts.
func NewPeerServer(local Local, auth Authenticator, o PeerServerOptions) *PeerServer {
	s := &PeerServer{local: local, auth: auth, maxEntry: opt.Or(o.MaxEntryBytes, DefaultMaxEntryBytes),
		timeout: opt.Or(o.Timeout, DefaultPeerTimeout), now: o.Clock, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = func() int64 { return time.Now().UnixNano() }
	}
	return s
}

// Stats returns the server's counters.
func (s *PeerServer) Stats() PeerServerStats {
	return PeerServerStats{
		Unauthorized: s.unauthorized.Load(),
		Refused:      s.refused.Load(),
		Lookups:      s.lookups.Load(),
		LookupHits:   s.hits.Load(),
		Accepted:     s.accepted.Load(),
		Rejected:     s.rejected.Load(),
		Malformed:    s.malformed.Load(),
		ReplicasIn:   s.replicasIn.Load(),
	}
}

// Handle serves one request whose path starts with PathPrefix.
func (s *PeerServer) Handle(ctx *fasthttp.RequestCtx) {
	// The node's servers leave Date to their handlers (NoDefaultDate).
	h1.SetDate(&ctx.Response.Header, time.Now())
	path := ctx.Path()
	if !bytes.HasPrefix(path, []byte(PathPrefix)) {
		plainError(ctx, fasthttp.StatusNotFound, "not a peer endpoint")
		return
	}
	from, ok := s.auth.Authenticate(&ctx.Request)
	if !ok {
		s.unauthorized.Add(1)
		// Debug only: a flood of bad requests must not flood the log; the
		// counter is the signal.
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("peer request refused: bad credentials", "remote", ctx.RemoteAddr().String(), "path", string(path))
		}
		ctx.Response.Header.Set(HeaderError, "1")
		plainError(ctx, fasthttp.StatusUnauthorized, "peer authentication failed")
		return
	}
	switch string(path[len(PathPrefix):]) {
	case "handoff":
		if !ctx.IsPost() {
			methodNotAllowed(ctx, fasthttp.MethodPost)
			return
		}
		s.handoff(ctx, from)
	case "purge":
		if !ctx.IsPost() {
			methodNotAllowed(ctx, fasthttp.MethodPost)
			return
		}
		s.purge(ctx)
	default:
		plainError(ctx, fasthttp.StatusNotFound, "unknown peer endpoint")
	}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	plainError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
}

// plainError answers status with a text body. Unlike ctx.Error it keeps
// the headers already set and the server's NoDefaultDate (Error resets the
// response, and that flag with it).
func plainError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(msg)
}

// accept keeps the entries of a batch — frames of a uvarint length and an
// encoded entry — that Local.Accept takes, after moving their times by
// skew (this node's clock minus the sender's). Bad frames are counted and
// skipped, or, when the framing itself is lost, end the batch.
func (s *PeerServer) accept(batch []byte, skew int64) (accepted, rejected, malformed uint64) {
	for off := 0; off < len(batch); {
		n, k := binary.Uvarint(batch[off:])
		if k <= 0 {
			malformed++ // an unreadable length loses the framing: stop
			break
		}
		off += k
		if n > uint64(len(batch)-off) {
			malformed++ // truncated
			break
		}
		frame := batch[off : off+int(n)]
		off += int(n)
		if n == 0 || n > uint64(s.maxEntry) {
			malformed++
			continue
		}
		e, err := cache.DecodeEntry(frame) // copies: the batch's buffer is reused
		if err != nil || len(e.Key()) == 0 {
			malformed++
			continue
		}
		e.Rebase(skew)
		if s.local.Accept(e) {
			accepted++
		} else {
			rejected++
		}
	}
	s.malformed.Add(malformed)
	return accepted, rejected, malformed
}

func (s *PeerServer) handoff(ctx *fasthttp.RequestCtx, from string) {
	accepted, rejected, malformed := s.accept(ctx.PostBody(), 0)
	s.accepted.Add(accepted)
	s.rejected.Add(rejected)
	if malformed > 0 {
		s.log.Warn("handoff frames dropped as malformed", "from", from, "malformed", malformed, "accepted", accepted)
	}
	var reply [96]byte // three uint64s and the JSON around them
	b := append(reply[:0], `{"accepted":`...)
	b = strconv.AppendUint(b, accepted, 10)
	b = append(b, `,"rejected":`...)
	b = strconv.AppendUint(b, rejected, 10)
	b = append(b, `,"malformed":`...)
	b = strconv.AppendUint(b, malformed, 10)
	b = append(b, '}')
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
