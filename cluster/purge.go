package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/ringcache/ringcache/cache"

	"github.com/valyala/fasthttp"
)

// Broadcast sends p to every other member of the current ring, in
// parallel, and returns the entries they purged. Members that could not be
// reached are reported in the error (joined); the purge still stands on
// the others and, through tombstones, on copies handed over later.
func (s *PeerSet) Broadcast(ctx context.Context, p cache.Purge) (int, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return 0, err
	}
	st := s.state.Load()
	var (
		mu     sync.Mutex
		total  int
		errs   []error
		wg     sync.WaitGroup
		others = make([]*peer, 0, len(st.peers))
	)
	for _, pr := range st.peers {
		others = append(others, pr)
	}
	for _, pr := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := pr.purge(ctx, body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("purge on %s: %w", pr.Name(), err))
				return
			}
			total += n
		}()
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

// purge posts a purge to the peer, signed.
func (p *peer) purge(ctx context.Context, body []byte) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(PathPrefix + "purge")
	req.Header.SetHost(p.node.Addr)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := p.do(ctx, req, resp); err != nil {
		return 0, err
	}
	b, err := readBody(resp, 4<<10)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode(), b)
	}
	var r cache.PurgeReply
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("reply: %w", err)
	}
	return r.Purged, nil
}

// purge serves the peer purge endpoint.
func (s *PeerServer) purge(ctx *fasthttp.RequestCtx) {
	var p cache.Purge
	if err := json.Unmarshal(ctx.PostBody(), &p); err != nil {
		s.malformed.Add(1)
		plainError(ctx, fasthttp.StatusBadRequest, "purge: "+err.Error())
		return
	}
	if err := p.Validate(); err != nil {
		s.malformed.Add(1)
		plainError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	b, _ := json.Marshal(cache.PurgeReply{Purged: s.local.Purge(p)})
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
