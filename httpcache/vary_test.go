package httpcache

import (
	"strings"
	"testing"
)

func TestAppendVaryNames(t *testing.T) {
	long := strings.Repeat("X-Very-Long-Field-Name-", 5) // 115 bytes: still a field name
	tests := []struct {
		rfc, prefix, vary, want string
	}{
		{"RFC9111 §4.1 single name lower-cased", "", "Accept-Encoding", "accept-encoding"},
		{"RFC9111 §4.1 two names keep their order", "", "Accept-Encoding, User-Agent", "accept-encoding,user-agent"},
		{"RFC9110 §5.1 names are case-insensitive: duplicates dropped", "", "Accept-Encoding, ACCEPT-ENCODING, accept-encoding", "accept-encoding"},
		{"RFC9110 §5.6.1 OWS and empty members", "", " , accept ,\tAccept-Language ,, ", "accept,accept-language"},
		{"RFC9111 §4.1 a name that prefixes another is distinct", "", "Accept, Accept-Encoding, accept", "accept,accept-encoding"},
		{"RFC9111 §4.1 empty Vary", "", "", ""},
		{"RFC9111 §4.1 appends after dst without reading it", "k|a,", "A, B", "k|a,a,b"},
		{"RFC9111 §4.1 long field names are kept", "", "Accept, " + long, "accept," + strings.ToLower(long)},
		{"RFC9111 §4.1 long duplicate dropped", "", long + "," + strings.ToLower(long), strings.ToLower(long)},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			if got := string(AppendVaryNames([]byte(tc.prefix), []byte(tc.vary))); got != tc.want {
				t.Errorf("AppendVaryNames(%q, %q) = %q, want %q", tc.prefix, tc.vary, got, tc.want)
			}
		})
	}
}

func TestAppendVariantKey(t *testing.T) {
	key := func(t *testing.T, vary string, lines ...string) string {
		names := AppendVaryNames(nil, []byte(vary))
		return string(AppendVariantKey([]byte("p"), names, reqHeader(t, lines...), false))
	}
	t.Run("RFC9111 §4.1 key layout", func(t *testing.T) {
		got := key(t, "Accept-Encoding, X-Missing", "accept-encoding: gzip")
		if want := "p\x00accept-encoding:gzip\x00x-missing:"; got != want {
			t.Errorf("key = %q, want %q", got, want)
		}
	})
	t.Run("RFC9111 §4.1 no names: dst unchanged", func(t *testing.T) {
		if got := key(t, "", "Accept-Encoding: gzip"); got != "p" {
			t.Errorf("key = %q", got)
		}
	})
	tests := []struct {
		rfc     string
		vary    string
		a, b    []string
		sameKey bool
	}{
		{"RFC9111 §4.1 different values select different variants", "Accept-Encoding",
			[]string{"Accept-Encoding: gzip"}, []string{"Accept-Encoding: br"}, false},
		{"RFC9111 §4.1 same values share a variant", "accept-encoding",
			[]string{"Accept-Encoding: gzip", "X-Other: 1"}, []string{"Accept-Encoding: gzip", "X-Other: 2"}, true},
		{"RFC9111 §4.1 missing field equals empty field", "Accept-Language",
			nil, []string{"Accept-Language:"}, true},
		{"RFC9111 §4.1 missing field differs from a present value", "Accept-Language",
			nil, []string{"Accept-Language: en"}, false},
		{"RFC9111 §4.1 surrounding whitespace is not significant", "Accept-Language",
			[]string{"Accept-Language: en"}, []string{"Accept-Language:   en  \t"}, true},
		{"RFC9111 §4.1 field name case in the request does not matter", "ACCEPT-LANGUAGE",
			[]string{"accept-language: en"}, []string{"Accept-Language: en"}, true},
		{"RFC9111 §4.1 multiple lines match their combined value", "Accept-Language",
			[]string{"Accept-Language: en", "Accept-Language: fr"}, []string{"Accept-Language: en, fr"}, true},
		{"RFC9111 §4.1 a second line is not dropped", "Accept-Language",
			[]string{"Accept-Language: en", "Accept-Language: fr"}, []string{"Accept-Language: en"}, false},
		{"RFC9111 §4.1 values do not leak between names", "X-A, X-B",
			[]string{"X-A: v"}, []string{"X-B: v"}, false},
		{"RFC9111 §4.1 User-Agent (a fasthttp special header)", "User-Agent",
			[]string{"User-Agent: a"}, []string{"User-Agent: b"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			ka, kb := key(t, tc.vary, tc.a...), key(t, tc.vary, tc.b...)
			if (ka == kb) != tc.sameKey {
				t.Errorf("Vary %q: keys %q and %q; want same=%v", tc.vary, ka, kb, tc.sameKey)
			}
		})
	}
}

// TestAppendVariantKeyCodings: with codings, Accept-Encoding values that
// accept the same codings share a variant; other fields are keyed as
// before.
func TestAppendVariantKeyCodings(t *testing.T) {
	key := func(vary string, lines ...string) string {
		names := AppendVaryNames(nil, []byte(vary))
		return string(AppendVariantKey([]byte("p"), names, reqHeader(t, lines...), true))
	}
	if got, want := key("Accept-Encoding, Accept-Language", "Accept-Encoding: gzip, deflate, br", "Accept-Language: en"),
		"p\x00accept-encoding:br, deflate, gzip\x00accept-language:en"; got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	same := [][2][]string{
		{{"Accept-Encoding: gzip, deflate, br"}, {"Accept-Encoding: br, gzip, deflate"}},
		{{"Accept-Encoding: gzip, br"}, {"Accept-Encoding: gzip;q=1.0, br;q=0.9, compress"}},
		{nil, {"Accept-Encoding: identity"}},
	}
	for _, p := range same {
		if a, b := key("Accept-Encoding", p[0]...), key("Accept-Encoding", p[1]...); a != b {
			t.Errorf("%q and %q: keys %q and %q; want one variant", p[0], p[1], a, b)
		}
	}
	if a, b := key("Accept-Encoding", "Accept-Encoding: gzip"), key("Accept-Encoding", "Accept-Encoding: gzip, br"); a == b {
		t.Errorf("gzip and gzip+br share key %q", a)
	}
	if a, b := key("Accept-Language", "Accept-Language: en, fr"), key("Accept-Language", "Accept-Language: fr, en"); a == b {
		t.Errorf("other fields must stay keyed by their text: %q", a)
	}
}
