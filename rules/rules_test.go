package rules

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// request builds a parsed request: method, target and header lines.
func request(t testing.TB, method, target string, lines ...string) *fasthttp.Request {
	t.Helper()
	req := &fasthttp.Request{}
	req.Header.SetMethod(method)
	req.SetRequestURI(target)
	for _, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("bad header line %q", l)
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	return req
}

func mustSet(t testing.TB, specs ...Spec) *Set {
	t.Helper()
	s, err := New(specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var ttl = Spec{TTL: time.Minute} // an action, for rules that test a condition

func with(s Spec) Spec { s.TTL = ttl.TTL; return s }

func TestMatch(t *testing.T) {
	tests := []struct {
		name   string
		rule   Spec
		method string
		target string // the host of the URL is the request's authority
		lines  []string
		want   bool
	}{
		// No condition.
		{"no condition matches everything", ttl, "GET", "http://a.example/x", nil, true},

		// host: the key's authority, exact or *.suffix, port-aware.
		{"host exact", with(Spec{Host: "www.example.com"}), "GET", "http://www.example.com/", nil, true},
		{"host exact: another host", with(Spec{Host: "www.example.com"}), "GET", "http://example.com/", nil, false},
		{"RFC9110 §4.2.3 host is case-insensitive", with(Spec{Host: "WWW.Example.com"}), "GET", "http://www.EXAMPLE.com/", nil, true},
		{"host without port matches any port", with(Spec{Host: "www.example.com"}), "GET", "http://www.example.com:8080/", nil, true},
		{"host with port matches that port", with(Spec{Host: "www.example.com:8080"}), "GET", "http://www.example.com:8080/", nil, true},
		{"host with port: another port", with(Spec{Host: "www.example.com:8080"}), "GET", "http://www.example.com:9090/", nil, false},
		{"host with port: no port", with(Spec{Host: "www.example.com:8080"}), "GET", "http://www.example.com/", nil, false},
		{"wildcard: a subdomain", with(Spec{Host: "*.example.com"}), "GET", "http://img.example.com/", nil, true},
		{"wildcard: any depth", with(Spec{Host: "*.example.com"}), "GET", "http://a.b.example.com:81/", nil, true},
		{"wildcard: not the domain itself", with(Spec{Host: "*.example.com"}), "GET", "http://example.com/", nil, false},
		{"wildcard: not a name ending alike", with(Spec{Host: "*.example.com"}), "GET", "http://badexample.com/", nil, false},
		{"wildcard with port", with(Spec{Host: "*.example.com:8080"}), "GET", "http://a.example.com:8080/", nil, true},
		{"wildcard with port: another port", with(Spec{Host: "*.example.com:8080"}), "GET", "http://a.example.com/", nil, false},
		{"IPv6 literal without port", with(Spec{Host: "[2001:db8::1]"}), "GET", "http://[2001:db8::1]:8080/", nil, true},
		{"IPv6 literal: another address", with(Spec{Host: "[2001:db8::1]"}), "GET", "http://[2001:db8::2]/", nil, false},

		// path_prefix and path_regex: the decoded, normalised path.
		{"path_prefix", with(Spec{PathPrefix: "/static/"}), "GET", "http://h/static/a.css?v=1", nil, true},
		{"path_prefix is a plain prefix", with(Spec{PathPrefix: "/static"}), "GET", "http://h/staticfoo", nil, true},
		{"path_prefix: elsewhere", with(Spec{PathPrefix: "/static/"}), "GET", "http://h/api/static/", nil, false},
		{"path_prefix: not the query", with(Spec{PathPrefix: "/a?x"}), "GET", "http://h/a?x=1", nil, false},
		{"RFC3986 §2.1 percent-encoding cannot slip past a prefix", with(Spec{PathPrefix: "/admin/"}), "GET", "http://h/%61dmin/x", nil, true},
		{"RFC3986 §5.2.4 nor dot segments", with(Spec{PathPrefix: "/admin/"}), "GET", "http://h/pub/../admin/x", nil, true},
		{"path_regex anywhere in the path", with(Spec{PathRegex: `\.(css|js)$`}), "GET", "http://h/a/b.css", nil, true},
		{"path_regex: no match", with(Spec{PathRegex: `\.(css|js)$`}), "GET", "http://h/a/b.css.map", nil, false},
		{"path_regex anchored", with(Spec{PathRegex: `^/api/v[0-9]+/`}), "GET", "http://h/api/v2/users", nil, true},
		{"path_regex: not the query", with(Spec{PathRegex: `x=1`}), "GET", "http://h/a?x=1", nil, false},
		{"path_prefix and path_regex both hold", with(Spec{PathPrefix: "/a/", PathRegex: `\.png$`}), "GET", "http://h/a/b.png", nil, true},
		{"path_prefix and path_regex: one fails", with(Spec{PathPrefix: "/a/", PathRegex: `\.png$`}), "GET", "http://h/b/b.png", nil, false},

		// methods.
		{"methods: GET", with(Spec{Methods: []string{"GET"}}), "GET", "http://h/", nil, true},
		{"methods: GET, not HEAD", with(Spec{Methods: []string{"GET"}}), "HEAD", "http://h/", nil, false},
		{"methods: lower-case head", with(Spec{Methods: []string{"head"}}), "HEAD", "http://h/", nil, true},
		{"methods: none means both", ttl, "HEAD", "http://h/", nil, true},

		// header: presence, or a value.
		{"header present", with(Spec{Header: "X-Debug"}), "GET", "http://h/", []string{"x-debug: 1"}, true},
		{"header present and empty", with(Spec{Header: "X-Debug"}), "GET", "http://h/", []string{"X-Debug: "}, true},
		{"header absent", with(Spec{Header: "X-Debug"}), "GET", "http://h/", []string{"X-Other: 1"}, false},
		{"header_value equal", with(Spec{Header: "X-Debug", HeaderValue: "on"}), "GET", "http://h/", []string{"X-Debug:  on "}, true},
		{"header_value differs", with(Spec{Header: "X-Debug", HeaderValue: "on"}), "GET", "http://h/", []string{"X-Debug: On"}, false},
		{"header_value on any line", with(Spec{Header: "X-Debug", HeaderValue: "on"}), "GET", "http://h/", []string{"X-Debug: off", "X-Debug: on"}, true},
		{"header Authorization", with(Spec{Header: "Authorization"}), "GET", "http://h/", []string{"Authorization: Bearer x"}, true},
		{"header Cookie: any cookie", with(Spec{Header: "Cookie"}), "GET", "http://h/", []string{"Cookie: a=1"}, true},
		{"header Cookie: no cookie", with(Spec{Header: "Cookie"}), "GET", "http://h/", nil, false},

		// cookie presence.
		{"cookie present", with(Spec{Cookie: "session"}), "GET", "http://h/", []string{"Cookie: a=1; session=xyz"}, true},
		{"cookie present and empty", with(Spec{Cookie: "session"}), "GET", "http://h/", []string{"Cookie: session="}, true},
		{"cookie absent", with(Spec{Cookie: "session"}), "GET", "http://h/", []string{"Cookie: a=1"}, false},
		{"cookie names are case-sensitive", with(Spec{Cookie: "session"}), "GET", "http://h/", []string{"Cookie: Session=1"}, false},
		{"cookie in a second Cookie line", with(Spec{Cookie: "session"}), "GET", "http://h/", []string{"Cookie: a=1", "Cookie: session=2"}, true},

		// Every condition set must hold.
		{"all conditions hold", with(Spec{Host: "*.example.com", PathPrefix: "/a", Methods: []string{"GET"}, Header: "X-A", Cookie: "c"}),
			"GET", "http://w.example.com/a", []string{"X-A: 1", "Cookie: c=1"}, true},
		{"all but the cookie", with(Spec{Host: "*.example.com", PathPrefix: "/a", Methods: []string{"GET"}, Header: "X-A", Cookie: "c"}),
			"GET", "http://w.example.com/a", []string{"X-A: 1"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSet(t, tc.rule)
			req := request(t, tc.method, tc.target, tc.lines...)
			got := s.Match(req.URI().Host(), req.URI(), &req.Header) != nil
			if got != tc.want {
				t.Errorf("rule %v on %s %s %q: matched %v, want %v", tc.rule, tc.method, tc.target, tc.lines, got, tc.want)
			}
		})
	}
}

// TestMatchFirstWins: rules are tried in order and the first that matches
// applies alone; its actions are not merged with later ones.
func TestMatchFirstWins(t *testing.T) {
	s := mustSet(t,
		Spec{Cookie: "session", Bypass: true},
		Spec{PathPrefix: "/static/", TTL: time.Hour},
		Spec{StaleIfError: time.Minute},
	)
	for _, tc := range []struct {
		target string
		lines  []string
		want   int
	}{
		{"http://h/static/a.css", []string{"Cookie: session=1"}, 0},
		{"http://h/static/a.css", nil, 1},
		{"http://h/page", nil, 2},
	} {
		req := request(t, "GET", tc.target, tc.lines...)
		r := s.Match(req.URI().Host(), req.URI(), &req.Header)
		if r == nil || r.Index != tc.want {
			t.Errorf("%s %q: matched %+v, want rules[%d]", tc.target, tc.lines, r, tc.want)
		}
	}
	if r := s.Rules()[1]; r.Policy(httpcache.Policy{}).StaleIfError != 0 {
		t.Errorf("rules[1] took rules[2]'s stale_if_error: %+v", r.Policy(httpcache.Policy{}))
	}
	var none *Set
	req := request(t, "GET", "http://h/")
	if r := none.Match(req.URI().Host(), req.URI(), &req.Header); r != nil || none.Len() != 0 {
		t.Errorf("nil set matched %+v", r)
	}
}

// TestActions: what a matched rule tells the request path.
func TestActions(t *testing.T) {
	base := httpcache.Policy{DefaultTTL: 5, StripSetCookie: true}
	tests := []struct {
		name   string
		spec   Spec
		bypass bool
		policy httpcache.Policy
		key    *cache.KeyFields
	}{
		{"bypass", Spec{Bypass: true}, true, base, nil},
		{"ttl", Spec{TTL: time.Hour}, false, httpcache.Policy{DefaultTTL: 5, StripSetCookie: true, TTL: 3600}, nil},
		{"max_ttl", Spec{MaxTTL: time.Minute}, false, httpcache.Policy{DefaultTTL: 5, StripSetCookie: true, MaxTTL: 60}, nil},
		{"stale_if_error", Spec{StaleIfError: 10 * time.Minute}, false, httpcache.Policy{DefaultTTL: 5, StripSetCookie: true, StaleIfError: 600}, nil},
		{"key_headers lower-cased, de-duplicated", Spec{KeyHeaders: []string{"X-Tenant", "Accept-Language", "x-tenant"}}, false, base,
			&cache.KeyFields{Headers: []string{"x-tenant", "accept-language"}}},
		{"key_cookies de-duplicated, case kept", Spec{KeyCookies: []string{"lang", "Lang", "lang"}}, false, base,
			&cache.KeyFields{Cookies: []string{"lang", "Lang"}}},
		{"several actions", Spec{TTL: time.Minute, KeyCookies: []string{"lang"}, StaleIfError: time.Hour}, false,
			httpcache.Policy{DefaultTTL: 5, StripSetCookie: true, TTL: 60, StaleIfError: 3600}, &cache.KeyFields{Cookies: []string{"lang"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Compile(0, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if r.Bypass() != tc.bypass {
				t.Errorf("Bypass() = %v, want %v", r.Bypass(), tc.bypass)
			}
			if got := r.Policy(base); !reflect.DeepEqual(got, tc.policy) {
				t.Errorf("Policy() = %+v, want %+v", got, tc.policy)
			}
			// A rule leaves the cluster's targeted cache control (RFC 9213)
			// as it was.
			targeted := base
			targeted.Targets = httpcache.Targets{[]byte("CDN-Cache-Control")}
			targeted.StripTargets = targeted.Targets
			if got := r.Policy(targeted); !reflect.DeepEqual(got.Targets, targeted.Targets) || !reflect.DeepEqual(got.StripTargets, targeted.StripTargets) {
				t.Errorf("Policy() lost the target list: %+v", got)
			}
			got := r.Key()
			if (got == nil) != (tc.key == nil) || (got != nil && (strings.Join(got.Headers, ",") != strings.Join(tc.key.Headers, ",") ||
				strings.Join(got.Cookies, ",") != strings.Join(tc.key.Cookies, ","))) {
				t.Errorf("Key() = %+v, want %+v", got, tc.key)
			}
		})
	}
	var none *Rule
	if !reflect.DeepEqual(none.Policy(base), base) || none.Key().Keyed() {
		t.Error("a nil rule changes something")
	}
}

// TestCompileErrors: each problem names the rule, the key and the value,
// and every problem of every rule is reported at once.
func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"no action", Spec{Host: "h"}, []string{"rules[0]: no action: set bypass, ttl, max_ttl, key_headers, key_cookies or stale_if_error"}},
		{"bypass with another action", Spec{Bypass: true, TTL: time.Minute}, []string{"rules[0]: bypass excludes ttl"}},
		{"ttl and max_ttl", Spec{TTL: time.Minute, MaxTTL: time.Hour}, []string{`invalid rules[0].max_ttl "1h0m0s": has no effect beside ttl`}},
		{"bad regex", with(Spec{PathRegex: "(a"}), []string{`invalid rules[0].path_regex "(a": missing closing ): ` + "`(a`"}},
		{"prefix without slash", with(Spec{PathPrefix: "static/"}), []string{`invalid rules[0].path_prefix "static/": must start with /`}},
		{"host with a path", with(Spec{Host: "example.com/a"}), []string{`invalid rules[0].host "example.com/a": want a host name, without scheme or path`}},
		{"host with a scheme", with(Spec{Host: "http://example.com"}), []string{`invalid rules[0].host "http://example.com": want a host name, without scheme or path`}},
		{"host wildcard inside", with(Spec{Host: "a.*.example.com"}), []string{`invalid rules[0].host "a.*.example.com": a wildcard is allowed only as the first label`}},
		{"host wildcard alone", with(Spec{Host: "*."}), []string{`invalid rules[0].host "*.": want a host name`}},
		{"host bare IPv6", with(Spec{Host: "2001:db8::1"}), []string{`invalid rules[0].host "2001:db8::1": an IPv6 address goes in brackets`}},
		{"host bad port", with(Spec{Host: "h:http"}), []string{`invalid rules[0].host "h:http": port "http" is not a number in 0..65535`}},
		{"method POST", with(Spec{Methods: []string{"GET", "POST"}}), []string{`invalid rules[0].methods "POST": want GET or HEAD`}},
		{"header not a token", with(Spec{Header: "X Debug"}), []string{`invalid rules[0].header "X Debug": want a field name`}},
		{"header Host", with(Spec{Header: "Host"}), []string{`invalid rules[0].header "Host": match the host with host`}},
		{"header_value without header", with(Spec{HeaderValue: "1"}), []string{`invalid rules[0].header_value "1": needs header`}},
		{"header_value for Cookie", with(Spec{Header: "Cookie", HeaderValue: "a=1"}), []string{`invalid rules[0].header_value "a=1": cannot be matched against Cookie`}},
		{"cookie not a token", with(Spec{Cookie: "a;b"}), []string{`invalid rules[0].cookie "a;b": want a cookie name`}},
		{"negative ttl", Spec{TTL: -time.Second}, []string{`invalid rules[0].ttl "-1s": must not be negative`}},
		{"fractional max_ttl", Spec{MaxTTL: 1500 * time.Millisecond}, []string{`invalid rules[0].max_ttl "1.5s": want whole seconds`}},
		{"huge stale_if_error", Spec{StaleIfError: 1 << 31 * time.Second}, []string{`invalid rules[0].stale_if_error "596523h14m8s": must be under 68 years`}},
		{"key_headers Cookie", Spec{KeyHeaders: []string{"Cookie"}}, []string{`invalid rules[0].key_headers "Cookie": name the cookies with key_cookies`}},
		{"key_headers Host", Spec{KeyHeaders: []string{"host"}}, []string{`invalid rules[0].key_headers "host": the host is always part of the key`}},
		{"key_headers hop-by-hop", Spec{KeyHeaders: []string{"Connection"}}, []string{`invalid rules[0].key_headers "Connection": a hop-by-hop field never reaches the origin`}},
		{"key_headers X-Forwarded-For", Spec{KeyHeaders: []string{"X-Forwarded-For"}}, []string{`invalid rules[0].key_headers "X-Forwarded-For": it names the client's address`}},
		{"key_headers Forwarded", Spec{KeyHeaders: []string{"forwarded"}}, []string{`invalid rules[0].key_headers "forwarded": it names the client's address`}},
		{"key_headers Accept-Encoding", Spec{KeyHeaders: []string{"Accept-Encoding"}}, []string{`invalid rules[0].key_headers "Accept-Encoding": the node rewrites it`}},
		{"key_headers If-None-Match", Spec{KeyHeaders: []string{"If-None-Match"}}, []string{`invalid rules[0].key_headers "If-None-Match": the node rewrites it`}},
		{"key_headers a peer field", Spec{KeyHeaders: []string{"X-Ringcache-Peer"}}, []string{`invalid rules[0].key_headers "X-Ringcache-Peer": the node rewrites it`}},
		{"key_headers not a token", Spec{KeyHeaders: []string{"a:b"}}, []string{`invalid rules[0].key_headers "a:b": want a field name`}},
		{"key_cookies not a token", Spec{KeyCookies: []string{"a=b"}}, []string{`invalid rules[0].key_cookies "a=b": want a cookie name`}},
		{"several problems at once", Spec{PathRegex: "[", Methods: []string{"PUT"}},
			[]string{`rules[0].path_regex "["`, `rules[0].methods "PUT"`, "rules[0]: no action"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(0, tc.spec)
			if err == nil {
				t.Fatalf("Compile(%v) succeeded", tc.spec)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Index != 0 {
				t.Errorf("error %q is not a *FieldError of rules[0]", err)
			}
		})
	}
	// New reports the problems of every rule, each with its index.
	_, err := New([]Spec{ttl, {PathRegex: "("}, ttl, {Methods: []string{"PUT"}, TTL: time.Minute}})
	if err == nil || !strings.Contains(err.Error(), "rules[1].path_regex") || !strings.Contains(err.Error(), "rules[3].methods") {
		t.Errorf("New: %v, want errors for rules[1] and rules[3]", err)
	}
}

func TestSetString(t *testing.T) {
	s := mustSet(t,
		Spec{Host: "*.example.com", PathPrefix: "/s/", Methods: []string{"GET"}, TTL: time.Hour, KeyCookies: []string{"lang"}},
		Spec{Header: "X-Debug", HeaderValue: "1", Bypass: true},
	)
	want := `[host="*.example.com" path_prefix="/s/" methods=["GET"] ttl=1h0m0s key_cookies=["lang"]] [header="X-Debug" header_value="1" bypass]`
	if got := s.String(); got != want {
		t.Errorf("String() = %s\nwant        %s", got, want)
	}
	var none *Set
	if got := none.String(); got != "" {
		t.Errorf("nil String() = %q", got)
	}
}

// TestMatchAllocs: matching allocates nothing, whether a rule matches or
// none does, with every kind of condition to evaluate.
func TestMatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	s := mustSet(t,
		with(Spec{Host: "*.example.org"}),
		with(Spec{PathPrefix: "/admin/"}),
		with(Spec{PathRegex: `\.(css|js)$`, Methods: []string{"HEAD"}}),
		with(Spec{Header: "X-Debug", HeaderValue: "1"}),
		with(Spec{Header: "Cookie", Host: "other.example.com"}),
		with(Spec{Cookie: "session"}),
		with(Spec{Host: "www.example.com", Header: "X-Tenant"}),
	)
	req := request(t, "GET", "http://www.example.com/a/b.css?x=1", "X-Debug: 0", "Cookie: lang=de", "X-Tenant: acme")
	var got *Rule
	if n := testing.AllocsPerRun(200, func() { got = s.Match(req.URI().Host(), req.URI(), &req.Header) }); n != 0 {
		t.Errorf("Match allocates %.1f times, want 0", n)
	}
	if got == nil || got.Index != 6 {
		t.Fatalf("matched %+v, want rules[6]", got)
	}
	req.Header.Del("X-Tenant")
	if n := testing.AllocsPerRun(200, func() { got = s.Match(req.URI().Host(), req.URI(), &req.Header) }); n != 0 {
		t.Errorf("Match without a match allocates %.1f times, want 0", n)
	}
	if got != nil {
		t.Fatalf("matched %+v, want none", got)
	}
}

// BenchmarkMatch: what matching costs a request, with no rules and with
// six that do not match, every kind of condition evaluated.
func BenchmarkMatch(b *testing.B) {
	six := mustSet(b,
		Spec{Host: "*.example.org", Bypass: true},
		Spec{PathPrefix: "/admin/", Bypass: true},
		Spec{PathRegex: `\.(css|js)$`, TTL: time.Hour},
		Spec{Header: "Authorization", Bypass: true},
		Spec{Cookie: "session", Bypass: true},
		Spec{PathPrefix: "/keyed", KeyCookies: []string{"lang"}},
	)
	for _, tc := range []struct {
		name string
		set  *Set
	}{{"none", nil}, {"six", six}} {
		b.Run(tc.name, func(b *testing.B) {
			req := request(b, "GET", "http://www.example.com/a/b/page?x=1", "Cookie: lang=de; theme=dark", "Accept: text/html")
			b.ReportAllocs()
			for b.Loop() {
				if tc.set.Match(req.URI().Host(), req.URI(), &req.Header) != nil {
					b.Fatal("matched")
				}
			}
		})
	}
}
