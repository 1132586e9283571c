package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var originFlag = "--origin=" + testOrigin

// via runs one setting through each source: a flag, an environment
// variable and a YAML file (as the file's only key, so on line 1).
type via struct {
	name string
	load func(t *testing.T, key, text string, extra []string) (Config, error)
}

func sources() []via {
	return []via{
		{"flag", func(t *testing.T, key, text string, extra []string) (Config, error) {
			args := append([]string{originFlag, "--" + strings.ReplaceAll(key, "_", "-") + "=" + text}, extra...)
			return load(args, nil, nil)
		}},
		{"env", func(t *testing.T, key, text string, extra []string) (Config, error) {
			args := append(baseArgs(key), extra...)
			return load(args, []string{envName(key) + "=" + text}, nil)
		}},
		{"file", func(t *testing.T, key, text string, extra []string) (Config, error) {
			path := writeFile(t, "ringcache.yaml", key+": "+yamlQuote(text)+"\n")
			args := append(baseArgs(key), extra...)
			return load(append(args, "--config", path), nil, nil)
		}},
	}
}

// baseArgs sets the required origin, unless the test is about origin and
// sets it through a lower layer.
func baseArgs(key string) []string {
	if key == "origin" {
		return nil
	}
	return []string{originFlag}
}

// yamlQuote keeps text a YAML string whatever it holds.
func yamlQuote(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// where is how an error names the source of a value set by via v.
func where(v via, key string) (prefix, suffix string) {
	switch v.name {
	case "flag":
		return "", " (flag --" + strings.ReplaceAll(key, "_", "-") + ")"
	case "env":
		return "", " (env " + envName(key) + ")"
	}
	return "ringcache.yaml:1: ", ""
}

func TestKindsParse(t *testing.T) {
	tests := []struct {
		key  string
		text string
		get  func(Config) any
		want any
	}{
		{"listen", "0.0.0.0:80", func(c Config) any { return c.Listen }, "0.0.0.0:80"},
		{"access_log", "", func(c Config) any { return c.AccessLog }, ""},
		{"admin", "", func(c Config) any { return c.Admin }, ""},
		{"default_ttl", "1.5s", func(c Config) any { return c.DefaultTTL }, 1500 * time.Millisecond},
		{"stale_keep", "2h45m", func(c Config) any { return c.StaleKeep }, 2*time.Hour + 45*time.Minute},
		{"cache_size", "1GB", func(c Config) any { return c.CacheSize }, int64(1e9)},
		{"cache_size", "512mib", func(c Config) any { return c.CacheSize }, int64(512 << 20)},
		{"max_object_size", "1048576", func(c Config) any { return c.MaxObjectSize }, int64(1 << 20)},
		{"max_request_body", "512k", func(c Config) any { return c.MaxRequestBody }, int64(512000)},
		{"ring_vnodes", "42", func(c Config) any { return c.RingVnodes }, 42},
		{"strip_set_cookie", "true", func(c Config) any { return c.StripSetCookie }, true},
		{"sort_query", "false", func(c Config) any { return c.SortQuery }, false},
		{"preserve_host", "1", func(c Config) any { return c.PreserveHost }, true},
		{"ignore_query", "utm_source, utm_medium,,fbclid", func(c Config) any { return c.IgnoreQuery },
			[]string{"utm_source", "utm_medium", "fbclid"}},
		{"ignore_query", "", func(c Config) any { return c.IgnoreQuery }, []string(nil)},
		{"targeted_cache_control", "Ringcache-Cache-Control, CDN-Cache-Control", func(c Config) any { return c.TargetedCacheControl },
			[]string{"Ringcache-Cache-Control", "CDN-Cache-Control"}},
		{"targeted_cache_control", "", func(c Config) any { return c.TargetedCacheControl }, []string(nil)},
		{"strip_targeted_cache_control", "cdn-cache-control", func(c Config) any { return c.StripTargetedCacheControl }, []string{"cdn-cache-control"}},
		{"store", "lru", func(c Config) any { return c.Store }, "lru"},
		{"ring", "rendezvous", func(c Config) any { return c.Ring }, "rendezvous"},
	}
	for _, tt := range tests {
		for _, v := range sources() {
			t.Run(v.name+"/"+tt.key+"="+tt.text, func(t *testing.T) {
				c, err := v.load(t, tt.key, tt.text, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%s = %#v; want %#v", tt.key, got, tt.want)
				}
			})
		}
	}
}

func TestYAMLForms(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		get  func(Config) any
		want any
		args []string // nil: set origin by flag
	}{
		{"sequence", "ignore_query: [utm_source, gclid]", func(c Config) any { return c.IgnoreQuery }, []string{"utm_source", "gclid"}, nil},
		{"block sequence", "ignore_query:\n  - a\n  - b\n", func(c Config) any { return c.IgnoreQuery }, []string{"a", "b"}, nil},
		{"comma string", "ignore_query: a,b", func(c Config) any { return c.IgnoreQuery }, []string{"a", "b"}, nil},
		{"empty sequence", "ignore_query: []", func(c Config) any { return c.IgnoreQuery }, []string(nil), nil},
		{"yaml bool", "sort_query: false", func(c Config) any { return c.SortQuery }, false, nil},
		{"yaml int as bytes", "cache_size: 1073741824", func(c Config) any { return c.CacheSize }, int64(1 << 30), nil},
		{"null string", "access_log:", func(c Config) any { return c.AccessLog }, "", nil},
		{"quoted", `origin: "https://o.example:8443/"`, func(c Config) any { return c.Origin }, "https://o.example:8443/", []string{}},
		{"anchor reuse", "cache_size: &s 2GiB\nmax_object_size: *s\n", func(c Config) any { return c.MaxObjectSize }, int64(2 << 30), nil},
		{"empty file", "", func(c Config) any { return c.CacheSize }, int64(256 << 20), nil},
		{"comments only", "# nothing here\n", func(c Config) any { return c.CacheSize }, int64(256 << 20), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "ringcache.yaml", tt.yaml)
			args := tt.args
			if args == nil {
				args = []string{originFlag}
			}
			c := mustLoad(t, append(args, "--config", path), nil)
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v; want %#v", got, tt.want)
			}
		})
	}
}

