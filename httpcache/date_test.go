package httpcache

import (
	"testing"
	"time"
)

func TestParseHTTPDate(t *testing.T) {
	const want = 784111777 // Sun, 06 Nov 1994 08:49:37 GMT
	tests := []struct {
		rfc, in string
		ok      bool
	}{
		{"RFC9110 §5.6.7 IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT", true},
		{"RFC9110 §5.6.7 obsolete RFC 850 format", "Sunday, 06-Nov-94 08:49:37 GMT", true},
		{"RFC9110 §5.6.7 obsolete asctime format", "Sun Nov  6 08:49:37 1994", true},
		{"RFC9110 §5.6.7 asctime with a two-digit day", "Sun Nov 06 08:49:37 1994", true},
		{"RFC9110 §5.6.7 surrounding whitespace (OWS)", " \tSun, 06 Nov 1994 08:49:37 GMT ", true},
		{"RFC9110 §5.6.7 the day name is not checked against the date", "Mon, 06 Nov 1994 08:49:37 GMT", true},
		{"RFC9110 §5.6.7 empty", "", false},
		{"RFC9111 §5.3 the number 0", "0", false},
		{"RFC9111 §5.3 the number -1", "-1", false},
		{"RFC9110 §5.6.7 words", "tomorrow", false},
		{"RFC9110 §5.6.7 date without time", "Sun, 06 Nov 1994", false},
		{"RFC9110 §5.6.7 ISO 8601 is not an HTTP-date", "1994-11-06T08:49:37Z", false},
		{"RFC9110 §5.6.7 day out of range", "Sun, 32 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 a day November does not have", "Sun, 31 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 day zero", "Sun, 00 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 trailing junk", "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 UTC instead of GMT", "Sun, 06 Nov 1994 08:49:37 UTC", false},
		{"RFC9110 §5.6.7 numeric zone instead of GMT", "Sun, 06 Nov 1994 08:49:37 +0000", false},
		{"RFC9110 §5.6.7 another zone name", "Sun, 06 Nov 1994 08:49:37 PST", false},
		{"RFC9110 §5.6.7 RFC 850 with UTC", "Sunday, 06-Nov-94 08:49:37 UTC", false},
		{"RFC9110 §5.6.7 GMT is case-sensitive", "Sun, 06 Nov 1994 08:49:37 gmt", false},
		{"RFC9110 §5.6.7 month is case-sensitive", "Sun, 06 NOV 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 day name is case-sensitive", "sun, 06 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 full day name in IMF-fixdate", "Sunday, 06 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 short day name in RFC 850", "Sun, 06-Nov-94 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 two spaces between fields", "Sun,  06 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 two spaces before the time", "Sun, 06 Nov 1994  08:49:37 GMT", false},
		{"RFC9110 §5.6.7 a folded value, unfolded", "Sun, 06 Nov 1994\r\n 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 a folded value, joined by spaces", "Sun, 06 Nov 1994   08:49:37 GMT", false},
		{"RFC9110 §5.6.7 a tab between fields", "Sun,\t06 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 one-digit hour", "Sun, 06 Nov 1994 8:49:37 GMT", false},
		{"RFC9110 §5.6.7 one-digit day in IMF-fixdate", "Sun, 6 Nov 1994 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 two-digit year in IMF-fixdate", "Sun, 06 Nov 94 08:49:37 GMT", false},
		{"RFC9110 §5.6.7 hour 24", "Sun, 06 Nov 1994 24:00:00 GMT", false},
		{"RFC9110 §5.6.7 minute 60", "Sun, 06 Nov 1994 08:60:37 GMT", false},
		{"RFC9110 §5.6.7 second 61", "Sun, 06 Nov 1994 08:49:61 GMT", false},
		{"RFC9110 §5.6.7 asctime with a zone", "Sun Nov  6 08:49:37 1994 GMT", false},
		{"RFC9110 §5.6.7 asctime one-digit day without its space", "Sun Nov 6 08:49:37 1994", false},
		{"RFC9110 §5.6.7 sign in a number", "Sun, +6 Nov 1994 08:49:37 GMT", false},
	}
	for _, tc := range tests {
		t.Run(tc.rfc, func(t *testing.T) {
			got, ok := ParseHTTPDate([]byte(tc.in), base)
			if ok != tc.ok || (ok && got != want) {
				t.Errorf("ParseHTTPDate(%q) = %d, %v; want %d, %v", tc.in, got, ok, want, tc.ok)
			}
		})
	}
}

// TestParseHTTPDateLeapSecond: time-of-day allows second 60 (RFC 9110
// §5.6.7), the next minute's first second.
func TestParseHTTPDateLeapSecond(t *testing.T) {
	got, ok := ParseHTTPDate([]byte("Sat, 31 Dec 2016 23:59:60 GMT"), base)
	if want := time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC).Unix(); !ok || got != want {
		t.Fatalf("leap second = %d, %v; want %d", got, ok, want)
	}
	if _, ok := ParseHTTPDate([]byte("Thu, 29 Feb 2024 00:00:00 GMT"), base); !ok {
		t.Error("29 February of a leap year refused")
	}
	if _, ok := ParseHTTPDate([]byte("Wed, 29 Feb 2023 00:00:00 GMT"), base); ok {
		t.Error("29 February of a common year accepted")
	}
}

