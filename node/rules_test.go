package node

// Operator rules end to end: a real node in front of the demo origin, the
// rules set as the config file would set them, replaced by Reload (what
// SIGHUP calls).

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/ringcache/ringcache/rules"
)

func mustRules(t testing.TB, specs ...rules.Spec) *rules.Set {
	t.Helper()
	s, err := rules.New(specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRules(t *testing.T) {
	tn := startTestNode(t, func(c *config.Config) {
		c.Rules = mustRules(t,
			rules.Spec{Header: "Authorization", Bypass: true},
			rules.Spec{PathPrefix: "/private/", Bypass: true},
			rules.Spec{PathPrefix: "/forced/", TTL: time.Hour},
			rules.Spec{PathPrefix: "/i18n/", KeyCookies: []string{"lang"}},
			rules.Spec{PathPrefix: "/grace/", StaleIfError: 10 * time.Minute},
		)
	})
	origin := tn.origin.srv

	t.Run("bypass", func(t *testing.T) {
		const path = "/private/a?cc=max-age=600"
		before := origin.Requests()
		for i := range 3 {
			r := tn.get(t, path)
			testutil.ExpectStatus(t, "bypass", r, 200)
			if cs := r.CacheStatus(); !strings.HasSuffix(cs, "; fwd=bypass; fwd-status=200; detail=rule") {
				t.Fatalf("request %d: Cache-Status %q, want fwd=bypass; fwd-status=200; detail=rule", i, cs)
			}
		}
		if n := origin.Requests() - before; n != 3 {
			t.Errorf("origin requests = %d, want 3: a bypassed URL is never answered from the cache", n)
		}
		// A header condition: the same URL is cached for everyone else.
		tn.get(t, "/shared?cc=max-age=600")
		testutil.ExpectCacheStatus(t, "without credentials", tn.get(t, "/shared?cc=max-age=600"), "hit")
		r := tn.get(t, "/shared?cc=max-age=600", "Authorization", "Bearer x")
		testutil.ExpectCacheStatus(t, "with credentials", r, "fwd=bypass", "detail=rule")
	})

	t.Run("ttl", func(t *testing.T) {
		// The origin says not to keep it fresh at all; the rule says an hour.
		r := tn.get(t, "/forced/a?cc=max-age=0")
		testutil.ExpectCacheStatus(t, "fill", r, "fwd=uri-miss", "ttl=3600", "stored")
		testutil.ExpectCacheStatus(t, "hit", tn.get(t, "/forced/a?cc=max-age=0"), "hit", "ttl=3")
		// Outside the rule the origin's word stands: not worth storing.
		testutil.ExpectCacheStatus(t, "unforced", tn.get(t, "/unforced?cc=max-age=0"), "fwd=uri-miss", "detail=no-freshness")
	})

	t.Run("key_cookies", func(t *testing.T) {
		const path = "/i18n/page?cc=max-age=600"
		de := tn.get(t, path, "Cookie", "lang=de; sid=1")
		testutil.ExpectCacheStatus(t, "de fill", de, "fwd=uri-miss", "stored")
		tn.control(t, "bump") // every representation changes: a refetch shows
		fr := tn.get(t, path, "Cookie", "lang=fr")
		testutil.ExpectCacheStatus(t, "fr fill", fr, "fwd=vary-miss", "stored")
		if bytes.Equal(de.Body, fr.Body) {
			t.Fatalf("lang=fr was answered with lang=de's response %q", de.Body)
		}
		for _, tc := range []struct {
			cookie string
			want   []byte
		}{{"lang=de", de.Body}, {"sid=2; lang=fr", fr.Body}, {"lang=de; theme=dark", de.Body}} {
			r := tn.get(t, path, "Cookie", tc.cookie)
			testutil.ExpectCacheStatus(t, tc.cookie, r, "hit")
			if !bytes.Equal(r.Body, tc.want) {
				t.Errorf("%s: body %q, want %q", tc.cookie, r.Body, tc.want)
			}
		}
		// A URL purge takes every variant.
		tn.do(t, "PURGE", tn.base+path, nil)
		testutil.ExpectCacheStatus(t, "after purge", tn.get(t, path, "Cookie", "lang=de"), "fwd=uri-miss")
	})

	t.Run("stale_if_error", func(t *testing.T) {
		// Stale on arrival and without stale-if-error: kept only because
		// the rule's window keeps it.
		const path = "/grace/s?cc=max-age=0"
		fill := tn.get(t, path)
		testutil.ExpectCacheStatus(t, "fill", fill, "fwd=uri-miss", "stored")
		tn.get(t, "/plain?cc=max-age=0,stale-while-revalidate=0&etag=1")

		tn.control(t, "mode?status=503")
		defer tn.control(t, "reset") // clears the mode
		r := tn.get(t, path)
		testutil.ExpectStatus(t, "origin 503", r, 200)
		testutil.ExpectCacheStatus(t, "origin 503", r, "fwd=stale", "fwd-status=503", "detail=stale-if-error")
		if !bytes.Equal(r.Body, fill.Body) {
			t.Errorf("origin 503: body %q, want the stored %q", r.Body, fill.Body)
		}
		// Without the rule, the error goes through.
		testutil.ExpectStatus(t, "no rule", tn.get(t, "/plain?cc=max-age=0,stale-while-revalidate=0&etag=1"), 503)
	})

	t.Run("stale_if_error with the origin down", func(t *testing.T) {
		const path = "/grace/down?cc=max-age=0"
		fill := tn.get(t, path)
		tn.origin.stop()
		r := tn.get(t, path)
		testutil.ExpectStatus(t, "origin down", r, 200)
		testutil.ExpectCacheStatus(t, "origin down", r, "fwd=stale", "fwd-status=502", "detail=stale-if-error")
		if !bytes.Equal(r.Body, fill.Body) {
			t.Errorf("origin down: body %q, want the stored %q", r.Body, fill.Body)
		}
		tn.restartOrigin(t)
	})
}

// TestReloadRules: Reload (SIGHUP) replaces the rules whole, for the next
// request; rules removed stop applying.
func TestReloadRules(t *testing.T) {
	tn := startTestNode(t, func(c *config.Config) {
		c.Rules = mustRules(t, rules.Spec{PathPrefix: "/r", Bypass: true})
	})
	const path = "/r?cc=max-age=600"
	testutil.ExpectCacheStatus(t, "bypassed", tn.get(t, path), "fwd=bypass", "detail=rule")

	next := tn.n.Config()
	next.Rules = mustRules(t, rules.Spec{PathPrefix: "/r", MaxTTL: 30 * time.Second})
	applied, restart := tn.n.Reload(next)
	if !slices.Contains(applied, "rules") || len(restart) != 0 {
		t.Fatalf("Reload: applied %v, restart %v; want rules applied", applied, restart)
	}
	testutil.ExpectCacheStatus(t, "capped", tn.get(t, path), "fwd=uri-miss", "ttl=30", "stored")
	testutil.ExpectCacheStatus(t, "hit", tn.get(t, path), "hit")
	if got := tn.n.Config().Rules.String(); got != next.Rules.String() {
		t.Errorf("running rules %s, want %s", got, next.Rules)
	}

	// Back to no rules: the entry stored under the cap stays, new fills
	// take the origin's lifetime.
	next = tn.n.Config()
	next.Rules = nil
	if applied, _ := tn.n.Reload(next); !slices.Contains(applied, "rules") {
		t.Fatalf("Reload to no rules: applied %v", applied)
	}
	testutil.ExpectCacheStatus(t, "uncapped", tn.get(t, "/r2?cc=max-age=600"), "ttl=600", "stored")
	if applied, _ := tn.n.Reload(next); len(applied) != 0 {
		t.Errorf("the same rules again: applied %v", applied)
	}
}

// TestClusterRuleKeyCookies: in a cluster, the variants a key_cookies rule
// makes of one URL all live with the URL's holders, which the ring picks
// by the URL alone: whichever member a client asks, each lang is fetched
// from the origin once, and every later answer is a hit at the URL's owner
// (or at its replica, should a lookup be hedged).
func TestClusterRuleKeyCookies(t *testing.T) {
	set := mustRules(t, rules.Spec{PathPrefix: "/i18n/", KeyCookies: []string{"lang"}})
	c := startCluster(t, 3, func(cfg *config.Config) { cfg.Rules = set })
	const path = "/i18n/p?cc=max-age=300"
	holders := c.live()[0].Ring().Owners(nil, []byte("site.test"+path), 2)
	bodies := map[string][]byte{}
	for _, lang := range []string{"de", "fr", "it"} {
		for round := range 2 {
			for i, n := range c.live() {
				r, err := testutil.Do(c.client, "GET", "http://"+n.Addr()+path, nil, "Cookie", "lang="+lang)
				if err != nil || r.Status != 200 {
					t.Fatalf("lang=%s from node %d: %v %d", lang, i, err, r.Status)
				}
				if want, seen := bodies[lang]; !seen {
					bodies[lang] = r.Body
				} else if !bytes.Equal(r.Body, want) {
					t.Errorf("lang=%s from node %d: body %q, want %q", lang, i, r.Body, want)
				}
				if cs := r.CacheStatus(); round == 1 && !strings.HasPrefix(cs, holders[0].Name+"; hit") && !strings.HasPrefix(cs, holders[1].Name+"; hit") {
					t.Errorf("lang=%s from node %d: Cache-Status %q, want a hit at the URL's owner %s", lang, i, cs, holders[0].Name)
				}
			}
		}
		// The next lang's representation differs.
		if r, err := testutil.Do(c.client, "POST", "http://"+c.origin.addr+"/__origin/bump", nil); err != nil || r.Status != 200 {
			t.Fatalf("bump: %v %d", err, r.Status)
		}
	}
	if got := c.originRequests(); got != 3 {
		t.Errorf("origin requests = %d, want 3 (one per lang, cluster-wide)", got)
	}
	if bytes.Equal(bodies["de"], bodies["fr"]) {
		t.Errorf("lang=de and lang=fr share a response %q", bodies["de"])
	}
}
