package httpcache

import "testing"

func TestEvaluate(t *testing.T) {
	lm := base - 1000
	before, at, after := httpDate(lm-1), httpDate(lm), httpDate(lm+1)
	strong := Validators{ETag: []byte(`"abc"`), LastModified: lm}
	weak := Validators{ETag: []byte(`W/"abc"`), LastModified: lm}
	noTag := Validators{LastModified: lm}
	none := Validators{}
	tests := []struct {
		name  string
		lines []string
		v     Validators
		want  int
	}{
		{"RFC9110 §13.2.2 no preconditions", nil, strong, CondNone},
		{"RFC9110 §13.1.2 If-None-Match matches", []string{`If-None-Match: "abc"`}, strong, CondNotModified},
		{"RFC9110 §13.1.2 If-None-Match does not match", []string{`If-None-Match: "xyz"`}, strong, CondNone},
		{"RFC9110 §13.1.2 weak comparison: weak request tag, strong stored", []string{`If-None-Match: W/"abc"`}, strong, CondNotModified},
		{"RFC9110 §13.1.2 weak comparison: strong request tag, weak stored", []string{`If-None-Match: "abc"`}, weak, CondNotModified},
		{"RFC9110 §13.1.2 list with a match", []string{`If-None-Match: "x", W/"y" ,"abc"`}, strong, CondNotModified},
		{"RFC9110 §13.1.2 list without a match", []string{`If-None-Match: "x", "y"`}, strong, CondNone},
		{"RFC9110 §13.1.2 star matches a stored representation", []string{`If-None-Match: *`}, strong, CondNotModified},
		{"RFC9110 §13.1.2 star matches even without a stored ETag", []string{`If-None-Match: *`}, none, CondNotModified},
		{"RFC9110 §13.1.2 tag against no stored ETag", []string{`If-None-Match: "abc"`}, noTag, CondNone},
		{"RFC9110 §8.8.3 entity-tag may hold a backslash", []string{`If-None-Match: "a\", "abc"`}, strong, CondNotModified},
		{"RFC9110 §8.8.3 backslash tag itself matches", []string{`If-None-Match: "x", "a\"`}, Validators{ETag: []byte(`"a\"`)}, CondNotModified},
		{"RFC9110 §8.8.3 comma inside an entity-tag", []string{`If-None-Match: "a,b"`}, Validators{ETag: []byte(`"a,b"`)}, CondNotModified},
		{"RFC9110 §13.1.3 If-Modified-Since ignored when If-None-Match present", []string{`If-None-Match: "xyz"`, "If-Modified-Since: " + after}, strong, CondNone},
		{"RFC9110 §13.1.3 If-None-Match match with stale If-Modified-Since", []string{`If-None-Match: "abc"`, "If-Modified-Since: " + before}, strong, CondNotModified},
		{"RFC9110 §13.1.3 not modified since a later date", []string{"If-Modified-Since: " + after}, strong, CondNotModified},
		{"RFC9110 §13.1.3 not modified since the same date", []string{"If-Modified-Since: " + at}, strong, CondNotModified},
		{"RFC9110 §13.1.3 modified since an earlier date", []string{"If-Modified-Since: " + before}, strong, CondNone},
		{"RFC9110 §13.1.3 invalid date is ignored", []string{"If-Modified-Since: yesterday"}, strong, CondNone},
		{"RFC9110 §13.1.3 list of dates is ignored", []string{"If-Modified-Since: " + after + ", " + after}, strong, CondNone},
		{"RFC9110 §13.1.3 no modification date: ignored", []string{"If-Modified-Since: " + after}, none, CondNone},
		{"RFC9110 §13.1.1 If-Match strong match passes", []string{`If-Match: "abc"`}, strong, CondNone},
		{"RFC9110 §13.1.1 If-Match mismatch fails", []string{`If-Match: "xyz"`}, strong, CondPrecondition},
		{"RFC9110 §13.1.1 If-Match weak request tag never matches", []string{`If-Match: W/"abc"`}, strong, CondPrecondition},
		{"RFC9110 §13.1.1 If-Match against weak stored tag fails", []string{`If-Match: "abc"`}, weak, CondPrecondition},
		{"RFC9110 §13.1.1 If-Match list with a strong match", []string{`If-Match: "x", "abc"`}, strong, CondNone},
		{"RFC9110 §13.1.1 If-Match star passes", []string{`If-Match: *`}, strong, CondNone},
		{"RFC9110 §13.1.1 If-Match without a stored ETag fails", []string{`If-Match: "abc"`}, noTag, CondPrecondition},
		{"RFC9110 §8.8.3 If-Match list with a backslash tag", []string{`If-Match: "a\", "abc"`}, strong, CondNone},
		{"RFC9110 §13.2.2 If-Match passes, then If-None-Match decides", []string{`If-Match: "abc"`, `If-None-Match: "abc"`}, strong, CondNotModified},
		{"RFC9110 §13.2.2 If-Match failure precedes If-None-Match", []string{`If-Match: "xyz"`, `If-None-Match: "abc"`}, strong, CondPrecondition},
		{"RFC9110 §13.1.4 If-Unmodified-Since later date passes", []string{"If-Unmodified-Since: " + after}, strong, CondNone},
		{"RFC9110 §13.1.4 If-Unmodified-Since same date passes", []string{"If-Unmodified-Since: " + at}, strong, CondNone},
		{"RFC9110 §13.1.4 If-Unmodified-Since earlier date fails", []string{"If-Unmodified-Since: " + before}, strong, CondPrecondition},
		{"RFC9110 §13.1.4 If-Unmodified-Since invalid date is ignored", []string{"If-Unmodified-Since: soon"}, strong, CondNone},
		{"RFC9110 §13.1.4 If-Unmodified-Since without a modification date is ignored", []string{"If-Unmodified-Since: " + before}, none, CondNone},
		{"RFC9110 §13.1.4 If-Unmodified-Since ignored when If-Match present", []string{`If-Match: "abc"`, "If-Unmodified-Since: " + before}, strong, CondNone},
		{"RFC9110 §13.2.2 If-Unmodified-Since failure precedes If-None-Match", []string{"If-Unmodified-Since: " + before, `If-None-Match: "abc"`}, strong, CondPrecondition},
		{"RFC9110 §13.2.2 If-Unmodified-Since passes, then If-Modified-Since", []string{"If-Unmodified-Since: " + after, "If-Modified-Since: " + after}, strong, CondNotModified},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Evaluate(reqHeader(t, tc.lines...), tc.v, base); got != tc.want {
				t.Errorf("Evaluate(%q, etag %q lm %d) = %d, want %d", tc.lines, tc.v.ETag, tc.v.LastModified, got, tc.want)
			}
		})
	}
}

