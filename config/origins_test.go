package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/origin"
)

// loadYAML loads a config file with content and the extra arguments.
func loadYAML(t *testing.T, content string, args ...string) (Config, string, error) {
	t.Helper()
	path := writeFile(t, "ringcache.yaml", content)
	c, err := load(append(args, "--config", path), nil, nil)
	return c, path, err
}

func TestOriginsLoad(t *testing.T) {
	c, path, err := loadYAML(t, `
origins:
  - hosts: [www.example.org, "*.example.org"]
    servers: [https://10.0.0.1:8443, https://10.0.0.2:8443]
    balance: least_conns
    health_check: {path: /healthz, interval: 5s, timeout: 2s, status: 204, host: www.example.org}
    tls:
      ca_file: /etc/ca.pem
      server_name: www.example.org
      cert_file: /etc/client.pem
      key_file: /etc/client-key.pem
  - servers: http://10.0.1.1     # one server needs no list; no hosts: the default pool
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []OriginPool{
		{
			Hosts:       []string{"www.example.org", "*.example.org"},
			Servers:     []string{"https://10.0.0.1:8443", "https://10.0.0.2:8443"},
			Balance:     origin.LeastConns,
			HealthCheck: origin.HealthCheck{Path: "/healthz", Interval: 5 * time.Second, Timeout: 2 * time.Second, Status: 204, Host: "www.example.org"},
			TLS:         origin.TLSFiles{CAFile: "/etc/ca.pem", ServerName: "www.example.org", CertFile: "/etc/client.pem", KeyFile: "/etc/client-key.pem"},
		},
		{Servers: []string{"http://10.0.1.1"}},
	}
	if !reflect.DeepEqual(c.Origins, want) {
		t.Fatalf("origins\ngot  %+v\nwant %+v", c.Origins, want)
	}
	if c.Origin != "" {
		t.Errorf("origin = %q, want unset (a pool without hosts replaces it)", c.Origin)
	}
	if c.ConfigFile != path {
		t.Errorf("config file %q", c.ConfigFile)
	}
}

// TestOriginsErrors: every problem is reported at once, each naming its key
// path, its value and its line.
func TestOriginsErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		args []string
		want []string // with FILE for the file's path
	}{
		{"bad server URL", `
origins:
  - hosts: [a.example]
    servers:
      - http://ok.internal
      - ftp://x.internal
`, []string{originFlag}, []string{`FILE:6: invalid origins[0].servers[1] "ftp://x.internal": want an http:// or https:// URL`}},
		{"server with a path", "origins:\n  - servers: [http://a/base]\n", nil,
			[]string{`FILE:2: invalid origins[0].servers[0] "http://a/base": must not have a path`}},
		{"no servers", "origins:\n  - hosts: [a.example]\n", []string{originFlag},
			[]string{`invalid origins[0].servers: must list at least one server URL`}},
		{"empty servers", "origins:\n  - hosts: [a.example]\n    servers: []\n", []string{originFlag},
			[]string{`FILE:3: invalid origins[0].servers: must list at least one server URL`}},
		{"server twice", "origins:\n  - servers: [http://a, http://A/]\n", nil,
			[]string{`FILE:2: invalid origins[0].servers[1] "http://A/": listed twice in the pool (origins[0].servers[0])`}},
		{"bad hosts", `
origins:
  - hosts: [a.example:8080, "*a.example", ok.example]
    servers: [http://a]
  - hosts: [OK.example]
    servers: [http://b]
`, []string{originFlag}, []string{
			`FILE:3: invalid origins[0].hosts[0] "a.example:8080": want a host without a port`,
			`FILE:3: invalid origins[0].hosts[1] "*a.example": a wildcard is allowed only as the first label`,
			`FILE:5: invalid origins[1].hosts[0] "OK.example": also listed as origins[0].hosts[2]: a host belongs to one pool`,
		}},
		{"two default pools", "origins:\n  - servers: [http://a]\n  - servers: [http://b]\n", nil,
			[]string{`invalid origins[1].hosts: missing: origins[0] is the default pool already`}},
		{"default pool and origin", "origin: http://o\norigins:\n  - servers: [http://a]\n", nil,
			[]string{`invalid origins[0].hosts: missing, which makes this the default pool, but origin is set too (FILE:1): give the pool hosts, or leave origin unset`}},
		{"balance", "origins:\n  - servers: [http://a]\n    balance: random\n", nil,
			[]string{`FILE:3: invalid origins[0].balance "random": want round_robin or least_conns`}},
		{"health check", `
origins:
  - servers: [http://a]
    health_check:
      path: healthz
      interval: 5 minutes
      timeout: -1s
      status: 700
      host: "a b"
`, nil, []string{
			`FILE:5: invalid origins[0].health_check.path "healthz": want a path starting with /`,
			`FILE:6: invalid origins[0].health_check.interval "5 minutes": want a duration such as 1.5s, 10m or 24h`,
			`FILE:7: invalid origins[0].health_check.timeout "-1s": must not be negative`,
			`FILE:8: invalid origins[0].health_check.status "700": must be an HTTP status, from 100 to 599`,
			`FILE:9: invalid origins[0].health_check.host "a b": want a host name or host:port`,
		}},
		{"health check without path", "origins:\n  - servers: [http://a]\n    health_check: {interval: 1s}\n", nil,
			[]string{`invalid origins[0].health_check.path: missing: the health check needs a path`}},
		{"status not a number", "origins:\n  - servers: [http://a]\n    health_check: {path: /h, status: ok}\n", nil,
			[]string{`FILE:3: invalid origins[0].health_check.status "ok": want a status code such as 200`}},
		{"tls on http servers", "origins:\n  - servers: [http://a]\n    tls: {ca_file: /ca.pem}\n", nil,
			[]string{`FILE:3: invalid origins[0].tls: has no effect: no server of the pool is https://`}},
		{"tls halves", "origins:\n  - servers: [https://a]\n    tls: {cert_file: /c.pem, server_name: \"a:443\"}\n", nil, []string{
			`invalid origins[0].tls.key_file: missing: cert_file is set, and a client certificate needs both`,
			`FILE:3: invalid origins[0].tls.server_name "a:443": want a host name such as origin.internal (no port or scheme)`,
		}},
		{"unknown keys", "origins:\n  - server: [http://a]\n    tls: {ca: /ca.pem}\n", []string{originFlag}, []string{
			`FILE:2: origins[0]: unknown key "server" (did you mean servers?)`,
			`FILE:3: origins[0].tls: unknown key "ca"`,
		}},
		{"duplicate key", "origins:\n  - servers: [http://a]\n    servers: [http://b]\n", nil,
			[]string{`FILE:3: origins[0]: duplicate key "servers" (first set on line 2)`}},
		{"not a list", "origins: http://a\n", []string{originFlag},
			[]string{`FILE:1: invalid origins: want a list of origin pools (- hosts: ..., servers: ...), got a single value`}},
		{"pool not a mapping", "origins:\n  - http://a\n", []string{originFlag},
			[]string{`FILE:2: invalid origins[0]: want a mapping of hosts, servers, balance, health_check and tls, got a single value`}},
		{"list of lists", "origins:\n  - servers: [[http://a]]\n", []string{originFlag},
			[]string{`FILE:2: invalid origins[0].servers: want a list of strings, got a list in it`}},
		{"no default anywhere", "origins:\n  - hosts: [a.example]\n    servers: [http://a]\n", nil,
			[]string{"origin is required (flag --origin, env RINGCACHE_ORIGIN or origin: in the config file, or a pool without hosts in origins to serve the hosts no pool lists)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path, err := loadYAML(t, tt.yaml, tt.args...)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				wantContains(t, err.Error(), strings.ReplaceAll(w, "FILE", path))
			}
		})
	}
}

