package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const testOrigin = "http://127.0.0.1:9000"

// withOrigin returns Default() with the one required setting filled in.
func withOrigin() Config {
	c := Default()
	c.Origin = testOrigin
	return c
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// load is Load for tests that expect no warnings: a warning fails them
// as an error would.
func load(args, env []string, out io.Writer) (Config, error) {
	c, warnings, err := Load(args, env, out)
	if err == nil && len(warnings) > 0 {
		err = fmt.Errorf("warnings: %s", strings.Join(warnings, "; "))
	}
	return c, err
}

func mustLoad(t *testing.T, args, env []string) Config {
	t.Helper()
	c, err := load(args, env, nil)
	if err != nil {
		t.Fatalf("Load(%q, %q): %v", args, env, err)
	}
	return c
}

// loadErr loads and returns the error text, failing the test if there is none.
func loadErr(t *testing.T, args, env []string) string {
	t.Helper()
	_, err := load(args, env, nil)
	if err == nil {
		t.Fatalf("Load(%q, %q) succeeded; want an error", args, env)
	}
	return err.Error()
}

func wantContains(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("error %q\ndoes not contain %q", got, w)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	want := map[string]any{
		"Listen": "127.0.0.1:8080", "TLSCert": "", "TLSKey": "", "Origin": "", "Admin": "127.0.0.1:8081",
		"CacheSize": int64(256 << 20), "MaxObjectSize": int64(8 << 20), "Store": "ristretto",
		"DefaultTTL": time.Duration(0), "MaxHeuristicTTL": 24 * time.Hour, "StaleKeep": time.Hour,
		"StripSetCookie": false, "SortQuery": true, "PassTTL": 10 * time.Second,
		"CoalesceTimeout": 10 * time.Second, "OriginConnectTimeout": 3 * time.Second,
		"OriginTimeout": 30 * time.Second, "OriginMaxConns": 1024, "PreserveHost": false,
		"ReadTimeout": 30 * time.Second, "WriteTimeout": 30 * time.Second, "IdleTimeout": 60 * time.Second,
		"MaxRequestBody": int64(16 << 20), "LogLevel": "info", "LogFormat": "text", "AccessLog": "", "AccessLogFormat": "",
		"Gossip": "", "Ring": "hashring", "RingVnodes": 160, "PeerTimeout": 2 * time.Second,
		"HotCacheSize": int64(16 << 20), "HandoffTimeout": 10 * time.Second,
		"HandoffMaxBytes": int64(1 << 30), "ShutdownTimeout": 30 * time.Second,
		"Snapshot": "", "SnapshotInterval": time.Duration(0),
	}
	v := reflect.ValueOf(c)
	for field, w := range want {
		if got := v.FieldByName(field).Interface(); got != w {
			t.Errorf("Default().%s = %v; want %v", field, got, w)
		}
	}
	if c.IgnoreQuery != nil || c.Join != nil {
		t.Errorf("Default lists = %q, %q; want nil", c.IgnoreQuery, c.Join)
	}
	if h, err := os.Hostname(); err == nil && h != "" && c.NodeName != h {
		t.Errorf("Default().NodeName = %q; want host name %q", c.NodeName, h)
	}

	err := c.Validate()
	if err == nil || err.Error() != "origin is required (flag --origin, env RINGCACHE_ORIGIN or origin: in the config file)" {
		t.Errorf("Default().Validate() = %v; want only the origin error", err)
	}
	if err := withOrigin().Validate(); err != nil {
		t.Errorf("defaults with origin do not validate: %v", err)
	}
}

// TestSettingsTable guards the table: every Config field is bound exactly
// once, names are unique and snake_case, and every setting has help.
func TestSettingsTable(t *testing.T) {
	var c Config
	table := c.settings()
	names := map[string]bool{}
	bound := map[uintptr]string{}
	for _, s := range table {
		if !regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`).MatchString(s.name) {
			t.Errorf("setting name %q is not snake_case", s.name)
		}
		if names[s.name] {
			t.Errorf("setting %q listed twice", s.name)
		}
		names[s.name] = true
		if s.help == "" {
			t.Errorf("setting %q has no help", s.name)
		}
		p := reflect.ValueOf(s.val).Elem().FieldByName("p").Pointer()
		if other, dup := bound[p]; dup {
			t.Errorf("settings %q and %q bind the same field", s.name, other)
		}
		bound[p] = s.name
	}
	if n := reflect.TypeOf(c).NumField(); len(bound) != n {
		t.Errorf("table binds %d fields; Config has %d", len(bound), n)
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := withOrigin()
	c.Store = "arc"
	c.CacheSize = 0
	c.RingVnodes = -3
	c.Origin = ""
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	wantContains(t, err.Error(),
		`invalid store "arc": want ristretto or lru`,
		`invalid cache_size "0B": must be greater than 0`,
		`invalid ring_vnodes "-3": must be greater than 0`,
		`origin is required`)
	// cache_size is already reported; comparing max_object_size with it
	// would only add noise.
	if strings.Contains(err.Error(), "max_object_size") {
		t.Errorf("error mentions max_object_size: %v", err)
	}
}

// TestValidateStruct covers rules only a Config built in code can break,
// since the text syntax cannot express the value.
func TestValidateStruct(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"negative hot cache", func(c *Config) { c.HotCacheSize = -1 }, `invalid hot_cache_size "-1B": must not be negative`},
		{"negative handoff", func(c *Config) { c.HandoffMaxBytes = -1 << 20 }, `invalid handoff_max_bytes "-1MiB": must not be negative`},
		{"negative cache", func(c *Config) { c.CacheSize = -5 }, `invalid cache_size "-5B": must be greater than 0`},
		{"both secrets", func(c *Config) { c.AdminToken, c.AdminTokenFile = "t", "/f" },
			`invalid admin_token_file "/f": admin_token is also set; set only one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withOrigin()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() = nil")
			}
			wantContains(t, err.Error(), tt.want)
		})
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	c := withOrigin()
	c.PeerSecret = "very-secret-peer-value"
	c.AdminToken = "very-secret-admin-token"
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "cfg", c)
	out := b.String()
	if strings.Contains(out, "very-secret") {
		t.Errorf("log shows a secret: %s", out)
	}
	wantContains(t, out, "cfg.peer_secret=<redacted>", "cfg.cache_size=256MiB", "cfg.origin="+testOrigin, `cfg.gossip_key=""`)
}

