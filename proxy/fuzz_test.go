package proxy

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
)

// Flags of a FuzzAuthority input.
const (
	fuzzMethod   = 3 << 0 // index into fuzzMethods: GET, or one of
	fuzzHead     = 1
	fuzzPost     = 2
	fuzzOptions  = 3
	fuzzNoHost   = 1 << 2 // send no Host field
	fuzzHTTP10   = 1 << 3
	fuzzAuth     = 1 << 4 // send Authorization
	fuzzKeyHost  = 1 << 5 // ask the node with key_host set
	fuzzSiteHost = "site.local"
	fuzzCreds    = "Bearer client-token"
)

var fuzzMethods = [...]string{"GET", "HEAD", "POST", "OPTIONS"}

// FuzzAuthority sends arbitrary request targets and Host fields, as bytes
// on a connection, through fasthttp's server and the handler to the real
// origin.Client and an origin on 127.0.0.1 that records what it gets, and
// checks that the authority stays one:
//   - an error the cache generated (4xx) never reached the origin;
//   - the origin got as X-Forwarded-Host the host the key names (key_host
//     when set), and as Host the same (preserve_host is on), or its own
//     address when the request named no host (HTTP/1.0);
//   - a stored key is exactly that X-Forwarded-Host, lower-cased, followed
//     by the path and query the origin was asked for;
//   - the origin got Authorization only when the client sent one, and
//     then the client's.
//
// The seeds are the attacks of issue 9; they run with the ordinary tests.
func FuzzAuthority(f *testing.F) {
	seeds := []struct {
		target, host string
		flags        uint8
	}{
		{"http://victim.com/x", "evil.com", 0},
		{"http://victim.com/x", "evil.com", fuzzKeyHost},
		{"/private", "alice:pw@victim.com", 0},
		{"/private", "alice:pw@victim.com", fuzzKeyHost},
		{"http://bob:pw@victim.com/private", "victim.com", 0},
		{"http://bob:pw@x/path", "x", fuzzKeyHost},
		{"http://bob:pw@victim.com/private", "", fuzzNoHost | fuzzHTTP10},
		{"//victim.com/a://b", "evil.com", 0},
		{"//victim.com/x", "", fuzzNoHost | fuzzHTTP10},
		{"http://victim.com/x", "", fuzzNoHost | fuzzHTTP10},
		{"http://Victim.com?q=1", "victim.COM", fuzzHead},
		{"http://victim.com:80/x", "victim.com", 0},
		{"ftp://victim.com/x", "victim.com", 0},
		{"/x", "victim.com", fuzzAuth},
		{"http://bob:pw@victim.com/x", "victim.com", fuzzAuth},
		{"/x", "victim.com", fuzzPost},
		{"http://victim.com/x", "evil.com", fuzzPost},
		{"*", "victim.com", fuzzOptions},
		{"/x", "a b", 0},
		{"/x", `victim.com\evil`, 0},
		{"/x", "vict%69m.com", 0},
		{"/x", "[::1]:8080", 0},
		{"/x", "", fuzzHTTP10},
		// Found by the fuzzer: without Host, fasthttp reads "//" as an
		// empty authority and path /, the fill with key_host as path //.
		{"//", "", fuzzHead | fuzzNoHost | fuzzHTTP10 | fuzzKeyHost},
		{"///x", "", fuzzNoHost | fuzzHTTP10 | fuzzKeyHost},
	}
	for _, s := range seeds {
		f.Add(s.target, s.host, s.flags)
	}
	nodes := [2]*node{newNode(f, Options{}, nil), newNode(f, Options{Key: cache.KeyOptions{Host: fuzzSiteHost}}, nil)}
	origins := [2]*wireOrigin{newWireOrigin(f, nodes[0], true), newWireOrigin(f, nodes[1], true)}

	f.Fuzz(func(t *testing.T, target, host string, flags uint8) {
		if strings.ContainsAny(target+host, "\r\n") {
			t.Skip("CR or LF would add fields: the client's Authorization would no longer be known")
		}
		i := 0
		if flags&fuzzKeyHost != 0 {
			i = 1
		}
		n, o := *nodes[i], origins[i]
		n.t = t
		defer clearStore(n.st)
		o.seen() // drop what an earlier input left

		// Invalidations by earlier inputs must not keep this fill from
		// being stored: they are in the past.
		n.clk.Advance(time.Second)

		method, proto := fuzzMethods[flags&fuzzMethod], "HTTP/1.1"
		if flags&fuzzHTTP10 != 0 {
			proto = "HTTP/1.0"
		}
		var raw strings.Builder
		raw.WriteString(method + " " + target + " " + proto + "\r\n")
		if flags&fuzzNoHost == 0 {
			raw.WriteString("Host: " + host + "\r\n")
		}
		auth := ""
		if flags&fuzzAuth != 0 {
			auth = fuzzCreds
			raw.WriteString("Authorization: " + auth + "\r\n")
		}
		if method == "POST" {
			raw.WriteString("Content-Length: 0\r\n")
		}
		raw.WriteString("\r\n")
		r := n.raw(raw.String())
		seen := o.seen()

		generated := !strings.Contains(csOf(r), "fwd-status=")
		if r.StatusCode() >= 400 && r.StatusCode() < 500 && generated && len(seen) > 0 {
			t.Fatalf("refused with %d (%q) but the origin got %+v", r.StatusCode(), r.Body(), seen)
		}
		for _, req := range seen {
			if req.auth != auth {
				t.Errorf("origin got Authorization %q, the client sent %q", req.auth, auth)
			}
			want := req.xfh
			if want == "" {
				want = o.addr // no authority: preserve_host falls back to the origin's
			}
			if req.host != want {
				t.Errorf("origin got Host %q but X-Forwarded-Host %q", req.host, req.xfh)
			}
			if i == 1 && req.xfh != fuzzSiteHost {
				t.Errorf("origin got X-Forwarded-Host %q, want key_host %q", req.xfh, fuzzSiteHost)
			}
		}
		if r.StatusCode() != 200 || !strings.Contains(csOf(r), "stored") {
			return
		}
		if len(seen) != 1 {
			t.Fatalf("a stored fill took %d origin requests: %+v", len(seen), seen)
		}
		keys := storedKeys(n.st)
		want := strings.ToLower(seen[0].xfh) + seen[0].uri
		if len(keys) != 1 || keys[0] != want {
			t.Fatalf("stored keys %q; the origin was asked for %q", keys, want)
		}
	})
}

// storedKeys lists the keys of the responses in st (not pass markers or
// Vary markers).
func storedKeys(st cache.Store) []string {
	var keys []string
	st.Range(func(e *cache.Entry) bool {
		if !e.Has(cache.Pass) && !e.Has(cache.VaryMarker) {
			keys = append(keys, string(e.Key()))
		}
		return true
	})
	return keys
}

// clearStore empties st, so each fuzz input is a miss and its key the only one.
func clearStore(st cache.Store) {
	var keys [][]byte
	st.Range(func(e *cache.Entry) bool {
		keys = append(keys, bytes.Clone(e.Key()))
		return true
	})
	for _, k := range keys {
		st.Delete(k)
	}
}