func TestETagEqual(t *testing.T) {
	// The first four rows are the table of RFC9110 §8.8.3.2.
	tests := []struct {
		rfc, a, b    string
		strong, weak bool
	}{
		{`RFC9110 §8.8.3.2 W/"1" W/"1"`, `W/"1"`, `W/"1"`, false, true},
		{`RFC9110 §8.8.3.2 W/"1" W/"2"`, `W/"1"`, `W/"2"`, false, false},
		{`RFC9110 §8.8.3.2 W/"1" "1"`, `W/"1"`, `"1"`, false, true},
		{`RFC9110 §8.8.3.2 "1" "1"`, `"1"`, `"1"`, true, true},
		{`RFC9110 §8.8.3.2 "1" W/"1" (symmetric)`, `"1"`, `W/"1"`, false, true},
		{`RFC9110 §8.8.3.2 "1" "2"`, `"1"`, `"2"`, false, false},
		{`RFC9110 §8.8.3 opaque-tag is case-sensitive`, `"abc"`, `"ABC"`, false, false},
		{`RFC9110 §8.8.3 weak prefix is case-sensitive`, `w/"1"`, `"1"`, false, false},
		{`RFC9110 §8.8.3 empty opaque-tags`, `""`, `""`, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			a, b := []byte(tc.a), []byte(tc.b)
			if got := ETagEqual(a, b, true); got != tc.strong {
				t.Errorf("strong ETagEqual(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.strong)
			}
			if got := ETagEqual(a, b, false); got != tc.weak {
				t.Errorf("weak ETagEqual(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.weak)
			}
		})
	}
}
