package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

// sameEntry compares entries field by field, treating nil and empty as equal.
func sameEntry(a, b *Entry) bool {
	if !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Body, b.Body) || len(a.Header) != len(b.Header) {
		return false
	}
	for i := range a.Header {
		if !bytes.Equal(a.Header[i].Key, b.Header[i].Key) || !bytes.Equal(a.Header[i].Value, b.Header[i].Value) {
			return false
		}
	}
	return a.RequestTime == b.RequestTime && a.ResponseTime == b.ResponseTime && a.Expires == b.Expires &&
		a.InitialAge == b.InitialAge && a.Lifetime == b.Lifetime &&
		a.StaleWhileRevalidate == b.StaleWhileRevalidate && a.StaleIfError == b.StaleIfError &&
		a.Status == b.Status && a.Flags == b.Flags
}

func encodingCases() []struct {
	name string
	e    *Entry
} {
	return []struct {
		name string
		e    *Entry
	}{
		{"zero", &Entry{}},
		{"key only", &Entry{Key: []byte("GET http://a/")}},
		{"empty header values", &Entry{
			Key:    []byte("k"),
			Header: []Field{{Key: []byte("X-Empty")}, {Key: nil, Value: nil}, {Key: []byte("A"), Value: []byte("b")}},
		}},
		{"empty body with headers", &Entry{Key: []byte("k"), Header: []Field{{[]byte("Vary"), []byte("Accept-Encoding")}}, Body: []byte{}}},
		{"all flags", &Entry{Key: []byte("k"), Flags: NoCache | MustRevalidate | Shared | Heuristic | VaryMarker | Pass, Status: 304}},
		{"every field", &Entry{
			Key:                  []byte("GET http://example.com/x?y=1\x00gzip"),
			Header:               []Field{{[]byte("Content-Type"), []byte("text/html")}, {[]byte("Set-Cookie"), []byte("a=1")}, {[]byte("Set-Cookie"), []byte("b=2")}},
			Body:                 []byte("<html>\x00\xff binary</html>"),
			RequestTime:          1_700_000_000_123_456_789,
			ResponseTime:         1_700_000_000_223_456_789,
			Expires:              1_700_000_600_000_000_000,
			InitialAge:           12,
			Lifetime:             600,
			StaleWhileRevalidate: 30,
			StaleIfError:         86400,
			Status:               206,
			Flags:                Shared | Heuristic,
		}},
		{"extremes", &Entry{
			RequestTime: math.MinInt64, ResponseTime: math.MaxInt64, Expires: -1,
			InitialAge: math.MinInt32, Lifetime: math.MaxInt32, StaleWhileRevalidate: -1, StaleIfError: math.MaxInt32,
			Status: math.MaxUint16, Flags: math.MaxUint16,
		}},
		{"large body", &Entry{Key: []byte("big"), Body: bytes.Repeat([]byte("0123456789abcdef"), 1<<12)}},
	}
}

func TestEntryRoundTrip(t *testing.T) {
	for _, tc := range encodingCases() {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			b := tc.e.AppendBinary(prefix)
			if !bytes.Equal(b[:len(prefix)], prefix) {
				t.Fatal("AppendBinary overwrote dst")
			}
			got, err := DecodeEntry(b[len(prefix):])
			if err != nil {
				t.Fatal(err)
			}
			if !sameEntry(got, tc.e) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.e)
			}
			if got.Cost() != tc.e.Cost() {
				t.Fatalf("Cost %d after round trip; want %d", got.Cost(), tc.e.Cost())
			}
		})
	}
}

// TestDecodeEntryOwnsItsBytes checks that the entry shares nothing with the
// input and that its slices cannot grow into each other.
func TestDecodeEntryOwnsItsBytes(t *testing.T) {
	want := encodingCases()[5].e
	b := want.AppendBinary(nil)
	got, err := DecodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xAA
	}
	if !sameEntry(got, want) {
		t.Fatal("entry changed when the input buffer was overwritten")
	}
	_ = append(got.Key, "!!!!"...)
	_ = append(got.Header[0].Value, "!!!!"...)
	if !sameEntry(got, want) {
		t.Fatal("appending to one slice of the entry changed another")
	}
}

func TestDecodeEntryAllocs(t *testing.T) {
	b := encodingCases()[5].e.AppendBinary(nil)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeEntry(b); err != nil {
			t.Fatal(err)
		}
	}); n > 3 {
		t.Fatalf("DecodeEntry: %v allocations; want at most 3", n)
	}
}

func TestDecodeEntryErrors(t *testing.T) {
	valid := encodingCases()[5].e.AppendBinary(nil)
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// fixed: version, status 200, flags 0, then seven zero numbers.
	fixed := cat([]byte{entryVersion}, uv(200), uv(0), make([]byte, 7))
	for _, tc := range []struct {
		name string
		in   []byte
		is   error
		msg  string
	}{
		{"empty", nil, ErrMalformed, "empty input"},
		{"version 0", []byte{0}, ErrVersion, "version 0"},
		{"version 2", append([]byte{2}, valid[1:]...), ErrVersion, "version 2"},
		{"status too big", cat([]byte{entryVersion}, uv(70000)), ErrMalformed, "status"},
		{"flags too big", cat([]byte{entryVersion}, uv(200), uv(1<<16)), ErrMalformed, "flags"},
		{"varint overflow", cat([]byte{entryVersion}, bytes.Repeat([]byte{0xff}, 11)), ErrMalformed, "overflows"},
		{"int32 overflow", cat([]byte{entryVersion}, uv(200), uv(0), []byte{0, 0, 0}, binary.AppendVarint(nil, math.MaxInt32+1)), ErrMalformed, "initial age"},
		{"key longer than input", cat(fixed, uv(5), []byte("abc")), ErrMalformed, "key"},
		{"key length huge", cat(fixed, uv(math.MaxUint64)), ErrMalformed, "key at offset 21: length 18446744073709551615 exceeds the 0 bytes left"},
		{"header count huge", cat(fixed, uv(0), uv(1<<40)), ErrMalformed, "header count"},
		{"header count beyond input", cat(fixed, uv(0), uv(3), uv(0), uv(0)), ErrMalformed, "header count"},
		{"missing body", cat(fixed, uv(0), uv(0)), ErrMalformed, "body length at offset"},
		{"trailing bytes", append(append([]byte{}, valid...), 0), ErrMalformed, "1 trailing bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := DecodeEntry(tc.in)
			if err == nil {
				t.Fatalf("decoded %+v; want an error", e)
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q; want %v containing %q", err, tc.is, tc.msg)
			}
		})
	}
	// Every proper prefix of a valid encoding is truncated.
	for n := range len(valid) {
		if _, err := DecodeEntry(valid[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: error %v; want ErrMalformed", n, err)
		}
	}
}

// FuzzDecodeEntry: DecodeEntry never panics, and what it accepts survives
// another round trip unchanged.
func FuzzDecodeEntry(f *testing.F) {
	for _, tc := range encodingCases() {
		b := tc.e.AppendBinary(nil)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{entryVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			if e != nil {
				t.Fatal("entry returned with an error")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrVersion", err)
			}
			return
		}
		again, err := DecodeEntry(e.AppendBinary(nil))
		if err != nil {
			t.Fatalf("re-decoding a decoded entry: %v", err)
		}
		if !sameEntry(e, again) {
			t.Fatalf("second round trip changed the entry:\n%+v\n%+v", e, again)
		}
		if len(e.Header) > len(b)/2 {
			t.Fatalf("%d header fields from %d bytes", len(e.Header), len(b))
		}
	})
}
