package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"reflect"
	"strconv"
	"testing"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/cache"
	"github.com/valyala/fasthttp"
)

func b64(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

// frame returns the handoff frame of e.
func frame(e *cache.Entry) []byte {
	enc := e.AppendBinary(nil)
	return append(binary.AppendUvarint(nil, uint64(len(enc))), enc...)
}

func rawFrame(b []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(b))), b...) }

// serve runs one signed request through s without a network and returns
// the response (released by the test's cleanup).
func serve(t *testing.T, s *PeerServer, signer *Signer, method, uri string, body []byte) *fasthttp.Response {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.SetHost("peer")
	ctx.Request.SetBody(body)
	if signer != nil {
		signer.Sign(&ctx.Request)
	}
	s.Handle(&ctx)
	resp := fasthttp.AcquireResponse()
	ctx.Response.CopyTo(resp)
	t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
	return resp
}

func TestHandoffFrames(t *testing.T) {
	signer := mustSigner(t, "a", testSecret)
	good := func(k string) []byte { return frame(testEntry(k, 100, 0)) }
	badEntry := rawFrame([]byte{2, 2, 3, 4}) // version 2, then truncated
	emptyKey := frame(&cache.Entry{Status: 200})
	huge := rawFrame(bytes.Repeat([]byte{1}, 2<<10)) // over the test's 1 KiB frame limit
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name                          string
		body                          []byte
		accepted, rejected, malformed uint64
		stored                        []string
	}{
		{"empty", nil, 0, 0, 0, nil},
		{"two entries", cat(good("k1"), good("k2")), 2, 0, 0, []string{"k1", "k2"}},
		{"undecodable entry is skipped", cat(good("k1"), badEntry, good("k2")), 2, 0, 1, []string{"k1", "k2"}},
		{"empty key", cat(emptyKey, good("k1")), 1, 0, 1, []string{"k1"}},
		{"zero-length frame", cat([]byte{0}, good("k1")), 1, 0, 1, []string{"k1"}},
		{"frame over the limit is skipped", cat(huge, good("k1")), 1, 0, 1, []string{"k1"}},
		{"truncated frame ends the batch", cat(good("k1"), good("k2")[:50]), 1, 0, 1, []string{"k1"}},
		{"length beyond the body", cat(good("k1"), binary.AppendUvarint(nil, 1<<40)), 1, 0, 1, []string{"k1"}},
		{"unreadable length", cat(good("k1"), bytes.Repeat([]byte{0xff}, 11), good("k2")), 1, 0, 1, []string{"k1"}},
		{"rejected by Local", cat(good("reject-me"), good("k1")), 1, 1, 0, []string{"k1"}},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), 0, 0, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := newStoreLocal()
			local.reject = func(e *cache.Entry) bool { return string(e.Key()) == "reject-me" }
			s := NewPeerServer(local, signer, PeerServerOptions{MaxEntryBytes: 1 << 10})
			resp := serve(t, s, signer, "POST", PathPrefix+"handoff", tt.body)
			if resp.StatusCode() != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
			}
			want := `{"accepted":` + itoa(tt.accepted) + `,"rejected":` + itoa(tt.rejected) + `,"malformed":` + itoa(tt.malformed) + `}`
			if string(resp.Body()) != want {
				t.Errorf("reply %s, want %s", resp.Body(), want)
			}
			if ct := string(resp.Header.ContentType()); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			st := s.Stats()
			if st.Accepted != tt.accepted || st.Rejected != tt.rejected || st.Malformed != tt.malformed {
				t.Errorf("stats %+v", st)
			}
			if got := local.st.Stats().Items; got != int64(len(tt.stored)) {
				t.Errorf("store holds %d entries, want %d", got, len(tt.stored))
			}
			for _, k := range tt.stored {
				e, ok := local.st.Get([]byte(k))
				if !ok {
					t.Errorf("entry %q not stored", k)
					continue
				}
				if want := testEntry(k, 100, 0); !bytes.Equal(e.Body(), want.Body()) || !reflect.DeepEqual(e.Fields(), want.Fields()) {
					t.Errorf("entry %q stored altered", k)
				}
			}
		})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestPeerServerRouting(t *testing.T) {
	signer := mustSigner(t, "a", testSecret)
	local := newStoreLocal()
	local.st.Set(testEntry("k\x00v", 10, cache.Shared))
	s := NewPeerServer(local, signer, PeerServerOptions{})
	tests := []struct {
		name, method, uri string
		signed            bool
		status            int
	}{
		// Lookups moved to the lookup exchange (ServeFrames).
		{"no entry endpoint", "GET", PathPrefix + "entry?key=aw", true, 404},
		{"handoff by GET", "GET", PathPrefix + "handoff", true, 405},
		{"purge by GET", "GET", PathPrefix + "purge", true, 405},
		{"unknown endpoint", "GET", PathPrefix + "nothing", true, 404},
		{"outside the prefix", "GET", "/entry", true, 404},
		{"unsigned", "POST", PathPrefix + "handoff", false, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sg *Signer
			if tt.signed {
				sg = signer
			}
			resp := serve(t, s, sg, tt.method, tt.uri, nil)
			if resp.StatusCode() != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode(), tt.status, resp.Body())
			}
			if tt.status == 200 {
				if ct := string(resp.Header.ContentType()); ct != "application/octet-stream" {
					t.Errorf("Content-Type %q", ct)
				}
				e, err := cache.DecodeEntry(resp.Body())
				if err != nil || string(e.Key()) != "k\x00v" {
					t.Errorf("body decodes to %v, %v", e, err)
				}
			}
			if tt.status == 401 && string(resp.Header.Peek(HeaderError)) != "1" {
				t.Errorf("401 without %s", HeaderError)
			}
		})
	}
	if got := s.Stats().Unauthorized; got != 1 {
		t.Errorf("Unauthorized = %d, want 1", got)
	}
}

// Malformed frames sent over the network are counted by the receiver, and
// the good ones around them still land.
func TestHandoffMalformedOverNetwork(t *testing.T) {
	nodes, _ := startTestCluster(t, testutil.NewClock(), "a", "b")
	a, b := nodes[0], nodes[1]
	body := bytes.Join([][]byte{
		frame(testEntry("k1", 10, 0)),
		rawFrame([]byte("not an entry")),
		frame(testEntry("k2", 10, 0)),
		{0x80}, // a length cut short
	}, nil)
	if err := a.peers.SendHandoff(context.Background(), b.node(), body); err != nil {
		t.Fatalf("SendHandoff: %v", err)
	}
	if s := b.ps.Stats(); s.Accepted != 2 || s.Malformed != 2 {
		t.Errorf("receiver stats %+v, want 2 accepted, 2 malformed", s)
	}
	for _, k := range []string{"k1", "k2"} {
		if _, ok := b.local.st.Get([]byte(k)); !ok {
			t.Errorf("%s not stored", k)
		}
	}
}

func FuzzHandoffBody(f *testing.F) {
	f.Add(frame(testEntry("k", 3, 0)))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add(append(frame(testEntry("k", 3, 0)), 5, 1, 2))
	signer, err := NewSigner("a", testSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		local := newStoreLocal()
		s := NewPeerServer(local, signer, PeerServerOptions{MaxEntryBytes: 1 << 10})
		resp := serve(t, s, signer, "POST", PathPrefix+"handoff", body)
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d", resp.StatusCode())
		}
		// Entries may repeat a key, so the store can hold fewer.
		if st, items := s.Stats(), local.st.Stats().Items; items > int64(st.Accepted) {
			t.Fatalf("accepted %d but stored %d", st.Accepted, items)
		}
	})
}
