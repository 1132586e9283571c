package config

import (
	"math"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string // substring; "" means success
	}{
		{"0", 0, ""},
		{"1048576", 1048576, ""},
		{"256MiB", 256 << 20, ""},
		{"256mib", 256 << 20, ""},
		{"256MIB", 256 << 20, ""},
		{"256Mi", 256 << 20, ""},
		{"1GB", 1e9, ""},
		{"1gb", 1e9, ""},
		{"1G", 1e9, ""},
		{"1GiB", 1 << 30, ""},
		{"512k", 512000, ""},
		{"512K", 512000, ""},
		{"512KB", 512000, ""},
		{"512KiB", 512 << 10, ""},
		{"4TiB", 4 << 40, ""},
		{"2PB", 2e15, ""},
		{"1EiB", 1 << 60, ""},
		{"7EiB", 7 << 60, ""},
		{"10B", 10, ""},
		{"10b", 10, ""},
		{" 64 MiB ", 64 << 20, ""},
		{"1.5KiB", 1536, ""},
		{"1.5GB", 1.5e9, ""},
		{"0.5MiB", 512 << 10, ""},
		{"2.000KiB", 2048, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"9223372036854775807B", math.MaxInt64, ""},

		{"", 0, "empty"},
		{"   ", 0, "empty"},
		{"12XB", 0, `unknown unit "XB"`},
		{"12 bytes", 0, `unknown unit "bytes"`},
		{"1KiBB", 0, `unknown unit "KiBB"`},
		{"MiB", 0, "want a number"},
		{"abc", 0, "want a number"},
		{"+5", 0, "want a number"},
		{".5KiB", 0, "want a number"},
		{"1.KiB", 0, "want a number"},
		{"1.2.3", 0, "want a number"},
		{"1,5KiB", 0, "unknown unit"},
		{"-1", 0, "negative"},
		{"-1KiB", 0, "negative"},
		{"0.5B", 0, "whole number"},
		{"1.0001KiB", 0, "whole number"},
		{"1.00000000000000000001GiB", 0, "too many decimal places"},
		{"9223372036854775808", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
		{"8EiB", 0, "too large"},
		{"8388608TiB", 0, "too large"},
		{"9.3EB", 0, "too large"},
		{"16EiB", 0, "too large"}, // wraps uint64 exactly: must not come out as 0
		{"15.99999999999999999EiB", 0, "whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBytes(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBytes(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{1536, "1536B"},
		{1500, "1500B"},
		{256 << 20, "256MiB"},
		{8 << 20, "8MiB"},
		{1 << 30, "1GiB"},
		{3 << 40, "3TiB"},
		{1e6, "1MB"},
		{2e9, "2GB"},
		{1 << 62, "4EiB"},
		{2048000, "2000KiB"}, // binary wins when both divide
		{math.MaxInt64, "9223372036854775807B"},
		{-1, "-1B"},
		{-(16 << 20), "-16MiB"},
		{math.MinInt64, "-8EiB"},
	}
	for _, tt := range tests {
		if got := FormatBytes(tt.in); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestBytesRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 999, 1000, 1023, 1024, 1025, 1 << 20, 5e9, 1<<40 + 1, math.MaxInt64, math.MaxInt64 - 1023, 1 << 62} {
		s := FormatBytes(n)
		got, err := ParseBytes(s)
		if err != nil || got != n {
			t.Errorf("ParseBytes(FormatBytes(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "256MiB", "1GB", "512k", "1.5KiB", "12XB", "-1", "9223372036854775807",
		"8EiB", "0.5B", " 64 MiB ", "1.2.3", "99999999999999999999kib"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseBytes(%q) = %d with error %v; want 0", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseBytes(%q) = %d; want >= 0", s, n)
		}
		back, err := ParseBytes(FormatBytes(n))
		if err != nil || back != n {
			t.Fatalf("round trip of %q: FormatBytes(%d) = %q parses to %d, %v", s, n, FormatBytes(n), back, err)
		}
	})
}

func BenchmarkParseBytes(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBytes("256MiB"); err != nil {
			b.Fatal(err)
		}
	}
}
