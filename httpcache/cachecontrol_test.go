package httpcache

import (
	"bufio"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// reqHeader parses a raw GET request with the given header lines, so that
// repeated fields stay separate lines as they arrive on the wire.
func reqHeader(t testing.TB, lines ...string) *fasthttp.RequestHeader {
	t.Helper()
	var b strings.Builder
	b.WriteString("GET /x HTTP/1.1\r\nHost: example.com\r\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	h := new(fasthttp.RequestHeader)
	if err := h.Read(bufio.NewReader(strings.NewReader(b.String()))); err != nil {
		t.Fatalf("parsing request header %q: %v", lines, err)
	}
	return h
}

// ccOf parses Cache-Control lines into fresh Directives.
func ccOf(lines ...string) Directives {
	var d Directives
	d.Reset()
	for _, l := range lines {
		d.Parse([]byte(l))
	}
	return d
}

// showCC renders Directives readably (byte slices as strings).
func showCC(d Directives) string {
	return fmt.Sprintf("max-age=%d s-maxage=%d max-stale=%d any=%v min-fresh=%d swr=%d sie=%d "+
		"no-store=%v no-cache=%v%q private=%v%q public=%v must-revalidate=%v proxy-revalidate=%v "+
		"must-understand=%v no-transform=%v immutable=%v only-if-cached=%v",
		d.MaxAge, d.SMaxAge, d.MaxStale, d.MaxStaleAny, d.MinFresh, d.StaleWhileRevalidate, d.StaleIfError,
		d.NoStore, d.NoCache, d.NoCacheFields, d.Private, d.PrivateFields, d.Public, d.MustRevalidate,
		d.ProxyRevalidate, d.MustUnderstand, d.NoTransform, d.Immutable, d.OnlyIfCached)
}

func TestDirectivesParse(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  func(d *Directives) // applied to reset Directives
	}{
		{"RFC9111 §5.2 empty value has no directives", []string{""}, func(d *Directives) {}},
		{"RFC9111 §5.2.2.1 max-age", []string{"max-age=60"}, func(d *Directives) { d.MaxAge = 60 }},
		{"RFC9111 §5.2.2.1 max-age=0", []string{"max-age=0"}, func(d *Directives) { d.MaxAge = 0 }},
		{"RFC9111 §5.2.2.10 s-maxage", []string{"s-maxage=30"}, func(d *Directives) { d.SMaxAge = 30 }},
		{"RFC9111 §5.2.1.2 max-stale with value", []string{"max-stale=10"}, func(d *Directives) { d.MaxStale = 10 }},
		{"RFC9111 §5.2.1.2 max-stale without value accepts any staleness", []string{"max-stale"}, func(d *Directives) { d.MaxStaleAny = true }},
		{"RFC9111 §5.2.1.2 max-stale with invalid value is ignored", []string{"max-stale=soon"}, func(d *Directives) {}},
		{"RFC9111 §5.2.1.3 min-fresh", []string{"min-fresh=5"}, func(d *Directives) { d.MinFresh = 5 }},
		{"RFC9111 §5.2.1.3 min-fresh invalid is ignored", []string{"min-fresh=x"}, func(d *Directives) {}},
		{"RFC5861 §3 stale-while-revalidate", []string{"stale-while-revalidate=30"}, func(d *Directives) { d.StaleWhileRevalidate = 30 }},
		{"RFC5861 §4 stale-if-error", []string{"stale-if-error=300"}, func(d *Directives) { d.StaleIfError = 300 }},
		{"RFC5861 §4 stale-if-error without value is ignored", []string{"stale-if-error"}, func(d *Directives) {}},
		{"RFC9111 §5.2.2.5 no-store", []string{"no-store"}, func(d *Directives) { d.NoStore = true }},
		{"RFC9111 §5.2.2.4 no-cache", []string{"no-cache"}, func(d *Directives) { d.NoCache = true }},
		{"RFC9111 §5.2.2.7 private", []string{"private"}, func(d *Directives) { d.Private = true }},
		{"RFC9111 §5.2.2.9 public", []string{"public"}, func(d *Directives) { d.Public = true }},
		{"RFC9111 §5.2.2.2 must-revalidate", []string{"must-revalidate"}, func(d *Directives) { d.MustRevalidate = true }},
		{"RFC9111 §5.2.2.8 proxy-revalidate", []string{"proxy-revalidate"}, func(d *Directives) { d.ProxyRevalidate = true }},
		{"RFC9111 §5.2.2.3 must-understand", []string{"must-understand"}, func(d *Directives) { d.MustUnderstand = true }},
		{"RFC9111 §5.2.2.6 no-transform", []string{"no-transform"}, func(d *Directives) { d.NoTransform = true }},
		{"RFC8246 §2 immutable", []string{"immutable"}, func(d *Directives) { d.Immutable = true }},
		{"RFC9111 §5.2.1.7 only-if-cached", []string{"only-if-cached"}, func(d *Directives) { d.OnlyIfCached = true }},
		{"RFC9111 §5.2 directive names are case-insensitive", []string{"MAX-AGE=60, No-Store, PUBLIC, S-MaxAge=5, Max-Stale"},
			func(d *Directives) { d.MaxAge, d.NoStore, d.Public, d.SMaxAge, d.MaxStaleAny = 60, true, true, 5, true }},
		{"RFC9110 §5.6.1 optional whitespace and empty list members", []string{"  max-age = 60 ,\tpublic\t, , ,no-cache "},
			func(d *Directives) { d.MaxAge, d.Public, d.NoCache = 60, true, true }},
		{"RFC9111 §5.2 argument in quoted-string form", []string{`max-age="60"`}, func(d *Directives) { d.MaxAge = 60 }},
		{"RFC9111 §5.2.2.4 qualified no-cache keeps the quoted list with its comma", []string{`no-cache="Set-Cookie, X", max-age=5`},
			func(d *Directives) { d.NoCacheFields, d.MaxAge = []byte("Set-Cookie, X"), 5 }},
		{"RFC9111 §5.2.2.7 qualified private names fields only", []string{`private="Authorization-Info", public`},
			func(d *Directives) { d.PrivateFields, d.Public = []byte("Authorization-Info"), true }},
		{"RFC9111 §5.2.2.4 qualified no-cache with empty list is taken as unqualified", []string{`no-cache=""`},
			func(d *Directives) { d.NoCache = true }},
		{"RFC9110 §5.6.4 escaped quote inside quoted-string does not end it", []string{`no-cache="a\"b, c", public`},
			func(d *Directives) { d.NoCacheFields, d.Public = []byte(`a\"b, c`), true }},
		{"RFC9111 §4.2.1 duplicate max-age: first wins", []string{"max-age=10, max-age=20"}, func(d *Directives) { d.MaxAge = 10 }},
		{"RFC9111 §4.2.1 duplicate across field lines: first wins", []string{"max-age=10", "max-age=20, s-maxage=1", "s-maxage=2"},
			func(d *Directives) { d.MaxAge, d.SMaxAge = 10, 1 }},
		{"RFC9111 §4.2.1 invalid max-age is 0 (stale)", []string{"max-age=abc"}, func(d *Directives) { d.MaxAge = 0 }},
		{"RFC9111 §4.2.1 negative max-age is 0 (stale)", []string{"max-age=-1"}, func(d *Directives) { d.MaxAge = 0 }},
		{"RFC9111 §4.2.1 fractional max-age is 0 (stale)", []string{"max-age=1.5"}, func(d *Directives) { d.MaxAge = 0 }},
		{"RFC9111 §4.2.1 max-age without value is 0 (stale)", []string{"max-age"}, func(d *Directives) { d.MaxAge = 0 }},
		{"RFC9111 §4.2.1 invalid s-maxage is 0 (stale)", []string{"s-maxage=x"}, func(d *Directives) { d.SMaxAge = 0 }},
		{"RFC9111 §4.2.1 invalid first max-age wins over a later valid one", []string{"max-age=x, max-age=60"}, func(d *Directives) { d.MaxAge = 0 }},
		{"RFC9111 §1.2.2 delta-seconds above 2^31 is capped", []string{"max-age=99999999999999999999999"},
			func(d *Directives) { d.MaxAge = maxDelta }},
		{"RFC9111 §1.2.2 2^31 exactly is capped", []string{"s-maxage=2147483648"}, func(d *Directives) { d.SMaxAge = maxDelta }},
		{"RFC9111 §1.2.2 largest int32 kept", []string{"max-stale=2147483647"}, func(d *Directives) { d.MaxStale = maxDelta }},
		{"RFC9111 §5.2.3 unknown directives are ignored", []string{`foo, bar=baz, x="a,max-age=1", max-age=5, community="UCI"`},
			func(d *Directives) { d.MaxAge = 5 }},
		{"RFC9111 §5.2 garbage: lone commas", []string{",,,"}, func(d *Directives) {}},
		{"RFC9111 §5.2 garbage: empty name with value", []string{"=5, =, \"\""}, func(d *Directives) {}},
		{"RFC9111 §5.2 garbage: unterminated quote swallows the rest", []string{`no-cache="a, max-age=5`},
			func(d *Directives) { d.NoCacheFields = []byte(`"a, max-age=5`) }},
		{"RFC9111 §4.2.1 garbage: unterminated quoted max-age is 0", []string{`max-age="60`}, func(d *Directives) { d.MaxAge = 0 }},
		{"RFC9110 §5.3 multiple Cache-Control lines combine", []string{"max-age=60", "public, no-transform", "stale-if-error=9"},
			func(d *Directives) { d.MaxAge, d.Public, d.NoTransform, d.StaleIfError = 60, true, true, 9 }},
		{"RFC9111 §5.2.2 typical CDN response", []string{"public, max-age=3600, s-maxage=600, stale-while-revalidate=30, stale-if-error=86400"},
			func(d *Directives) {
				d.Public, d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError = true, 3600, 600, 30, 86400
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ccOf(tc.lines...)
			var want Directives
			want.Reset()
			tc.want(&want)
			if showCC(got) != showCC(want) {
				t.Errorf("Parse(%q)\n got %s\nwant %s", tc.lines, showCC(got), showCC(want))
			}
		})
	}
}

func TestDirectivesReset(t *testing.T) {
	// RFC9111 §5.2: Reset must clear every directive so a reused value
	// carries nothing from the previous message.
	d := ccOf(`max-age=1, s-maxage=2, max-stale=3, max-stale, min-fresh=4, stale-while-revalidate=5, stale-if-error=6,
		no-store, no-cache, no-cache="a", private, private="b", public, must-revalidate, proxy-revalidate,
		must-understand, no-transform, immutable, only-if-cached`)
	d.Reset()
	var want Directives
	want.MaxAge, want.SMaxAge, want.MaxStale, want.MinFresh = Absent, Absent, Absent, Absent
	want.StaleWhileRevalidate, want.StaleIfError = Absent, Absent
	if showCC(d) != showCC(want) {
		t.Fatalf("after Reset: %s", showCC(d))
	}
}

func TestListContains(t *testing.T) {
	tests := []struct {
		rfc, list, field string
		want             bool
	}{
		{"RFC9111 §5.4 single token", "no-cache", "no-cache", true},
		{"RFC9110 §5.6.1 member of a list with OWS", "foo ,  no-cache\t, bar", "no-cache", true},
		{"RFC9110 §5.6.2 tokens compare case-insensitively", "No-Cache", "no-cache", true},
		{"RFC9110 §5.6.1 prefix is not a member", "no-cache-ext", "no-cache", false},
		{"RFC9110 §5.6.1 empty list", "", "no-cache", false},
		{"RFC9111 §5.2.2.4 quoted field list", `Set-Cookie, X-Foo`, "x-foo", true},
		{"RFC9110 §5.6.2 tokens are ASCII: no Unicode folding", "\u212a", "k", false},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			if got := ListContains([]byte(tc.list), []byte(tc.field)); got != tc.want {
				t.Errorf("ListContains(%q, %q) = %v, want %v", tc.list, tc.field, got, tc.want)
			}
		})
	}
}

