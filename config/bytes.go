package config

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// ParseBytes parses a byte size: a non-negative number with an optional
// unit, such as "1048576", "256MiB", "1GB", "512k" or "1.5KiB". Units are
// case-insensitive; KiB, MiB, GiB, TiB, PiB and EiB (also Ki, Mi, ...) are
// powers of 1024, while KB, MB, GB, TB, PB, EB and the bare letters K, M,
// G, T, P, E are powers of 1000, as in Kubernetes quantities, so "512k" is
// 512000 bytes. A fraction must come out as a whole number of bytes. Errors
// describe the problem without repeating the input, so callers can say
// where the input came from.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty byte size")
	}
	if t[0] == '-' {
		return 0, errors.New("byte size must not be negative")
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	number, unit := t[:i], strings.TrimSpace(t[i:])
	whole, frac, hasDot := strings.Cut(number, ".")
	if whole == "" || (hasDot && frac == "") || strings.Contains(frac, ".") {
		return 0, errors.New("want a number with an optional unit, such as 1048576, 256MiB or 1GB")
	}
	mult, ok := byteUnit(unit)
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (want B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)", unit)
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		return 0, errTooLarge() // only digits reach here, so the only failure is range
	}
	hi, total := bits.Mul64(w, mult)
	if hi != 0 {
		return 0, errTooLarge()
	}

	// Trailing zeros carry no value and would only shrink the digits we can
	// afford: 10^19 is the largest power of ten below 2^64.
	frac = strings.TrimRight(frac, "0")
	if frac != "" {
		if len(frac) > 19 {
			return 0, errors.New("too many decimal places")
		}
		f, _ := strconv.ParseUint(frac, 10, 64) // <= 19 digits: fits
		pow := uint64(1)
		for range len(frac) {
			pow *= 10
		}
		// f < pow, so f*mult/pow < mult and the 128-bit division cannot
		// overflow (hi < pow).
		hi, lo := bits.Mul64(f, mult)
		q, rem := bits.Div64(hi, lo, pow)
		if rem != 0 {
			return 0, errors.New("not a whole number of bytes")
		}
		var carry uint64
		total, carry = bits.Add64(total, q, 0)
		if carry != 0 {
			return 0, errTooLarge()
		}
	}
	if total > math.MaxInt64 {
		return 0, errTooLarge()
	}
	return int64(total), nil
}

func errTooLarge() error {
	return fmt.Errorf("byte size too large (max %d)", int64(math.MaxInt64))
}

// byteUnit returns the multiplier of a unit suffix, matched
// case-insensitively without allocating.
func byteUnit(unit string) (uint64, bool) {
	if unit == "" || strings.EqualFold(unit, "b") {
		return 1, true
	}
	var dec, bin uint64
	switch unit[0] | 0x20 { // ASCII lower case; only 'K' and 'k' map to 'k'
	case 'k':
		dec, bin = 1e3, 1<<10
	case 'm':
		dec, bin = 1e6, 1<<20
	case 'g':
		dec, bin = 1e9, 1<<30
	case 't':
		dec, bin = 1e12, 1<<40
	case 'p':
		dec, bin = 1e15, 1<<50
	case 'e':
		dec, bin = 1e18, 1<<60
	default:
		return 0, false
	}
	switch rest := unit[1:]; {
	case rest == "" || strings.EqualFold(rest, "b"):
		return dec, true
	case strings.EqualFold(rest, "i") || strings.EqualFold(rest, "ib"):
		return bin, true
	}
	return 0, false
}

// FormatBytes writes n with the unit that divides it exactly and leaves the
// smallest number, binary on a tie: 268435456 is "256MiB", 2000000000 is
// "2GB", 2048000 is "2000KiB" and 1536 is "1536B". ParseBytes(FormatBytes(n))
// == n for every n >= 0.
func FormatBytes(n int64) string {
	sign := ""
	u := uint64(n)
	if n < 0 {
		sign = "-"
		u = -u // two's complement: also right for math.MinInt64
	}
	if u == 0 {
		return "0B"
	}
	binary := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	decimal := [...]string{"B", "KB", "MB", "GB", "TB", "PB", "EB"}
	bi := 0
	for bi < len(binary)-1 && u%(1<<(10*uint(bi+1))) == 0 {
		bi++
	}
	di, dm := 0, uint64(1)
	for di < len(decimal)-1 && u%(dm*1000) == 0 {
		di, dm = di+1, dm*1000
	}
	if bq := u >> (10 * uint(bi)); bq <= u/dm {
		return sign + strconv.FormatUint(bq, 10) + binary[bi]
	}
	return sign + strconv.FormatUint(u/dm, 10) + decimal[di]
}
