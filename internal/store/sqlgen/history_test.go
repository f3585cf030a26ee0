package sqlgen

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// recorder is a Querier that records the SQL it is given and returns no rows.
type recorder struct {
	sqls []string
	args [][]any
}

type noRows struct{}

func (noRows) Next() bool        { return false }
func (noRows) Scan(...any) error { return nil }
func (noRows) Err() error        { return nil }
func (noRows) Close()            {}

func (r *recorder) Query(_ context.Context, sql string, args ...any) (Rows, error) {
	r.sqls = append(r.sqls, sql)
	r.args = append(r.args, args)
	return noRows{}, nil
}

func (r *recorder) Exec(context.Context, string, ...any) error { return nil }

var placeholder = regexp.MustCompile(`[?$](\d+)`)

// historySQL returns the SQL of the page query of hq, checking that every
// bound argument is used (PostgreSQL refuses unused ones) and that no
// value reaches the SQL text.
func historySQL(t *testing.T, d Dialect, hq store.HistoryQuery) string {
	t.Helper()
	r := &recorder{}
	if _, err := (&Engine{D: d}).History(context.Background(), r, hq); err != nil {
		t.Fatal(err)
	}
	for i, sql := range r.sqls {
		used := map[int]bool{}
		for _, m := range placeholder.FindAllStringSubmatch(sql, -1) {
			n, _ := strconv.Atoi(m[1])
			used[n] = true
		}
		for n := 1; n <= len(r.args[i]); n++ {
			if !used[n] {
				t.Errorf("argument %d (%v) bound but not used: %s", n, r.args[i][n-1], sql)
			}
		}
		if len(used) != len(r.args[i]) {
			t.Errorf("%d placeholders, %d arguments: %s", len(used), len(r.args[i]), sql)
		}
		if strings.Contains(sql, "DROP") {
			t.Errorf("value in SQL: %s", sql)
		}
	}
	return r.sqls[len(r.sqls)-1]
}

