package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/rules"
)

func loadRules(t *testing.T, yaml string) Config {
	t.Helper()
	return mustLoad(t, []string{originFlag, "--config", writeFile(t, "ringcache.yaml", yaml)}, nil)
}

func specs(c Config) []rules.Spec {
	var out []rules.Spec
	for _, r := range c.Rules.Rules() {
		out = append(out, r.Spec())
	}
	return out
}

func TestRulesFromYAML(t *testing.T) {
	c := loadRules(t, `
rules:
  - header: Authorization
    bypass: true
  - host: "*.example.com"
    path_prefix: /static/
    methods: [GET, HEAD]
    ttl: 24h
  - path_regex: '^/api/v[0-9]+/'
    header: X-Debug
    header_value: "1"
    max_ttl: 60s
    key_headers: X-Tenant, Accept-Language   # a comma-separated string
    stale_if_error: 10m
  - cookie: currency
    key_cookies:
      - currency
      - region
  - &grace
    stale_if_error: 1h
    bypass: false
    host: ~
  - *grace
`)
	want := []rules.Spec{
		{Header: "Authorization", Bypass: true},
		{Host: "*.example.com", PathPrefix: "/static/", Methods: []string{"GET", "HEAD"}, TTL: 24 * time.Hour},
		{PathRegex: "^/api/v[0-9]+/", Header: "X-Debug", HeaderValue: "1", MaxTTL: time.Minute,
			KeyHeaders: []string{"X-Tenant", "Accept-Language"}, StaleIfError: 10 * time.Minute},
		{Cookie: "currency", KeyCookies: []string{"currency", "region"}},
		{StaleIfError: time.Hour},
		{StaleIfError: time.Hour},
	}
	if got := specs(c); !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\ngot  %+v\nwant %+v", got, want)
	}
	for _, yaml := range []string{"rules:\n", "rules: []\n", "rules: ~\n"} {
		if c := loadRules(t, yaml); c.Rules != nil {
			t.Errorf("%q: rules %v, want none", yaml, c.Rules)
		}
	}
}

// TestExampleRules: the rules example.yaml shows, commented out, load as
// they stand.
func TestExampleRules(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?m)^# rules:\n(?:#   .*\n)+`).Find(data)
	if block == nil {
		t.Fatal("example.yaml has no commented rules: example")
	}
	yaml := regexp.MustCompile(`(?m)^# ?`).ReplaceAllString(string(block), "")
	if c := loadRules(t, yaml); c.Rules.Len() != 4 {
		t.Errorf("example rules: %d loaded, want 4:\n%s", c.Rules.Len(), yaml)
	}
}

