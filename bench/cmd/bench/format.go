package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// fmtInt writes n rounded, with thousands separators: 71314 -> "71,314".
func fmtInt(n float64) string {
	s := strconv.FormatInt(int64(math.Round(n)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtMs writes a latency in milliseconds with sensible precision.
func fmtMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

// fmtUs writes a duration in microseconds, "16.2 µs".
func fmtUs(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

func fmtMsDelta(d time.Duration) string {
	s := fmtMs(d)
	if d >= 0 {
		return "+" + s
	}
	return s
}

// ratio writes a/b as "0.89×", "" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// fmtRange writes the smallest and largest of sorted values.
func fmtRange(sorted []float64) string {
	if len(sorted) == 0 {
		return ""
	}
	return fmtInt(sorted[0]) + " – " + fmtInt(sorted[len(sorted)-1])
}

// median returns the middle of sorted values (the mean of the two middle
// ones for an even count), 0 for none.
func median(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// parseBytes reads "16MiB", "512KiB" or a plain number of bytes.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive size such as 16MiB, 512KiB or 1048576")
	}
	return n * mult, nil
}

// parseCPUs reads "" (nil) or n CPU numbers separated by commas, "2,3,4".
func parseCPUs(s string, n int) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	cpus := strings.Split(s, ",")
	if len(cpus) != n {
		return nil, fmt.Errorf("want %d CPU numbers separated by commas, got %q", n, s)
	}
	for i, c := range cpus {
		c = strings.TrimSpace(c)
		if v, err := strconv.Atoi(c); err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a CPU number", c)
		}
		cpus[i] = c
	}
	return cpus, nil
}
