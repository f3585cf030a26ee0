package sqlgen

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// compositeValue is code$gt<v> of component-code-value-quantity.
func compositeValue(code string, v float64) store.Predicate {
	return store.Predicate{Param: "component-code-value-quantity", Composite: []store.Predicate{
		{Param: "component-code-value-quantity$1", Token: &store.TokenMatch{Code: code}},
		{Param: "component-code-value-quantity$2", Quantity: &store.QuantityMatch{Range: store.RangeMatch{Prefix: store.PrefixGt, Lo: v - 0.5, Hi: v + 0.5}}},
	}}
}

// TestCompositeValuesShareOneSubquery: the OR of many values of one
// composite parameter is one subquery joining the component rows once,
// with one condition per distinct first component (and, for several
// codes, an IN list the index can probe), not one join per value: a
// search with hundreds of values must not scan the parameter's rows once
// per value.
func TestCompositeValuesShareOneSubquery(t *testing.T) {
	for _, d := range []Dialect{SQLite, Postgres} {
		for _, codes := range []int{1, 3} {
			var any []store.Predicate
			for i := range 200 {
				any = append(any, compositeValue(fmt.Sprintf("code%d", i%codes), float64(i)))
			}
			q := &store.Query{Type: "Observation", Where: []store.Clause{{Any: any}},
				Filter: &store.AccessFilter{Compartment: &store.Compartment{Type: "Patient", ID: "p", Params: map[string][]string{"Observation": {"subject"}}}}}
			sql, args, err := (&Engine{D: d}).SQL(q)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(sql, "JOIN idx_quantity"); n != 1 {
				t.Errorf("dialect %d, %d codes: %d joins of the component rows, want 1", d, codes, n)
			}
			if n := strings.Count(sql, ".code = "); n != codes {
				t.Errorf("dialect %d, %d codes: %d code conditions, want %d", d, codes, n, codes)
			}
			if in := strings.Contains(sql, ".code IN ("); in != (codes > 1) {
				t.Errorf("dialect %d, %d codes: IN list of codes %v", d, codes, in)
			}
			if len(args) > 300 {
				t.Errorf("dialect %d, %d codes: %d arguments for 200 values", d, codes, len(args))
			}
		}
	}
}
