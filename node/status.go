package node

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/valyala/fasthttp"
)

// statusHTML is the admin status page: one self-contained file whose inline
// script polls /stats and /cluster and renders them in place.
//
//go:embed status.html
var statusHTML []byte

// statusCSP is derived from statusHTML once and only read afterwards.
var statusCSP = mustPageCSP(statusHTML)

// inlineBlock matches the page's inline <script> and <style> elements; the
// page has no other kind of script or style.
var inlineBlock = regexp.MustCompile(`(?s)<script>(.*?)</script>|<style>(.*?)</style>`)

// pageCSP builds a Content-Security-Policy that allows exactly the page's
// own inline script and style, by hash, and nothing else but same-origin
// fetches: no external asset, injected markup or handler could run even if
// a key or member name slipped past the page's escaping.
func pageCSP(page []byte) (string, error) {
	var scripts, styles []string
	for _, m := range inlineBlock.FindAllSubmatch(page, -1) {
		if m[1] != nil {
			scripts = append(scripts, hashSource(m[1]))
		} else {
			styles = append(styles, hashSource(m[2]))
		}
	}
	if len(scripts) == 0 || len(styles) == 0 {
		return "", errors.New("status page: no inline script or style to allow")
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src " + strings.Join(scripts, " "),
		"style-src " + strings.Join(styles, " "),
		"connect-src 'self'",
		"img-src data:", // the empty favicon, which stops a request for /favicon.ico
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
		// Only textContent and createElement write the DOM: forbid the
		// string-to-markup sinks outright.
		"require-trusted-types-for 'script'",
	}, "; "), nil
}

// hashSource is a CSP hash-source for an inline element's exact text.
func hashSource(text []byte) string {
	sum := sha256.Sum256(text)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func mustPageCSP(page []byte) string {
	csp, err := pageCSP(page)
	if err != nil {
		panic(fmt.Errorf("embedded status.html: %w", err))
	}
	return csp
}

// serveStatusPage answers GET / on the admin listener with the status page.
func serveStatusPage(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("GET or HEAD only\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set("Allow", "GET, HEAD") // after Error, which resets the headers
		return
	}
	h := &ctx.Response.Header
	h.SetContentType("text/html; charset=utf-8")
	// The page is tiny and must match the binary serving /stats.
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	ctx.SetBody(statusHTML)
}