func TestFieldIs(t *testing.T) {
	tests := []struct {
		rfc, name, lower string
		want             bool
	}{
		{"RFC9110 §5.1 field names compare case-insensitively", "Cache-Control", "cache-control", true},
		{"RFC9110 §5.1 upper case", "CACHE-CONTROL", "cache-control", true},
		{"RFC9110 §5.1 same letters", "vary", "vary", true},
		{"RFC9110 §5.1 prefix is another name", "Vary", "vary-x", false},
		{"RFC9110 §5.1 longer name", "Varyx", "vary", false},
		{"RFC9110 §5.1 different name", "Date", "etag", false},
		{"RFC9110 §5.6.2 empty token", "", "", true},
		{"RFC9110 §5.6.2 empty vs token", "", "age", false},
		{"RFC9110 §5.6.2 ASCII folding only", "\u212a", "k", false},
		// Both sides fold: Entry.Get and the rules share this one comparison.
		{"RFC9110 §5.1 both sides fold", "Age", "AGE", true},
		{"RFC9110 §5.1 both sides fold, other name", "Age", "AGO", false},
		// '@' (0x40) and '`' (0x60) differ by the case bit but are no letters.
		{"only A-Z fold", "@", "`", false},
	}
	for _, tc := range tests {
		t.Run(tc.rfc+" "+tc.name, func(t *testing.T) {
			if got := FieldIs([]byte(tc.name), tc.lower); got != tc.want {
				t.Errorf("FieldIs(%q, %q) = %v, want %v", tc.name, tc.lower, got, tc.want)
			}
		})
	}
	name := []byte("Stale-While-Revalidate")
	if n := testing.AllocsPerRun(100, func() { FieldIs(name, "stale-while-revalidate") }); n != 0 {
		t.Errorf("FieldIs: %v allocs per run, want 0", n)
	}
}

