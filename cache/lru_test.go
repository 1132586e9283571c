package cache

import "testing"

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	per := testEntry("a", 100).Cost()
	l := NewLRU(3 * per)
	defer l.Close()
	a, b, c, d := testEntry("a", 100), testEntry("b", 100), testEntry("c", 100), testEntry("d", 100)
	for _, e := range []*Entry{a, b, c} {
		l.Set(e)
	}
	mustGet(t, l, "a", a) // a is now the most recently used; b the least
	l.Set(d)
	mustMiss(t, l, "b")
	mustGet(t, l, "a", a)
	mustGet(t, l, "c", c)
	mustGet(t, l, "d", d)

	// An overwrite refreshes recency too.
	l.Set(testEntry("a", 100)) // order now a, d, c
	l.Set(testEntry("e", 100))
	mustMiss(t, l, "c")

	// A large entry pushes out as many as it needs, oldest first.
	big := testEntry("big", 250) // costs more than one entry, less than two
	l.Set(big)                   // evicts d, then a
	if st := l.Stats(); st.Items != 2 || st.Evictions != 4 {
		t.Fatalf("Items %d Evictions %d; want 2, 4 (b, c, d, a)", st.Items, st.Evictions)
	}
	mustGet(t, l, "big", big)
	mustGet(t, l, "e", l.m["e"].e)
}

func TestLRUZeroBudgetRefuses(t *testing.T) {
	l := NewLRU(0)
	defer l.Close()
	if l.Set(testEntry("a", 0)) {
		t.Fatal("a store with no budget accepted an entry")
	}
}

// TestLRUOverwriteRekeys checks that the map key follows the new entry: the
// old one's memory must not stay reachable through it.
func TestLRUOverwriteRekeys(t *testing.T) {
	l := NewLRU(1 << 20)
	defer l.Close()
	old := testEntry("k", 10)
	l.Set(old)
	cur := testEntry("k", 10)
	l.Set(cur)
	old.Key()[0] = 'x' // only legal because the store no longer holds old
	mustGet(t, l, "k", cur)
	if len(l.m) != 1 {
		t.Fatalf("map holds %d keys; want 1", len(l.m))
	}
	for k := range l.m {
		if k != "k" {
			t.Fatalf("map key %q; want k", k)
		}
	}
}
