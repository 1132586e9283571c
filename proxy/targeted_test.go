package proxy

import (
	"strings"
	"testing"

	"github.com/ringcache/ringcache/httpcache"
)

func targets(names ...string) httpcache.Targets {
	t := make(httpcache.Targets, len(names))
	for i, n := range names {
		t[i] = []byte(n)
	}
	return t
}

// TestTargetedCacheControl: a cache with a target list obeys the first
// valid targeted field over Cache-Control (RFC 9213 §2.1) and passes
// Cache-Control on untouched, for the caches after it.
func TestTargetedCacheControl(t *testing.T) {
	tests := []struct {
		name    string
		targets httpcache.Targets
		fields  []string
		hit     bool
	}{
		{"RFC9213 §3.1 CDN-Cache-Control stores what Cache-Control forbids", targets("CDN-Cache-Control"),
			[]string{"Cache-Control: no-store", "CDN-Cache-Control: max-age=60"}, true},
		{"RFC9213 §2.1 targeted no-store over Cache-Control max-age", targets("CDN-Cache-Control"),
			[]string{"Cache-Control: max-age=60", "CDN-Cache-Control: no-store"}, false},
		{"RFC9213 §2.1 targeted private", targets("CDN-Cache-Control"),
			[]string{"Cache-Control: public, max-age=60", "CDN-Cache-Control: private"}, false},
		{"RFC9213 §2.1 targeted no-cache: validate every reuse", targets("CDN-Cache-Control"),
			[]string{"Cache-Control: max-age=60", `ETag: "a"`, "CDN-Cache-Control: no-cache, max-age=60"}, false},
		{"RFC9213 §2.2 invalid targeted field ignored", targets("CDN-Cache-Control"),
			[]string{"Cache-Control: no-store", "CDN-Cache-Control: max-age=60,"}, false},
		{"RFC9213 §2.1 not on the target list: no effect", targets("CDN-Cache-Control"),
			[]string{"Cache-Control: no-store", "Surrogate-Control: max-age=60"}, false},
		{"RFC9213 §2.1 a cache's own field first", targets("Ringcache-Cache-Control", "CDN-Cache-Control"),
			[]string{"Cache-Control: max-age=60", "CDN-Cache-Control: max-age=60", "Ringcache-Cache-Control: no-store"}, false},
		{"RFC9213 §2.1 no target list: Cache-Control alone", nil,
			[]string{"Cache-Control: no-store", "CDN-Cache-Control: max-age=60"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, Options{Policy: httpcache.Policy{Targets: tc.targets}}, nil)
			n.origin.set(answer(n.clk, 200, tc.fields...))
			first := n.get("/t")
			second := n.get("/t")
			if hit := strings.Contains(csOf(second), "; hit"); hit != tc.hit {
				t.Fatalf("second request: Cache-Status %q, want hit %v (first: %q)", csOf(second), tc.hit, csOf(first))
			}
			// Every field, Cache-Control and the targeted ones, goes on.
			for _, f := range tc.fields {
				k, v, _ := strings.Cut(f, ": ")
				if got := string(second.Header.Peek(k)); got != v {
					t.Errorf("%s = %q, want %q passed through", k, got, v)
				}
			}
		})
	}
}

// TestStripTargets: targeted fields in StripTargets are stored but left out
// of answers to clients (RFC 9213 §3 lets a cache remove a field it uses);
// a member still gets them, as its copy obeys them too. Others pass.
func TestStripTargets(t *testing.T) {
	n := newNode(t, Options{Policy: httpcache.Policy{
		Targets:      targets("Ringcache-Cache-Control", "CDN-Cache-Control"),
		StripTargets: targets("ringcache-cache-control"),
	}}, nil)
	n.origin.set(answer(n.clk, 200, "Cache-Control: no-store", "Ringcache-Cache-Control: max-age=60", "CDN-Cache-Control: max-age=10"))
	miss := n.get("/s")
	hit := n.get("/s")
	wantStatus(t, hit, 200, "ringcache; hit; ttl=60")
	for _, r := range []struct {
		what string
		cs   string
		got  string
		cdn  string
	}{
		{"miss", csOf(miss), string(miss.Header.Peek("Ringcache-Cache-Control")), string(miss.Header.Peek("CDN-Cache-Control"))},
		{"hit", csOf(hit), string(hit.Header.Peek("Ringcache-Cache-Control")), string(hit.Header.Peek("CDN-Cache-Control"))},
	} {
		if r.got != "" || r.cdn != "max-age=10" {
			t.Errorf("%s (%s): Ringcache-Cache-Control %q, CDN-Cache-Control %q; want it stripped and CDN-Cache-Control kept", r.what, r.cs, r.got, r.cdn)
		}
	}
	peer := n.peerDo("GET", "/s")
	if got := string(peer.Header.Peek("Ringcache-Cache-Control")); got != "max-age=60" {
		t.Errorf("answer to a member: Ringcache-Cache-Control %q, want it kept", got)
	}
	// Unstored answers are relayed the same way.
	n.origin.set(answer(n.clk, 200, "Cache-Control: no-store", "Ringcache-Cache-Control: no-store"))
	if r := n.do("POST", "/s"); len(r.Header.Peek("Ringcache-Cache-Control")) != 0 {
		t.Errorf("relayed answer kept Ringcache-Cache-Control %q", r.Header.Peek("Ringcache-Cache-Control"))
	}
}