func TestEachListItem(t *testing.T) {
	tests := []struct {
		rfc, list string
		want      []string
	}{
		{"RFC9110 §5.6.1 plain list", "a,b,c", []string{"a", "b", "c"}},
		{"RFC9110 §5.6.1 empty members and OWS dropped", " , a ,\t,b,, ", []string{"a", "b"}},
		{"RFC9110 §5.6.4 comma inside quoted-string stays", `x="1,2", y`, []string{`x="1,2"`, "y"}},
		{"RFC9110 §5.6.1 empty value", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			var got []string
			EachListItem([]byte(tc.list), func(item []byte) { got = append(got, string(item)) })
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("EachListItem(%q) = %q, want %q", tc.list, got, tc.want)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name     string
		lines    []string
		noCache  bool
		maxAge   int32
		noStore  bool
		authz    bool
		maxStale bool
	}{
		{"RFC9111 §5.2 no caching fields", nil, false, Absent, false, false, false},
		{"RFC9111 §5.4 Pragma no-cache without Cache-Control means no-cache", []string{"Pragma: no-cache"}, true, Absent, false, false, false},
		{"RFC9111 §5.4 Pragma no-cache among other pragmas, any case", []string{"Pragma: x-foo, No-Cache"}, true, Absent, false, false, false},
		{"RFC9111 §5.4 Pragma ignored when Cache-Control is present", []string{"Pragma: no-cache", "Cache-Control: max-age=0"}, false, 0, false, false, false},
		{"RFC9111 §5.4 other Pragma has no effect", []string{"Pragma: x-foo"}, false, Absent, false, false, false},
		{"RFC9111 §5.2.1.4 request no-cache", []string{"Cache-Control: no-cache"}, true, Absent, false, false, false},
		{"RFC9110 §5.3 Cache-Control lines combine", []string{"Cache-Control: max-age=5", "Cache-Control: no-store, max-stale"}, false, 5, true, false, true},
		{"RFC9111 §3.5 Authorization is noted", []string{"Authorization: Basic YTpi"}, false, Absent, false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := reqHeader(t, tc.lines...)
			var r Request
			// Pre-dirty r: ParseRequest must reset it.
			r.CC.Reset()
			r.CC.Parse([]byte("no-cache, max-age=99, no-store, max-stale"))
			r.Authorization = true
			ParseRequest(&r, h)
			if r.CC.NoCache != tc.noCache || r.CC.MaxAge != tc.maxAge || r.CC.NoStore != tc.noStore ||
				r.Authorization != tc.authz || r.CC.MaxStaleAny != tc.maxStale {
				t.Errorf("ParseRequest(%q) = authz=%v %s", tc.lines, r.Authorization, showCC(r.CC))
			}
		})
	}
}