// TestHistorySQL: history under a filter limiting types by content tests
// each version on the kept rows and, when every visible type needs the
// compartment, is driven by the compartment's references; whole-type
// grants (and hidden types) test the versions' own type, with no join.
func TestHistorySQL(t *testing.T) {
	comp := &store.Compartment{Type: "Patient", ID: evil, Params: map[string][]string{"Observation": {"subject", evil}}}
	sys := evil
	lab := []store.Clause{{Any: []store.Predicate{{Param: "category", Token: &store.TokenMatch{System: &sys, Code: evil}}}}}
	cases := []struct {
		name          string
		typ           string
		f             *store.AccessFilter
		join, perVers bool
		driven        bool
		// decides: the driver is the whole rule, which is not tested
		// again (on PostgreSQL's generic plan that was a probe of the
		// compartment per candidate).
		decides bool
	}{
		{"no filter", "", nil, false, false, false, false},
		// Whole types: the versions' own type decides, no join.
		{"whole types", "", &store.AccessFilter{Types: map[string][]store.AccessRule{"Observation": {{}}, "Patient": {{}}}}, false, false, false, false},
		{"all but AuditEvent", "", &store.AccessFilter{Types: map[string][]store.AccessRule{"*": {{}}, "AuditEvent": {}}}, false, false, false, false},
		{"whole type", "Observation", &store.AccessFilter{Types: map[string][]store.AccessRule{"Observation": {{}}}}, false, false, false, false},
		{"patient", "", &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{"*": {{Compartment: true}}, "AuditEvent": {}}}, true, true, true, false},
		{"patient type", "Observation", &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{"*": {{Compartment: true}}}}, true, true, true, true},
		{"legacy compartment type", "Observation", &store.AccessFilter{Compartment: comp}, true, true, true, true},
		{"exclusive compartment type", "Observation", &store.AccessFilter{Compartment: &store.Compartment{Type: "Patient", ID: evil, Params: comp.Params, Exclusive: true}}, true, true, true, false},
		{"granular patient type", "Observation", &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{"Observation": {{Compartment: true, Where: lab}}}}, true, true, true, false},
		{"legacy compartment", "", &store.AccessFilter{Compartment: comp}, true, true, true, false},
		{"granular patient", "", &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{"Observation": {{Compartment: true, Where: lab}}}}, true, true, true, false},
		{"granular user", "Observation", &store.AccessFilter{Types: map[string][]store.AccessRule{"Observation": {{Where: lab}}}}, true, true, false, false},
		// A type shown whole beside the compartment (a shared type of
		// patient/ scopes): its resources join the compartment's
		// candidates.
		{"mixed", "", &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{"Practitioner": {{}}, "*": {{Compartment: true}}}}, true, true, true, false},
		{"mixed wildcard", "", &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{"*": {{}, {Compartment: true}}}}, true, true, false, false},
	}
	for _, d := range []Dialect{SQLite, Postgres} {
		for _, c := range cases {
			sql := historySQL(t, d, store.HistoryQuery{Type: c.typ, Filter: c.f, Count: 10})
			if got := strings.Contains(sql, "resources r"); got != c.join {
				t.Errorf("%d %s: joins resources %v, want %v: %s", d, c.name, got, c.join, sql)
			}
			if got := strings.Contains(sql, "h.version = r.version OR"); got != c.perVers {
				t.Errorf("%d %s: per-version test %v, want %v: %s", d, c.name, got, c.perVers, sql)
			}
			if got := strings.Contains(sql, "FROM resources r"); got != c.driven {
				t.Errorf("%d %s: driven by the compartment %v, want %v: %s", d, c.name, got, c.driven, sql)
			}
			driver := "r.rid IN (SELECT dr.rid FROM idx_reference dr WHERE dr.target_id = "
			if d == Postgres {
				// A system history probes each type (byTypes).
				driver = "r.rid = ANY(ARRAY(SELECT dr.rid FROM "
			}
			if c.driven && (!strings.Contains(sql, driver) || !strings.Contains(sql, "FROM idx_reference dr WHERE dr.target_id = ")) {
				t.Errorf("%d %s: no compartment driver: %s", d, c.name, sql)
			}
			if refs := strings.Count(sql, "FROM idx_reference "); c.driven && (refs == 1) != c.decides {
				t.Errorf("%d %s: %d reads of the compartment's references, want the rule tested again: %v: %s", d, c.name, refs, !c.decides, sql)
			}
		}
		// _since on the history rows alone: counted and paged through the
		// versions' time index (SQLite names it; a bound argument left
		// unused fails historySQL).
		for _, f := range []*store.AccessFilter{nil, {Types: map[string][]store.AccessRule{"*": {{}}, "AuditEvent": {}}}} {
			for _, before := range []string{"", "zz"} {
				r := &recorder{}
				hq := store.HistoryQuery{Type: "Observation", Since: time.UnixMilli(1), Filter: f, Count: 10, TotalLimit: 100, Before: before}
				if _, err := (&Engine{D: d}).History(context.Background(), r, hq); err != nil {
					t.Fatal(err)
				}
				sql := historySQL(t, d, hq)
				if d == SQLite && (strings.Count(sql, "INDEXED BY history_type_last_updated") != 1 || !strings.Contains(r.sqls[0], "INDEXED BY history_type_last_updated")) {
					t.Errorf("%d since: not through the time index: %s / %s", d, r.sqls[0], sql)
				}
				if strings.Contains(sql, "resources r") {
					t.Errorf("%d since: joins resources: %s", d, sql)
				}
			}
		}
		// Instance history and a version of it: driven by (type, id).
		f := &store.AccessFilter{Compartment: comp}
		for _, v := range []int64{0, 2} {
			sql := historySQL(t, d, store.HistoryQuery{Type: "Observation", ID: evil, Version: v, Filter: f})
			if !strings.HasPrefix(sql[strings.Index(sql, " FROM "):], " FROM history h JOIN resources r ON r.rid = h.rid WHERE h.type = ") {
				t.Errorf("%d instance history: %s", d, sql)
			}
		}
	}
}

// TestHistDecidable: only rules testable on the kept rows (tokens,
// references by target, _id, _lastUpdated) are rendered for earlier
// versions; others fail closed.
func TestHistDecidable(t *testing.T) {
	p := func(p store.Predicate) []store.Clause { return []store.Clause{{Any: []store.Predicate{p}}} }
	id := "x"
	for _, c := range []struct {
		where []store.Clause
		want  bool
	}{
		{p(store.Predicate{Param: "category", Token: &store.TokenMatch{Code: "x"}}), true},
		{[]store.Clause{{Negate: true, Any: []store.Predicate{{Param: "category", Token: &store.TokenMatch{Code: "x"}}}}}, true},
		{p(store.Predicate{Param: "_id", ID: &id}), true},
		{p(store.Predicate{Param: "_lastUpdated", LastUpdated: &store.RangeMatch{}}), true},
		{p(store.Predicate{Param: "subject", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "x"}}), true},
		{p(store.Predicate{Param: "subject", Reference: &store.ReferenceMatch{URL: "http://x"}}), false},
		{p(store.Predicate{Param: "code", Token: &store.TokenMatch{Code: "x", Text: true}}), false},
		{p(store.Predicate{Param: "name", String: &store.StringMatch{Value: "x"}}), false},
		{p(store.Predicate{Param: "category", Missing: new(bool)}), false},
		{p(store.Predicate{Param: "subject", Chain: &store.Chain{}}), false},
	} {
		if got := histDecidable(c.where); got != c.want {
			t.Errorf("%+v: %v, want %v", c.where[0].Any[0], got, c.want)
		}
	}
}

