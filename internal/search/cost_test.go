package search

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

// repeat returns n comma-separated values made by f(i).
func repeat(n int, f func(i int) string) string {
	vals := make([]string, n)
	for i := range vals {
		vals[i] = f(i)
	}
	return strings.Join(vals, ",")
}

// TestCostBound: searches whose work grows faster than their number of
// values (composites, chains, _has, :contains, :text, :missing, _sort,
// includes) are refused over MaxCost with a too-costly 400 that names the
// parameter to reduce, while every search of MaxValues plain values still
// passes. The first case is the reported attack: 511 composite values (under
// the MaxValues cap) that made each search hold a read connection for
// seconds.
func TestCostBound(t *testing.T) {
	p := newTestParser(t)
	token := func(i int) string { return fmt.Sprintf("c%d", i) }
	composite := func(i int) string { return fmt.Sprintf("8480-6$gt%d", i) }
	refused := []struct {
		name, typ, query, worst string
	}{
		{"composite at the value cap", "Observation", "component-code-value-quantity=" + repeat(MaxValues-1, composite), "component-code-value-quantity"},
		{"composite over budget", "Observation", "code-value-quantity=" + repeat(MaxCost/4, composite), "code-value-quantity"},
		{"chain at the value cap", "Observation", "subject:Patient.identifier=" + repeat(MaxValues-1, token), "subject:Patient.identifier"},
		{"_has at the value cap", "Patient", "_has:Observation:subject:code=" + repeat(MaxValues-1, token), "_has:Observation:subject:code"},
		{"contains", "Patient", "name:contains=" + repeat(MaxCost/4, token), "name:contains"},
		{"text", "Observation", "code:text=" + repeat(MaxCost/4, token), "code:text"},
		{"missing", "Patient", strings.Repeat("name:missing=true&", MaxClauses/2) + strings.Repeat("gender:missing=false&", MaxClauses/2-1) + "birthdate:missing=" + repeat(MaxValues-MaxClauses, func(int) string { return "true" }), "birthdate:missing"},
		{"many chains", "Observation", strings.TrimSuffix(strings.Repeat("subject:Patient.name=x&", MaxClauses), "&"), "subject:Patient.name"},
		{"many _has", "Patient", strings.TrimSuffix(strings.Repeat("_has:Observation:subject:code=x&", MaxClauses), "&"), "_has:Observation:subject:code"},
		{"includes", "Observation", "code=x" + strings.Repeat("&_include:iterate=Observation:*", 13), "_include"},
	}
	for _, c := range refused {
		t.Run("refused/"+c.name, func(t *testing.T) {
			_, err := p.Parse(c.typ, mustQuery(t, c.query), false)
			var oe *outcome.Error
			if !errors.As(err, &oe) {
				t.Fatalf("err %v, want a too-costly outcome", err)
			}
			if oe.Status != http.StatusBadRequest || oe.Issues[0].Code != "too-costly" {
				t.Fatalf("status %d code %q, want 400 too-costly: %s", oe.Status, oe.Issues[0].Code, oe.Error())
			}
			d := oe.Issues[0].Diagnostics
			if !strings.Contains(d, c.worst+" accounts for") || !strings.Contains(d, "Reduce") {
				t.Errorf("diagnostics %q do not say to reduce %s", d, c.worst)
			}
			// Also as the criteria of a conditional interaction.
			if _, err := p.ParseConditional(c.typ, c.query); !errors.As(err, &oe) || oe.Issues[0].Code != "too-costly" {
				t.Errorf("conditional: err %v, want too-costly", err)
			}
		})
	}
	plain := func(n int) string { return repeat(n, token) }
	admitted := []struct{ name, typ, query string }{
		{"tokens at the value cap", "Observation", "code=" + plain(MaxValues)},
		{"ids at the value cap", "Patient", "_id=" + plain(MaxValues)},
		{"strings at the value cap", "Patient", "name=" + plain(MaxValues)},
		{"negated tokens at the value cap", "Patient", "gender:not=" + plain(MaxValues)},
		{"dates at the value cap", "Patient", "birthdate=" + repeat(MaxValues, func(int) string { return "1980" })},
		{"references at the value cap", "Observation", "subject=" + repeat(MaxValues, func(i int) string { return fmt.Sprintf("Patient/p%d", i) })},
		{"params at the clause cap", "Patient", strings.TrimSuffix(strings.Repeat("name="+plain(MaxValues/MaxClauses)+"&", MaxClauses), "&")},
		{"composites", "Observation", "code-value-quantity=" + repeat(100, composite)},
		{"chains", "Observation", strings.TrimSuffix(strings.Repeat("subject:Patient.name=x&", 16), "&")},
		{"chain values", "Observation", "subject:Patient.identifier=" + plain(100)},
		{"_has values", "Patient", "_has:Observation:subject:code=" + plain(100)},
		{"sort and includes", "Observation", "code=x&_sort=-date,code&_include=Observation:subject&_revinclude:iterate=Provenance:target"},
	}
	for _, c := range admitted {
		t.Run("admitted/"+c.name, func(t *testing.T) {
			r := parseOK(t, p, c.typ, c.query, false)
			if n := Cost(&r.Query); n > MaxCost {
				t.Errorf("cost %d over MaxCost", n)
			}
		})
	}
}

// TestCostModel pins the relative weights: a composite or chained value
// costs more than a plain one, and the cost grows with the values.
func TestCostModel(t *testing.T) {
	p := newTestParser(t)
	cost := func(typ, q string) int {
		t.Helper()
		r := parseOK(t, p, typ, q, false)
		return Cost(&r.Query)
	}
	for _, c := range []struct {
		typ, q string
		want   int
	}{
		{"Observation", "code=a", 2},
		{"Observation", "code=a,b,c", 4},
		{"Patient", "name:contains=a", 1 + costScan},
		{"Observation", "code-value-quantity=a$1", 1 + 2*costComponent},
		{"Observation", "code-value-quantity=a$1,b$2", 1 + 4*costComponent},
		{"Observation", "subject:Patient.name=x", 1 + costJoin + costJoinFactor*2},
		{"Patient", "_has:Observation:subject:code=x,y", 1 + costJoin + costJoinFactor*3},
		{"Observation", "code=a&_sort=date", 2 + costSort},
		{"Observation", "_include=Observation:subject", costInclude},
		{"Observation", "_include:iterate=Observation:*", costInclude * costWildcardFactor * costIterateFactor},
	} {
		if got := cost(c.typ, c.q); got != c.want {
			t.Errorf("Cost(%s?%s) = %d, want %d", c.typ, c.q, got, c.want)
		}
	}
}
