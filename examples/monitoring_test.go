package examples

// Tests of the monitoring example, monitoring/: the Grafana dashboard and
// the Prometheus alerting rules must be well formed, and every metric they
// query must be on a live node's /metrics, a node of a two-member cluster
// that has served hits, misses and forwarded requests.

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
	"go.yaml.in/yaml/v3"
)

// grafanaPanel is a dashboard panel, reduced to what the test reads.
type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos *struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// dashboardExprs checks the dashboard's structure and returns its queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var d struct {
		Title      string         `json:"title"`
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "monitoring/grafana-dashboard.json")), &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("grafana-dashboard.json: title %q, uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	var exprs []string
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("dashboard variables %v: want datasource and instance", vars)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			t.Errorf("%s: id used twice", where)
		}
		ids[p.ID] = true
		if p.Title == "" || p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: want a title and a place on the 24-column grid, got %+v", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: its data source must be the ${datasource} variable", where)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("%s: query %q ignores the node selector", where, q.Expr)
			}
			exprs = append(exprs, q.Expr)
		}
	}
	return exprs
}

// ruleExprs checks the alerting rules' structure and returns their queries.
func ruleExprs(t *testing.T) []string {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, "monitoring/alerts.yaml")))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	if len(f.Groups) == 0 {
		t.Fatal("alerts.yaml: no groups")
	}
	var exprs []string
	names := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: want a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if names[r.Alert] || !regexp.MustCompile(`^Ringcache[A-Z]\w+$`).MatchString(r.Alert) {
				t.Errorf("alert %q: want a unique Ringcache* name", r.Alert)
			}
			names[r.Alert] = true
			if !regexp.MustCompile(`^\d+[smh]$`).MatchString(r.For) {
				t.Errorf("alert %s: for %q, want a duration such as 5m", r.Alert, r.For)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("alert %s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: want a summary and a description", r.Alert)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// metricName matches the series a query names: ours and the Go and
// process collectors'. Functions, keywords and label names do not start so.
var metricName = regexp.MustCompile(`\b(?:ringcache|process|go)_[a-zA-Z0-9_]+`)

// fromPrometheus are series Prometheus makes itself while scraping.
var fromPrometheus = []string{"up"}

// queriedMetrics returns the metric names exprs use, checking that each
// expression's brackets balance (a cheap guard against a broken edit).
func queriedMetrics(t *testing.T, exprs []string) []string {
	t.Helper()
	var names []string
	for _, e := range exprs {
		if e == "" {
			t.Error("empty query")
		}
		var open []rune
		for _, c := range e {
			switch c {
			case '(', '{', '[':
				open = append(open, c)
			case ')', '}', ']':
				want := map[rune]rune{')': '(', '}': '{', ']': '['}[c]
				if len(open) == 0 || open[len(open)-1] != want {
					t.Errorf("query %q: unbalanced %c", e, c)
					break
				}
				open = open[:len(open)-1]
			}
		}
		if len(open) > 0 {
			t.Errorf("query %q: unclosed %c", e, open[len(open)-1])
		}
		found := metricName.FindAllString(e, -1)
		for _, p := range fromPrometheus {
			if regexp.MustCompile(`\b` + p + `\{`).MatchString(e) {
				found = append(found, p)
			}
		}
		if len(found) == 0 {
			t.Errorf("query %q names no metric", e)
		}
		names = append(names, found...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// servingLine finds the address fields in a node's "ringcache serving" line.
var servingLine = regexp.MustCompile(`msg="ringcache serving" (listen=\S+ .*)`)

// logField returns key's value in an slog text line's "key=value" fields.
func logField(line, key string) string {
	m := regexp.MustCompile(`(?:^| )` + key + `=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestMonitoringExample(t *testing.T) {
	exprs := append(dashboardExprs(t), ruleExprs(t)...)
	names := queriedMetrics(t, exprs)
	if !slices.Contains(names, "ringcache_requests_total") || !slices.Contains(names, "ringcache_request_duration_seconds_bucket") {
		t.Errorf("queried metrics %v: want the requests and their durations at least", names)
	}

	// A live cluster of two: the origin, node a, and node b joined to it.
	origin := startApp(t, []string{"origin", "--listen", "127.0.0.1:9000"})
	secret := newSecret()
	node := func(join string) (listen, admin, gossip string) {
		env := []string{
			"RINGCACHE_ORIGIN=http://" + origin, "RINGCACHE_LISTEN=127.0.0.1:0", "RINGCACHE_ADMIN=127.0.0.1:0",
			"RINGCACHE_GOSSIP=127.0.0.1:0", "RINGCACHE_PEER_SECRET=" + secret, "RINGCACHE_KEY_HOST=site.test",
			"RINGCACHE_NODE_NAME=node-" + map[bool]string{true: "a", false: "b"}[join == ""],
		}
		if join != "" {
			env = append(env, "RINGCACHE_JOIN="+join)
		}
		line := startRingcache(t, []string{"serve"}, env, servingLine)
		return logField(line, "listen"), logField(line, "admin"), logField(line, "gossip")
	}
	a, aAdmin, aGossip := node("")
	node(aGossip)

	c := &fasthttp.Client{ReadTimeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	get := func(url string) (int, []byte) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		if err := c.DoTimeout(req, resp, 20*time.Second); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return resp.StatusCode(), append([]byte(nil), resp.Body()...)
	}
	var view []byte
	testutil.Eventually(t, startTimeout, func() bool {
		_, view = get("http://" + aAdmin + "/cluster")
		var v struct{ Members []struct{ Share float64 } }
		if json.Unmarshal(view, &v) != nil || len(v.Members) != 2 {
			return false
		}
		return v.Members[0].Share > 0 && v.Members[1].Share > 0 // both on node a's ring
	}, func() string { return fmt.Sprintf("the nodes to form a cluster of two: %s", view) })
	// Misses, hits and forwards: with 20 keys, some belong to node b. A
	// member slow to answer (a loaded machine) is skipped for a while and
	// its keys served locally, so more rounds go until every series shows.
	var missing []string
	batch := 0
	testutil.Eventually(t, startTimeout, func() bool {
		for round := range 2 {
			for i := range 20 {
				if status, _ := get(fmt.Sprintf("http://%s/k%d-%d?cc=max-age=600", a, batch, i)); status != 200 {
					t.Fatalf("batch %d round %d, key %d: status %d", batch, round, i, status)
				}
			}
		}
		batch++
		_, metrics := get("http://" + aAdmin + "/metrics")
		exposed := map[string]bool{}
		for line := range strings.Lines(string(metrics)) {
			if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") && !strings.Contains(name, " ") {
				exposed[name] = true
			} else if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
				exposed[name] = true
			}
		}
		missing = missing[:0]
		for _, name := range names {
			if !exposed[name] && !slices.Contains(fromPrometheus, name) {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("the monitoring example queries %v, which a live node's /metrics does not expose", missing)
	})
}
