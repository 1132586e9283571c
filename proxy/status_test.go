package proxy

import (
	"testing"

	"github.com/ringcache/ringcache/httpcache"
)

// TestCacheStatusTokens checks that every fwd reason and detail has a
// token of its own: a constant added without one would write "fwd=" or
// "detail=" with no value.
func TestCacheStatusTokens(t *testing.T) {
	if fwdNone.String() != "" || detailNone.String() != "" {
		t.Errorf("the zero values are spelled %q and %q, want empty", fwdNone, detailNone)
	}
	fwd := map[string]fwdReason{}
	for r := fwdNone + 1; r < numFwdReasons; r++ {
		s := r.String()
		if prev, dup := fwd[s]; dup {
			t.Errorf("fwdReason %d is spelled %q, as is %d", r, s, prev)
		} else if s == "" {
			t.Errorf("fwdReason %d has no token", r)
		}
		fwd[s] = r
	}
	details := map[string]detail{}
	add := func(d detail) {
		t.Helper()
		s := d.String()
		if prev, dup := details[s]; dup {
			t.Errorf("detail %d is spelled %q, as is %d", d, s, prev)
		} else if s == "" {
			t.Errorf("detail %d has no token", d)
		}
		details[s] = d
	}
	for d := detailNone + 1; d < detailNotStored; d++ {
		add(d)
	}
	for r := httpcache.NotGET; r <= httpcache.NoFreshness; r++ {
		if got, want := notStored(r).String(), r.String(); got != want {
			t.Errorf("notStored(%v) is spelled %q, want %q", r, got, want)
		}
		add(notStored(r))
	}
}

// TestCacheName: a cache's name is a token in Cache-Status when it can be
// one, else a String of printable ASCII (RFC 9211 §2, RFC 8941 §3.3.3,
// §3.3.4).
func TestCacheName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"node-a", "node-a"},
		{"ringcache", "ringcache"},
		{"*star", "*star"},
		{"10.0.0.1:8080", `"10.0.0.1:8080"`}, // a token starts with a letter or *
		{"pod name", `"pod name"`},
		{"", `""`},
		{`say "hi"`, `"say \"hi\""`},
		{`back\slash`, `"back\\slash"`},
		{"tab\there", `"tab?here"`}, // a String is printable ASCII only
		{"nöde", `"n??de"`},         // so is UTF-8 (two bytes here)
	} {
		if got := cacheName(tc.in); got != tc.want {
			t.Errorf("cacheName(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
