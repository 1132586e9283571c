package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"

	"github.com/ringcache/ringcache/cache"
	"github.com/valyala/fasthttp"
)

// PurgeCluster applies a purge here and on every other member and returns
// the total dropped. Unreachable members are reported in the error; the
// purge stands everywhere else.
func (p *Proxy) PurgeCluster(ctx context.Context, cp cache.Purge) (int, error) {
	if cp.At == 0 {
		cp.At = p.now()
	}
	n := p.local.Purge(cp)
	if p.opt.Peers == nil {
		return n, nil
	}
	m, err := p.opt.Peers.Broadcast(ctx, cp)
	return n + m, err
}

// purgeMethod answers a PURGE request: the URL it names is dropped on
// every member, if the client's address is allowed to ask.
func (p *Proxy) purgeMethod(ctx *fasthttp.RequestCtx, st *reqState) {
	ip, _ := netip.AddrFromSlice(ctx.RemoteIP())
	if !p.purgeAllowed(ip.Unmap()) {
		p.writeError(ctx, fasthttp.StatusForbidden, "PURGE is not allowed from "+ip.String(), fwdNone)
		return
	}
	uri := ctx.URI()
	u := string(uri.PathOriginal())
	if q := uri.QueryString(); len(q) > 0 {
		u += "?" + string(q)
	}
	n, err := p.PurgeCluster(context.Background(), cache.Purge{Host: string(bytes.ToLower(st.host)), URL: u})
	body, _ := json.Marshal(cache.NewPurgeReply(n, err))
	p.seedDate(&ctx.Response.Header, nil, p.now())
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}

func (p *Proxy) purgeAllowed(ip netip.Addr) bool {
	for _, pfx := range *p.purgeAllow.Load() {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}
