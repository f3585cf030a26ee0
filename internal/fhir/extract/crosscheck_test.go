package extract

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
)

// evalCompiled returns the raw values the compiled evaluator yields for a
// parameter's expression.
func (e *Extractor) evalCompiled(resource map[string]any, p *paramPlan) []any {
	plan := e.plans[resource["resourceType"].(string)]
	s := &state{}
	s.buf = append(s.buf, item{resource, plan.root})
	r := p.node.eval(s, span{0, 1})
	var out []any
	for i := r.lo; i < r.hi; i++ {
		out = append(out, s.buf[i].v)
	}
	return out
}

// canon renders a value so that both engines' outputs compare equal:
// objects as sorted JSON, numbers by value, dates by the range they denote.
func canon(v any) string {
	switch x := v.(type) {
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	case json.Number:
		f, _ := strconv.ParseFloat(string(x), 64)
		return "n:" + strconv.FormatFloat(f, 'g', -1, 64)
	case bool:
		return fmt.Sprint(x)
	case string:
		if r, err := fhirtime.Parse(strings.TrimPrefix(x, "@")); err == nil {
			return fmt.Sprintf("d:%d..%d", r.Lo, r.Hi)
		}
		return x
	}
	return fmt.Sprintf("%T:%v", v, v)
}

func canonAll(vs []any) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, canon(v))
	}
	sort.Strings(out)
	// FHIRPath unions are sets: compare distinct values.
	d := out[:0]
	for i, x := range out {
		if i == 0 || x != out[i-1] {
			d = append(d, x)
		}
	}
	return d
}

// knownDifferences are (Type.code) whose results legitimately differ from
// gofhir/fhirpath v1.4.0, with the reason.
var knownDifferences = map[string]string{
	"Coverage.subscriber": "gofhir/fhirpath matches subscriberId as if it were a choice type subscriber[x]",
}

// TestCrossCheckFHIRPath compares the compiled evaluator with the general
// FHIRPath engine on a sample of real resources and every parameter of
// their type: both must produce the same values.
func TestCrossCheckFHIRPath(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs the general FHIRPath engine")
	}
	e := newTestExtractor(t)
	engine := gofhirEngine{model: registryModel{testReg}}
	var sample []map[string]any
	perType := map[string]int{}
	files := append(bundleFiles(t, syntheaDir, 3), bundleFiles(t, uscoreDir, 0)...)
	for _, f := range files {
		for _, r := range loadBundle(t, f) {
			rt := r["resourceType"].(string)
			if perType[rt] < 12 {
				perType[rt]++
				sample = append(sample, r)
			}
		}
	}
	// Synthetic resources with every element filled reach every expression.
	for _, rt := range testReg.ResourceTypes() {
		for v := 0; v < 6; v++ {
			sample = append(sample, synthesize(testReg, rt, v))
		}
	}
	compiledFB := map[string]fallbackExpr{}
	covered := map[string]bool{}
	evals, values, diffs := 0, 0, map[string]int{}
	for _, r := range sample {
		rt := r["resourceType"].(string)
		js, _ := json.Marshal(r)
		for _, p := range e.plans[rt].params {
			if p.node == nil {
				continue
			}
			key := rt + "." + p.code
			fb := compiledFB[p.expr]
			if fb == nil {
				var err error
				if fb, err = engine.compile(p.expr); err != nil {
					t.Errorf("%s: gofhir cannot compile %q: %v", key, p.expr, err)
					continue
				}
				compiledFB[p.expr] = fb
			}
			fvals, err := fb.eval(js)
			if err != nil {
				t.Logf("%s: gofhir error on %s/%v: %v", key, rt, r["id"], err)
				continue
			}
			var raw []any
			for _, v := range fvals {
				raw = append(raw, v.v)
			}
			got, want := canonAll(e.evalCompiled(r, p)), canonAll(raw)
			evals++
			values += len(got)
			if len(got) > 0 {
				covered[key] = true
			}
			if strings.Join(got, "\n") == strings.Join(want, "\n") {
				continue
			}
			diffs[key]++
			if _, known := knownDifferences[key]; known {
				continue
			}
			if diffs[key] <= 1 {
				t.Errorf("%s on %s/%v (%s):\ncompiled: %v\ngofhir:   %v", key, rt, r["id"], p.expr, got, want)
			}
		}
		// Composite components, relative to each composite node.
		for _, p := range e.plans[rt].params {
			if p.node == nil || p.comps == nil {
				continue
			}
			plan := e.plans[rt]
			s := &state{}
			s.buf = append(s.buf, item{r, plan.root})
			nodes := p.node.eval(s, span{0, 1})
			for k := nodes.lo; k < nodes.hi; k++ {
				nodeJS, _ := json.Marshal(s.buf[k].v)
				for _, c := range p.comps {
					key := rt + "." + c.param
					mark := s.mark()
					res := c.node.eval(s, span{k, k + 1})
					var mine []any
					for i := res.lo; i < res.hi; i++ {
						mine = append(mine, s.buf[i].v)
					}
					s.buf = s.buf[:mark]
					fb, err := engine.compile(strings.ReplaceAll(c.expr, "%resource", "%context"))
					if err != nil {
						t.Fatal(err)
					}
					target := nodeJS
					if strings.Contains(c.expr, "%resource") {
						fb, _ = engine.compile(strings.ReplaceAll(c.expr, "%resource.", rt+"."))
						target = js
					}
					fvals, err := fb.eval(target)
					if err != nil {
						continue
					}
					var raw []any
					for _, v := range fvals {
						raw = append(raw, v.v)
					}
					got, want := canonAll(mine), canonAll(raw)
					evals++
					if len(got) > 0 {
						covered[key] = true
					}
					if strings.Join(got, "\n") != strings.Join(want, "\n") {
						diffs[key]++
						if _, known := knownDifferences[key]; !known && diffs[key] <= 1 {
							t.Errorf("%s on %s/%v (%s):\ncompiled: %v\ngofhir:   %v", key, rt, r["id"], c.expr, got, want)
						}
					}
				}
			}
		}
	}
	t.Logf("%d resources, %d evaluations, %d values compared; differing params: %v", len(sample), evals, values, diffs)
	var never []string
	total := 0
	for _, rt := range testReg.ResourceTypes() {
		for _, p := range e.plans[rt].params {
			total++
			if !covered[rt+"."+p.code] {
				never = append(never, rt+"."+p.code+" ("+p.expr+")")
			}
		}
	}
	t.Logf("%d of %d (type, parameter) pairs compared on non-empty values; never non-empty: %d", total-len(never), total, len(never))
	for _, n := range never {
		t.Logf("  never non-empty: %s", n)
	}
}