func TestFlagForms(t *testing.T) {
	tests := []struct {
		name string
		args []string
		get  func(Config) any
		want any
	}{
		{"bare bool", []string{"--preserve-host"}, func(c Config) any { return c.PreserveHost }, true},
		{"bool false", []string{"--sort-query=false"}, func(c Config) any { return c.SortQuery }, false},
		{"separate value", []string{"--cache-size", "1GiB"}, func(c Config) any { return c.CacheSize }, int64(1 << 30)},
		{"last wins", []string{"--store=lru", "--store=ristretto"}, func(c Config) any { return c.Store }, "ristretto"},
		{"repeated list adds", []string{"--ignore-query=a,b", "--ignore-query", "c"}, func(c Config) any { return c.IgnoreQuery }, []string{"a", "b", "c"}},
		{"empty list clears", []string{"--ignore-query="}, func(c Config) any { return c.IgnoreQuery }, []string(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := []string{"RINGCACHE_IGNORE_QUERY=from_env"}
			c := mustLoad(t, append([]string{originFlag}, tt.args...), env)
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v; want %#v", got, tt.want)
			}
		})
	}
}

// TestPrecedence sets the same key in each layer in turn: default < file <
// env < flag.
func TestPrecedence(t *testing.T) {
	tests := []struct {
		key              string
		file, env, flag  string
		get              func(Config) any
		def, fv, ev, flv any
	}{
		{"cache_size", "1GiB", "2GiB", "3GiB", func(c Config) any { return c.CacheSize },
			int64(256 << 20), int64(1 << 30), int64(2 << 30), int64(3 << 30)},
		{"default_ttl", "1m", "2m", "3m", func(c Config) any { return c.DefaultTTL },
			time.Duration(0), time.Minute, 2 * time.Minute, 3 * time.Minute},
		{"ring_vnodes", "10", "20", "30", func(c Config) any { return c.RingVnodes }, 160, 10, 20, 30},
		{"sort_query", "false", "true", "false", func(c Config) any { return c.SortQuery }, true, false, true, false},
		{"store", "lru", "ristretto", "lru", func(c Config) any { return c.Store }, "ristretto", "lru", "ristretto", "lru"},
		{"ignore_query", "a", "b,c", "d", func(c Config) any { return c.IgnoreQuery },
			[]string(nil), []string{"a"}, []string{"b", "c"}, []string{"d"}},
		{"listen", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", func(c Config) any { return c.Listen },
			"127.0.0.1:8080", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			path := writeFile(t, "ringcache.yaml", "origin: "+testOrigin+"\n"+tt.key+": "+tt.file+"\n")
			env := []string{envName(tt.key) + "=" + tt.env}
			flag := "--" + strings.ReplaceAll(tt.key, "_", "-") + "=" + tt.flag
			layers := []struct {
				name string
				args []string
				env  []string
				want any
			}{
				{"default", []string{originFlag}, nil, tt.def},
				{"file", []string{"--config", path}, nil, tt.fv},
				{"file+env", []string{"--config", path}, env, tt.ev},
				{"file+env+flag", []string{"--config", path, flag}, env, tt.flv},
				{"env+flag", []string{originFlag, flag}, env, tt.flv},
				{"file+flag", []string{flag, "--config", path}, nil, tt.flv},
			}
			for _, l := range layers {
				c := mustLoad(t, l.args, l.env)
				if got := tt.get(c); !reflect.DeepEqual(got, l.want) {
					t.Errorf("%s: %s = %#v; want %#v", l.name, tt.key, got, l.want)
				}
			}
		})
	}
}

