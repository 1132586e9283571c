package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestMarkdown(t *testing.T) {
	tb := Table{
		Header:     []string{"system", "req/s"},
		Rows:       [][]string{{"a|b", "1,000"}, {"short"}},
		RightAlign: map[int]bool{1: true},
	}
	want := "| system | req/s |\n|---|---:|\n| a\\|b | 1,000 |\n| short |  |\n"
	if got := tb.Markdown(); got != want {
		t.Errorf("Markdown() =\n%s\nwant\n%s", got, want)
	}
}

// svgDoc is the part of the SVG the test inspects.
type svgDoc struct {
	Rects []struct {
		Width string `xml:"width,attr"`
		Fill  string `xml:"fill,attr"`
	} `xml:"rect"`
	Texts []string `xml:"text"`
}

func TestSVG(t *testing.T) {
	c := Chart{
		Title:    "hits <&> misses",
		Subtitle: "2 cores",
		Panels: []Panel{{
			Title: "1 KiB",
			Bars: []Bar{
				{Label: "ceiling", Value: 100, Text: "100 req/s"},
				{Label: "cache", Value: 50, Text: "50 req/s", Color: "#123456"},
				{Label: "broken", Value: math.NaN(), Text: "FAILED"},
			},
		}},
	}
	out := c.SVG()
	// Well-formed XML all the way through.
	dec := xml.NewDecoder(bytes.NewReader(out))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, out)
		}
	}
	var doc svgDoc
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	// The background plus one bar per measured value: the failed one has none.
	if len(doc.Rects) != 3 {
		t.Fatalf("got %d rects, want 3 (background and two bars)", len(doc.Rects))
	}
	w1, _ := strconv.ParseFloat(doc.Rects[1].Width, 64)
	w2, _ := strconv.ParseFloat(doc.Rects[2].Width, 64)
	if w1 <= 0 || math.Abs(w2-w1/2) > 0.1 {
		t.Errorf("bar widths %v and %v, want the second half the first (scaled to the largest)", w1, w2)
	}
	if doc.Rects[2].Fill != "#123456" {
		t.Errorf("explicit color not used: %s", doc.Rects[2].Fill)
	}
	all := strings.Join(doc.Texts, "\n")
	for _, s := range []string{"hits <&> misses", "FAILED", "50 req/s", "broken"} {
		if !strings.Contains(all, s) {
			t.Errorf("text %q missing from the chart", s)
		}
	}
}
