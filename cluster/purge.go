package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/valyala/fasthttp"
)

// Purge is an invalidation applied on every member: one URL with all its
// variants, every entry tagged Tag (Surrogate-Key / Cache-Tag), every URL
// whose path starts with Prefix, everything, or a batch of primary Keys.
// It is also the body of the peer purge endpoint.
type Purge struct {
	// Host and URL name one URL: path and query as a client sends them.
	// An empty Host purges that path and query under every host.
	Host string `json:"host,omitempty"`
	URL  string `json:"url,omitempty"`
	Tag  string `json:"tag,omitempty"`
	// Prefix is a path prefix such as "/img/"; it matches under every host.
	Prefix string `json:"prefix,omitempty"`
	All    bool   `json:"all,omitempty"`
	// Keys are primary cache keys that unsafe requests invalidated on one
	// member (RFC 9111 §4.4); the others drop them, and any hot copy of
	// them, directly. Only members send them.
	Keys [][]byte `json:"keys,omitempty"`
	// At is when the purge was issued (unix nanoseconds). Copies of entries
	// fetched before it, still on their way (a handoff, a takeover), lose.
	At int64 `json:"at"`
}

// Validate reports whether exactly one kind of purge is asked for.
func (p Purge) Validate() error {
	n := 0
	for _, set := range []bool{p.URL != "", p.Tag != "", p.Prefix != "", p.All, len(p.Keys) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("purge: give one of url, tag, prefix, all or keys")
	case n > 1:
		return errors.New("purge: give only one of url, tag, prefix, all or keys")
	case p.URL != "" && p.URL[0] != '/':
		return fmt.Errorf("purge: url %q must start with /", p.URL)
	case p.Prefix != "" && p.Prefix[0] != '/':
		return fmt.Errorf("purge: prefix %q must start with /", p.Prefix)
	}
	return nil
}

// Kind names the purge for logs and metrics: url, tag, prefix, all or
// keys.
func (p Purge) Kind() string {
	switch {
	case len(p.Keys) > 0:
		return "keys"
	case p.URL != "":
		return "url"
	case p.Tag != "":
		return "tag"
	case p.Prefix != "":
		return "prefix"
	}
	return "all"
}

// purgeReply is the peer endpoint's answer.
type purgeReply struct {
	Purged int `json:"purged"`
}

// Broadcast sends p to every other member of the current ring, in
// parallel, and returns the entries they purged. Members that could not be
// reached are reported in the error (joined); the purge still stands on
// the others and, through tombstones, on copies handed over later.
func (s *PeerSet) Broadcast(ctx context.Context, p Purge) (int, error) {
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
	var r purgeReply
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("reply: %w", err)
	}
	return r.Purged, nil
}

// purge serves the peer purge endpoint.
func (s *PeerServer) purge(ctx *fasthttp.RequestCtx) {
	var p Purge
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
	b, _ := json.Marshal(purgeReply{Purged: s.local.Purge(p)})
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