func TestConfigPathPrecedence(t *testing.T) {
	envFile := writeFile(t, "env.yaml", "origin: "+testOrigin+"\nstore: lru\n")
	flagFile := writeFile(t, "flag.yaml", "origin: "+testOrigin+"\nring: rendezvous\n")

	c := mustLoad(t, nil, []string{"RINGCACHE_CONFIG=" + envFile})
	if c.ConfigFile != envFile || c.Store != "lru" {
		t.Errorf("env only: ConfigFile %q, Store %q; want %q, lru", c.ConfigFile, c.Store, envFile)
	}
	c = mustLoad(t, []string{"--config=" + flagFile}, []string{"RINGCACHE_CONFIG=" + envFile})
	if c.ConfigFile != flagFile || c.Store != "ristretto" || c.Ring != "rendezvous" {
		t.Errorf("flag over env: read %q (store %q, ring %q); want only %q", c.ConfigFile, c.Store, c.Ring, flagFile)
	}
}

// TestValueErrors runs every rule about a single value through each source
// and checks the message names the key, the value and the source.
func TestValueErrors(t *testing.T) {
	cluster := []string{"--gossip=127.0.0.1:7946", "--peer-secret=0123456789abcdef0123"}
	tests := []struct {
		key, text string
		reason    string
		extra     []string // other settings the rule needs
	}{
		{"cache_size", "12XB", `unknown unit "XB"`, nil},
		{"cache_size", "0", "must be greater than 0", nil},
		{"cache_size", "-1MiB", "byte size must not be negative", nil},
		{"max_object_size", "0", "must be greater than 0", nil},
		{"max_object_size", "512MiB", "must not exceed cache_size (256MiB)", nil},
		{"max_request_body", "lots", "want a number", nil},
		{"hot_cache_size", "1.5B", "not a whole number of bytes", nil},
		{"store", "arc", "want ristretto or lru", nil},
		{"ring", "chord", "want hashring or rendezvous", nil},
		{"log_level", "verbose", "want debug, info, warn or error", nil},
		{"log_format", "xml", "want text or json", nil},
		{"access_log_format", "text", "want combined or json", nil},
		{"default_ttl", "-1s", "must not be negative", nil},
		{"max_heuristic_ttl", "-1h", "must not be negative", nil},
		{"stale_keep", "5", "want a duration such as 1.5s", nil},
		{"pass_ttl", "-10s", "must not be negative", nil},
		{"coalesce_timeout", "0s", "must be greater than 0", nil},
		{"origin_connect_timeout", "0s", "must be greater than 0", nil},
		{"origin_timeout", "-5s", "must be greater than 0", nil},
		{"read_timeout", "0s", "must be greater than 0", nil},
		{"write_timeout", "soon", "want a duration", nil},
		{"idle_timeout", "0s", "must be greater than 0", nil},
		{"peer_timeout", "0s", "must be greater than 0", nil},
		{"handoff_timeout", "0s", "must be greater than 0", nil},
		{"shutdown_timeout", "0s", "must be greater than 0", nil},
		{"snapshot", "/var/cache/ringcache/", "want a file path, not a directory", nil},
		{"snapshot_interval", "-1m", "must not be negative", []string{"--snapshot=/tmp/snap"}},
		{"snapshot_interval", "5m", "has no effect unless snapshot is set", nil},
		{"origin_max_conns", "0", "must be greater than 0", nil},
		{"origin_max_conns", "many", "want a whole number", nil},
		{"ring_vnodes", "0", "must be greater than 0", nil},
		{"ring_vnodes", "1.5", "want a whole number", nil},
		{"sort_query", "maybe", "want true or false", nil},
		{"node_name", "", "must not be empty", nil},
		{"listen", "", "must not be empty", nil},
		{"listen", "8080", "want host:port: missing port in address", nil},
		{"listen", "127.0.0.1:99999", `port "99999" is not a number in 0..65535`, nil},
		{"listen", "127.0.0.1:http", `port "http" is not a number`, nil},
		{"admin", "localhost", "want host:port", nil},
		{"admin", "127.0.0.1:8080", "same address as listen", nil},
		{"origin", "ftp://example.com", "want an http:// or https:// URL", nil},
		{"origin", "example.com:8080", "want an http:// or https:// URL", nil},
		{"origin", "http://", "missing host", nil},
		{"origin", "http://:80", "missing host", nil},
		// The origin client's rules (origin.ParseURL): refused here, naming
		// the setting, rather than by the client when the node starts.
		{"origin", "http://example.com/app", "must not have a path", nil},
		{"origin", "http://o.example/app/", "must not have a path", nil},
		{"origin", "http://user@example.com", "must not have user info", nil},
		{"origin", "http://u:p@o.example:8080", "must not have user info", nil},
		{"origin", "http://o.example?a=1", "must not have a query", nil},
		{"origin", "http://o.example#top", "must not have a fragment", nil},
		{"origin", "http://o.example/?a=1", "must not have a query", nil},
		{"origin", "http://o.example/?", "must not have a query", nil},
		{"origin", "http://o.example/#top", "must not have a fragment", nil},
		{"origin", "http://o.example:0", `port "0" is not a number in 1..65535`, nil},
		{"origin", "http://o.example:99999", `port "99999"`, nil},
		{"origin", "http://[::1", "not a URL", nil},
		{"gossip", "nope", "want host:port", nil},
		{"advertise", ":7946", "want host:port with a host", cluster},
		{"advertise", "10.0.0.1:7946", "has no effect unless gossip is set", nil},
		{"join", "10.0.0.1:7946,10.0.0.2", `item "10.0.0.2": want host:port`, cluster},
		{"join", "10.0.0.1:0", `item "10.0.0.1:0": port 0 cannot be dialled`, cluster},
		{"join", "10.0.0.1:7946", "has no effect unless gossip is set", nil},
		{"peer_listen", "127.0.0.1:x", `port "x"`, cluster},
		{"peer_listen", "127.0.0.1:8080", "same address as listen", cluster},
		{"peer_listen", "127.0.0.1:9090", "has no effect unless gossip is set", nil},
		{"peer_tls_cert", "/etc/ringcache/peer.pem", "has no effect unless gossip is set", nil},
		{"admin_token_file", "/nonexistent/ringcache-token", "open /nonexistent/ringcache-token: no such file or directory", nil},
		{"targeted_cache_control", "CDN-Cache-Control,Cache-Control", `item "Cache-Control": Cache-Control is obeyed anyway`, nil},
		{"targeted_cache_control", "CDN Cache Control", `item "CDN Cache Control": want a header field name`, nil},
		{"strip_targeted_cache_control", "Surrogate-Control", "Surrogate-Control is not in targeted_cache_control", nil},
	}
	for _, tt := range tests {
		for _, v := range sources() {
			t.Run(v.name+"/"+tt.key+"="+tt.text, func(t *testing.T) {
				_, err := v.load(t, tt.key, tt.text, tt.extra)
				if err == nil {
					t.Fatal("Load succeeded; want an error")
				}
				prefix, suffix := where(v, tt.key)
				want := fmt.Sprintf("%sinvalid %s %q%s: %s", prefix, tt.key, tt.text, suffix, tt.reason)
				wantContains(t, err.Error(), want)
			})
		}
	}
}

