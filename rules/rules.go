// Package rules is the operator's say over what the cache does with a
// request, as Varnish's VCL or nginx's proxy_cache_* directives give it: an
// ordered list of rules, each matching requests by host, path, method, a
// request field or a cookie, and each changing how they are cached —
// bypass the cache, force or cap the TTL of what is stored, add request
// fields or cookies to the cache key, serve stale copies when the origin
// fails. The first rule that matches a request applies, alone; a request
// no rule matches is cached by the HTTP rules as if there were none.
//
// A Set is compiled once (regular expressions included) and never changes;
// a reload builds a new one. Matching does not allocate.
package rules

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/httpcache"
	"github.com/valyala/fasthttp"
)

// Spec is one rule as the operator writes it (the YAML keys are in the
// field comments). The conditions set must all hold for the rule to match;
// a rule without conditions matches every request. At least one action
// must be set.
type Spec struct {
	// Conditions.

	// Host is the request's host (the cache key's: key_host when set):
	// exact ("www.example.com"), or "*.example.com" for every name under
	// example.com (not example.com itself). Without a port it matches any
	// port; "example.com:8080" matches that port only. Case-insensitive.
	Host string // host
	// PathPrefix matches paths that start with it, as a plain string
	// ("/static" matches "/static/a.css" and "/staticfoo"). Paths are
	// matched decoded and normalised ("/a/../%62" is "/b"), without the
	// query, so an encoding cannot slip a request past a rule.
	PathPrefix string // path_prefix
	// PathRegex is a Go regular expression (RE2 syntax) the path must
	// match somewhere; anchor it with ^ and $ to match it whole.
	PathRegex string // path_regex
	// Methods lists GET and/or HEAD, the methods the cache answers; empty
	// matches both. Other methods always go to the origin, rules or not.
	Methods []string // methods
	// Header names a request field that must be present (with any value,
	// even empty); "Cookie" means any cookie at all.
	Header string // header
	// HeaderValue, with Header, is a value one of the field's lines must
	// equal exactly (white space around it ignored).
	HeaderValue string // header_value
	// Cookie names a cookie that must be present (with any value).
	Cookie string // cookie

	// Actions.

	// Bypass sends matching requests to the origin as they are: nothing is
	// looked up, stored or coalesced. It excludes the other actions.
	Bypass bool // bypass
	// TTL replaces the freshness lifetime of what is stored: fresh for
	// this long after it arrives, whatever the response says. Whole
	// seconds.
	TTL time.Duration // ttl
	// MaxTTL caps the freshness a stored response has left on arrival.
	// Whole seconds.
	MaxTTL time.Duration // max_ttl
	// KeyHeaders adds the values of these request fields to the cache key.
	KeyHeaders []string // key_headers
	// KeyCookies adds the values of these cookies to the cache key.
	KeyCookies []string // key_cookies
	// StaleIfError lets a stored response be served for this long past its
	// freshness when the origin fails (a connection error or timeout, or
	// a 5xx), as if it had said stale-if-error (RFC 5861 §4). Whole
	// seconds.
	StaleIfError time.Duration // stale_if_error
}

// Rule is a compiled Spec. It is immutable and safe for concurrent use.
type Rule struct {
	// Index is the rule's position in its list, from 0: rules[Index] in
	// the config file.
	Index int
	spec  Spec

	// Conditions, prepared for matching without allocating.
	host     []byte // lower-case, without "*." when wildcard
	wildcard bool
	port     bool // host names a port: compare the whole authority
	prefix   []byte
	re       *regexp.Regexp
	get      bool // methods; both false: any
	head     bool
	header   string
	value    []byte
	hasValue bool
	anyCook  bool // header: Cookie
	cookie   []byte

	// Actions.
	policy httpcache.Policy // TTL, MaxTTL, StaleIfError only
	key    *cache.KeyFields // nil: the key is unchanged
}

// Bypass reports whether matching requests bypass the cache.
func (r *Rule) Bypass() bool { return r.spec.Bypass }

// Key returns the fields the rule adds to the cache key, or nil.
func (r *Rule) Key() *cache.KeyFields {
	if r == nil {
		return nil
	}
	return r.key
}

