package node

// The admin status page: the handler's headers and the page's contents are
// checked directly; what the page shows is checked in a real headless
// Chromium against a running two-node cluster, since only a browser runs
// the script that renders it (and enforces the Content-Security-Policy).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

func TestStatusPageHandler(t *testing.T) {
	tn := startTestNode(t, nil)
	for _, tc := range []struct {
		method string
		path   string
		status int
		body   bool // the page itself is the body
	}{
		{fasthttp.MethodGet, "/", fasthttp.StatusOK, true},
		{fasthttp.MethodHead, "/", fasthttp.StatusOK, false},
		{fasthttp.MethodGet, "/?refresh=1", fasthttp.StatusOK, true},
		{fasthttp.MethodPost, "/", fasthttp.StatusMethodNotAllowed, false},
		{fasthttp.MethodPut, "/", fasthttp.StatusMethodNotAllowed, false},
		{fasthttp.MethodDelete, "/", fasthttp.StatusMethodNotAllowed, false},
		{fasthttp.MethodGet, "/index.html", fasthttp.StatusNotFound, false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := tn.do(t, tc.method, tn.adminURL(tc.path), nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d (body %.200q)", r.Status, tc.status, r.Body)
			}
			if tc.status == fasthttp.StatusMethodNotAllowed && r.Header["Allow"] != "GET, HEAD" {
				t.Errorf("Allow = %q, want \"GET, HEAD\"", r.Header["Allow"])
			}
			if tc.status != fasthttp.StatusOK {
				return
			}
			for name, want := range map[string]string{
				"Content-Type":            "text/html; charset=utf-8",
				"Cache-Control":           "no-store",
				"X-Content-Type-Options":  "nosniff",
				"Content-Security-Policy": statusCSP,
			} {
				if got := r.Header[name]; got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if r.ContentLength != len(statusHTML) {
				t.Errorf("Content-Length %d, want %d", r.ContentLength, len(statusHTML))
			}
			if tc.body != bytes.Equal(r.Body, statusHTML) {
				t.Errorf("body is the page: %v, want %v (got %d bytes)", !tc.body, tc.body, len(r.Body))
			}
		})
	}
}

// csp parses a Content-Security-Policy into directive -> sources.
func csp(policy string) map[string][]string {
	out := map[string][]string{}
	for d := range strings.SplitSeq(policy, ";") {
		if f := strings.Fields(d); len(f) > 0 {
			out[f[0]] = f[1:]
		}
	}
	return out
}

// inlineText returns the text of the only <tag> element in page.
func inlineText(t *testing.T, page, tag string) string {
	t.Helper()
	open, end := "<"+tag+">", "</"+tag+">"
	if n := strings.Count(page, "<"+tag); n != 1 {
		t.Fatalf("page has %d <%s> elements, want 1", n, tag)
	}
	_, rest, _ := strings.Cut(page, open)
	text, ok := strings.CutSuffix(rest[:strings.Index(rest, end)+len(end)], end)
	if !ok {
		t.Fatalf("<%s> is not closed", tag)
	}
	return text
}

func sha256Source(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// The policy allows the page's own script and style, by hash, and nothing
// else a browser could load or run.
func TestStatusPagePolicy(t *testing.T) {
	page := string(statusHTML)
	p := csp(statusCSP)
	for _, tc := range []struct {
		directive string
		want      []string
	}{
		{"default-src", []string{"'none'"}},
		{"script-src", []string{sha256Source(inlineText(t, page, "script"))}},
		{"style-src", []string{sha256Source(inlineText(t, page, "style"))}},
		{"connect-src", []string{"'self'"}},
		{"img-src", []string{"data:"}},
		{"base-uri", []string{"'none'"}},
		{"form-action", []string{"'none'"}},
		{"frame-ancestors", []string{"'none'"}},
		{"require-trusted-types-for", []string{"'script'"}},
	} {
		if got := p[tc.directive]; strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s = %q, want %q", tc.directive, got, tc.want)
		}
	}
	if len(p) != 9 {
		t.Errorf("policy has %d directives, want 9: %s", len(p), statusCSP)
	}
	if strings.Contains(statusCSP, "unsafe") {
		t.Errorf("policy allows something unsafe: %s", statusCSP)
	}

	for _, tc := range []struct {
		name, page string
		err        bool
	}{
		{"script and style", "<style>b{}</style><script>x()</script>", false},
		{"no script", "<style>b{}</style>", true},
		{"no style", "<script>x()</script>", true},
		{"external script only", `<style>b{}</style><script src="a.js"></script>`, true},
	} {
		got, err := pageCSP([]byte(tc.page))
		if (err != nil) != tc.err {
			t.Errorf("%s: err = %v, want error %v", tc.name, err, tc.err)
			continue
		}
		if err == nil && !strings.Contains(got, "script-src "+sha256Source("x()")+";") {
			t.Errorf("%s: policy %q lacks the script's hash", tc.name, got)
		}
	}
}

