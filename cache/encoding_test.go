package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// sameEntry compares entries member by member, treating nil and empty as equal.
func sameEntry(a, b *Entry) bool {
	if !bytes.Equal(a.Key(), b.Key()) || !bytes.Equal(a.Body(), b.Body()) || !slices.EqualFunc(fieldsOf(a), fieldsOf(b), sameField) {
		return false
	}
	return a.ResponseTime == b.ResponseTime && a.Expires == b.Expires &&
		a.InitialAge == b.InitialAge && a.Lifetime == b.Lifetime && a.Stale() == b.Stale() &&
		a.Status == b.Status && a.Flags == b.Flags
}

func sameField(a, b Field) bool { return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) }

// fieldsOf lists an entry's fields.
func fieldsOf(e *Entry) []Field {
	var fs []Field
	for f := e.Fields(); f.Next(); {
		fs = append(fs, Field{f.Key(), f.Value()})
	}
	return fs
}

// build returns NewEntry(key, fields, body, stale) with set applied to it.
func build(key string, fields []Field, body []byte, stale Stale, set func(e *Entry)) *Entry {
	e := NewEntry([]byte(key), fields, body, stale)
	if set != nil {
		set(e)
	}
	return e
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
		{"key only", build("GET http://a/", nil, nil, Stale{}, nil)},
		{"empty header values", build("k", []Field{{Key: []byte("X-Empty")}, {Key: nil, Value: nil}, {Key: []byte("A"), Value: []byte("b")}}, nil, Stale{}, nil)},
		{"empty body with headers", build("k", []Field{{[]byte("Vary"), []byte("Accept-Encoding")}}, []byte{}, Stale{}, nil)},
		{"all flags", build("k", nil, nil, Stale{}, func(e *Entry) {
			e.Flags, e.Status = NoCache|MustRevalidate|Shared|Heuristic|VaryMarker|Pass, 304
		})},
		{"every member", build("GET http://example.com/x?y=1\x00gzip",
			[]Field{{[]byte("Content-Type"), []byte("text/html")}, {[]byte("Set-Cookie"), []byte("a=1")}, {[]byte("Set-Cookie"), []byte("b=2")}},
			[]byte("<html>\x00\xff binary</html>"), Stale{WhileRevalidate: 30, IfError: 86400}, func(e *Entry) {
				e.ResponseTime = 1_700_000_000_223_456_789
				e.Expires = 1_700_000_600_000_000_000
				e.InitialAge, e.Lifetime = 12, 600
				e.Status, e.Flags = 206, Shared|Heuristic
			})},
		{"extremes", build("", nil, nil, Stale{WhileRevalidate: -1, IfError: math.MaxInt32}, func(e *Entry) {
			e.ResponseTime, e.Expires = math.MaxInt64, -1
			e.InitialAge, e.Lifetime = math.MinInt32, math.MaxInt32
			e.Status, e.Flags = math.MaxUint16, math.MaxUint16
		})},
		{"long field", build("k", []Field{{[]byte("Content-Security-Policy"), bytes.Repeat([]byte("a"), 300)}}, []byte("b"), Stale{}, nil)},
		{"large body", build("big", nil, bytes.Repeat([]byte("0123456789abcdef"), 1<<12), Stale{}, nil)},
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
			if tc.e.data != "" && got.Cost() != tc.e.Cost() { // the zero Entry has no array at all
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
	_ = append(got.Key(), "!!!!"...)
	f := got.Fields()
	f.Next()
	_ = append(f.Value(), "!!!!"...)
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
	}); n > 2 {
		t.Fatalf("DecodeEntry: %v allocations; want at most 2 (entry, array)", n)
	}
}

