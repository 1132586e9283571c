package httpcache

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Targeted cache control (RFC 9213): response fields such as
// CDN-Cache-Control that carry Cache-Control directives for one class of
// caches. A cache keeps a target list, the targeted fields it obeys, most
// applicable first; the first of them present with a valid, non-empty
// value decides the response's caching policy, and Cache-Control and
// Expires are then ignored (§2.1). A targeted field is a Structured Field
// Dictionary (RFC 8941 §3.2), parsed as one: a value a Cache-Control parser
// would forgive (an upper-case directive, a trailing comma, a max-age
// of "60s") makes the whole field invalid, and an invalid field is ignored
// as if absent (RFC 9213 §2.2).

// Targets is a cache's target list (RFC 9213 §2.1): field names, most
// applicable first, compared without regard to case.
type Targets [][]byte

// ParseTargeted reads a targeted field, given as its field lines in order,
// into d (which it resets), and reports whether the field is valid and
// non-empty; when it is not, d says nothing and the field must be ignored.
// Lines are one Dictionary (RFC 8941 §4.2: lines are joined with commas),
// where a repeated key takes the last value (§4.2.2). Members map onto
// Cache-Control's directives (RFC 9213 §2.1, §2.2): delta-seconds are
// Integers (any other value, or a negative one, counts as 0: invalid
// freshness information is stale, RFC 9111 §4.2.1), directives without a
// value are Booleans (?0 turns one off), the field lists of no-cache and
// private are Strings. Parameters and unknown keys are ignored. It does
// not allocate.
func ParseTargeted(d *Directives, lines [][]byte) bool {
	var t targetedField
	t.start(d)
	for _, l := range lines {
		t.line(l)
	}
	return t.end()
}

// targetedField parses a targeted field line by line.
type targetedField struct {
	d       *Directives
	members int
	lines   int
	bad     bool
}

func (t *targetedField) start(d *Directives) {
	*t = targetedField{d: d}
	d.Reset()
}

// line parses the next field line, as if joined to the previous ones by
// ", " (RFC 8941 §4.2).
func (t *targetedField) line(v []byte) {
	if t.bad {
		return
	}
	p := sfParser{b: v}
	if t.lines == 0 {
		p.skipSP()
	} else {
		p.skipOWS() // after the joining comma
	}
	t.lines++
	if p.done() {
		// An empty field, or, joined, an empty member between commas.
		t.bad = true
		return
	}
	for {
		key, ok := p.key()
		if !ok {
			t.bad = true
			return
		}
		var val sfValue
		if p.peek() == '=' {
			p.i++
			val, ok = p.memberValue()
		} else {
			val, ok = sfValue{kind: sfBoolean, boolean: true}, p.parameters()
		}
		if !ok {
			t.bad = true
			return
		}
		t.members++
		t.d.setTargeted(key, val)
		p.skipOWS()
		if p.done() {
			return
		}
		if p.peek() != ',' {
			t.bad = true
			return
		}
		p.i++
		p.skipOWS()
		if p.done() {
			t.bad = true // a trailing comma
			return
		}
	}
}

// end reports whether the field was valid and non-empty; if not, it
// resets d.
func (t *targetedField) end() bool {
	if t.bad || t.members == 0 {
		t.d.Reset()
		return false
	}
	return true
}

// applyTargets makes the first field of targets present in h with a valid,
// non-empty value the response's Cache-Control, and drops Expires (RFC
// 9213 §2.1). Without one, the response keeps its Cache-Control and
// Expires.
func (r *Response) applyTargets(h *fasthttp.ResponseHeader, targets Targets) {
	for i, name := range targets {
		var d Directives
		var t targetedField
		t.start(&d)
		seen := false
		for k, v := range h.All() {
			if len(k) == len(name) && bytes.EqualFold(k, name) {
				seen = true
				t.line(v)
			}
		}
		if seen && t.end() {
			r.CC, r.Target = d, i+1
			r.Expires, r.ExpiresInvalid = 0, false
			return
		}
	}
}

// setTargeted applies one Dictionary member to d, overwriting what an
// earlier member with the same key set.
func (d *Directives) setTargeted(key []byte, v sfValue) {
	delta := func(dst *int32) {
		if v.kind == sfInteger && v.integer >= 0 {
			*dst = int32(min(v.integer, maxDelta))
		} else {
			*dst = 0
		}
	}
	flag := func(dst *bool) { *dst = v.kind == sfBoolean && v.boolean }
	fields := func(dst *[]byte, all *bool) {
		switch {
		case v.kind == sfString && len(v.str) > 0:
			*dst, *all = v.str, false
		case v.kind == sfBoolean:
			*dst, *all = nil, v.boolean
		default:
			// Another type: the directive in its plain form, the
			// stricter reading.
			*dst, *all = nil, true
		}
	}
	switch string(key) {
	case "max-age":
		delta(&d.MaxAge)
	case "s-maxage":
		delta(&d.SMaxAge)
	case "stale-while-revalidate":
		delta(&d.StaleWhileRevalidate)
	case "stale-if-error":
		delta(&d.StaleIfError)
	case "no-store":
		flag(&d.NoStore)
	case "no-cache":
		fields(&d.NoCacheFields, &d.NoCache)
	case "private":
		fields(&d.PrivateFields, &d.Private)
	case "public":
		flag(&d.Public)
	case "must-revalidate":
		flag(&d.MustRevalidate)
	case "proxy-revalidate":
		flag(&d.ProxyRevalidate)
	case "must-understand":
		flag(&d.MustUnderstand)
	case "no-transform":
		flag(&d.NoTransform)
	case "immutable":
		flag(&d.Immutable)
	}
}

