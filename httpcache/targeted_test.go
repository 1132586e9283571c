package httpcache

import (
	"testing"
)

func TestParseTargeted(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		ok    bool
		want  string // the same directives as a Cache-Control value
	}{
		{"RFC9213 §2 max-age", []string{"max-age=600"}, true, "max-age=600"},
		{"RFC9213 §2.1 the directives a targeted field must implement", []string{"max-age=60, must-revalidate, no-store, no-cache, private"}, true, "max-age=60, must-revalidate, no-store, no-cache, private"},
		{"RFC9213 §2.1 other directives the cache supports", []string{"s-maxage=30, stale-while-revalidate=10, stale-if-error=20, public, proxy-revalidate, immutable, no-transform, must-understand"}, true,
			"s-maxage=30, stale-while-revalidate=10, stale-if-error=20, public, proxy-revalidate, immutable, no-transform, must-understand"},
		{"RFC9213 §2.2 private with a String of field names", []string{`private="set-cookie, x-user"`}, true, `private="set-cookie, x-user"`},
		{"RFC9213 §2.2 no-cache with a String of field names", []string{`no-cache="x-a"`}, true, `no-cache="x-a"`},
		{"RFC9213 §3.1 a placeholder directive makes a valid, non-empty field", []string{"none"}, true, ""},
		{"RFC9213 §2.1 unknown directives are ignored", []string{"foo=bar, max-age=5, baz"}, true, "max-age=5"},
		{"RFC8941 §3.2 parameters are ignored", []string{"max-age=60;a=1;b, no-store;c"}, true, "max-age=60, no-store"},
		{"RFC8941 §4.2.2 a repeated key takes the last value", []string{"max-age=60, max-age=10"}, true, "max-age=10"},
		{"RFC8941 §4.2.8 ?0 turns a directive off", []string{"no-store, no-store=?0"}, true, ""},
		{"RFC8941 §4.2.8 ?1 is the directive", []string{"no-store=?1"}, true, "no-store"},
		{"RFC8941 §4.2 OWS around commas", []string{"max-age=60 ,\tno-store"}, true, "max-age=60, no-store"},
		{"RFC8941 §4.2 field lines are one Dictionary", []string{"max-age=60", "no-store"}, true, "max-age=60, no-store"},
		{"RFC8941 §4.2 leading spaces", []string{"  max-age=60"}, true, "max-age=60"},
		{"RFC9111 §4.2.1 a String max-age is invalid freshness: stale", []string{`max-age="60"`}, true, "max-age=0"},
		{"RFC9111 §4.2.1 a negative max-age: stale", []string{"max-age=-1"}, true, "max-age=0"},
		{"RFC9111 §4.2.1 a Decimal max-age: stale", []string{"max-age=1.5"}, true, "max-age=0"},
		{"RFC9111 §4.2.1 a Token max-age: stale", []string{"max-age=soon"}, true, "max-age=0"},
		{"RFC9111 §4.2.1 an Inner List max-age: stale", []string{"max-age=(1 2)"}, true, "max-age=0"},
		{"RFC9111 §1.2.2 a huge max-age is capped", []string{"max-age=999999999999999"}, true, "max-age=2147483648"},
		{"RFC8941 §4.2.3 Byte Sequence values parse", []string{"x=:aGk=:, max-age=1"}, true, "max-age=1"},
		{"RFC9213 §2.2 empty field is ignored", []string{""}, false, ""},
		{"RFC9213 §2.2 only spaces is empty", []string{"   "}, false, ""},
		{"RFC9213 §2.2 no lines", nil, false, ""},
		{"RFC8941 §3.2 upper-case key is invalid", []string{"Max-Age=60"}, false, ""},
		{"RFC8941 §4.2 trailing comma is invalid", []string{"max-age=60,"}, false, ""},
		{"RFC8941 §4.2 empty member is invalid", []string{"max-age=60,,no-store"}, false, ""},
		{"RFC8941 §4.2 an empty line joins as an empty member", []string{"max-age=60", ""}, false, ""},
		{"RFC8941 §4.2 one bad line spoils the field", []string{"max-age=60", "No-Store"}, false, ""},
		{"RFC8941 §4.2.4 a unit after a number is invalid", []string{"max-age=60s"}, false, ""},
		{"RFC8941 §4.2.4 sixteen digits are too many", []string{"max-age=1234567890123456"}, false, ""},
		{"RFC8941 §4.2.4 a Decimal needs a fraction", []string{"max-age=1."}, false, ""},
		{"RFC8941 §4.2.4 four fractional digits are too many", []string{"max-age=1.2345"}, false, ""},
		{"RFC8941 §4.2 spaces around = are invalid", []string{"max-age = 60"}, false, ""},
		{"RFC8941 §4.2 members need commas", []string{"max-age=60 no-store"}, false, ""},
		{"RFC8941 §4.2.5 unterminated String", []string{`private="x`}, false, ""},
		{"RFC8941 §4.2.5 only \\\" and \\\\ escape", []string{`private="a\b"`}, false, ""},
		{"RFC8941 §4.2.8 a Boolean is ?0 or ?1", []string{"no-store=?2"}, false, ""},
		{"RFC8941 §3.2 a key starts with a letter or *", []string{"1max-age=60"}, false, ""},
		{"RFC9111 §5.2 Cache-Control's quoted max-age form is no Dictionary member", []string{`max-age="60", no-cache="a", private`}, true, `max-age=0, no-cache="a", private`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := make([][]byte, len(tc.lines))
			for i, l := range tc.lines {
				lines[i] = []byte(l)
			}
			var d Directives
			ok := ParseTargeted(&d, lines)
			want := ccOf(tc.want)
			if ok != tc.ok || showCC(d) != showCC(want) {
				t.Errorf("ParseTargeted(%q) = %v\n  %s\nwant %v\n  %s", tc.lines, ok, showCC(d), tc.ok, showCC(want))
			}
		})
	}
}