func TestExampleYAML(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Every key is documented, if only as a comment.
	var c Config
	for _, s := range c.settings() {
		if s.notInFile {
			continue
		}
		if !regexp.MustCompile(`(?m)^(# )?` + s.name + `:`).Match(data) {
			t.Errorf("example.yaml does not document %s", s.name)
		}
	}

	got := mustLoad(t, []string{"--config", "example.yaml"}, nil)
	if err := got.Validate(); err != nil {
		t.Fatalf("example.yaml does not validate: %v", err)
	}
	// The example claims to show the defaults; hold it to that.
	want := Default()
	want.Origin = "https://origin.example.com"
	want.ConfigFile = "example.yaml"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example.yaml differs from the defaults:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestHelpWithoutWriter(t *testing.T) {
	_, err := load([]string{"--help"}, nil, nil) // nil out must not panic
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("Load(--help) = %v; want ErrHelp", err)
	}
	if err := fmt.Errorf("serve: %w", err); !errors.Is(err, ErrHelp) {
		t.Fatal("wrapped ErrHelp lost")
	}
}

func TestChanged(t *testing.T) {
	a := Default()
	b := a
	if got := Changed(a, b); len(got) != 0 {
		t.Fatalf("identical configs: %v", got)
	}
	b.LogLevel, b.CacheSize, b.Join = "debug", a.CacheSize*2, []string{"10.0.0.1:7946"}
	got := strings.Join(Changed(a, b), ",")
	if got != "cache_size,log_level,join" {
		t.Fatalf("Changed = %s, want cache_size,log_level,join (table order)", got)
	}
}

// TestReload: live settings move to the new values and are named applied;
// the others keep their running values and are named as needing a restart.
func TestReload(t *testing.T) {
	cur := Default()
	next := Default()
	next.DefaultTTL = 30 * time.Second       // live
	next.PurgeAllow = []string{"10.0.0.0/8"} // live, a list
	next.CacheSize = 1 << 30                 // needs a restart
	merged, applied, restart := Reload(cur, next)
	if got := strings.Join(applied, ","); got != "purge_allow,default_ttl" {
		t.Errorf("applied %q", got)
	}
	if got := strings.Join(restart, ","); got != "cache_size" {
		t.Errorf("restart %q", got)
	}
	if merged.DefaultTTL != 30*time.Second || strings.Join(merged.PurgeAllow, ",") != "10.0.0.0/8" {
		t.Errorf("live settings not taken: %v %v", merged.DefaultTTL, merged.PurgeAllow)
	}
	if merged.CacheSize != cur.CacheSize {
		t.Errorf("cache_size moved to %d while running", merged.CacheSize)
	}
	if _, applied, restart := Reload(merged, next); len(applied) != 0 || strings.Join(restart, ",") != "cache_size" {
		t.Errorf("second reload: applied %v, restart %v", applied, restart)
	}
}

// TestREADMETable: the README's configuration table is one table (a blank
// line would end it, and Markdown would show the rows after it as text)
// with a row for every setting but config, which the text above it names.
func TestREADMETable(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := slices.Index(lines, "| setting | default | meaning |")
	if start < 0 {
		t.Fatal("README.md has no configuration table")
	}
	documented := map[string]bool{}
	end := start + 2 // past the delimiter row
	for ; end < len(lines) && strings.HasPrefix(lines[end], "| "); end++ {
		names, _, _ := strings.Cut(strings.TrimPrefix(lines[end], "| "), " |")
		for _, n := range strings.Split(names, ", ") {
			documented[strings.Trim(n, "`")] = true
		}
	}
	if rest := strings.Join(lines[end:], "\n"); strings.Contains(rest, "\n| `") && strings.Index(rest, "\n| `") < strings.Index(rest, "\n## ") {
		t.Errorf("README.md: setting rows after the configuration table ends at line %d (a blank line splits it?)", end+1)
	}
	var c Config
	for _, s := range c.settings() {
		if s.name != "config" && !documented[s.name] {
			t.Errorf("README.md's configuration table has no row for %s", s.name)
		}
	}
}