// TestSecretValuesNotEchoed: a bad secret is reported without its value.
func TestSecretValuesNotEchoed(t *testing.T) {
	cluster := []string{"--gossip=127.0.0.1:7946", "--peer-secret=0123456789abcdef0123"}
	tests := []struct {
		key, text, reason string
		extra             []string
	}{
		{"gossip_key", "not*base64", "not valid base64", cluster},
		{"gossip_key", "c2hvcnQ=", "decodes to 5 bytes, want 16, 24 or 32", cluster},
		{"gossip_key", "MDEyMzQ1Njc4OWFiY2RlZg==", "has no effect unless gossip is set", nil},
		{"peer_secret", "short", "must be at least 16 characters", []string{"--gossip=127.0.0.1:7946"}},
	}
	for i, tt := range tests {
		for _, v := range sources() {
			// The name leaves out the value: it shows up in the temp dir's path.
			t.Run(fmt.Sprintf("%s/%s/%d", v.name, tt.key, i), func(t *testing.T) {
				_, err := v.load(t, tt.key, tt.text, tt.extra)
				if err == nil {
					t.Fatal("Load succeeded; want an error")
				}
				prefix, suffix := where(v, tt.key)
				wantContains(t, err.Error(), prefix+"invalid "+tt.key+suffix+": "+tt.reason)
				if strings.Contains(err.Error(), tt.text) {
					t.Errorf("error echoes the secret: %v", err)
				}
			})
		}
	}
}

func TestRequiredErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"origin", nil, nil, "origin is required (flag --origin, env RINGCACHE_ORIGIN or origin: in the config file)"},
		{"empty origin from env", nil, []string{"RINGCACHE_ORIGIN="}, "origin is required"},
		{"peer secret with gossip flag", []string{originFlag, "--gossip=127.0.0.1:7946"}, nil,
			"peer_secret is required when gossip is set (flag --gossip): make one with `head -c32 /dev/urandom | base64`"},
		{"peer secret with gossip env", []string{originFlag}, []string{"RINGCACHE_GOSSIP=127.0.0.1:7946"},
			"peer_secret is required when gossip is set (env RINGCACHE_GOSSIP)"},
		{"both tokens", []string{originFlag, "--admin-token-file=/tmp/t"}, []string{"RINGCACHE_ADMIN_TOKEN=x"},
			`invalid admin_token_file "/tmp/t" (flag --admin-token-file): admin_token is also set (env RINGCACHE_ADMIN_TOKEN); set only one`},
		{"peer TLS without its key", []string{originFlag, "--gossip=127.0.0.1:0", "--peer-secret=0123456789abcdef", "--peer-listen=127.0.0.1:0", "--peer-tls-cert=/c.pem", "--peer-tls-ca=/ca.pem"}, nil,
			`invalid peer_tls_key "": is required with peer_tls_cert and peer_tls_ca (peer TLS needs all three)`},
		{"both peer secrets", []string{originFlag, "--gossip=127.0.0.1:0", "--peer-secret-file=/tmp/s", "--peer-secret=0123456789abcdef"}, nil,
			`invalid peer_secret_file "/tmp/s" (flag --peer-secret-file): peer_secret is also set (flag --peer-secret); set only one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantContains(t, loadErr(t, tt.args, tt.env), tt.want)
		})
	}
}

// TestClientTLSPair: tls_cert and tls_key go together, from any source;
// one alone is an error naming both. Whether the files exist is the
// node's to find out when it starts (exit 1, not a configuration error).
func TestClientTLSPair(t *testing.T) {
	pair := map[string]string{"tls_cert": "/etc/tls/tls.crt", "tls_key": "/etc/tls/tls.key"}
	for _, v := range sources() {
		for _, one := range []string{"tls_cert", "tls_key"} {
			other := map[string]string{"tls_cert": "tls_key", "tls_key": "tls_cert"}[one]
			t.Run(v.name+"/only "+one, func(t *testing.T) {
				_, err := v.load(t, one, pair[one], nil)
				if err == nil {
					t.Fatal("Load succeeded; want an error")
				}
				want := fmt.Sprintf(`invalid %s "": is required with %s (client TLS needs both)`, other, one)
				if err.Error() != want {
					t.Fatalf("error %q, want %q", err, want)
				}
			})
		}
		t.Run(v.name+"/both", func(t *testing.T) {
			var extra []string
			if v.name == "file" {
				extra = []string{"--tls-key=" + pair["tls_key"]}
			} else {
				extra = []string{"--tls-key", pair["tls_key"]}
			}
			c, err := v.load(t, "tls_cert", pair["tls_cert"], extra)
			if err != nil {
				t.Fatal(err)
			}
			if c.TLSCert != pair["tls_cert"] || c.TLSKey != pair["tls_key"] {
				t.Fatalf("TLSCert %q, TLSKey %q", c.TLSCert, c.TLSKey)
			}
		})
	}
	c := mustLoad(t, []string{originFlag}, []string{"RINGCACHE_TLS_CERT=/a.crt", "RINGCACHE_TLS_KEY=/a.key"})
	if c.TLSCert != "/a.crt" || c.TLSKey != "/a.key" {
		t.Fatalf("from the environment: TLSCert %q, TLSKey %q", c.TLSCert, c.TLSKey)
	}
}

func TestPeerSecretWithGossip(t *testing.T) {
	secretFile := writeFile(t, "peer.secret", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0\n")
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"single node needs none", nil, true},
		{"gossip without secret", []string{"--gossip=127.0.0.1:7946"}, false},
		{"gossip with secret", []string{"--gossip=127.0.0.1:7946", "--peer-secret=0123456789abcdef"}, true},
		{"gossip with secret file", []string{"--gossip=127.0.0.1:7946", "--peer-secret-file=" + secretFile}, true},
		{"secret without gossip", []string{"--peer-secret=0123456789abcdef"}, true},
		{"full cluster", []string{"--gossip=0.0.0.0:7946", "--advertise=10.0.0.5:7946", "--join=10.0.0.1:7946,10.0.0.2:7946",
			"--peer-listen=:8090", "--gossip-key=MDEyMzQ1Njc4OWFiY2RlZg==", "--peer-secret=0123456789abcdef"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(append([]string{originFlag}, tt.args...), nil, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("Load = %v; want ok %v", err, tt.ok)
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("  s3cret-token-0123456789 \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	c := mustLoad(t, []string{originFlag, "--admin-token-file", token}, nil)
	if c.AdminToken != "s3cret-token-0123456789" || c.AdminTokenFile != "" {
		t.Errorf("AdminToken %q, AdminTokenFile %q; want trimmed content and the path cleared", c.AdminToken, c.AdminTokenFile)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("loaded config does not validate again: %v", err)
	}

	c = mustLoad(t, []string{originFlag, "--gossip=127.0.0.1:0", "--peer-secret-file", token}, nil)
	if c.PeerSecret != "s3cret-token-0123456789" || c.PeerSecretFile != "" {
		t.Errorf("PeerSecret %q, PeerSecretFile %q", c.PeerSecret, c.PeerSecretFile)
	}

	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"missing", []string{originFlag}, []string{"RINGCACHE_ADMIN_TOKEN_FILE=" + missing},
			fmt.Sprintf(`invalid admin_token_file %q (env RINGCACHE_ADMIN_TOKEN_FILE): open %s: no such file`, missing, missing)},
		{"empty", []string{originFlag, "--admin-token-file=" + empty}, nil,
			fmt.Sprintf(`invalid admin_token_file %q (flag --admin-token-file): file is empty`, empty)},
		{"short peer secret", []string{originFlag, "--gossip=127.0.0.1:0", "--peer-secret-file=" + short}, nil,
			fmt.Sprintf(`invalid peer_secret_file %q (flag --peer-secret-file): peer_secret in the file must be at least 16 characters`, short)},
		{"directory", []string{originFlag, "--peer-secret-file=" + dir}, nil, `invalid peer_secret_file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadErr(t, tt.args, tt.env)
			wantContains(t, msg, tt.want)
			if strings.Contains(msg, "abc") {
				t.Errorf("error shows the file's content: %s", msg)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"syntax", "listen: 127.0.0.1:1\nstore: [lru\n", []string{"ringcache.yaml:", "did not find expected"}},
		{"bad indentation", "listen: a\n  store: lru\n", []string{"ringcache.yaml:2: mapping values are not allowed"}},
		{"unknown key", "origin: http://o\nstore: lru\ncache_sise: 1GiB\n",
			[]string{`ringcache.yaml:3: unknown key "cache_sise" (did you mean cache_size?)`}},
		{"unknown key without suggestion", "frobnicate: 1\n", []string{`ringcache.yaml:1: unknown key "frobnicate"`}},
		{"env spelling as key", "CACHE_SIZE: 1GiB\n", []string{`unknown key "CACHE_SIZE" (did you mean cache_size?)`}},
		{"config key", "config: other.yaml\n", []string{`ringcache.yaml:1: "config" cannot be set in the config file`}},
		{"duplicate", "store: lru\nring: hashring\nstore: ristretto\n", []string{`ringcache.yaml:3: duplicate key "store" (first set on line 1)`}},
		{"mapping for scalar", "cache_size:\n  value: 1GiB\n", []string{"ringcache.yaml:2: invalid cache_size: want a single bytes value, got a mapping"}},
		{"list for scalar", "store: [lru]\n", []string{"ringcache.yaml:1: invalid store: want a single string value, got a list"}},
		{"mapping for list", "join: {a: b}\n", []string{"ringcache.yaml:1: invalid join: want a list or a comma-separated string, got a mapping"}},
		{"nested list", "ignore_query:\n  - a\n  - [b]\n", []string{"ringcache.yaml:3: invalid ignore_query: want a list of strings, got a list in it"}},
		{"bad value with line", "origin: http://o\n\nstore: arc\n", []string{`ringcache.yaml:3: invalid store "arc": want ristretto or lru`}},
		{"bad bool", "sort_query: yes please\n", []string{`ringcache.yaml:1: invalid sort_query "yes please": want true or false`}},
		{"top-level list", "- listen: x\n", []string{"ringcache.yaml:1: want a mapping of settings (key: value), got a list"}},
		{"top-level scalar", "hello\n", []string{"ringcache.yaml:1: want a mapping of settings"}},
		{"two documents", "store: lru\n---\nstore: ristretto\n", []string{"ringcache.yaml:", "more than one YAML document"}},
		{"all errors at once", "store: arc\nring: chord\ncache_sise: 1\n", []string{`invalid store "arc"`, `invalid ring "chord"`, `unknown key "cache_sise"`}},
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

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := load([]string{originFlag}, []string{"RINGCACHE_CONFIG=" + path}, nil)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v does not wrap fs.ErrNotExist", err)
		}
		wantContains(t, fmt.Sprint(err), "read config file", path)
	})
}

func TestCommandLineAndEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"unknown flag", []string{originFlag, "--cache-sise=1GiB"}, nil, []string{"unknown flag: --cache-sise"}},
		{"positional", []string{originFlag, "extra"}, nil, []string{`unexpected argument "extra"`}},
		{"bool with space", []string{originFlag, "--sort-query", "false"}, nil, []string{`unexpected argument "false" (a boolean flag takes its value after =`}},
		{"missing value", []string{originFlag, "--store"}, nil, []string{"flag needs an argument: --store"}},
		{"env and flag errors together", []string{"--store=arc"}, []string{"RINGCACHE_RING=chord", "RINGCACHE_X=1"},
			[]string{`invalid store "arc" (flag --store)`, `invalid ring "chord" (env RINGCACHE_RING)`, "origin is required"}},
		// The file's value is wrong even if a flag overrides it; say so.
		{"overridden bad value still reported", []string{originFlag, "--cache-size=1GiB"}, []string{"RINGCACHE_CACHE_SIZE=12XB"},
			[]string{`invalid cache_size "12XB" (env RINGCACHE_CACHE_SIZE)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantContains(t, loadErr(t, tt.args, tt.env), tt.want...)
		})
	}

	// Only RINGCACHE_* is ours; RINGCACHE_CONFIG is a known name.
	c := mustLoad(t, []string{originFlag}, []string{"HOME=/root", "PATH=/bin", "NOEQUALS", "RINGCACHE_CONFIG="})
	if c.ConfigFile != "" {
		t.Errorf("ConfigFile = %q", c.ConfigFile)
	}
}

// An unknown RINGCACHE_* variable is a warning, not an error: the
// environment is shared (a misspelt flag or YAML key is still an error).
func TestUnknownEnvWarns(t *testing.T) {
	env := []string{"RINGCACHE_CACHE_SISE=1GiB", "RINGCACHE_BOGUS=1", "RINGCACHE_BOGUS=2", "RINGCACHE_STORE=lru"}
	c, warnings, err := Load([]string{originFlag}, env, nil)
	if err != nil {
		t.Fatalf("Load with unknown variables: %v", err)
	}
	want := []string{
		"unknown environment variable RINGCACHE_BOGUS ignored",
		"unknown environment variable RINGCACHE_CACHE_SISE ignored (did you mean RINGCACHE_CACHE_SIZE?)",
	}
	if !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
	if c.Store != StoreLRU || c.CacheSize != Default().CacheSize {
		t.Errorf("store %s, cache_size %d: the known variable must apply, the unknown one not", c.Store, c.CacheSize)
	}
	// Beside an error too: the misspelling may be its cause.
	_, warnings, err = Load(nil, []string{"RINGCACHE_ORIGN=http://127.0.0.1:9000"}, nil)
	if err == nil || !strings.Contains(err.Error(), "origin is required") {
		t.Fatalf("error %v, want origin is required", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "RINGCACHE_ORIGN ignored (did you mean RINGCACHE_ORIGIN?)") {
		t.Errorf("warnings %q, want the misspelt RINGCACHE_ORIGN named", warnings)
	}
}

// What the kubelet puts into every pod for Services named ringcache or
// ringcache-*, is ignored without a warning; lookalikes set by hand warn.
func TestKubernetesServiceLinks(t *testing.T) {
	injected := []string{
		// Service ringcache: ports 8080 (http) and 7946/UDP (gossip).
		"RINGCACHE_SERVICE_HOST=10.96.0.11",
		"RINGCACHE_SERVICE_PORT=8080",
		"RINGCACHE_SERVICE_PORT_HTTP=8080",
		"RINGCACHE_SERVICE_PORT_GOSSIP_UDP=7946",
		"RINGCACHE_PORT=tcp://10.96.0.11:8080",
		"RINGCACHE_PORT_8080_TCP=tcp://10.96.0.11:8080",
		"RINGCACHE_PORT_8080_TCP_PROTO=tcp",
		"RINGCACHE_PORT_8080_TCP_PORT=8080",
		"RINGCACHE_PORT_8080_TCP_ADDR=10.96.0.11",
		"RINGCACHE_PORT_7946_UDP=udp://10.96.0.11:7946",
		"RINGCACHE_PORT_7946_UDP_PROTO=udp",
		"RINGCACHE_PORT_7946_UDP_PORT=7946",
		"RINGCACHE_PORT_7946_UDP_ADDR=10.96.0.11",
		// Service ringcache-admin on an IPv6 cluster, SCTP for good measure.
		"RINGCACHE_ADMIN_SERVICE_HOST=fd00:10:96::a",
		"RINGCACHE_ADMIN_SERVICE_PORT=8081",
		"RINGCACHE_ADMIN_PORT=sctp://[fd00:10:96::a]:8081",
		"RINGCACHE_ADMIN_PORT_8081_SCTP=sctp://[fd00:10:96::a]:8081",
		"RINGCACHE_ADMIN_PORT_8081_SCTP_ADDR=fd00:10:96::a",
		// Service ringcache-port-forward: its name holds _PORT itself.
		"RINGCACHE_PORT_FORWARD_SERVICE_HOST=10.96.0.12",
		"RINGCACHE_PORT_FORWARD_PORT=tcp://10.96.0.12:80",
	}
	c, warnings, err := Load([]string{originFlag}, injected, nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("Load with Kubernetes' service variables: warnings %q, error %v", warnings, err)
	}
	if !reflect.DeepEqual(c, mustLoad(t, []string{originFlag}, nil)) {
		t.Error("Kubernetes' service variables changed the configuration")
	}

	for _, kv := range []string{
		"RINGCACHE_ADMIN_PORT=9091",                     // not tcp://ip:port: someone's guess at a setting
		"RINGCACHE_SERVICE_HOST=cache.example",          // not an IP
		"RINGCACHE_SERVICE_PORT=http",                   // not a port
		"RINGCACHE_PORT_8080_TCP=tcp://10.96.0.11:9090", // port disagrees with the name
		"RINGCACHE_PORT_8080_TCP_PROTO=udp",
		"RINGCACHE_PORT_8080_HTTP=tcp://10.96.0.11:8080", // no such protocol
		"RINGCACHE_PORT_0_TCP_PORT=0",
		"RINGCACHE__PORT=tcp://10.96.0.11:80", // no Service name has "--" turned "__" at its end
		"RINGCACHE_LISTEN_PORT=8080x",
	} {
		_, warnings, err := Load([]string{originFlag}, []string{kv}, nil)
		name, _, _ := strings.Cut(kv, "=")
		if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], name) {
			t.Errorf("%s: warnings %q, error %v; want one warning naming it", kv, warnings, err)
		}
	}
}

// No setting may be spelt like a variable Kubernetes derives from a
// Service's name: a Service named ringcache-admin would otherwise set
// RINGCACHE_ADMIN_PORT in every pod, and with it a setting admin_port.
func TestNoSettingLooksLikeAServiceLink(t *testing.T) {
	var c Config
	for _, s := range c.settings() {
		for _, v := range []string{"10.96.0.11", "8080", "tcp://10.96.0.11:8080", "tcp", "udp", "sctp"} {
			if serviceLinkVar(s.envName(), v) {
				t.Errorf("%s=%s is what Kubernetes sets for a Service: rename the setting %s", s.envName(), v, s.name)
			}
		}
	}
}

// TestFileOnlySettings: the settings read from their YAML node (rules,
// origins) have no flag — one given is refused, saying where the setting
// goes — and their variables are ignored with a warning that says so.
func TestFileOnlySettings(t *testing.T) {
	var c Config
	var names []string
	for _, s := range c.settings() {
		if !s.fileOnly() {
			continue
		}
		names = append(names, s.name)
		where := s.name + " can be set only in the config file"
		wantContains(t, loadErr(t, []string{originFlag, "--" + s.flagName() + "=x"}, nil),
			`invalid argument "x" for "--`+s.flagName()+`" flag: `+where)
		got, warnings, err := Load([]string{originFlag}, []string{s.envName() + "=x"}, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.envName(), err)
		}
		if want := "environment variable " + s.envName() + " ignored: " + where; len(warnings) != 1 || warnings[0] != want {
			t.Errorf("%s: warnings %q, want %q", s.envName(), warnings, want)
		}
		for _, gs := range got.settings() {
			if gs.name == s.name && gs.val.String() != "" {
				t.Errorf("%s set to %q by its variable", s.name, gs.val.String())
			}
		}
	}
	if want := []string{"origins", "rules"}; !slices.Equal(names, want) {
		t.Errorf("file-only settings %q, want %q", names, want)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {originFlag, "--store=arc", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out strings.Builder
			_, err := load(args, []string{"RINGCACHE_BOGUS=1"}, &out)
			if !errors.Is(err, ErrHelp) {
				t.Fatalf("Load(%q) error = %v; want ErrHelp", args, err)
			}
			help := out.String()
			var c Config
			def := Default()
			defaults := def.settings()
			for i, s := range c.settings() {
				if s.fileOnly() { // no flag: listed under "In the config file only"
					wantContains(t, help, "\n  "+s.name+":", s.help)
					continue
				}
				line := ""
				for l := range strings.SplitSeq(help, "\n") {
					if strings.HasPrefix(strings.TrimSpace(l), "--"+s.flagName()+" ") {
						line = l
					}
				}
				if line == "" {
					t.Errorf("help has no line for --%s", s.flagName())
					continue
				}
				d := defaults[i].val.String()
				wantContains(t, line, s.envName(), s.help, "default ")
				if d != "" && !strings.Contains(line, d) {
					t.Errorf("help line %q lacks default %q", line, d)
				}
			}
			wantContains(t, help, "--cache-size bytes", "default 256MiB, env RINGCACHE_CACHE_SIZE", "--max-heuristic-ttl duration", "default 24h,")
		})
	}
}
