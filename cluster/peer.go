package cluster

import (
	"context"

	"github.com/ringcache/ringcache/cache"
	"github.com/valyala/fasthttp"
)

// Peer is another cluster member, as PeerSet hands it out: the request
// path forwards requests to it and looks entries up on it.
type Peer interface {
	Name() string
	// Forward sends a client request to the peer, which answers it as the
	// key's owner and never forwards it again. The request is marked and
	// signed here. An error means the peer could not answer (down, slow,
	// refused): the caller falls back to the origin. As with the origin
	// client, resp's body may be a stream the caller must read or close.
	Forward(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error
	// Get looks up the entry stored under the exact store key on the peer
	// (see peer.Get): decoded into f.Entry, borrowing f.Buf, when found.
	Get(ctx context.Context, key []byte, f *cache.Fetched) (bool, error)
}

// Local is what a node's peer endpoints need from its own cache.
type Local interface {
	// Get returns a stored entry for Lookup, without counting as a hit.
	Get(key []byte) (*cache.Entry, bool)
	// Accept stores an entry handed off by a leaving member, unless this
	// node holds a newer copy or the key was invalidated or purged after
	// the entry was fetched. It reports whether the entry was kept.
	Accept(e *cache.Entry) bool
	// Purge applies a purge sent by another member and returns how many
	// entries it dropped.
	Purge(p cache.Purge) int
}

// Request headers of the peer protocol. Clients never get to set them: the
// proxy strips them from client requests.
const (
	// HeaderForwarded names the member that forwarded a request. The
	// receiver serves it itself, whatever its own ring says: a forwarded
	// request is never forwarded again, so two nodes that briefly disagree
	// on the ring cannot loop.
	HeaderForwarded = "X-Ringcache-Forwarded"
	// HeaderAuth carries the sender's credentials (see Authenticate).
	HeaderAuth = "X-Ringcache-Auth"
	// PathPrefix is where the peer endpoints live (entry lookup, handoff).
	PathPrefix = "/__ringcache/"
)
