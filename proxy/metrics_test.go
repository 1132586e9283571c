package proxy

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
)

// Every counted request is timed under its outcome: the histogram's count
// per outcome is ringcache_requests_total's.
func TestRequestDurationByOutcome(t *testing.T) {
	st, clk := clockedStore(t, "lru", 16<<20)
	failing := false
	origin := FetcherFunc(func(_ context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
		if failing {
			return errors.New("connection refused")
		}
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.SetBodyString("body")
		return nil
	})
	reg := prometheus.NewRegistry()
	p := New(Options{Clock: clk.Now, Metrics: NewMetrics(reg)}, st, origin)
	defer p.Close()
	send := func(method, uri string) {
		ctx := newCtx(uri)
		ctx.Request.Header.SetMethod(method)
		p.Handler(ctx)
	}
	send("GET", "/a")  // miss
	send("GET", "/a")  // hit
	send("HEAD", "/a") // hit
	send("POST", "/a") // pass
	failing = true
	send("GET", "/b")     // error
	send("TRACE", "/a")   // refused before any outcome: neither counted nor timed
	send("GET", "/a?x=1") // error

	want := map[string]uint64{"miss": 1, "hit": 2, "pass": 1, "error": 2}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]map[string]uint64{} // family -> outcome -> count
	for _, f := range families {
		for _, m := range f.GetMetric() {
			outcome := label(m, "outcome")
			switch f.GetName() {
			case "ringcache_requests_total":
				add(counts, "requests", outcome, uint64(m.GetCounter().GetValue()))
			case "ringcache_request_duration_seconds":
				add(counts, "durations", outcome, m.GetHistogram().GetSampleCount())
			}
		}
	}
	for o := Outcome(0); o < numOutcomes; o++ {
		name := o.String()
		if counts["requests"][name] != want[name] || counts["durations"][name] != want[name] {
			t.Errorf("outcome %s: %d counted, %d timed; want %d", name, counts["requests"][name], counts["durations"][name], want[name])
		}
	}
}

// sampleCount is how many observations a histogram child holds.
func sampleCount(o prometheus.Observer) uint64 {
	var m dto.Metric
	_ = o.(prometheus.Metric).Write(&m)
	return m.GetHistogram().GetSampleCount()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func add(counts map[string]map[string]uint64, family, outcome string, n uint64) {
	if counts[family] == nil {
		counts[family] = map[string]uint64{}
	}
	counts[family][outcome] += n
}
