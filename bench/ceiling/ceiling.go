// Package ceiling is the benchmarks' upper bound: a bare fasthttp handler
// answering fixed bodies from memory, with no cache logic at all. A cache
// hit can at best approach it under the same load and CPU.
package ceiling

import (
	"maps"

	"github.com/valyala/fasthttp"
)

// Body is one answer: its content type and bytes.
type Body struct {
	ContentType string
	Bytes       []byte
}

// Handler answers GET and HEAD for the request URIs it was given, byte for
// byte, and 404 otherwise.
type Handler struct {
	bodies map[string]Body
}

// New returns a handler answering each request URI (path and query, as the
// client sends it) with its Body. The map is copied.
func New(bodies map[string]Body) *Handler {
	return &Handler{bodies: maps.Clone(bodies)}
}

// Serve is the fasthttp request handler.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	// A map index with string(bytes) does not allocate.
	b, ok := h.bodies[string(ctx.RequestURI())]
	if !ok {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	ctx.Response.Header.SetContentType(b.ContentType)
	ctx.Response.SetBodyRaw(b.Bytes)
}