type sfKind uint8

const (
	sfBoolean sfKind = iota
	sfInteger
	sfDecimal
	sfString
	sfToken
	sfBinary
	sfInnerList
)

// sfValue is a member's value; str borrows from the field (a String with
// escapes keeps them: only no-cache and private read Strings, as lists of
// field names, which have no quotes or backslashes to escape).
type sfValue struct {
	kind    sfKind
	boolean bool
	integer int64
	str     []byte
}

// sfParser parses RFC 8941 §4.2 text.
type sfParser struct {
	b []byte
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.b) }

func (p *sfParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.b[p.i]
}

func (p *sfParser) skipSP() {
	for !p.done() && p.b[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for !p.done() && (p.b[p.i] == ' ' || p.b[p.i] == '\t') {
		p.i++
	}
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }

// key parses key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() ([]byte, bool) {
	start := p.i
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return nil, false
	}
	p.i++
	for !p.done() {
		c := p.b[p.i]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.i++
	}
	return p.b[start:p.i], true
}

// memberValue parses member-value = sf-item / inner-list.
func (p *sfParser) memberValue() (sfValue, bool) {
	if p.peek() == '(' {
		return p.innerList()
	}
	v, ok := p.bareItem()
	if !ok || !p.parameters() {
		return sfValue{}, false
	}
	return v, true
}

// innerList parses "(" *SP [ sf-item *( 1*SP sf-item ) *SP ] ")" parameters.
func (p *sfParser) innerList() (sfValue, bool) {
	p.i++ // (
	for {
		p.skipSP()
		if p.peek() == ')' {
			p.i++
			return sfValue{kind: sfInnerList}, p.parameters()
		}
		if _, ok := p.bareItem(); !ok || !p.parameters() {
			return sfValue{}, false
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return sfValue{}, false
		}
	}
}

// parameters parses *( ";" *SP parameter ), parameter = key [ "=" bare-item ].
func (p *sfParser) parameters() bool {
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		if _, ok := p.key(); !ok {
			return false
		}
		if p.peek() == '=' {
			p.i++
			if _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// bareItem parses an Integer, Decimal, String, Token, Byte Sequence or
// Boolean.
func (p *sfParser) bareItem() (sfValue, bool) {
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return p.string()
	case c == '*' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'):
		return p.token()
	case c == ':':
		return p.binary()
	case c == '?':
		return p.boolean()
	}
	return sfValue{}, false
}

// number parses an Integer (at most 15 digits) or a Decimal (at most 12
// integer and 3 fractional digits), RFC 8941 §4.2.4.
func (p *sfParser) number() (sfValue, bool) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.i++
	}
	if !isDigit(p.peek()) {
		return sfValue{}, false
	}
	var n int64
	digits, dot, frac := 0, false, 0
	for !p.done() {
		c := p.b[p.i]
		switch {
		case isDigit(c):
			if dot {
				frac++
			} else {
				n = n*10 + int64(c-'0')
			}
			digits++
		case c == '.' && !dot:
			if digits > 12 {
				return sfValue{}, false
			}
			dot = true
		default:
			goto end
		}
		if digits > 15 {
			return sfValue{}, false
		}
		p.i++
	}
end:
	if dot {
		if frac == 0 || frac > 3 {
			return sfValue{}, false // "1." or too precise
		}
		return sfValue{kind: sfDecimal}, true
	}
	if neg {
		n = -n
	}
	return sfValue{kind: sfInteger, integer: n}, true
}

// string parses DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE with
// unescaped printable ASCII, RFC 8941 §4.2.5.
func (p *sfParser) string() (sfValue, bool) {
	p.i++ // "
	start := p.i
	for !p.done() {
		c := p.b[p.i]
		switch {
		case c == '\\':
			if p.i+1 >= len(p.b) || (p.b[p.i+1] != '"' && p.b[p.i+1] != '\\') {
				return sfValue{}, false
			}
			p.i += 2
		case c == '"':
			v := sfValue{kind: sfString, str: p.b[start:p.i]}
			p.i++
			return v, true
		case c < 0x20 || c > 0x7e:
			return sfValue{}, false
		default:
			p.i++
		}
	}
	return sfValue{}, false // unterminated
}

// token parses ( ALPHA / "*" ) *( tchar / ":" / "/" ), RFC 8941 §4.2.6.
func (p *sfParser) token() (sfValue, bool) {
	start := p.i
	p.i++
	for !p.done() {
		c := p.b[p.i]
		if !isTchar(c) && c != ':' && c != '/' {
			break
		}
		p.i++
	}
	return sfValue{kind: sfToken, str: p.b[start:p.i]}, true
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// binary parses ":" *base64 ":", RFC 8941 §4.2.7.
func (p *sfParser) binary() (sfValue, bool) {
	p.i++ // :
	for !p.done() {
		c := p.b[p.i]
		switch {
		case c == ':':
			p.i++
			return sfValue{kind: sfBinary}, true
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c), c == '+', c == '/', c == '=':
			p.i++
		default:
			return sfValue{}, false
		}
	}
	return sfValue{}, false
}

// boolean parses "?" ( "0" / "1" ), RFC 8941 §4.2.8.
func (p *sfParser) boolean() (sfValue, bool) {
	if p.i+1 >= len(p.b) || (p.b[p.i+1] != '0' && p.b[p.i+1] != '1') {
		return sfValue{}, false
	}
	v := sfValue{kind: sfBoolean, boolean: p.b[p.i+1] == '1'}
	p.i += 2
	return v, true
}
