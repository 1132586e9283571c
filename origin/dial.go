package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/valyala/fasthttp"
)

// Dial opens a new connection to the origin for req, a request that asks to
// switch protocols (Upgrade, as a WebSocket handshake does): the caller
// writes req on it, reads the answer and, after a 101 Switching Protocols,
// copies bytes both ways. The connection is the caller's to close. It is
// never pooled, since after a 101 it carries another protocol, and it is
// not counted in MaxConns.
//
// Dial points req at the origin as Fetch does (URI, Host per PreserveHost,
// no userinfo). Connecting, and for an https origin the TLS handshake with
// TLSConfig offering HTTP/1.1 alone (the upgrade is an HTTP/1.1 exchange),
// must end within ConnectTimeout and ctx's deadline. The circuit breaker
// applies as to Fetch: ErrUnavailable while it is open; a failed dial
// counts as a transport failure (ErrTimeout when it timed out), a
// connection made as a success. Every failure to connect satisfies NotSent.
func (c *Client) Dial(ctx context.Context, req *fasthttp.Request) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial origin %s: %w", c.origin, err)
	}
	if !c.breaker.Allow() {
		return nil, c.errUnavailable
	}
	c.target(req)
	req.URI().DisablePathNormalizing = true // as the HostClient sends it
	c.sent.Add(1)

	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	conn, err := c.connect(dctx, false)
	if err != nil {
		if _, opened := c.breaker.Failure(); opened {
			c.log.Warn("origin circuit open", "origin", c.origin, "failures", c.failThreshold, "err", err)
		}
		if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("dial origin %s: %w: %w", c.origin, ErrTimeout, err)
		}
		return nil, fmt.Errorf("dial origin %s: %w", c.origin, err)
	}
	if c.breaker.Success() {
		c.log.Info("origin circuit closed", "origin", c.origin)
	}
	return conn, nil
}

// clientTLS is the TLS configuration of every connection to an https
// origin: the caller's, or system roots, with the origin's host name to
// verify unless the caller names another, and HTTP/1.1 as the only
// protocol offered: an origin that also speaks HTTP/2 would otherwise pick
// it, which neither fasthttp nor a tunnel (HTTP/2 has no Upgrade) speaks.
func clientTLS(base *tls.Config, host string) *tls.Config {
	cfg := &tls.Config{}
	if base != nil {
		cfg = base.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}
