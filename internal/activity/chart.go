package activity

import (
	"cmp"
	"fmt"
	"html"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ChartOptions configures a chart.
type ChartOptions struct {
	// ID prefixes the ids of the chart's title and description (unique
	// on its page; default "activity-chart").
	ID string
	// Title is the chart's accessible name (its <title>).
	Title string
	// Width and Height are the drawing's size in pixels (default 640 ×
	// 240; bounded to 2000 × 1000).
	Width, Height int
}

// classColors are the fills of the status classes: colour-blind-safe
// (Okabe–Ito), with at least 3:1 contrast against white.
var classColors = [4]string{"#007a5a", "#0060a8", "#b35c00", "#b8002e"}

func (o *ChartOptions) norm(title string) {
	if o.ID == "" {
		o.ID = "activity-chart"
	}
	o.ID = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, o.ID)
	if o.Title == "" {
		o.Title = title
	}
	if o.Width <= 0 {
		o.Width = 640
	}
	if o.Height <= 0 {
		o.Height = 240
	}
	o.Width, o.Height = min(max(o.Width, 120), 2000), min(max(o.Height, 80), 1000)
}

// svgOpen starts an accessible SVG: role img, its <title> and <desc>
// named by aria-labelledby/aria-describedby. No script, no style: only
// presentation attributes, so a strict CSP (style-src with a nonce) lets
// it render.
func svgOpen(b *strings.Builder, o ChartOptions, desc string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-title" aria-describedby="%s-desc" font-family="sans-serif" font-size="11">`,
		o.Width, o.Height, o.Width, o.Height, o.ID, o.ID)
	fmt.Fprintf(b, `<title id="%s-title">%s</title><desc id="%s-desc">%s</desc>`, o.ID, html.EscapeString(o.Title), o.ID, html.EscapeString(desc))
}