func FuzzDirectivesParse(f *testing.F) {
	for _, s := range []string{
		"", ",", "=", `"`, `\`, `"\`, "max-age=60", "MAX-AGE=99999999999999999999",
		`no-cache="Set-Cookie, X", private="a\"b", max-stale`, "max-age=-1, s-maxage=x, min-fresh=",
		"public, max-age=3600, s-maxage=600, stale-while-revalidate=30, stale-if-error=86400",
		`x="unterminated, max-age=5`, " \t , , max-age = 1 ,", "max-stale=, max-stale",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d, again Directives
		d.Reset()
		d.Parse([]byte(s))
		for name, v := range map[string]int32{
			"max-age": d.MaxAge, "s-maxage": d.SMaxAge, "max-stale": d.MaxStale, "min-fresh": d.MinFresh,
			"stale-while-revalidate": d.StaleWhileRevalidate, "stale-if-error": d.StaleIfError,
		} {
			if v < Absent {
				t.Fatalf("Parse(%q): %s = %d, below Absent", s, name, v)
			}
		}
		if len(d.NoCacheFields) > len(s) || len(d.PrivateFields) > len(s) {
			t.Fatalf("Parse(%q): field lists longer than the input", s)
		}
		// Parsing is deterministic, and the helpers on the same bytes do not panic.
		again.Reset()
		again.Parse([]byte(s))
		if showCC(d) != showCC(again) {
			t.Fatalf("Parse(%q) not deterministic", s)
		}
		ListContains([]byte(s), []byte("no-cache"))
		EachListItem([]byte(s), func([]byte) {})
		AppendVaryNames(nil, []byte(s))
		ETagEqual([]byte(s), []byte(`W/"x"`), false)
		matchList([]byte(s), []byte(`"x"`), true)
	})
}

