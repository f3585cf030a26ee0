package searchtest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/search"
)

// TestCompositeValues: many values of a composite parameter (as many as
// the cost bound admits, with several first components) match exactly
// what each value matches on its own, on both dialects. The SQL merges
// them into one subquery (one index probe per distinct code), so the
// values must still be matched component by component on the rows of one
// group: 8480-6 > 140 must not match o3 through its 8462-4 component.
func TestCompositeValues(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, e *env) {
		run := storeSearch(t, e, "Observation")
		// Values that match nothing: other codes, and 8480-6 values out of
		// range; as many as the cost bound admits with the real ones.
		filler := func(n int) string {
			var v []string
			for i := range n {
				if i%2 == 0 {
					v = append(v, fmt.Sprintf("c%d$%d", i, i))
				} else {
					v = append(v, fmt.Sprintf("8480-6$gt%d", 1000+i))
				}
			}
			return strings.Join(v, ",")
		}
		for _, c := range []struct {
			name, query string
			want        []string
		}{
			{"one code", "code-value-quantity=8480-6$gt200,8480-6$lt100", ids("o6")},
			{"codes", "code-value-quantity=8480-6$gt200,8480-6$lt100,8867-4$5.4", ids("o2", "o6")},
			{"systems", "code-value-quantity=http://loinc.org|8480-6$lt100,http://snomed.info/sct|271649006$5.4,http://snomed.info/sct|8480-6$120", ids("o4", "o6")},
			{"components", "component-code-value-quantity=8462-4$gt140,8480-6$lt100", ids()},
			{"component", "component-code-value-quantity=8462-4$gt140,8480-6$gt140", ids("o3")},
			{"combo", "combo-code-value-quantity=8480-6$150,8480-6$120,8867-4$gt4", ids("o1", "o2", "o3")},
			{"many", "code-value-quantity=" + filler(240) + ",8480-6$lt100,8867-4$5.4", ids("o2", "o6")},
			{"many one code", "component-code-value-quantity=" + strings.Repeat("8480-6$lt0,", 250) + "8480-6$gt140", ids("o3")},
		} {
			t.Run(c.name, func(t *testing.T) {
				checkMatches(t, run, c.query, c.want)
			})
		}
		// Past the cost bound: a 400 before any SQL.
		if _, err := run("code-value-quantity=" + filler(search.MaxValues-1)); errStatus(err) != 400 {
			t.Errorf("composite values at the value cap: err %v, want a 400", err)
		}
	})
}