// TestParseHTTPDateTwoDigitYears: an rfc850-date that would be more than 50
// years in the future is in the most recent past year with the same last
// two digits (RFC 9110 §5.6.7).
func TestParseHTTPDateTwoDigitYears(t *testing.T) {
	at := func(y int, mo time.Month, d int) int64 { return time.Date(y, mo, d, 12, 0, 0, 0, time.UTC).Unix() }
	tests := []struct {
		name string
		now  int64
		in   string
		want int64
	}{
		{"RFC9110 §5.6.7 94 in 2023 is 1994", at(2023, 11, 14), "Sunday, 06-Nov-94 12:00:00 GMT", at(1994, 11, 6)},
		{"RFC9110 §5.6.7 23 in 2023 is this year", at(2023, 11, 14), "Tuesday, 14-Nov-23 12:00:00 GMT", at(2023, 11, 14)},
		{"RFC9110 §5.6.7 73 in November 2023, not yet 50 years ahead", at(2023, 11, 14), "Monday, 13-Nov-73 12:00:00 GMT", at(2073, 11, 13)},
		{"RFC9110 §5.6.7 73 in November 2023, a day beyond 50 years", at(2023, 11, 14), "Wednesday, 15-Nov-73 12:00:00 GMT", at(1973, 11, 15)},
		{"RFC9110 §5.6.7 01 in 2099 is 2101, two years ahead", at(2099, 6, 1), "Sunday, 01-Jan-01 12:00:00 GMT", at(2101, 1, 1)},
		{"RFC9110 §5.6.7 99 in 2001 is 1999", at(2001, 6, 1), "Friday, 31-Dec-99 12:00:00 GMT", at(1999, 12, 31)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseHTTPDate([]byte(tc.in), tc.now)
			if !ok || got != tc.want {
				t.Errorf("ParseHTTPDate(%q) at %s = %s, %v; want %s", tc.in, time.Unix(tc.now, 0).UTC(),
					time.Unix(got, 0).UTC(), ok, time.Unix(tc.want, 0).UTC())
			}
		})
	}
}

func TestIfRange(t *testing.T) {
	lm := httpDate(base - 10)
	date := httpDate(base)
	tests := []struct {
		name                          string
		ifRange, etag, lastMod, dated string
		want                          bool
	}{
		{"RFC9110 §13.1.5 strong entity-tag matches", `"v1"`, `"v1"`, lm, date, true},
		{"RFC9110 §13.1.5 entity-tag differs", `"v2"`, `"v1"`, lm, date, false},
		{"RFC9110 §13.1.5 weak entity-tag never matches", `W/"v1"`, `W/"v1"`, lm, date, false},
		{"RFC9110 §13.1.5 strong tag against a weak stored tag", `"v1"`, `W/"v1"`, lm, date, false},
		{"RFC9110 §13.1.5 entity-tag without a stored ETag", `"v1"`, "", lm, date, false},
		{"RFC9110 §13.1.5 date equal to Last-Modified", lm, `"v1"`, lm, date, true},
		{"RFC9110 §13.1.5 date differs from Last-Modified", httpDate(base - 11), "", lm, date, false},
		{"RFC9110 §13.1.5 same instant, other format: not an exact match", "Tuesday, 14-Nov-23 22:13:10 GMT", "", lm, date, false},
		{"RFC9110 §8.8.2.2 Last-Modified one second before Date is strong", httpDate(base - 1), "", httpDate(base - 1), date, true},
		{"RFC9110 §8.8.2.2 Last-Modified equal to Date is weak", date, "", date, date, false},
		{"RFC9110 §8.8.2.2 no stored Date: strength unknown", lm, "", lm, "", false},
		{"RFC9110 §13.1.5 invalid date", "yesterday", "", "yesterday", date, false},
		{"RFC9110 §5.6.7 UTC is not an HTTP-date", "Tue, 14 Nov 2023 22:13:10 UTC", "", "Tue, 14 Nov 2023 22:13:10 UTC", date, false},
		{"RFC9110 §13.1.5 no stored Last-Modified", lm, "", "", date, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IfRange([]byte(tc.ifRange), []byte(tc.etag), []byte(tc.lastMod), []byte(tc.dated), base); got != tc.want {
				t.Errorf("IfRange(%q; etag %q, lm %q, date %q) = %v, want %v", tc.ifRange, tc.etag, tc.lastMod, tc.dated, got, tc.want)
			}
		})
	}
}

func TestParseHTTPDateAllocs(t *testing.T) {
	in := []byte("Sunday, 06-Nov-94 08:49:37 GMT")
	if n := testing.AllocsPerRun(100, func() { ParseHTTPDate(in, base) }); n != 0 {
		t.Fatalf("ParseHTTPDate allocates %.1f times, want 0", n)
	}
}

func FuzzParseHTTPDate(f *testing.F) {
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sec, ok := ParseHTTPDate([]byte(s), base)
		if !ok {
			return
		}
		// Every accepted date is one of the three formats, so printing it
		// as IMF-fixdate and parsing that gives the same instant.
		again, ok := ParseHTTPDate([]byte(time.Unix(sec, 0).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")), base)
		if y := time.Unix(sec, 0).UTC().Year(); y >= 0 && y <= 9999 && (!ok || again != sec) {
			t.Fatalf("%q parsed as %d, which does not round-trip (%d, %v)", s, sec, again, ok)
		}
	})
}