func TestOriginTLSSettings(t *testing.T) {
	const https = "--origin=https://10.0.0.1:8443"
	c := mustLoad(t, []string{https, "--origin-tls-ca=/ca.pem", "--origin-tls-server-name=origin.internal"},
		[]string{"RINGCACHE_ORIGIN_TLS_CERT=/c.pem", "RINGCACHE_ORIGIN_TLS_KEY=/k.pem"})
	if c.OriginTLSCA != "/ca.pem" || c.OriginTLSServerName != "origin.internal" || c.OriginTLSCert != "/c.pem" || c.OriginTLSKey != "/k.pem" {
		t.Errorf("loaded %q %q %q %q", c.OriginTLSCA, c.OriginTLSServerName, c.OriginTLSCert, c.OriginTLSKey)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"http origin", []string{originFlag, "--origin-tls-ca=/ca.pem"},
			`invalid origin_tls_ca "/ca.pem" (flag --origin-tls-ca): has no effect with an http:// origin (flag --origin)`},
		{"no origin", []string{"--origin-tls-ca=/ca.pem"},
			`invalid origin_tls_ca "/ca.pem" (flag --origin-tls-ca): has no effect unless origin is set`},
		{"cert without key", []string{https, "--origin-tls-cert=/c.pem"},
			`invalid origin_tls_key "" : is required with origin_tls_cert (a client certificate needs both)`},
		{"key without cert", []string{https, "--origin-tls-key=/k.pem"},
			`invalid origin_tls_cert "" : is required with origin_tls_key`},
		{"server name with port", []string{https, "--origin-tls-server-name=a:443"},
			`invalid origin_tls_server_name "a:443" (flag --origin-tls-server-name): want a host name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A default value has no source to name: the message then has
			// none ("" and the reason).
			wantContains(t, loadErr(t, tt.args, nil), strings.ReplaceAll(tt.want, `"" :`, `"":`))
		})
	}
	if err := mustLoad(t, []string{"--origin=https://[::1]:8443", "--origin-tls-server-name=::1"}, nil).Validate(); err != nil {
		t.Errorf("an IPv6 server name: %v", err)
	}
}

// TestOriginsValidateStruct: a Config built in code is checked the same way,
// each problem named by its key path.
func TestOriginsValidateStruct(t *testing.T) {
	c := Default()
	c.Origins = []OriginPool{
		{Servers: []string{"http://a"}},
		{Hosts: []string{"b.example"}, Servers: []string{"http://b", ""}},
	}
	if err := c.Validate(); err == nil || err.Error() != `invalid origins[1].servers[1] "": must not be empty` {
		t.Fatalf("Validate() = %v", err)
	}
	c.Origins[1].Servers = c.Origins[1].Servers[:1]
	if err := c.Validate(); err != nil {
		t.Fatalf("a default pool in place of origin: %v", err)
	}
}

func TestOriginsReloadNeedsRestart(t *testing.T) {
	cur := withOrigin()
	next := cur
	next.Origins = []OriginPool{{Hosts: []string{"a.example"}, Servers: []string{"http://a"}}}
	if got := strings.Join(Changed(cur, next), ","); got != "origins" {
		t.Errorf("Changed = %q, want origins", got)
	}
	merged, applied, restart := Reload(cur, next)
	if len(applied) != 0 || strings.Join(restart, ",") != "origins" || merged.Origins != nil {
		t.Errorf("Reload: applied %v, restart %v, merged origins %v; want origins kept until a restart", applied, restart, merged.Origins)
	}
}

// TestExampleOrigins: the origins example in example.yaml, commented out
// there, loads and validates as shown.
func TestExampleOrigins(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?m)^# origins:\n(?:#   .*\n)+`).Find(data)
	if block == nil {
		t.Fatal("example.yaml has no commented origins: example")
	}
	yml := regexp.MustCompile(`(?m)^# `).ReplaceAllString(string(block), "")
	c, _, err := loadYAML(t, "origin: https://origin.example.com\n"+yml)
	if err != nil {
		t.Fatalf("the example:\n%s\n%v", yml, err)
	}
	if len(c.Origins) != 2 || c.Origins[0].Balance != origin.LeastConns || c.Origins[0].TLS.CAFile == "" || !c.Origins[0].HealthCheck.Enabled() {
		t.Errorf("the example loads as %+v", c.Origins)
	}
}