const typicalCC = "public, max-age=3600, s-maxage=600, stale-while-revalidate=30, stale-if-error=86400"

func allocRequest(t testing.TB) *fasthttp.RequestHeader {
	return reqHeader(t,
		`Cache-Control: max-age=0, no-cache="Set-Cookie", max-stale=10`,
		"Pragma: no-cache",
		"Authorization: Bearer abc",
		"Accept-Encoding: gzip, br",
		"User-Agent: test")
}

func TestZeroAllocs(t *testing.T) {
	h := allocRequest(t)
	var r Request
	v := []byte(typicalCC)
	var d Directives
	names := AppendVaryNames(nil, []byte("Accept-Encoding, User-Agent"))
	key := make([]byte, 0, 256)
	vnames := make([]byte, 0, 64)
	vary := []byte("Accept-Encoding, user-agent, ACCEPT-encoding")
	tests := []struct {
		name string
		fn   func()
	}{
		{"ParseRequest (RFC9111 §5.2, §5.4)", func() { ParseRequest(&r, h) }},
		{"Directives.Parse (RFC9111 §5.2)", func() { d.Reset(); d.Parse(v) }},
		{"AppendVaryNames (RFC9111 §4.1)", func() { vnames = AppendVaryNames(vnames[:0], vary) }},
		{"AppendVariantKey (RFC9111 §4.1)", func() { key = AppendVariantKey(key[:0], names, h, true) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.fn); n != 0 {
				t.Errorf("%s: %v allocs per run, want 0", tc.name, n)
			}
		})
	}
	// Pragma is ignored here: the request has Cache-Control (RFC9111 §5.4).
	if r.CC.MaxAge != 0 || r.CC.NoCache || string(r.CC.NoCacheFields) != "Set-Cookie" || r.CC.MaxStale != 10 || !r.Authorization {
		t.Errorf("ParseRequest result off: %s", showCC(r.CC))
	}
}

func BenchmarkParseRequest(b *testing.B) {
	h := allocRequest(b)
	var r Request
	b.ReportAllocs()
	for b.Loop() {
		ParseRequest(&r, h)
	}
}

func BenchmarkDirectivesParse(b *testing.B) {
	v := []byte(typicalCC)
	var d Directives
	b.ReportAllocs()
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		d.Reset()
		d.Parse(v)
	}
}