// Chart draws the requests of pts over time as bars stacked by status
// class (2xx at the bottom), with a y axis, the first and last step's
// time and a legend. The description summarises the totals, so a screen
// reader gets the figures; Table gives them all as an HTML table.
func Chart(pts []Point, o ChartOptions) template.HTML {
	o.norm("Requests over time by status class")
	if len(pts) > MaxPoints {
		pts = pts[len(pts)-MaxPoints:]
	}
	var sum [4]int64
	var peak int64
	for _, p := range pts {
		for i, c := range p.Counts {
			sum[i] += c
		}
		peak = max(peak, p.Total())
	}
	desc := fmt.Sprintf("%d requests", sum[0]+sum[1]+sum[2]+sum[3])
	if len(pts) > 0 {
		desc += fmt.Sprintf(" from %s to %s", pts[0].Start.UTC().Format(time.RFC3339), pts[len(pts)-1].Start.UTC().Format(time.RFC3339))
	}
	desc += ": "
	for i, c := range sum {
		if i > 0 {
			desc += ", "
		}
		desc += fmt.Sprintf("%s %d", Classes[i], c)
	}
	desc += fmt.Sprintf("; at most %d in one step.", peak)
	var b strings.Builder
	svgOpen(&b, o, desc)
	const left, top, bottom, legend = 44, 8, 20, 18
	w, h := float64(o.Width-left-4), float64(o.Height-top-bottom-legend)
	scale := niceMax(peak)
	// Axis and gridlines (0, half, max).
	for _, f := range []float64{0, 0.5, 1} {
		y := float64(top) + h*(1-f)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#767676" stroke-width="0.5"/>`, left, y, o.Width-4, y)
		// Label only whole values: no "0" thrice on an empty chart, no
		// "2" halfway to 5.
		if f == 0 || (f == 1 && scale > 0) || (f == 0.5 && scale > 0 && scale%2 == 0) {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#333">%s</text>`, left-4, y+4, strconv.FormatInt(int64(f*float64(scale)), 10))
		}
	}
	if n := len(pts); n > 0 && scale > 0 {
		bw := w / float64(n)
		gap := 0.0
		if bw > 3 {
			gap = 1
		}
		// One path per class (a subpath per bar) keeps a day in 5-minute
		// steps a few kilobytes, where a rect per bar would weigh ~70 KB.
		var paths [4]strings.Builder
		bwid := strconv.FormatFloat(max(bw-gap, 0.5), 'f', 1, 64)
		for i, p := range pts {
			x := float64(left) + float64(i)*bw
			y := float64(top) + h
			for c := range 4 {
				if p.Counts[c] == 0 {
					continue
				}
				bh := h * float64(p.Counts[c]) / float64(scale)
				y -= bh
				fmt.Fprintf(&paths[c], "M%.1f %.1fh%sv%.1fh-%sz", x, y, bwid, bh, bwid)
			}
		}
		for c := range 4 {
			if paths[c].Len() > 0 {
				fmt.Fprintf(&b, `<path fill="%s" d="%s"/>`, classColors[c], paths[c].String())
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#333">%s</text>`, left, float64(top)+h+14, html.EscapeString(pts[0].Start.UTC().Format("Jan 2 15:04")))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#333">%s</text>`, o.Width-4, float64(top)+h+14, html.EscapeString(pts[n-1].Start.UTC().Format("Jan 2 15:04")))
	}
	// Legend.
	ly := o.Height - 6
	for c := range 4 {
		x := left + c*70
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" fill="#333">%s</text>`, x, ly-9, classColors[c], x+14, ly, Classes[c])
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// StatusChart draws the requests of t by HTTP status as horizontal bars
// (at most 12 statuses, the most frequent), coloured by class.
func StatusChart(t Totals, o ChartOptions) template.HTML {
	o.norm("Requests by status")
	type row struct {
		status int
		n      int64
	}
	var rows []row
	for s, n := range t.ByStatus {
		rows = append(rows, row{s, n})
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.status, b.status)) })
	if len(rows) > 12 {
		rows = rows[:12]
	}
	slices.SortFunc(rows, func(a, b row) int { return a.status - b.status })
	desc := fmt.Sprintf("%d requests", t.Requests)
	for i, r := range rows {
		if i == 0 {
			desc += ": "
		} else {
			desc += ", "
		}
		desc += fmt.Sprintf("status %d: %d", r.status, r.n)
	}
	desc += "."
	var peak int64
	for _, r := range rows {
		peak = max(peak, r.n)
	}
	var b strings.Builder
	svgOpen(&b, o, desc)
	const left = 44
	if len(rows) > 0 {
		rh := float64(o.Height-8) / float64(len(rows))
		w := float64(o.Width - left - 60)
		for i, r := range rows {
			y := 4 + float64(i)*rh
			bw := w * float64(r.n) / float64(max(peak, 1))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#333">%d</text>`, left-4, y+rh/2+4, r.status)
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, left, y+1, max(bw, 1), max(rh-2, 1), classColors[classIndex(r.status)])
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#333">%d</text>`, float64(left)+max(bw, 1)+4, y+rh/2+4, r.n)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// Table is the text alternative of Chart: an HTML table of the steps
// with requests (time and the count of each class), at most max rows
// (the latest).
func Table(pts []Point, caption string, maxRows int) template.HTML {
	var b strings.Builder
	b.WriteString("<table><caption>" + html.EscapeString(caption) + "</caption><thead><tr><th scope=\"col\">Time (UTC)</th>")
	for _, c := range Classes {
		b.WriteString("<th scope=\"col\">" + c + "</th>")
	}
	b.WriteString("</tr></thead><tbody>")
	var rows []Point
	for _, p := range pts {
		if p.Total() > 0 {
			rows = append(rows, p)
		}
	}
	if maxRows > 0 && len(rows) > maxRows {
		rows = rows[len(rows)-maxRows:]
	}
	for _, p := range rows {
		b.WriteString("<tr><th scope=\"row\"><time datetime=\"" + p.Start.UTC().Format(time.RFC3339) + "\">" + p.Start.UTC().Format("2006-01-02 15:04") + "</time></th>")
		for _, c := range p.Counts {
			b.WriteString("<td>" + strconv.FormatInt(c, 10) + "</td>")
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</tbody></table>")
	return template.HTML(b.String())
}

// niceMax rounds n up to 1, 2 or 5 times a power of ten.
func niceMax(n int64) int64 {
	if n <= 0 {
		return 0
	}
	p := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		p *= 10
	}
}

// StatusTable is the text alternative of StatusChart: an HTML table of
// the requests by HTTP status, in status order.
func StatusTable(t Totals, caption string) template.HTML {
	statuses := make([]int, 0, len(t.ByStatus))
	for s := range t.ByStatus {
		statuses = append(statuses, s)
	}
	slices.Sort(statuses)
	var b strings.Builder
	b.WriteString("<table><caption>" + html.EscapeString(caption) + "</caption><thead><tr><th scope=\"col\">Status</th><th scope=\"col\">Requests</th></tr></thead><tbody>")
	for _, s := range statuses {
		b.WriteString("<tr><th scope=\"row\">" + strconv.Itoa(s) + "</th><td>" + strconv.FormatInt(t.ByStatus[s], 10) + "</td></tr>")
	}
	b.WriteString("</tbody></table>")
	return template.HTML(b.String())
}
