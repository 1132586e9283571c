package origin

import (
	"strings"
	"testing"
)

func TestHostPattern(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "www.example.org", want: "www.example.org"},
		{in: "WWW.Example.ORG", want: "www.example.org"},
		{in: "*.example.org", want: "*.example.org"},
		{in: "localhost", want: "localhost"},
		{in: "my_host-1", want: "my_host-1"},
		{in: "10.0.0.1", want: "10.0.0.1"},
		{in: "[::1]", want: "[::1]"},
		{in: "", err: "empty host"},
		{in: "*.", err: "empty host"},
		{in: "example.org:8080", err: "without a port"},
		{in: "[::1]:80", err: "IPv6 address in brackets"},
		{in: "[10.0.0.1]", err: "IPv6 address in brackets"},
		{in: "*.[::1]", err: "wildcard needs a domain name"},
		{in: "www.*.org", err: "first label"},
		{in: "*example.org", err: "first label"},
		{in: "a..b", err: "empty label"},
		{in: ".example.org", err: "empty label"},
		{in: "example.org/", err: `character '/'`},
		{in: "ex ample", err: `character ' '`},
	}
	for _, tt := range tests {
		got, err := HostPattern(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("HostPattern(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("HostPattern(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.err)
		}
	}
}

// vhostRouter has a default pool and three virtual-host pools; no server
// is contacted.
func vhostRouter(t testing.TB) *Router {
	t.Helper()
	r, err := NewRouter(RouterOptions{Pools: []PoolOptions{
		{Servers: []string{"http://default.internal"}},
		{Hosts: []string{"www.example.org", "Example.org"}, Servers: []string{"http://www.internal"}},
		{Name: "any-example", Hosts: []string{"*.example.org"}, Servers: []string{"http://any.internal"}},
		{Hosts: []string{"*.img.example.org", "[::1]", "10.1.2.3"}, Servers: []string{"http://img.internal"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestRouterVirtualHosts(t *testing.T) {
	r := vhostRouter(t)
	tests := []struct{ authority, pool string }{
		{"www.example.org", "www.example.org"},
		{"www.example.org:8080", "www.example.org"},
		{"WWW.EXAMPLE.ORG", "www.example.org"},
		{"www.example.org.", "www.example.org"},
		{"example.org", "www.example.org"}, // listed by name beside www
		{"shop.example.org", "any-example"},
		{"a.b.example.org:443", "any-example"},
		{"x.img.example.org", "*.img.example.org"}, // the most specific wildcard
		{"img.example.org", "any-example"},         // *.img.example.org is below it
		{"[::1]:8080", "*.img.example.org"},
		{"10.1.2.3", "*.img.example.org"},
		{"example.com", "default"},
		{"wwwexample.org", "default"},
		{"org", "default"},
		{"", "default"},
		{":80", "default"},
		{".", "default"},
		{strings.Repeat("a.", 200) + "example.org", "default"}, // longer than any DNS name
	}
	for _, tt := range tests {
		if got := r.Route([]byte(tt.authority)).Name(); got != tt.pool {
			t.Errorf("Route(%q) = pool %q, want %q", tt.authority, got, tt.pool)
		}
	}
}

func TestRouterRouteAllocs(t *testing.T) {
	r := vhostRouter(t)
	for _, host := range []string{"www.example.org:8080", "Shop.Example.Org", "x.img.example.org", "example.com"} {
		b := []byte(host)
		if n := testing.AllocsPerRun(100, func() { r.Route(b) }); n != 0 {
			t.Errorf("Route(%q): %v allocations, want 0", host, n)
		}
	}
}

// TestRouterFetchByHost: requests reach the pool of their Host header,
// over the wire.
func TestRouterFetchByHost(t *testing.T) {
	def, www := startNamed(t, "def"), startNamed(t, "www")
	r, err := NewRouter(RouterOptions{
		Client: ClientOptions{PreserveHost: true},
		Pools: []PoolOptions{
			{Hosts: []string{"www.example.org"}, Servers: urls(www)},
			{Servers: urls(def)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for host, want := range map[string]string{"www.example.org": "www", "WWW.example.org:80": "www", "other.example": "def"} {
		if got, err := poolFetch(r, host, "/"); err != nil || got != want {
			t.Errorf("Host %s: answered by %q (%v), want %s", host, got, err, want)
		}
	}
}

func TestRouterOptionsValidation(t *testing.T) {
	srv := []string{"http://127.0.0.1:1"}
	tests := []struct {
		name  string
		pools []PoolOptions
		want  string
	}{
		{"no pools", nil, "no default origin pool"},
		{"no default", []PoolOptions{{Hosts: []string{"a.example"}, Servers: srv}}, "no default origin pool"},
		{"two defaults", []PoolOptions{{Servers: srv}, {Name: "second", Servers: srv}}, "origin pool 1 (second): a second pool without hosts (default is the default)"},
		{"host twice", []PoolOptions{{Servers: srv}, {Hosts: []string{"a.example"}, Servers: srv}, {Hosts: []string{"A.example"}, Servers: srv}},
			`origin pool 2 (A.example): host "A.example" is also in pool a.example`},
		{"bad host", []PoolOptions{{Servers: srv}, {Hosts: []string{"a.example:80"}, Servers: srv}}, `host "a.example:80": want a host without a port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRouter(RouterOptions{Pools: tt.pools})
			if err == nil {
				r.Close()
				t.Fatal("NewRouter succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want %q", err, tt.want)
			}
		})
	}
}
