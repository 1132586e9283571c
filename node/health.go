package node

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// HealthURL is the /healthz URL of a node whose admin listener is on admin
// (host:port). A wildcard host is what a container listens on, not an
// address to dial, so it becomes loopback of the same family.
func HealthURL(admin string) (string, error) {
	if admin == "" {
		return "", errors.New("the admin listener is disabled")
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

// CheckHealth GETs target (a node's /healthz) and succeeds only on a 200
// within timeout: a draining node answers 503.
func CheckHealth(target string, timeout time.Duration) error {
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want http://host:port/path", target)
	}
	c := &fasthttp.Client{
		Name:                "ringcache-healthcheck",
		MaxResponseBodySize: 64 << 10, // /healthz says "ok"; anything big is not it
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(target)
	req.Header.SetMethod(fasthttp.MethodGet)
	// No idle connection outlives the probe (tests call it in process).
	req.SetConnectionClose()
	if err := c.DoTimeout(req, resp, timeout); err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		body := strings.TrimSpace(string(resp.Body()))
		if len(body) > 200 {
			body = body[:200] + "..."
		}
		return fmt.Errorf("GET %s: status %d: %s", target, code, body)
	}
	return nil
}