func TestDecodeEntryErrors(t *testing.T) {
	valid := encodingCases()[5].e.AppendBinary(nil)
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// fixed: version, status 200 (two bytes), flags 0, then four zero
	// numbers (times, initial age, lifetime): 8 bytes. After the two lengths, the array:
	// key "k", stale windows 0 and 0, then the field block.
	fixed := cat([]byte{entryVersion}, uv(200), uv(0), make([]byte, 4))
	k00 := []byte("k\x00\x00")
	field := func(name string, repeat uint64, value string) []byte {
		return cat(uv(uint64(len(name))<<1|repeat), []byte(name), uv(uint64(len(value))), []byte(value))
	}
	f := field("A", 0, "bc") // 5 bytes
	for _, tc := range []struct {
		name string
		in   []byte
		is   error
		msg  string
	}{
		{"empty", nil, ErrMalformed, "empty input"},
		{"version 0", []byte{0}, ErrVersion, "version 0"},
		{"version 1", append([]byte{1}, valid[1:]...), ErrVersion, "version 1 (this node reads 2)"},
		{"status too big", cat([]byte{entryVersion}, uv(70000)), ErrMalformed, "status"},
		{"flags too big", cat([]byte{entryVersion}, uv(200), uv(1<<16)), ErrMalformed, "flags"},
		{"varint overflow", cat([]byte{entryVersion}, bytes.Repeat([]byte{0xff}, 11)), ErrMalformed, "overflows"},
		{"int32 overflow", cat([]byte{entryVersion}, uv(200), uv(0), []byte{0, 0}, binary.AppendVarint(nil, math.MaxInt32+1)), ErrMalformed, "initial age"},
		{"key length huge", cat(fixed, uv(math.MaxUint64)), ErrMalformed, "key length at offset 8: 18446744073709551615 exceeds 4294967295"},
		{"key longer than input", cat(fixed, uv(5), uv(0), []byte("abc")), ErrMalformed, "key and body lengths 5+0 exceed the 3 bytes left"},
		{"body longer than input", cat(fixed, uv(1), uv(5), k00), ErrMalformed, "key and body lengths 1+5 exceed the 3 bytes left"},
		{"body overlaps the field block", cat(fixed, uv(1), uv(3), k00, uv(0), []byte("ab")), ErrMalformed, "field block at offset 14: length 0; the body length reaches 1 bytes into it"},
		{"stale window overflow", cat(fixed, uv(1), uv(0), []byte("k"), binary.AppendVarint(nil, math.MaxInt32+1), []byte{0, 0}), ErrMalformed, "stale-while-revalidate at offset 11"},
		{"no field block", cat(fixed, uv(1), uv(0), k00), ErrMalformed, "field block length at offset 13: truncated"},
		{"field block too long", cat(fixed, uv(1), uv(1), k00, uv(6), f, []byte("b")), ErrMalformed, "field block at offset 14: length 6; the key and body lengths leave 5 bytes for it"},
		{"field block too short", cat(fixed, uv(1), uv(0), k00, uv(4), f), ErrMalformed, "length 4; the key and body lengths leave 5 bytes for it"},
		{"field name past block", cat(fixed, uv(1), uv(0), k00, uv(2), uv(8), []byte("A")), ErrMalformed, "header name at offset 15: length 4 runs past the field block's end by 3 bytes"},
		{"field value past block", cat(fixed, uv(1), uv(0), k00, uv(4), uv(2), []byte("A"), uv(3), []byte("b")), ErrMalformed, "header value"},
		{"field value length missing", cat(fixed, uv(1), uv(0), k00, uv(2), uv(2), []byte("A")), ErrMalformed, "header value length at offset 16: truncated"},
		{"trailing bytes", append(append([]byte{}, valid...), 0), ErrMalformed, "field block"},
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
	// Every proper prefix of a valid encoding is refused: the body length
	// is explicit, so a cut anywhere shows.
	for n := range len(valid) {
		if _, err := DecodeEntry(valid[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: error %v; want ErrMalformed", n, err)
		}
	}
}

// TestFieldRepeat checks that NewEntry marks a field whose name an earlier
// field had, ignoring case, and that Get finds the first one.
func TestFieldRepeat(t *testing.T) {
	e := NewEntry([]byte("k"), []Field{
		{[]byte("Link"), []byte("<a>")},
		{[]byte("Content-Type"), []byte("text/html")},
		{[]byte("link"), []byte("<b>")},
		{[]byte("Links"), []byte("<c>")},
	}, []byte("body"), Stale{WhileRevalidate: 5, IfError: -7})
	var got []string
	for f := e.Fields(); f.Next(); {
		got = append(got, fmt.Sprintf("%s=%s/%v", f.Key(), f.Value(), f.Repeat()))
	}
	want := []string{"Link=<a>/false", "Content-Type=text/html/false", "link=<b>/true", "Links=<c>/false"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields %q; want %q", got, want)
	}
	if v := e.Get("LINK"); string(v) != "<a>" {
		t.Fatalf("Get(LINK) = %q; want <a>", v)
	}
	if v := e.Get("Missing"); v != nil {
		t.Fatalf("Get(Missing) = %q; want nil", v)
	}
	if string(e.Body()) != "body" || string(e.Key()) != "k" || e.Stale() != (Stale{5, -7}) {
		t.Fatalf("key %q body %q stale %+v", e.Key(), e.Body(), e.Stale())
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
		if n := len(fieldsOf(e)); n > len(b)/2 {
			t.Fatalf("%d header fields from %d bytes", n, len(b))
		}
	})
}

// TestDecodeEntryIntoBorrows: decoding into a given Entry allocates
// nothing and shares the input; DecodeEntry's copy does not.
func TestDecodeEntryIntoBorrows(t *testing.T) {
	orig := NewEntry([]byte("example.com/x"), []Field{{Key: []byte("Content-Type"), Value: []byte("text/plain")}}, []byte("hello"), Stale{})
	orig.Status, orig.ResponseTime, orig.Expires = 200, 1e18, 2e18
	wire := orig.AppendBinary(nil)
	var e Entry
	if n := testing.AllocsPerRun(100, func() {
		if err := DecodeEntryInto(&e, wire); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("DecodeEntryInto allocates %.1f times", n)
	}
	if string(e.Body()) != "hello" || string(e.Key()) != "example.com/x" || e.Status != 200 || string(e.Get("content-type")) != "text/plain" {
		t.Fatalf("decoded %q %q %d", e.Key(), e.Body(), e.Status)
	}
	kept, err := DecodeEntry(wire)
	if err != nil {
		t.Fatal(err)
	}
	copy(wire[len(wire)-5:], "XXXXX") // the body, last in the encoding
	if string(e.Body()) != "XXXXX" {
		t.Fatalf("DecodeEntryInto's entry does not borrow the input: %q", e.Body())
	}
	if string(kept.Body()) != "hello" {
		t.Fatalf("DecodeEntry's entry shares the input: %q", kept.Body())
	}
}

func TestEncodedSize(t *testing.T) {
	for _, e := range []*Entry{
		{},
		NewEntry([]byte("k"), nil, nil, Stale{}),
		NewEntry([]byte("example.com/x"), []Field{{Key: []byte("A"), Value: []byte("b")}}, make([]byte, 70000), Stale{WhileRevalidate: 30}),
	} {
		e.Status, e.ResponseTime, e.Expires, e.InitialAge, e.Lifetime = 200, -1e18, 1<<62, -5, 1<<30
		if got, want := e.EncodedSize(), len(e.AppendBinary(nil)); got != want {
			t.Errorf("EncodedSize = %d, encoding is %d bytes", got, want)
		}
	}
}

// TestRebase: times move to this node's clock, a Vary marker's generation
// does not.
func TestRebase(t *testing.T) {
	e := NewEntry([]byte("k"), nil, nil, Stale{})
	e.ResponseTime, e.Expires = 1000, 5000
	e.Rebase(-10)
	if e.ResponseTime != 990 || e.Expires != 4990 {
		t.Fatalf("response %d expires %d", e.ResponseTime, e.Expires)
	}
	m := NewEntry([]byte("k"), nil, []byte("accept"), Stale{})
	m.Flags, m.ResponseTime, m.Expires = VaryMarker, 77, 0
	m.Rebase(100)
	if m.ResponseTime != 77 || m.Expires != 0 {
		t.Fatalf("marker generation %d expires %d", m.ResponseTime, m.Expires)
	}
}
