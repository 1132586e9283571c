// Package report renders benchmark results: Markdown tables and a
// self-contained SVG bar chart, with no dependencies beyond the standard
// library so that a results file can be regenerated anywhere.
package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strings"
)

// Table is a Markdown table.
type Table struct {
	Header []string
	// Rows hold cells; a row shorter than Header is padded with empty cells.
	Rows [][]string
	// RightAlign marks columns (by index) holding numbers.
	RightAlign map[int]bool
}

// Markdown renders the table, escaping "|" in cells.
func (t Table) Markdown() string {
	var b strings.Builder
	row := func(cells []string) {
		b.WriteString("|")
		for i := range t.Header {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" ")
			b.WriteString(strings.ReplaceAll(strings.ReplaceAll(c, "|", `\|`), "\n", " "))
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	row(t.Header)
	b.WriteString("|")
	for i := range t.Header {
		if t.RightAlign[i] {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
	return b.String()
}

// Bar is one bar of a panel.
type Bar struct {
	Label string
	// Value sets the bar's length relative to the panel's largest value;
	// NaN or a negative value draws no bar (a failed measurement).
	Value float64
	// Text is written after the bar, e.g. "71,314 req/s (0.89x)".
	Text string
	// Color is an SVG color; "" picks one from the palette by position.
	Color string
}

// Panel is a horizontal bar chart with a title.
type Panel struct {
	Title string
	Bars  []Bar
}

// Chart is a column of panels under a title.
type Chart struct {
	Title    string
	Subtitle string
	Panels   []Panel
}

// Layout, in SVG user units.
const (
	width      = 980
	margin     = 20
	labelWidth = 230
	textWidth  = 290
	barHeight  = 22
	barGap     = 6
	panelTitle = 30
	panelGap   = 18
	headHeight = 62
	fontFamily = "DejaVu Sans, Verdana, Arial, sans-serif"
)

// SVG renders the chart as a standalone SVG document.
func (c Chart) SVG() []byte {
	height := headHeight + margin
	for _, p := range c.Panels {
		height += panelTitle + len(p.Bars)*(barHeight+barGap) + panelGap
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`+"\n",
		width, height, width, height, fontFamily)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="20" font-weight="bold">%s</text>`+"\n", margin, margin+14, esc(c.Title))
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#555555">%s</text>`+"\n", margin, margin+36, esc(c.Subtitle))

	y := headHeight
	barMax := float64(width - 2*margin - labelWidth - textWidth)
	for _, p := range c.Panels {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", margin, y+20, esc(p.Title))
		y += panelTitle
		top := 0.0
		for _, bar := range p.Bars {
			if !math.IsNaN(bar.Value) && bar.Value > top {
				top = bar.Value
			}
		}
		for i, bar := range p.Bars {
			color := bar.Color
			if color == "" {
				palette := [...]string{"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#9c9c9c", "#e15759"}
				color = palette[i%len(palette)]
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" text-anchor="end">%s</text>`+"\n",
				margin+labelWidth-8, y+barHeight-6, esc(bar.Label))
			w := 0.0
			if top > 0 && !math.IsNaN(bar.Value) && bar.Value > 0 {
				w = math.Max(1, barMax*bar.Value/top)
			}
			if w > 0 {
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n",
					margin+labelWidth, y, w, barHeight, esc(color))
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="12">%s</text>`+"\n",
				float64(margin+labelWidth)+w+6, y+barHeight-6, esc(bar.Text))
			y += barHeight + barGap
		}
		y += panelGap
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // writes to a strings.Builder cannot fail
	return b.String()
}