// TestRuleErrors: every problem names the file, the line, the rule, its key
// and the value, and all of them are reported at once.
func TestRuleErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"bad regex", "rules:\n  - ttl: 1m\n  - ttl: 1m\n  - path_regex: '(a'\n    ttl: 1m\n",
			[]string{`ringcache.yaml:4: invalid rules[2].path_regex "(a": missing closing ): ` + "`(a`"}},
		{"unknown key", "rules:\n  - path_prefx: /a\n    ttl: 1m\n",
			[]string{`ringcache.yaml:2: rules[0]: unknown key "path_prefx" (did you mean path_prefix?)`}},
		{"duplicate key", "rules:\n  - ttl: 1m\n    ttl: 2m\n",
			[]string{`ringcache.yaml:3: rules[0]: duplicate key "ttl" (first set on line 2)`}},
		{"not a list", "rules:\n  ttl: 1m\n", []string{"ringcache.yaml:2: invalid rules: want a list of rules (- host: ..., ttl: ...), got a mapping"}},
		{"a scalar", "rules: bypass\n", []string{"ringcache.yaml:1: invalid rules: want a list of rules"}},
		{"item not a mapping", "rules:\n  - ttl: 1m\n  - bypass\n", []string{"ringcache.yaml:3: invalid rules[1]: want a mapping of conditions and actions"}},
		{"list for a string", "rules:\n  - host: [a, b]\n    ttl: 1m\n", []string{"ringcache.yaml:2: invalid rules[0].host: want a single string value, got a list"}},
		{"mapping for a list", "rules:\n  - key_headers: {a: b}\n", []string{"ringcache.yaml:2: invalid rules[0].key_headers: want a list or a comma-separated string, got a mapping"}},
		{"nested list", "rules:\n  - key_cookies:\n      - a\n      - [b]\n", []string{"ringcache.yaml:4: invalid rules[0].key_cookies: want a list of strings, got a list in it"}},
		{"bad duration", "rules:\n  - ttl: 1 hour\n", []string{`ringcache.yaml:2: invalid rules[0].ttl "1 hour": want a duration such as 1.5s, 10m or 24h`}},
		{"bad bool", "rules:\n  - bypass: sometimes\n", []string{`ringcache.yaml:2: invalid rules[0].bypass "sometimes": want true or false`}},
		{"list item at its line", "rules:\n  - methods:\n      - GET\n      - POST\n    ttl: 1m\n",
			[]string{`ringcache.yaml:4: invalid rules[0].methods[1] "POST": want GET or HEAD`}},
		{"no action at the rule's line", "rules:\n  - ttl: 1m\n  - host: a.example\n    path_prefix: /x\n",
			[]string{"ringcache.yaml:3: rules[1]: no action: set bypass, ttl, max_ttl, key_headers, key_cookies or stale_if_error"}},
		{"bypass with an action", "rules:\n  - bypass: true\n    key_cookies: sid\n",
			[]string{"ringcache.yaml:2: rules[0]: bypass excludes ttl, max_ttl, key_headers, key_cookies and stale_if_error"}},
		{"fractional seconds as written", "rules:\n  - stale_if_error: 1500ms\n",
			[]string{`ringcache.yaml:2: invalid rules[0].stale_if_error "1500ms": want whole seconds`}},
		{"all at once", "rules:\n  - ttl: soon\n  - path_regex: '['\n    ttl: 1.5s\n  - key_headers: Connection\n  - methods: POST\nstore: arc\n",
			[]string{`invalid rules[0].ttl "soon"`, `ringcache.yaml:3: invalid rules[1].path_regex "["`, `ringcache.yaml:4: invalid rules[1].ttl "1.5s"`,
				`ringcache.yaml:5: invalid rules[2].key_headers[0] "Connection": a hop-by-hop field`,
				`ringcache.yaml:6: invalid rules[3].methods[0] "POST"`, "ringcache.yaml:6: rules[3]: no action", `invalid store "arc"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "ringcache.yaml", tt.yaml)
			msg := loadErr(t, []string{originFlag, "--config", path}, nil)
			wantContains(t, msg, tt.want...)
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file %s", msg, path)
			}
		})
	}
}

// TestReloadRules: rules are live: a reload takes the new list whole and
// names it applied; the same rules written again change nothing.
func TestReloadRules(t *testing.T) {
	// Each load reads its own file; the name of the file is not the point.
	loadRules := func(t *testing.T, yaml string) Config {
		c := loadRules(t, yaml)
		c.ConfigFile = ""
		return c
	}
	cur := loadRules(t, "rules:\n  - path_prefix: /a\n    ttl: 1m\n")
	same := loadRules(t, "rules:\n  - ttl: 60s\n    path_prefix: /a\n")
	if got := Changed(cur, same); len(got) != 0 {
		t.Errorf("the same rule respelt: changed %v", got)
	}
	next := loadRules(t, "rules:\n  - path_prefix: /a\n    bypass: true\n  - ttl: 1h\n")
	merged, applied, restart := Reload(cur, next)
	if strings.Join(applied, ",") != "rules" || len(restart) != 0 {
		t.Errorf("applied %v, restart %v", applied, restart)
	}
	if merged.Rules != next.Rules || merged.Rules.Len() != 2 {
		t.Errorf("merged rules %v, want %v", merged.Rules, next.Rules)
	}
	if _, applied, _ := Reload(merged, withOrigin()); strings.Join(applied, ",") != "rules" {
		t.Errorf("removing the rules: applied %v", applied)
	} else if m, _, _ := Reload(merged, withOrigin()); m.Rules != nil {
		t.Errorf("rules left after removing them: %v", m.Rules)
	}
}

// TestREADMERules: the README's rules example loads as it stands.
func TestREADMERules(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(rules:\n.*?)```").FindSubmatch(data)
	if m == nil {
		t.Fatal("README.md has no rules example")
	}
	if c := loadRules(t, string(m[1])); c.Rules.Len() != 5 {
		t.Errorf("README rules: %d loaded, want 5", c.Rules.Len())
	}
}
