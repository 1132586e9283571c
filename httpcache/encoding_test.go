package httpcache

import (
	"strings"
	"testing"
)

func TestAppendAcceptedCodings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"absent: identity", nil, ""},
		{"empty value: identity", []string{""}, ""},
		{"Chrome", []string{"gzip, deflate, br, zstd"}, "br, deflate, gzip, zstd"},
		{"Firefox (older)", []string{"gzip, deflate, br"}, "br, deflate, gzip"},
		{"Safari order", []string{"br, gzip, deflate"}, "br, deflate, gzip"},
		{"curl --compressed", []string{"deflate, gzip"}, "deflate, gzip"},
		{"case and space", []string{"  GZIP ,Br  "}, "br, gzip"},
		{"q=0 refuses (RFC 9110 §12.5.3)", []string{"gzip;q=0, br"}, "br"},
		{"q=0.000 refuses", []string{"gzip; q=0.000, br;q=0.5"}, "br"},
		{"q=0.001 accepts", []string{"gzip;q=0.001"}, "gzip"},
		{"q=1.0 accepts", []string{"gzip;q=1.0"}, "gzip"},
		{"malformed q refuses", []string{"gzip;q=high, br;q=1.5, zstd;q=0.0001, deflate;q=2"}, ""},
		{"uppercase Q", []string{"gzip;Q=0"}, ""},
		{"other params ignored", []string{"gzip;level=9"}, "gzip"},
		{"x-gzip is gzip", []string{"x-gzip"}, "gzip"},
		{"star accepts the rest", []string{"*"}, "br, deflate, gzip, zstd"},
		{"star with exclusions", []string{"*;q=0.5, br;q=0"}, "deflate, gzip, zstd"},
		{"star refused", []string{"gzip, *;q=0"}, "gzip"},
		{"identity only", []string{"identity"}, ""},
		{"unknown codings dropped", []string{"compress, exi, gzip"}, "gzip"},
		{"several lines combine", []string{"gzip", "br"}, "br, gzip"},
		{"last mention wins", []string{"gzip, gzip;q=0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines [][]byte
			for _, l := range tc.lines {
				lines = append(lines, []byte(l))
			}
			if got := string(AppendAcceptedCodings([]byte("x"), lines)); got != "x"+tc.want {
				t.Fatalf("%q: got %q, want %q", tc.lines, strings.TrimPrefix(got, "x"), tc.want)
			}
		})
	}
}

func TestAppendAcceptedCodingsAllocs(t *testing.T) {
	lines := [][]byte{[]byte("gzip, deflate, br;q=0.9, zstd;q=0")}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = AppendAcceptedCodings(buf[:0], lines) }); n != 0 {
		t.Fatalf("%v allocations; want 0", n)
	}
}

func FuzzAppendAcceptedCodings(f *testing.F) {
	f.Add("gzip, deflate, br, zstd")
	f.Add("*;q=0.5, br;q=0")
	f.Add(`gzip;q="1", ;;, ,`)
	f.Fuzz(func(t *testing.T, v string) {
		got := string(AppendAcceptedCodings(nil, [][]byte{[]byte(v)}))
		// Only known codings, in order, each once.
		rest := got
		last := -1
		for rest != "" {
			var c string
			c, rest, _ = strings.Cut(rest, ", ")
			i := strings.Index("br deflate gzip zstd", c)
			if c == "" || i < 0 || i <= last {
				t.Fatalf("%q -> %q", v, got)
			}
			last = i
		}
	})
}