func TestParseTargetedAllocs(t *testing.T) {
	lines := [][]byte{[]byte(`max-age=600, s-maxage=60;x=1, private="a, b"`), []byte("no-cache, foo=(1 2 ?0)")}
	var d Directives
	if n := testing.AllocsPerRun(100, func() { ParseTargeted(&d, lines) }); n != 0 {
		t.Fatalf("ParseTargeted allocates %.1f times, want 0", n)
	}
}

func FuzzParseTargeted(f *testing.F) {
	for _, s := range []string{"max-age=600", `private="a"`, "a=(1 2);b=?0, c=:aGk=:", "max-age=1.5", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d Directives
		if !ParseTargeted(&d, [][]byte{[]byte(s)}) && showCC(d) != showCC(ccOf()) {
			t.Fatalf("invalid %q left directives behind: %s", s, showCC(d))
		}
	})
}

func TestTargetedResponse(t *testing.T) {
	cdn := Targets{[]byte("CDN-Cache-Control")}
	own := Targets{[]byte("Ringcache-Cache-Control"), []byte("CDN-Cache-Control")}
	lm := "Last-Modified: " + httpDate(base-100_000)
	tests := []struct {
		name     string
		targets  Targets
		lines    []string
		lifetime int64
		target   int
		reason   Reason
	}{
		{"RFC9213 §3.1 CDN-Cache-Control max-age over Cache-Control", cdn,
			[]string{dateBase, "Cache-Control: max-age=60, s-maxage=120", "CDN-Cache-Control: max-age=600"}, 600, 1, Stored},
		{"RFC9213 §3.1 CDN may store what Cache-Control forbids", cdn,
			[]string{dateBase, "CDN-Cache-Control: max-age=600", "Cache-Control: no-store"}, 600, 1, Stored},
		{"RFC9213 §3.1 without CDN-Cache-Control, Cache-Control rules", cdn,
			[]string{dateBase, "Cache-Control: no-store"}, 0, 0, NoStore},
		{"RFC9213 §2.1 targeted no-store over Cache-Control max-age", cdn,
			[]string{dateBase, "Cache-Control: max-age=600", "CDN-Cache-Control: no-store"}, 0, 1, NoStore},
		{"RFC9213 §2.1 targeted private", cdn,
			[]string{dateBase, "Cache-Control: public, max-age=600", "CDN-Cache-Control: private"}, 0, 1, Private},
		{"RFC9213 §2.1 targeted s-maxage", cdn,
			[]string{dateBase, "Cache-Control: max-age=600", "CDN-Cache-Control: s-maxage=30, max-age=60"}, 30, 1, Stored},
		{"RFC9213 §2.1 Expires is ignored with a targeted field", cdn,
			[]string{dateBase, "Expires: " + httpDate(base+3600), "CDN-Cache-Control: public", lm}, 10_000, 1, Stored},
		{"RFC9213 §2.1 invalid Expires is ignored with a targeted field", cdn,
			[]string{dateBase, "Expires: 0", "CDN-Cache-Control: max-age=60"}, 60, 1, Stored},
		{"RFC9213 §2.2 an invalid targeted field is ignored", cdn,
			[]string{dateBase, "Cache-Control: max-age=60", "CDN-Cache-Control: Max-Age=600"}, 60, 0, Stored},
		{"RFC9213 §2.2 an empty targeted field is ignored", cdn,
			[]string{dateBase, "Cache-Control: max-age=60", "CDN-Cache-Control: "}, 60, 0, Stored},
		{"RFC9213 §2.1 a field not on the target list changes nothing", cdn,
			[]string{dateBase, "Cache-Control: max-age=60", "Surrogate-Control: max-age=600", "Ringcache-Cache-Control: no-store"}, 60, 0, Stored},
		{"RFC9213 §2.1 field names are case-insensitive", cdn,
			[]string{dateBase, "Cache-Control: max-age=60", "cdn-cache-control: max-age=600"}, 600, 1, Stored},
		{"RFC9213 §2.1 the first target wins", own,
			[]string{dateBase, "CDN-Cache-Control: max-age=600", "Ringcache-Cache-Control: max-age=6000"}, 6000, 1, Stored},
		{"RFC9213 §2.1 an invalid first target falls to the next", own,
			[]string{dateBase, "CDN-Cache-Control: max-age=600", "Ringcache-Cache-Control: max-age=6000,"}, 600, 2, Stored},
		{"RFC9213 §2.1 no target present: Cache-Control and Expires", own,
			[]string{dateBase, "Expires: " + httpDate(base+300)}, 300, 0, Stored},
		{"RFC8941 §4.2 targeted field lines combine", cdn,
			[]string{dateBase, "CDN-Cache-Control: max-age=600", "CDN-Cache-Control: no-cache", "ETag: \"a\""}, 600, 1, Stored},
		{"RFC9213 §2.1 no target list: targeted fields are ignored", nil,
			[]string{dateBase, "Cache-Control: max-age=60", "CDN-Cache-Control: no-store"}, 60, 0, Stored},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := respOfTargets(t, tc.targets, 200, tc.lines...)
			got, _ := Lifetime(r, base, Policy{})
			if got != tc.lifetime || r.Target != tc.target {
				t.Errorf("lifetime %d from target %d, want %d from %d (%s)", got, r.Target, tc.lifetime, tc.target, showCC(r.CC))
			}
			if reason := Storable(true, &Request{}, r, Policy{}); reason != tc.reason {
				t.Errorf("Storable = %v, want %v", reason, tc.reason)
			}
		})
	}
}
