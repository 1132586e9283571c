package httpcache

import "time"

// ParseHTTPDate parses an HTTP-date (RFC 9110 §5.6.7) into unix seconds.
// It accepts exactly the three formats a recipient must:
//
//	IMF-fixdate   Sun, 06 Nov 1994 08:49:37 GMT
//	rfc850-date   Sunday, 06-Nov-94 08:49:37 GMT
//	asctime-date  Sun Nov  6 08:49:37 1994
//
// and nothing else: a zone other than GMT ("UTC", "+0000"), a field padded
// with extra spaces (what a value folded over several lines becomes), a
// one-digit hour, a lower-case month, a day the month does not have. A
// caller that gets false must treat the value as invalid, which for
// Expires means "already expired" (RFC 9111 §5.3). Names are
// case-sensitive (%s in the ABNF); a second of 60 (a leap second) is
// allowed. The day name is not checked against the date: the grammar
// does not tie them.
//
// now (unix seconds) places the two-digit year of an rfc850-date: a date
// that would be more than 50 years in the future is in the most recent past
// year with the same last two digits (§5.6.7); so "94" is 1994 until 2044. Surrounding spaces and
// tabs (OWS) are ignored. It does not allocate.
func ParseHTTPDate(b []byte, now int64) (int64, bool) {
	b = trimSpace(b)
	switch {
	case len(b) == len("Sun, 06 Nov 1994 08:49:37 GMT") && b[3] == ',':
		return imfFixdate(b)
	case len(b) == len("Sun Nov  6 08:49:37 1994") && b[3] == ' ':
		return asctime(b)
	}
	return rfc850(b, now)
}

// imfFixdate parses day-name "," SP day SP month SP year SP time-of-day SP "GMT".
func imfFixdate(b []byte) (int64, bool) {
	if !dayName(b[:3]) || b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || b[25] != ' ' ||
		string(b[26:]) != "GMT" {
		return 0, false
	}
	day, ok1 := digits(b[5:7])
	month, ok2 := monthName(b[8:11])
	year, ok3 := digits(b[12:16])
	if !ok1 || !ok2 || !ok3 {
		return 0, false
	}
	return timestamp(year, month, day, b[17:25])
}

// asctime parses day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year.
func asctime(b []byte) (int64, bool) {
	if !dayName(b[:3]) || b[7] != ' ' || b[10] != ' ' || b[19] != ' ' {
		return 0, false
	}
	month, ok1 := monthName(b[4:7])
	dd := b[8:10]
	if dd[0] == ' ' {
		dd = dd[1:]
	}
	day, ok2 := digits(dd)
	year, ok3 := digits(b[20:24])
	if !ok1 || !ok2 || !ok3 {
		return 0, false
	}
	return timestamp(year, month, day, b[11:19])
}

// rfc850 parses day-name-l "," SP day "-" month "-" 2DIGIT SP time-of-day SP "GMT".
func rfc850(b []byte, now int64) (int64, bool) {
	const rest = len(" 06-Nov-94 08:49:37 GMT")
	if len(b) < rest+len("Monday,") || len(b) > rest+len("Wednesday,") {
		return 0, false
	}
	name, tail := b[:len(b)-rest-1], b[len(b)-rest-1:]
	if !longDayName(name) || tail[0] != ',' {
		return 0, false
	}
	tail = tail[1:] // " 06-Nov-94 08:49:37 GMT"
	if tail[0] != ' ' || tail[3] != '-' || tail[7] != '-' || tail[10] != ' ' || tail[19] != ' ' ||
		string(tail[20:]) != "GMT" {
		return 0, false
	}
	day, ok1 := digits(tail[1:3])
	month, ok2 := monthName(tail[4:7])
	yy, ok3 := digits(tail[8:10])
	if !ok1 || !ok2 || !ok3 {
		return 0, false
	}
	// The latest year ending in yy that is not more than 50 years after
	// now: a year further ahead means the same digits a century before.
	t := time.Unix(now, 0).UTC()
	limit := t.AddDate(50, 0, 0).Unix()
	year := t.Year() - t.Year()%100 + 100 + yy
	for range 3 {
		ts, ok := timestamp(year, month, day, tail[11:19])
		if !ok || ts <= limit {
			return ts, ok
		}
		year -= 100
	}
	return 0, false // not reached: a century back is always in the past
}

// timestamp checks the calendar and the time-of-day (hour ":" minute ":"
// second, two digits each) and returns unix seconds.
func timestamp(year, month, day int, tod []byte) (int64, bool) {
	if tod[2] != ':' || tod[5] != ':' {
		return 0, false
	}
	hour, ok1 := digits(tod[0:2])
	minute, ok2 := digits(tod[3:5])
	second, ok3 := digits(tod[6:8])
	if !ok1 || !ok2 || !ok3 || hour > 23 || minute > 59 || second > 60 {
		return 0, false
	}
	if day < 1 || day > daysIn(year, time.Month(month)) {
		return 0, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, second, 0, time.UTC).Unix(), true
}

func daysIn(year int, m time.Month) int {
	// The day before the first of the next month.
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// digits parses one to four ASCII digits.
func digits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

var (
	dayNames     = [...]string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
	longDayNames = [...]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
	monthNames   = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

func dayName(b []byte) bool {
	for _, n := range dayNames {
		if string(b) == n {
			return true
		}
	}
	return false
}

func longDayName(b []byte) bool {
	for _, n := range longDayNames {
		if string(b) == n {
			return true
		}
	}
	return false
}

// monthName returns the month number, 1 to 12.
func monthName(b []byte) (int, bool) {
	for i, n := range monthNames {
		if string(b) == n {
			return i + 1, true
		}
	}
	return 0, false
}
