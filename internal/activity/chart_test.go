package activity

import (
	"encoding/xml"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// wellFormed parses s as XML and returns its elements' names and the
// text of title and desc.
func wellFormed(t *testing.T, s string) (names map[string]int, title, desc string) {
	t.Helper()
	names = map[string]int{}
	d := xml.NewDecoder(strings.NewReader(s))
	var cur string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			names[v.Name.Local]++
			cur = v.Name.Local
			for _, a := range v.Attr {
				if a.Name.Local == "style" || strings.HasPrefix(a.Name.Local, "on") {
					t.Fatalf("attribute %s a strict CSP refuses or a script: %s", a.Name.Local, s)
				}
			}
		case xml.CharData:
			switch cur {
			case "title":
				title += string(v)
			case "desc":
				desc += string(v)
			}
		case xml.EndElement:
			cur = ""
		}
	}
	return names, title, desc
}

func TestChart(t *testing.T) {
	pts := make([]Point, 60)
	for i := range pts {
		pts[i].Start = t0.Add(time.Duration(i) * time.Minute)
		pts[i].Counts = [4]int64{int64(i), 0, int64(i % 3), int64(i % 7 / 6)}
	}
	svg := string(Chart(pts, ChartOptions{ID: "app 1", Title: `Requests of "<app>"`}))
	names, title, desc := wellFormed(t, svg)
	if names["svg"] != 1 || names["script"] != 0 || names["style"] != 0 || names["path"] != 3 || strings.Count(svg, "z") < 60 {
		t.Fatalf("elements: %v", names)
	}
	if title != `Requests of "<app>"` || !strings.Contains(desc, "2xx 1770") || !strings.Contains(desc, "requests from 2026-12-01T10:00:00Z") {
		t.Fatalf("title %q desc %q", title, desc)
	}
	for _, want := range []string{`role="img"`, `aria-labelledby="app-1-title"`, `aria-describedby="app-1-desc"`, `<title id="app-1-title">`} {
		if !strings.Contains(svg, want) {
			t.Errorf("missing %s", want)
		}
	}
	// Empty and huge inputs stay bounded and well-formed.
	if _, title, _ := wellFormed(t, string(Chart(nil, ChartOptions{}))); title == "" {
		t.Fatal("empty chart has no title")
	}
	big := make([]Point, 10*MaxPoints)
	for i := range big {
		big[i].Counts[0] = 1
	}
	huge := string(Chart(big, ChartOptions{Width: 1 << 20, Height: 1 << 20}))
	wellFormed(t, huge)
	if len(huge) > 400<<10 || !strings.Contains(huge, `width="2000" height="1000"`) {
		t.Fatalf("unbounded chart: %d bytes", len(huge))
	}
}

func TestStatusChart(t *testing.T) {
	tot := Totals{Requests: 10, ByStatus: map[int]int64{200: 6, 404: 3, 500: 1}}
	for s := 201; s < 230; s++ {
		tot.ByStatus[s] = 1
	}
	svg := string(StatusChart(tot, ChartOptions{ID: "st"}))
	names, title, desc := wellFormed(t, svg)
	if title != "Requests by status" || !strings.Contains(desc, "status 200: 6") || !strings.Contains(desc, "status 404: 3") {
		t.Fatalf("title %q desc %q", title, desc)
	}
	if names["rect"] != 12 {
		t.Fatalf("%d bars, want the 12 most frequent statuses", names["rect"])
	}
	wellFormed(t, string(StatusChart(Totals{}, ChartOptions{})))
}

func TestTable(t *testing.T) {
	pts := []Point{{Start: t0, Counts: [4]int64{1, 2, 3, 4}}, {Start: t0.Add(time.Minute)}, {Start: t0.Add(2 * time.Minute), Counts: [4]int64{5}}}
	tbl := string(Table(pts, "Requests <per minute>", 0))
	names, _, _ := wellFormed(t, tbl)
	if names["tr"] != 3 || !strings.Contains(tbl, "<caption>Requests &lt;per minute&gt;</caption>") || !strings.Contains(tbl, "<td>4</td>") {
		t.Fatalf("table: %s", tbl)
	}
	if names, _, _ := wellFormed(t, string(Table(pts, "x", 1))); names["tr"] != 2 {
		t.Fatalf("maxRows 1: %v", names)
	}
}

func TestStatusTable(t *testing.T) {
	tbl := string(StatusTable(Totals{ByStatus: map[int]int64{404: 2, 200: 7}}, "By status"))
	names, _, _ := wellFormed(t, tbl)
	if names["tr"] != 3 || strings.Index(tbl, ">200<") > strings.Index(tbl, ">404<") || !strings.Contains(tbl, "<td>7</td>") {
		t.Fatalf("status table: %s", tbl)
	}
}

// TestChartAxisLabels checks the y-axis labels: whole values only, none
// repeated (an empty chart says 0 once; a peak of 5 has no "2" halfway).
func TestChartAxisLabels(t *testing.T) {
	label := regexp.MustCompile(`text-anchor="end" fill="#333">([0-9]+)<`)
	for peak, want := range map[int64]string{0: "0", 1: "0 1", 5: "0 5", 10: "0 5 10", 2000: "0 1000 2000"} {
		pts := []Point{{Start: t0, Counts: [4]int64{peak}}}
		var got []string
		for _, m := range label.FindAllStringSubmatch(string(Chart(pts, ChartOptions{})), -1) {
			got = append(got, m[1])
		}
		if strings.Join(got, " ") != want {
			t.Errorf("peak %d: axis labels %v, want %s", peak, got, want)
		}
	}
}
