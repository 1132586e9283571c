package cache

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func requestHeader(t testing.TB, lines ...string) *fasthttp.RequestHeader {
	t.Helper()
	var h fasthttp.RequestHeader
	raw := "GET /p HTTP/1.1\r\nHost: example.com\r\n" + strings.Join(lines, "\r\n")
	if len(lines) > 0 {
		raw += "\r\n"
	}
	if err := h.Read(bufio.NewReader(strings.NewReader(raw + "\r\n"))); err != nil {
		t.Fatal(err)
	}
	return &h
}

func marker(gen int64, names string) *Entry {
	m := NewEntry([]byte("example.com/p"), nil, []byte(names), Stale{})
	m.ResponseTime, m.Flags = gen, VaryMarker
	return m
}

// TestAppendVariantRuleFields pins the key format with an operator's rule
// fields: after the generation, before the Vary fields, each one tagged and
// length-prefixed, so no value can pass for another field or for the
// Vary part, and the primary key stays what the ring places.
func TestAppendVariantRuleFields(t *testing.T) {
	k := NewKeys(KeyOptions{})
	primary := []byte("example.com/p")
	gen := "\x00\x00\x00\x00\x00\x00\x01\x00" // 256
	key := func(m *Entry, f *KeyFields, lines ...string) string {
		h := requestHeader(t, lines...)
		return string(k.AppendVariant(nil, primary, m, h, f.AppendKey(nil, h)))
	}
	t.Run("layout", func(t *testing.T) {
		f := &KeyFields{Headers: []string{"x-tenant"}, Cookies: []string{"lang"}}
		got := key(marker(256, "accept"), f, "X-Tenant: acme", "Cookie: lang=de; sid=1", "Accept: text/html")
		want := "example.com/p\x00" + gen + "h\x08x-tenant\x04acme" + "c\x04lang\x02de" + "\x00accept:text/html"
		if got != want {
			t.Errorf("key = %q, want %q", got, want)
		}
		if p := PrimaryKey([]byte(got)); string(p) != string(primary) {
			t.Errorf("PrimaryKey = %q, want %q: the ring must place the variant with its URL", p, primary)
		}
	})
	t.Run("no rule fields: the Vary format of before", func(t *testing.T) {
		if got, want := key(marker(256, "accept"), nil, "Accept: a"), "example.com/p\x00"+gen+"\x00accept:a"; got != want {
			t.Errorf("key = %q, want %q", got, want)
		}
		if got, want := key(marker(256, "accept"), &KeyFields{}, "Accept: a"), "example.com/p\x00"+gen+"\x00accept:a"; got != want {
			t.Errorf("empty KeyFields: key = %q, want %q", got, want)
		}
	})
	t.Run("nil marker: generation 0, no Vary fields", func(t *testing.T) {
		got := key(nil, &KeyFields{Cookies: []string{"lang"}}, "Cookie: lang=de", "Accept: a")
		if want := "example.com/p\x00" + strings.Repeat("\x00", 8) + "c\x04lang\x02de"; got != want {
			t.Errorf("key = %q, want %q", got, want)
		}
	})
	t.Run("RFC9111 §4.1 lines combined, white space trimmed, missing same as empty", func(t *testing.T) {
		f := &KeyFields{Headers: []string{"x-a"}}
		if a, b := key(nil, f, "X-A:  1 ", "X-A: 2"), key(nil, f, "X-A: 1, 2"); a != b {
			t.Errorf("two lines %q != one line %q", a, b)
		}
		if a, b := key(nil, f), key(nil, f, "X-A: "); a != b {
			t.Errorf("missing %q != empty %q", a, b)
		}
		if a, b := key(nil, f, "x-a: 1"), key(nil, f, "X-A: 1"); a != b {
			t.Errorf("field names are case-insensitive: %q != %q", a, b)
		}
	})
	t.Run("cookie names are case-sensitive", func(t *testing.T) {
		f := &KeyFields{Cookies: []string{"lang"}}
		if a, b := key(nil, f, "Cookie: lang=de"), key(nil, f, "Cookie: LANG=de"); a == b {
			t.Errorf("lang and LANG share key %q", a)
		}
	})
	t.Run("unambiguous", func(t *testing.T) {
		// Pairs of requests that a separator-based format would confuse.
		two := &KeyFields{Headers: []string{"x-a", "x-b"}}
		cookies := &KeyFields{Cookies: []string{"a", "b"}}
		pairs := []struct {
			name string
			f    *KeyFields
			a, b []string
		}{
			{"a value holding the next field", two, []string{"X-A: 1hx-b2"}, []string{"X-A: 1", "X-B: 2"}},
			{"a value shifted between fields", two, []string{"X-A: 12"}, []string{"X-A: 1", "X-B: 2"}},
			{"a cookie value moved to the other cookie", cookies, []string{"Cookie: a=12"}, []string{"Cookie: b=12"}},
		}
		for _, tc := range pairs {
			if a, b := key(nil, tc.f, tc.a...), key(nil, tc.f, tc.b...); a == b {
				t.Errorf("%s: %q and %q share key %q", tc.name, tc.a, tc.b, a)
			}
		}
		// Bytes a client cannot send (fasthttp refuses control characters
		// in fields) would not confuse it either.
		var h fasthttp.RequestHeader
		h.SetCookie("a", "1c\x01b\x012")
		if a, b := string(k.AppendVariant(nil, primary, nil, &h, cookies.AppendKey(nil, &h))), key(nil, cookies, "Cookie: a=1; b=2"); a == b {
			t.Errorf("a cookie value holding the next cookie: share key %q", a)
		}
		// A rule field cannot pass for a Vary field: a request keyed by a
		// rule on X-A, and one not keyed whose Vary lists X-A.
		ruled := key(marker(256, ""), &KeyFields{Headers: []string{"x-a"}}, "X-A: 1")
		varied := key(marker(256, "x-a"), nil, "X-A: 1")
		if ruled == varied {
			t.Errorf("rule field and Vary field share key %q", ruled)
		}
	})
}

// TestKeyFieldsAllocs: adding rule fields to a key allocates nothing once
// the buffer is large enough (the hit path reuses it).
func TestKeyFieldsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	k := NewKeys(KeyOptions{})
	h := requestHeader(t, "X-Tenant: acme", "Cookie: lang=de; sid=1")
	f := &KeyFields{Headers: []string{"x-tenant"}, Cookies: []string{"lang", "sid"}}
	m := marker(1, "")
	buf, rk := make([]byte, 0, 256), make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		rk = f.AppendKey(rk[:0], h)
		buf = k.AppendVariant(buf[:0], []byte("example.com/p"), m, h, rk)
	}); n != 0 {
		t.Errorf("AppendVariant with rule fields allocates %.1f times, want 0", n)
	}
}
