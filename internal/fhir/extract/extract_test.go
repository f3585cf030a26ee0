package extract

import (
	"sort"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

const testBase = "http://localhost:8080/fhir"

var (
	regOnce sync.Once
	testReg *definitions.Registry
	testExt *Extractor
	regErr  error
)

func newTestExtractor(t testing.TB) *Extractor {
	t.Helper()
	regOnce.Do(func() {
		testReg, regErr = definitions.Load()
		if regErr != nil {
			return
		}
		testExt, regErr = New(testReg, testBase)
	})
	if regErr != nil {
		t.Fatal(regErr)
	}
	return testExt
}

// expectedFallbacks lists the "Type.code" parameters whose expression the
// compiler is known not to handle (evaluated by gofhir/fhirpath instead).
var expectedFallbacks = map[string]bool{}

// TestCompileAll checks that every (resource type, search parameter) of R4
// with an expression compiles to the built-in evaluator or is a listed
// fallback, and logs the fallbacks and dropped branches.
func TestCompileAll(t *testing.T) {
	e := newTestExtractor(t)
	fb := map[string]bool{}
	for _, f := range e.Fallbacks() {
		key := f.ResourceType + "." + f.Code
		fb[key] = true
		t.Logf("fallback %s: %s (%s)", key, f.Expression, f.Reason)
		if !expectedFallbacks[key] {
			t.Errorf("unexpected fallback %s: %s (%s)", key, f.Expression, f.Reason)
		}
	}
	t.Logf("%d fallbacks", len(e.Fallbacks()))
	for _, f := range e.Dropped() {
		t.Logf("dropped branch of %s.%s: %s (%s)", f.ResourceType, f.Code, f.Expression, f.Reason)
	}
	compiled, params := 0, 0
	for _, rt := range testReg.ResourceTypes() {
		plan := e.plans[rt]
		have := map[string]*paramPlan{}
		for _, p := range plan.params {
			have[p.code] = p
		}
		for _, sp := range testReg.SearchParams(rt) {
			if skipParams[sp.Code] || sp.Expression == "" || sp.Type == "special" {
				continue
			}
			params++
			p := have[sp.Code]
			key := rt + "." + sp.Code
			switch {
			case p == nil:
				// Statically empty: every branch names unknown elements.
				dropped := false
				for _, d := range e.Dropped() {
					dropped = dropped || d.ResourceType == rt && d.Code == sp.Code
				}
				if !dropped {
					t.Errorf("%s: not compiled and not reported", key)
				}
			case p.node != nil:
				compiled++
				for _, c := range p.comps {
					if c.node == nil {
						t.Errorf("%s: component %s not compiled", key, c.param)
					}
				}
			case !fb[key]:
				t.Errorf("%s: fallback not reported", key)
			}
		}
	}
	t.Logf("%d of %d (type, parameter) pairs compiled", compiled, params)
}

// TestTypeCombinations logs every (parameter type, value type) pair the
// R4 expressions can produce, marking those the converters ignore.
func TestTypeCombinations(t *testing.T) {
	e := newTestExtractor(t)
	seen := map[string][]string{}
	add := func(ptype string, ctxs []int32, key string) {
		for _, c := range ctxs {
			combo := ptype + " <- " + e.t.ctxs[c].typ
			if len(seen[combo]) < 3 {
				seen[combo] = append(seen[combo], key)
			}
		}
	}
	for _, rt := range testReg.ResourceTypes() {
		for _, p := range e.plans[rt].params {
			if p.comps == nil {
				add(p.ptype, p.ctxs, rt+"."+p.code)
			}
			for _, c := range p.comps {
				add(c.ptype, c.ctxs, rt+"."+c.param)
			}
		}
	}
	var combos []string
	for c := range seen {
		combos = append(combos, c)
	}
	sort.Strings(combos)
	for _, c := range combos {
		t.Logf("%-40s e.g. %v", c, seen[c])
	}
}
