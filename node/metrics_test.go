package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"
	"github.com/valyala/fasthttp"
)

// scrape returns the node's /metrics.
func (tn *testNode) scrape(t *testing.T) []byte {
	t.Helper()
	r := tn.do(t, fasthttp.MethodGet, tn.adminURL("/metrics"), nil)
	testutil.ExpectStatus(t, "/metrics", r, 200)
	return r.Body
}

// ringcache_origin_circuit_open follows the origin server's breaker: 1 once
// the origin failed five times in a row, 0 again after a probe succeeds.
func TestOriginCircuitGauge(t *testing.T) {
	tn := startTestNode(t, nil)
	series := `ringcache_origin_circuit_open{pool="default",server="` + tn.cfg.Origin + `"}`
	if v, ok := testutil.MetricValue(tn.scrape(t), series); !ok || v != 0 {
		t.Fatalf("%s = %v (present %v) with the origin up, want 0", series, v, ok)
	}
	tn.origin.stop()
	for i := range 5 {
		if r := tn.get(t, fmt.Sprintf("/down%d", i)); r.Status != fasthttp.StatusBadGateway {
			t.Fatalf("request %d with the origin down: %d, want 502", i, r.Status)
		}
	}
	if v, _ := testutil.MetricValue(tn.scrape(t), series); v != 1 {
		t.Fatalf("%s = %v after five origin failures, want 1", series, v)
	}
	tn.restartOrigin(t)
	// The breaker lets a probe through once its cooldown (2s) is over.
	i := 0
	testutil.Eventually(t, 20*time.Second, func() bool {
		i++
		tn.get(t, fmt.Sprintf("/up%d", i))
		v, _ := testutil.MetricValue(tn.scrape(t), series)
		return v == 0
	}, func() string {
		return fmt.Sprintf("%s to return to 0 once the origin is back (%d requests)", series, i)
	})
}
