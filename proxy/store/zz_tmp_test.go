package store

import (
	"testing"
)

func TestZZScan(t *testing.T) {
	k := storeKinds()[0]
	for n := 10_000; n <= 400_000; n += 15_000 {
		r := measureMemory(t, k, n)
		t.Logf("n=%6d store %.0f overhead-beyond-fields %.0f", n, r.store, r.perEntryC)
	}
}