// Policy returns base with the rule's TTL, MaxTTL and StaleIfError; a nil
// rule returns base.
func (r *Rule) Policy(base httpcache.Policy) httpcache.Policy {
	if r == nil {
		return base
	}
	base.TTL, base.MaxTTL, base.StaleIfError = r.policy.TTL, r.policy.MaxTTL, r.policy.StaleIfError
	return base
}

// Spec returns the rule as written.
func (r *Rule) Spec() Spec { return r.spec }

// Set is an ordered list of rules. The nil *Set has no rules.
type Set struct {
	rules []*Rule
}

// New compiles specs into a Set. The error joins a *FieldError for each
// problem found, in order, so that every problem is reported at once.
func New(specs []Spec) (*Set, error) {
	s := &Set{}
	var errs []error
	for i, spec := range specs {
		r, err := Compile(i, spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.rules = append(s.rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Len returns the number of rules.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Rules returns the compiled rules in order.
func (s *Set) Rules() []*Rule {
	if s == nil {
		return nil
	}
	return s.rules
}

// Match returns the first rule matching the request, or nil. host is its
// authority as the cache key names it, uri its URI and h its header; none
// is kept. It does not allocate.
func (s *Set) Match(host []byte, uri *fasthttp.URI, h *fasthttp.RequestHeader) *Rule {
	if s == nil {
		return nil
	}
	var path []byte
	pathDone := false
	for _, r := range s.rules {
		if (r.get || r.head) && !(r.get && h.IsGet() || r.head && h.IsHead()) {
			continue
		}
		if r.host != nil && !r.matchHost(host) {
			continue
		}
		if r.prefix != nil || r.re != nil {
			if !pathDone {
				path, pathDone = uri.Path(), true
			}
			if !bytes.HasPrefix(path, r.prefix) || (r.re != nil && !r.re.Match(path)) {
				continue
			}
		}
		if r.header != "" && !r.matchHeader(h) {
			continue
		}
		if r.cookie != nil && !hasCookie(h, r.cookie) {
			continue
		}
		return r
	}
	return nil
}

func (r *Rule) matchHost(authority []byte) bool {
	host := authority
	if !r.port {
		host = hostOnly(authority)
	}
	if !r.wildcard {
		return equalFold(host, r.host)
	}
	// "*.example.com" is stored as ".example.com": a suffix after at
	// least one more label.
	n := len(host) - len(r.host)
	return n > 0 && equalFold(host[n:], r.host)
}

// hostOnly strips the port from an authority: "h:80" and "[::1]:80" give
// "h" and "[::1]".
func hostOnly(a []byte) []byte {
	if len(a) > 0 && a[0] == '[' {
		if i := bytes.IndexByte(a, ']'); i >= 0 {
			return a[:i+1]
		}
		return a
	}
	if i := bytes.LastIndexByte(a, ':'); i >= 0 {
		return a[:i]
	}
	return a
}

// equalFold compares a with lower, which is lower-case, ignoring ASCII case.
func equalFold(a, lower []byte) bool {
	if len(a) != len(lower) {
		return false
	}
	for i, c := range a {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func (r *Rule) matchHeader(h *fasthttp.RequestHeader) bool {
	if r.anyCook {
		for range h.Cookies() {
			return true
		}
		return false
	}
	lines := h.PeekAll(r.header)
	if !r.hasValue {
		return len(lines) > 0
	}
	for _, v := range lines {
		if bytes.Equal(httpcache.TrimOWS(v), r.value) {
			return true
		}
	}
	return false
}

func hasCookie(h *fasthttp.RequestHeader, name []byte) bool {
	for k := range h.Cookies() {
		if bytes.Equal(k, name) {
			return true
		}
	}
	return false
}

// FieldError is a problem with one key of one rule.
type FieldError struct {
	Index int    // the rule's position, from 0
	Field string // its key as written, such as "path_regex"; "" for the rule as a whole
	Value string // the offending value as text; "" when Field is ""
	Err   error
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("rules[%d]: %v", e.Index, e.Err)
	}
	return fmt.Sprintf("invalid rules[%d].%s %s: %v", e.Index, e.Field, strconv.Quote(e.Value), e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Compile checks and compiles the spec of rule i. The error joins a
// *FieldError per problem.
func Compile(i int, s Spec) (*Rule, error) {
	r := &Rule{Index: i, spec: s}
	var errs []error
	bad := func(field, value string, format string, args ...any) {
		errs = append(errs, &FieldError{Index: i, Field: field, Value: value, Err: fmt.Errorf(format, args...)})
	}

	if s.Host != "" {
		if err := r.setHost(s.Host); err != nil {
			bad("host", s.Host, "%v", err)
		}
	}
	if s.PathPrefix != "" {
		if s.PathPrefix[0] != '/' {
			bad("path_prefix", s.PathPrefix, "must start with /")
		}
		r.prefix = []byte(s.PathPrefix)
	}
	if s.PathRegex != "" {
		re, err := regexp.Compile(s.PathRegex)
		if err != nil {
			bad("path_regex", s.PathRegex, "%v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		r.re = re
	}
	for _, m := range s.Methods {
		switch strings.ToUpper(m) {
		case fasthttp.MethodGet:
			r.get = true
		case fasthttp.MethodHead:
			r.head = true
		default:
			bad("methods", m, "want GET or HEAD (other methods are never cached, and always go to the origin)")
		}
	}
	if s.Header != "" {
		switch {
		case !token(s.Header):
			bad("header", s.Header, "want a field name such as X-Debug")
		case strings.EqualFold(s.Header, "cookie") && s.HeaderValue != "":
			bad("header_value", s.HeaderValue, "cannot be matched against Cookie: name the cookie with cookie")
		case strings.EqualFold(s.Header, "cookie"):
			r.anyCook = true
		case strings.EqualFold(s.Header, "host"):
			bad("header", s.Header, "match the host with host")
		}
		r.header = strings.ToLower(s.Header)
		if s.HeaderValue != "" {
			r.value, r.hasValue = []byte(strings.TrimSpace(s.HeaderValue)), true
		}
	} else if s.HeaderValue != "" {
		bad("header_value", s.HeaderValue, "needs header, the field it is the value of")
	}
	if s.Cookie != "" {
		if !token(s.Cookie) {
			bad("cookie", s.Cookie, "want a cookie name")
		}
		r.cookie = []byte(s.Cookie)
	}

	for _, d := range []struct {
		field string
		v     time.Duration
		dst   *int64
	}{
		{"ttl", s.TTL, &r.policy.TTL},
		{"max_ttl", s.MaxTTL, &r.policy.MaxTTL},
		{"stale_if_error", s.StaleIfError, &r.policy.StaleIfError},
	} {
		switch {
		case d.v < 0:
			bad(d.field, d.v.String(), "must not be negative")
		case d.v > 0 && d.v%time.Second != 0:
			bad(d.field, d.v.String(), "want whole seconds, such as 30s or 1h")
		case d.v >= 1<<31*time.Second:
			bad(d.field, d.v.String(), "must be under 68 years")
		}
		*d.dst = int64(d.v / time.Second)
	}
	if s.TTL > 0 && s.MaxTTL > 0 {
		bad("max_ttl", s.MaxTTL.String(), "has no effect beside ttl; set one of them")
	}

	key := &cache.KeyFields{}
	for _, name := range s.KeyHeaders {
		lower := strings.ToLower(name)
		switch {
		case !token(name):
			bad("key_headers", name, "want a field name such as Accept-Language")
		case lower == "cookie":
			bad("key_headers", name, "name the cookies with key_cookies")
		case lower == "host":
			bad("key_headers", name, "the host is always part of the key")
		case hopByHop(lower):
			bad("key_headers", name, "a hop-by-hop field never reaches the origin (RFC 9110 §7.6.1)")
		case lower == "x-forwarded-for" || lower == "forwarded":
			bad("key_headers", name, "it names the client's address: every client would get an entry of its own")
		case rewritten(lower):
			bad("key_headers", name, "the node rewrites it before the origin sees it (Vary: Accept-Encoding, with normalize_accept_encoding, keys by the codings accepted)")
		case !contains(key.Headers, lower):
			key.Headers = append(key.Headers, lower)
		}
	}
	for _, name := range s.KeyCookies {
		switch {
		case !token(name):
			bad("key_cookies", name, "want a cookie name")
		case !contains(key.Cookies, name):
			key.Cookies = append(key.Cookies, name)
		}
	}
	if key.Keyed() {
		r.key = key
	}

	actions := r.key != nil || s.TTL > 0 || s.MaxTTL > 0 || s.StaleIfError > 0
	switch {
	case s.Bypass && actions:
		errs = append(errs, &FieldError{Index: i, Err: errors.New(
			"bypass excludes ttl, max_ttl, key_headers, key_cookies and stale_if_error: a bypassed request is never looked up or stored")})
	case !s.Bypass && !actions:
		errs = append(errs, &FieldError{Index: i, Err: errors.New(
			"no action: set bypass, ttl, max_ttl, key_headers, key_cookies or stale_if_error")})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// setHost prepares a host condition: a name, "*." and a name, or either
// with ":port"; IPv6 literals in brackets.
func (r *Rule) setHost(h string) error {
	h = strings.ToLower(h)
	if strings.ContainsAny(h, " \t/?#@\\") {
		return errors.New("want a host name, without scheme or path")
	}
	name, port := h, ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		name, port = h[:i], h[i+1:]
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("port %q is not a number in 0..65535", port)
		}
		r.port = true
	}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name, r.wildcard = rest, true
	}
	switch {
	case name == "":
		return errors.New("want a host name such as www.example.com or *.example.com")
	case strings.Contains(name, "*"):
		return errors.New(`a wildcard is allowed only as the first label, as in *.example.com`)
	case strings.Contains(name, ":") && !strings.HasPrefix(name, "["):
		return errors.New("an IPv6 address goes in brackets, as in [2001:db8::1]")
	}
	if r.wildcard {
		name = "." + name
	}
	if port != "" {
		name += ":" + port
	}
	r.host = []byte(name)
	return nil
}

// rewritten lists the fields the request path replaces or drops on the
// way to the origin (preconditions and ranges are answered by the cache,
// Via and Accept-Encoding are rewritten, X-Ringcache-* is the peer
// protocol's): a key on them would not be the value the origin answered.
func rewritten(lower string) bool {
	switch lower {
	case "accept-encoding", "via", "content-length", "range", "if-range",
		"if-match", "if-none-match", "if-modified-since", "if-unmodified-since":
		return true
	}
	return strings.HasPrefix(lower, "x-ringcache-")
}

// hopByHop lists the fields a proxy never forwards (RFC 9110 §7.6.1).
func hopByHop(lower string) bool {
	switch lower {
	case "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
		"proxy-authenticate", "proxy-authorization":
		return true
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// token reports whether s is a token (RFC 9110 §5.6.2): field names and
// cookie names are.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// String renders the rules in order, one bracketed list of the keys each
// sets, so that two sets print alike exactly when they hold the same
// rules: what a reload compares, and what the configuration log shows.
func (s *Set) String() string {
	var b strings.Builder
	for i, r := range s.Rules() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(r.spec.String())
	}
	return b.String()
}

// String renders the spec as "[key=value ...]" with the keys it sets, in
// the order of the Spec's fields.
func (s Spec) String() string {
	var parts []string
	str := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+strconv.Quote(v))
		}
	}
	list := func(k string, v []string) {
		if len(v) > 0 {
			q := make([]string, len(v))
			for i, it := range v {
				q[i] = strconv.Quote(it)
			}
			parts = append(parts, k+"=["+strings.Join(q, ",")+"]")
		}
	}
	dur := func(k string, d time.Duration) {
		if d != 0 {
			parts = append(parts, k+"="+d.String())
		}
	}
	str("host", s.Host)
	str("path_prefix", s.PathPrefix)
	str("path_regex", s.PathRegex)
	list("methods", s.Methods)
	str("header", s.Header)
	str("header_value", s.HeaderValue)
	str("cookie", s.Cookie)
	if s.Bypass {
		parts = append(parts, "bypass")
	}
	dur("ttl", s.TTL)
	dur("max_ttl", s.MaxTTL)
	list("key_headers", s.KeyHeaders)
	list("key_cookies", s.KeyCookies)
	dur("stale_if_error", s.StaleIfError)
	return "[" + strings.Join(parts, " ") + "]"
}