// TestHistoryDriverNoVisibleMember: a system history under compartment
// rules of which no visible type is a member through references (a
// patient-bound caller granted only Practitioner, not in the patient's
// compartment) is driven by the compartment's own resource alone, and
// binds only the arguments its SQL uses: PostgreSQL refuses a statement
// with a parameter it cannot type ("could not determine data type of
// parameter").
func TestHistoryDriverNoVisibleMember(t *testing.T) {
	comp := &store.Compartment{Type: "Patient", ID: "a", Params: map[string][]string{"Observation": {"subject"}, "AuditEvent": {"entity"}}}
	for _, types := range []map[string][]store.AccessRule{
		{"Practitioner": {{Compartment: true}}},
		{"Practitioner": {{Compartment: true}}, "AuditEvent": {}},
		{"*": {{Compartment: true}}, "Observation": {}, "AuditEvent": {}},
	} {
		for _, d := range []Dialect{SQLite, Postgres} {
			historySQL(t, d, store.HistoryQuery{Filter: &store.AccessFilter{Compartment: comp, Types: types}, Count: 10})
		}
	}
}

// rangeRecorder is a Querier with a RangeReader that records the SQL of
// each statement and whether it ran through Ranges; the skip scan of the
// history's types finds the types given, other statements return no rows.
type rangeRecorder struct {
	types  []string
	ranged map[string]bool // SQL: ran through Ranges
}

type rangeQuerier struct {
	r      *rangeRecorder
	ranges bool
}

func (q rangeQuerier) Query(_ context.Context, sql string, _ ...any) (Rows, error) {
	q.r.ranged[sql] = q.ranges
	if strings.HasPrefix(sql, "WITH RECURSIVE") {
		return &stringRows{vals: q.r.types}, nil
	}
	return noRows{}, nil
}

func (rangeQuerier) Exec(context.Context, string, ...any) error { return nil }

func (q rangeQuerier) Ranges() Querier { return rangeQuerier{q.r, true} }

// stringRows returns one string column per row.
type stringRows struct {
	vals []string
	i    int
}

func (r *stringRows) Next() bool { r.i++; return r.i <= len(r.vals) }
func (r *stringRows) Scan(dest ...any) error {
	*dest[0].(*string) = r.vals[r.i-1]
	return nil
}
func (*stringRows) Err() error { return nil }
func (*stringRows) Close()     {}

// TestSystemHistoryCountReadsRanges: the total of a system history whose
// filter hides types (a caller who may not see AuditEvents) is counted on
// the visible types' index ranges (RangeReader), never by reading the
// whole history: those types are most of it, and PostgreSQL, estimating
// so, read the table (1,300 pages for 10,001 versions, bodies and all)
// where the ranges of the (type, seq) index are a hundred pages.
func TestSystemHistoryCountReadsRanges(t *testing.T) {
	filter := &store.AccessFilter{Types: map[string][]store.AccessRule{"Patient": {{}}, "Observation": {{}}}}
	r := &rangeRecorder{types: []string{"AuditEvent", "Observation", "Patient"}, ranged: map[string]bool{}}
	if _, err := (&Engine{D: Postgres}).History(context.Background(), rangeQuerier{r: r}, store.HistoryQuery{Filter: filter, TotalLimit: 10000}); err != nil {
		t.Fatal(err)
	}
	counted := false
	for sql, ranged := range r.ranged {
		if strings.HasPrefix(sql, "SELECT COUNT(*)") {
			counted = true
			if !ranged {
				t.Errorf("the total is counted without Ranges: %s", sql)
			}
		}
	}
	if !counted {
		t.Fatalf("no total counted: %v", r.ranged)
	}
}
