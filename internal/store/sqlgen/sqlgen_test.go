package sqlgen

import (
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// evil is put in every value of a query; it must never reach the SQL text.
const evil = "x'); DROP TABLE resources; --"

func evilQuery() *store.Query {
	e := evil
	rm := &store.RangeMatch{Prefix: store.PrefixAp, Lo: 1, Hi: 2, ApLo: 0, ApHi: 3}
	inner := store.Clause{Any: []store.Predicate{{Param: evil, String: &store.StringMatch{Value: evil}}}}
	return &store.Query{
		Type: evil,
		Where: []store.Clause{
			{Any: []store.Predicate{
				{Param: evil, String: &store.StringMatch{Value: evil, Mode: store.StringContains}},
				{Param: evil, String: &store.StringMatch{Value: evil, Mode: store.StringExact}},
				{Param: evil, Token: &store.TokenMatch{System: &e, Code: evil}},
				{Param: evil, Token: &store.TokenMatch{Code: evil, Text: true}},
				{Param: evil, Token: &store.TokenMatch{OfType: true, System: &e, Code: evil, Value: evil}},
				{Param: evil, Reference: &store.ReferenceMatch{TargetType: evil, TargetID: evil}},
				{Param: evil, Reference: &store.ReferenceMatch{URL: evil, Below: true}},
				{Param: evil, Date: rm},
				{Param: evil, Quantity: &store.QuantityMatch{Range: *rm, System: evil, Code: evil}},
				{Param: evil, URI: &store.URIMatch{Value: evil, Above: true}},
				{Param: "_id", ID: &e},
				{Param: evil, Missing: new(bool)},
				{Param: evil, Chain: &store.Chain{TargetType: evil, Where: inner}},
				{Has: &store.Has{Type: evil, RefParam: evil, Where: inner}},
				{Param: evil, Composite: []store.Predicate{{Param: evil, Token: &store.TokenMatch{Code: evil}}, {Param: evil, Number: rm}}},
			}},
			{Negate: true, Any: []store.Predicate{{Param: evil, Token: &store.TokenMatch{Code: evil}}}},
		},
		Sort:   []store.SortKey{{Param: evil, Type: "string"}},
		Filter: &store.AccessFilter{Compartment: &store.Compartment{Type: evil, ID: evil, Params: map[string][]string{evil: {evil}}}},
	}
}

func TestValuesAreBound(t *testing.T) {
	for _, d := range []Dialect{SQLite, Postgres} {
		e := &Engine{D: d}
		q := evilQuery()
		sql, args, err := e.SQL(q)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(sql, "DROP") {
			t.Errorf("dialect %d: value in SQL: %s", d, sql)
		}
		if len(args) < 20 {
			t.Errorf("dialect %d: only %d args", d, len(args))
		}
		q.Type, q.Types = "", []string{evil, evil}
		if sql, _, _ = e.SQL(q); strings.Contains(sql, "DROP") {
			t.Errorf("dialect %d: value in system-level SQL: %s", d, sql)
		}
	}
}

func TestRidEncoding(t *testing.T) {
	for _, rids := range [][]int64{nil, {1}, {5, 3, 1000000, 2, 2, 9007199254740993}} {
		got, err := decodeRids(encodeRids(rids))
		if err != nil || !slices.Equal(got, rids) {
			t.Errorf("%v: got %v %v", rids, got, err)
		}
	}
	if _, err := decodeRids([]byte{0x80}); err == nil {
		t.Error("corrupt input accepted")
	}
}

func TestDriver(t *testing.T) {
	tok := store.Clause{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{Code: "c"}}}}
	ref := store.Clause{Any: []store.Predicate{{Param: "patient", Reference: &store.ReferenceMatch{TargetID: "p"}}}}
	date := store.Clause{Any: []store.Predicate{{Param: "date", Date: &store.RangeMatch{}}}}
	not := store.Clause{Negate: true, Any: tok.Any}
	for _, c := range []struct {
		in   []store.Clause
		want int
	}{
		{nil, -1},
		{[]store.Clause{not}, -1},
		{[]store.Clause{tok, ref}, 1},
		{[]store.Clause{date, tok}, 1},
		{[]store.Clause{not, date}, 1},
	} {
		if got := Driver(c.in); got != c.want {
			t.Errorf("Driver(%d clauses) = %d, want %d", len(c.in), got, c.want)
		}
	}
}