// The page stands alone: no external asset, nothing to fetch but the
// node's own JSON, and the markup a test and a screen reader rely on.
func TestStatusPageContents(t *testing.T) {
	page := string(statusHTML)
	lower := strings.ToLower(page)
	for _, bad := range []string{"http://", "https://", "//cdn", "<script src", "<link rel=\"stylesheet", "@import", "url(", "innerhtml", "eval(", "document.write"} {
		if strings.Contains(lower, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, want := range []string{
		`<html lang="en">`, `<meta charset="utf-8">`, `<meta name="viewport"`, "<title>",
		`id="node-name"`, `id="uptime"`, `id="hit-ratio"`, `id="hit-ratio-bar"`, `id="requests-total"`,
		`id="store-bytes"`, `id="store-items"`, `id="store-evictions"`, `id="updated"`,
		`id="error"`, `role="alert"`, `<table id="members">`, `<table id="origins">`, `<table id="top-keys">`, `<table id="outcomes">`,
		`<th scope="col">`, "prefers-color-scheme: dark", "max-width: 600px",
		"getJSON('stats'", "getJSON('cluster'", "REFRESH_MS = 2000",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// dom is a page serialized by Chromium's --dump-dom, searched with plain
// string matching: Chromium writes attributes double-quoted and escapes
// text, so an element's id and contents are easy to find.
type dom string

// openTag returns the start tag of the element with this id.
func (d dom) openTag(t *testing.T, id string) string {
	t.Helper()
	m := regexp.MustCompile(`<[a-z0-9]+[^>]*\sid="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindString(string(d))
	if m == "" {
		t.Fatalf("no element with id %q in the page:\n%s", id, d)
	}
	return m
}

// text returns the text of the element with this id up to its first child
// element (the whole text for the leaf elements the page fills in).
func (d dom) text(t *testing.T, id string) string {
	t.Helper()
	tag := d.openTag(t, id)
	rest := string(d)[strings.Index(string(d), tag)+len(tag):]
	return html.UnescapeString(strings.TrimSpace(rest[:strings.IndexByte(rest, '<')]))
}

// attr returns an attribute of the start tag, and whether it is there.
func attr(tag, name string) (string, bool) {
	m := regexp.MustCompile(`\s` + regexp.QuoteMeta(name) + `(?:="([^"]*)")?[\s>]`).FindStringSubmatch(tag)
	if m == nil {
		return "", false
	}
	return html.UnescapeString(m[1]), true
}

type domRow struct {
	tag   string   // the <tr ...> start tag
	cells []string // each cell's text
	vals  []string // each cell's data-value
}

var (
	rowRE  = regexp.MustCompile(`(?s)(<tr[^>]*>)(.*?)</tr>`)
	cellRE = regexp.MustCompile(`(?s)(<td[^>]*>)(.*?)</td>`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// rows returns the body rows of the table with this id.
func (d dom) rows(t *testing.T, id string) []domRow {
	t.Helper()
	s := string(d)[strings.Index(string(d), d.openTag(t, id)):]
	start, end := strings.Index(s, "<tbody>"), strings.Index(s, "</tbody>")
	if start < 0 || end < start {
		t.Fatalf("table %q has no tbody", id)
	}
	var out []domRow
	for _, m := range rowRE.FindAllStringSubmatch(s[start:end], -1) {
		r := domRow{tag: m[1]}
		for _, c := range cellRE.FindAllStringSubmatch(m[2], -1) {
			v, _ := attr(c[1], "data-value")
			r.cells = append(r.cells, html.UnescapeString(strings.TrimSpace(tagRE.ReplaceAllString(c[2], " "))))
			r.vals = append(r.vals, v)
		}
		out = append(out, r)
	}
	return out
}

// rowWith returns the row whose start tag has name="value".
func (d dom) rowWith(t *testing.T, table, name, value string) domRow {
	t.Helper()
	for _, r := range d.rows(t, table) {
		if v, ok := attr(r.tag, name); ok && v == value {
			return r
		}
	}
	t.Fatalf("table %q has no row with %s=%q; rows: %q", table, name, value, d.rows(t, table))
	return domRow{}
}

// browser runs headless Chromium, one process tree per call.
type browser struct{ bin string }

// newBrowser finds Chromium. Without it the browser tests are skipped on a
// developer's machine, but fail under CI, which must really run them.
func newBrowser(t *testing.T) browser {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test in -short mode")
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if bin, err := exec.LookPath(name); err == nil {
			return browser{bin: bin}
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal("chromium is not installed, and CI must run the browser tests (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); CI runs this test")
	return browser{}
}

// run loads url and returns Chromium's standard output. budget is virtual
// time: timers run as fast as the page allows, but the clock stops while a
// fetch is in flight, so a 2 s refresh loop makes a known number of rounds.
func (b browser) run(t *testing.T, url string, budget time.Duration, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		// Without these Chromium dials out (updates, sync, field trials),
		// which the test machines block.
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
	}
	args = append(append(args, extra...), url)
	cmd := exec.CommandContext(ctx, b.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group, so that a timeout ends the renderer and GPU
	// processes too, not only the launcher.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second // a straggler holding the output pipes
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leave nothing behind in the profile dir
	}
	if err != nil {
		t.Fatalf("chromium %s: %v (timed out: %v)\nstderr (tail): %s", url, err, errors.Is(ctx.Err(), context.DeadlineExceeded), tail(stderr.String(), 2000))
	}
	return stdout.Bytes()
}

func (b browser) dumpDOM(t *testing.T, url string, budget time.Duration) dom {
	t.Helper()
	out := b.run(t, url, budget, "--dump-dom")
	if !bytes.Contains(out, []byte("</html>")) {
		t.Fatalf("chromium printed no page for %s: %.500q", url, out)
	}
	return dom(out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// statusProxy serves n's admin API on another loopback port, calling
// onStats before each /stats: the test decides what a refresh sees.
func statusProxy(t *testing.T, admin fasthttp.RequestHandler, onStats func(ctx *fasthttp.RequestCtx) bool) string {
	t.Helper()
	return "http://" + testutil.ServeLoopback(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/stats" && !onStats(ctx) {
			return
		}
		admin(ctx)
	}) + "/"
}

var (
	clockRE   = regexp.MustCompile(`^\d{2}:\d{2}:\d{2}$`)
	percentRE = regexp.MustCompile(`^\d{1,3}\.\d%$`)
)

func TestStatusPageInBrowser(t *testing.T) {
	b := newBrowser(t)
	// Top keys keep their queries only with stats_full_urls; the markup
	// rides in the query, so the page must escape what the operator chose
	// to show.
	c := startCluster(t, 2, func(cfg *config.Config) { cfg.StatsFullURLs = true })
	n0 := c.nodes[0]

	// A key n0 owns, so that its requests are n0's hits rather than
	// forwards. The query carries markup: keys come from clients, and the
	// page must show them as text.
	var path string
	for i := range 100 {
		p := fmt.Sprintf("/status-%d?cc=max-age=600&q=<i>x</i>", i)
		if o, _ := n0.Ring().Owner([]byte("site.test" + p)); o.Name == "n0" {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("n0 owns none of 100 keys")
	}
	hit := func() {
		t.Helper()
		r, err := c.get(n0, path)
		if err != nil || r.Status != 200 {
			t.Fatalf("GET %s: %v %d", path, err, r.Status)
		}
	}
	// One request in 16 is sampled for top keys: 64 make the key certain.
	for range 64 {
		hit()
	}
	snap := n0.Stats().Proxy
	if snap.Requests["hit"] != 63 || len(snap.TopKeys) == 0 {
		t.Fatalf("after 64 requests for one key: %+v", snap)
	}
	key := snap.TopKeys[0].Key
	if !strings.Contains(key, "<i>x</i>") {
		t.Fatalf("top key %q lost its markup on the way: the escaping check below would prove nothing", key)
	}
	page := "http://" + n0.AdminAddr() + "/"

	t.Run("renders the node's state", func(t *testing.T) {
		d := b.dumpDOM(t, page, 3*time.Second)
		body := d.openTag(t, "page")
		if v, _ := attr(body, "data-state"); v != "ok" {
			t.Errorf("body data-state = %q, want ok (error: %q)", v, d.text(t, "error-text"))
		}
		if v, ok := attr(body, "data-csp-violations"); ok {
			t.Errorf("the Content-Security-Policy blocked something %s times: %q", v, d.text(t, "error-text"))
		}
		if _, hidden := attr(d.openTag(t, "error"), "hidden"); !hidden {
			t.Errorf("error banner shown: %q", d.text(t, "error-text"))
		}
		if got := d.text(t, "node-name"); got != "n0" {
			t.Errorf("node name %q, want n0", got)
		}
		if got := d.text(t, "uptime"); !regexp.MustCompile(`^\d+(s|m \d+s)$`).MatchString(got) {
			t.Errorf("uptime %q", got)
		}
		if got := d.text(t, "ring-kind"); got != "hashring" {
			t.Errorf("ring kind %q, want hashring", got)
		}
		if got, want := d.text(t, "hit-ratio"), fmt.Sprintf("%.1f%%", 100*snap.HitRatio); got != want || !percentRE.MatchString(got) {
			t.Errorf("hit ratio %q, want %q", got, want)
		}
		if w, _ := attr(d.openTag(t, "hit-ratio-bar"), "style"); w != fmt.Sprintf("width: %.1f%%;", 100*snap.HitRatio) {
			t.Errorf("hit ratio bar style %q", w)
		}
		if got := d.text(t, "requests-total"); got != "64" {
			t.Errorf("requests total %q, want 64", got)
		}
		if r := d.rowWith(t, "outcomes", "data-outcome", "hit"); r.vals[1] != "63" || r.cells[1] != "63" {
			t.Errorf("hit row %q / %q, want 63", r.cells, r.vals)
		}
		if r := d.rowWith(t, "outcomes", "data-outcome", "miss"); r.cells[1] != "1" {
			t.Errorf("miss row %q, want 1", r.cells)
		}
		if v, _ := attr(d.openTag(t, "store-bytes"), "data-value"); v == "" || v == "0" {
			t.Errorf("store bytes %q (%q), want > 0", d.text(t, "store-bytes"), v)
		}
		if got := d.text(t, "store-items"); got != "1" {
			t.Errorf("store items %q, want 1", got)
		}
		if got := d.text(t, "updated"); !clockRE.MatchString(got) {
			t.Errorf("last updated %q, want hh:mm:ss", got)
		}
		if dt, _ := attr(d.openTag(t, "updated"), "datetime"); !strings.HasPrefix(dt, time.Now().UTC().Format("2006-")) {
			t.Errorf("last updated datetime %q", dt)
		}

		members := d.rows(t, "members")
		if len(members) != 2 {
			t.Fatalf("%d member rows, want 2: %q", len(members), members)
		}
		var total float64
		for i, r := range members {
			name, _ := attr(r.tag, "data-member")
			status, _ := attr(r.tag, "data-status")
			if name != c.names[i] || status != "alive" || r.cells[1] != "alive" {
				t.Errorf("member row %d: %s %s %q, want %s alive", i, name, status, r.cells, c.names[i])
			}
			if r.cells[2] != c.nodes[i].Addr() {
				t.Errorf("member %s peer %q, want %s", name, r.cells[2], c.nodes[i].Addr())
			}
			if !percentRE.MatchString(r.cells[3]) {
				t.Errorf("member %s share %q, want a percentage", name, r.cells[3])
			}
			f, err := strconv.ParseFloat(r.vals[3], 64)
			if err != nil || f <= 0 {
				t.Errorf("member %s share value %q", name, r.vals[3])
			}
			total += f
		}
		if total < 0.999 || total > 1.001 {
			t.Errorf("ring shares add up to %v, want 1", total)
		}
		if !strings.Contains(members[0].cells[0], "this node") || strings.Contains(members[1].cells[0], "this node") {
			t.Errorf("self marker on the wrong row: %q, %q", members[0].cells[0], members[1].cells[0])
		}

		origins := d.rows(t, "origins")
		want := n0.origins.Status()
		if len(origins) != len(want) || len(want) == 0 {
			t.Fatalf("%d origin rows, want %d: %q", len(origins), len(want), origins)
		}
		if state, _ := attr(origins[0].tag, "data-state"); state != "up" || origins[0].cells[0] != want[0].Pool ||
			origins[0].cells[1] != want[0].Server || origins[0].cells[2] != "up" || origins[0].vals[4] != strconv.FormatUint(want[0].Requests, 10) {
			t.Errorf("origin row %q (state %q), want %+v", origins[0].cells, state, want[0])
		}
		if got, want := d.text(t, "origins-count"), fmt.Sprintf("%d up of %d", len(want), len(want)); got != want {
			t.Errorf("origins count %q, want %q", got, want)
		}

		top := d.rowWith(t, "top-keys", "data-key", key)
		if top.cells[0] != key || top.cells[1] != "64" || !percentRE.MatchString(top.cells[2]) {
			t.Errorf("top key row %q, want %q, 64, a percentage", top.cells, key)
		}
		if strings.Contains(string(d), "<i>x</i>") {
			t.Error("the key's markup became elements in the page")
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "status.png")
		b.run(t, page, 3*time.Second, "--screenshot="+file, "--window-size=1200,900")
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		if s := img.Bounds().Size(); s.X != 1200 || s.Y != 900 {
			t.Errorf("screenshot is %v, want 1200x900", s)
		}
		// A rendered page has text, cards and bars: many colours, not a
		// blank or single-colour error page.
		colors := map[[4]uint32]bool{}
		for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 3 {
			for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 3 {
				r, g, bb, a := img.At(x, y).RGBA()
				colors[[4]uint32{r, g, bb, a}] = true
			}
		}
		if len(colors) < 20 {
			t.Errorf("screenshot has %d colours: blank?", len(colors))
		}
	})

	t.Run("refreshes in place", func(t *testing.T) {
		// Each /stats the page fetches follows one more hit, so every
		// refresh has a new count to show.
		var calls atomic.Int64
		url := statusProxy(t, n0.AdminHandler(), func(*fasthttp.RequestCtx) bool {
			calls.Add(1)
			if r, err := c.get(n0, path); err != nil || r.Status != 200 {
				t.Errorf("GET %s: %v %d", path, err, r.Status)
			}
			return true
		})
		before := n0.Stats().Proxy.Requests["hit"]
		d := b.dumpDOM(t, url, 7*time.Second)
		body := d.openTag(t, "page")
		n, _ := attr(body, "data-refreshes")
		refreshes, _ := strconv.Atoi(n)
		// 7 s of virtual time hold rounds at 0, 2, 4 and 6 s; demand fewer
		// than that, never a count that depends on timing.
		if refreshes < 2 || int64(refreshes) > calls.Load() {
			t.Fatalf("page refreshed %q times, /stats served %d times, want >= 2", n, calls.Load())
		}
		// The count on show is the one the last refresh fetched: the
		// first fetch alone would have shown before+1.
		shown := d.rowWith(t, "outcomes", "data-outcome", "hit").vals[1]
		if got, err := strconv.ParseUint(shown, 10, 64); err != nil || got < before+2 || got > before+uint64(calls.Load()) {
			t.Errorf("hits shown %q after %d refreshes, want between %d and %d", shown, refreshes, before+2, before+uint64(calls.Load()))
		}
		if v, _ := attr(body, "data-state"); v != "ok" {
			t.Errorf("data-state %q, want ok", v)
		}
	})

	t.Run("keeps the data when a refresh fails", func(t *testing.T) {
		var calls atomic.Int64
		url := statusProxy(t, n0.AdminHandler(), func(ctx *fasthttp.RequestCtx) bool {
			if calls.Add(1) == 1 {
				return true
			}
			ctx.Error("node is busy\n", fasthttp.StatusServiceUnavailable)
			return false
		})
		d := b.dumpDOM(t, url, 5*time.Second)
		if calls.Load() < 2 {
			t.Fatalf("/stats fetched %d times, want a failed refresh after the first", calls.Load())
		}
		body := d.openTag(t, "page")
		if v, _ := attr(body, "data-state"); v != "error" {
			t.Errorf("data-state %q, want error", v)
		}
		if v, _ := attr(body, "data-refreshes"); v != "1" {
			t.Errorf("data-refreshes %q, want 1 (only the first succeeded)", v)
		}
		if _, hidden := attr(d.openTag(t, "error"), "hidden"); hidden {
			t.Error("error banner hidden after a failed refresh")
		}
		msg := d.text(t, "error-text")
		if !strings.Contains(msg, "HTTP 503") || !regexp.MustCompile(`Showing data from \d{2}:\d{2}:\d{2}\.`).MatchString(msg) {
			t.Errorf("error banner %q, want the status and the time of the data shown", msg)
		}
		// The last good data stays on screen.
		if got := d.text(t, "node-name"); got != "n0" {
			t.Errorf("node name %q after a failed refresh, want n0", got)
		}
		if got := d.text(t, "hit-ratio"); !percentRE.MatchString(got) {
			t.Errorf("hit ratio %q after a failed refresh", got)
		}
		if rows := d.rows(t, "members"); len(rows) != 2 {
			t.Errorf("%d member rows after a failed refresh, want 2", len(rows))
		}
		d.rowWith(t, "top-keys", "data-key", key)
	})
}
