package sqlgen

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// TestMatchesFromIndexRows checks which searches read their matches from
// the driving clause's index rows alone (fromIndexRows) and which from the
// resources rows.
func TestMatchesFromIndexRows(t *testing.T) {
	code := "8302-2"
	patient := store.Clause{Any: []store.Predicate{{Param: "patient", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: evil}}}}
	byCode := store.Clause{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{Code: code}}}}
	missing := store.Clause{Any: []store.Predicate{{Param: "value-quantity", Missing: new(bool)}}}
	id := store.Clause{Any: []store.Predicate{{Param: "_id", ID: &code}}}
	has := store.Clause{Any: []store.Predicate{{Has: &store.Has{Type: "Observation", RefParam: "encounter", Where: byCode}}}}
	rules := &store.AccessFilter{Types: map[string][]store.AccessRule{"Observation": {{Where: []store.Clause{byCode}}}}}
	open := &store.AccessFilter{Types: map[string][]store.AccessRule{"Observation": {{}}}}
	for _, tc := range []struct {
		name string
		q    store.Query
		// want is the start of the SQLite rid query; "" when it reads the
		// resources rows.
		want string
	}{
		{"patient and code", store.Query{Type: "Observation", Where: []store.Clause{byCode, patient}},
			"SELECT DISTINCT k1.rid FROM idx_reference k1 INDEXED BY idx_reference_target WHERE "},
		{"code and missing", store.Query{Type: "Observation", Where: []store.Clause{missing, byCode}},
			"SELECT DISTINCT k1.rid FROM idx_token k1 WHERE "},
		{"type open to the caller", store.Query{Type: "Observation", Where: []store.Clause{patient}, Filter: open},
			"SELECT DISTINCT k1.rid FROM idx_reference k1 INDEXED BY idx_reference_target WHERE "},
		{"_has", store.Query{Type: "Encounter", Where: []store.Clause{has}},
			"SELECT DISTINCT e3.rid FROM idx_token k1 CROSS JOIN idx_reference h2 INDEXED BY idx_reference_src CROSS JOIN resources e3 INDEXED BY resources_type_id_live WHERE "},
		{"sort", store.Query{Type: "Observation", Where: []store.Clause{patient}, Sort: []store.SortKey{{Param: "date", Type: "date"}}}, ""},
		{"_id", store.Query{Type: "Observation", Where: []store.Clause{patient, id}}, ""},
		{"_has beside", store.Query{Type: "Encounter", Where: []store.Clause{patient, has}}, ""},
		{"negated driver", store.Query{Type: "Observation", Where: []store.Clause{{Negate: true, Any: byCode.Any}}}, ""},
		{"access rule", store.Query{Type: "Observation", Where: []store.Clause{patient}, Filter: rules}, ""},
		{"match filter", store.Query{Type: "Observation", Where: []store.Clause{patient}, MatchFilter: open}, ""},
		{"several types", store.Query{Types: []string{"Observation", "Condition"}, Where: []store.Clause{patient}}, ""},
	} {
		for _, d := range []Dialect{SQLite, Postgres} {
			sql, args, err := (&Engine{D: d}).SQL(&tc.q)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if strings.Contains(sql, "DROP") {
				t.Errorf("%s (dialect %d): value in SQL: %s", tc.name, d, sql)
			}
			want := tc.want
			if d == Postgres {
				want = strings.Replace(want, " INDEXED BY idx_reference_target", "", 1)
				if tc.name == "_has" {
					want = "SELECT DISTINCT e3.rid FROM (SELECT DISTINCT k1.rid FROM idx_token k1 WHERE "
				}
			}
			switch {
			case want == "" && !strings.HasPrefix(sql, "SELECT r.rid FROM resources r WHERE "):
				t.Errorf("%s (dialect %d): not from the resources rows: %s", tc.name, d, sql)
			case want != "" && !strings.HasPrefix(sql, want):
				t.Errorf("%s (dialect %d): want %q..., got %s %v", tc.name, d, want, sql, args)
			case want != "" && tc.name != "_has" && strings.Contains(sql, "resources"):
				t.Errorf("%s (dialect %d): reads resources rows: %s", tc.name, d, sql)
			}
		}
	}
}

// TestSystemSearchDrivenBesideSharedTypes checks that a search of every
// type by a caller who sees a compartment and some types whole (the
// shared types of patient/ scopes) draws its candidates from the
// compartment's references and those types' resources, by index: the
// access filter alone is an OR over types that no index drives, and the
// search read every resource (every AuditEvent) to find its page.
func TestSystemSearchDrivenBesideSharedTypes(t *testing.T) {
	comp := &store.Compartment{Type: "Patient", ID: "p1", Params: map[string][]string{"Observation": {"subject"}}}
	mixed := &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{
		"Practitioner": {{}}, "AuditEvent": {}, "*": {{Compartment: true}}}}
	onlyComp := &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{"AuditEvent": {}, "*": {{Compartment: true}}}}
	// A type of the compartment shown whole (user/Observation.rs beside
	// the patient's scopes) may be most of the data: no driver.
	wholeMember := &store.AccessFilter{Compartment: comp, Types: map[string][]store.AccessRule{
		"Practitioner": {{}}, "Observation": {{}}, "*": {{Compartment: true}}}}
	for _, d := range []Dialect{SQLite, Postgres} {
		for _, tc := range []struct {
			name   string
			q      store.Query
			driven bool
		}{
			{"system, shared types", store.Query{Filter: mixed}, true},
			{"several types, shared types", store.Query{Types: []string{"Observation", "Practitioner"}, Filter: mixed}, true},
			{"system, compartment only", store.Query{Filter: onlyComp}, false},
			{"one shared type", store.Query{Type: "Practitioner", Filter: mixed}, false},
			{"a compartment type whole", store.Query{Filter: wholeMember}, false},
		} {
			from, _, err := (&Engine{D: d}).base(&Builder{D: d}, &tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(from, "SELECT dw.rid FROM "); got != tc.driven {
				t.Errorf("%d %s: driven by the compartment and the shared types: %v, want %v: %s", d, tc.name, got, tc.driven, from)
			}
		}
	}
}

// TestCompartmentSearchSkipsHiddenTypes checks that a compartment search
// ($everything, Patient/ID/*) does not read the references of the member
// types the caller may not see: with AuditEvent hidden, the statement is
// the one of a compartment without AuditEvent. Every request about a
// patient leaves an AuditEvent naming it, and the membership test read
// them all, the record's searches slower with every access to it.
func TestCompartmentSearchSkipsHiddenTypes(t *testing.T) {
	params := map[string][]string{"Observation": {"subject"}, "Patient": {"link"}}
	withAudit := map[string][]string{"AuditEvent": {"entity", "patient"}}
	for k, v := range params {
		withAudit[k] = v
	}
	system := &store.AccessFilter{Types: map[string][]store.AccessRule{"*": {{}}, "AuditEvent": {}}}
	patient := &store.AccessFilter{Compartment: &store.Compartment{Type: "Patient", ID: "p1", Params: withAudit},
		Types: map[string][]store.AccessRule{"*": {{Compartment: true}}, "AuditEvent": {}}}
	admin := &store.AccessFilter{Types: map[string][]store.AccessRule{"*": {{}}}}
	render := func(d Dialect, q store.Query, p map[string][]string) string {
		q.Compartment = &store.Compartment{Type: "Patient", ID: "p1", Params: p}
		b := &Builder{D: d}
		from, _, err := (&Engine{D: d}).base(b, &q)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(from, b.Args)
	}
	for _, d := range []Dialect{SQLite, Postgres} {
		for _, tc := range []struct {
			name   string
			q      store.Query
			hidden bool
		}{
			{"system key", store.Query{Filter: system}, true},
			{"patient key", store.Query{Filter: patient}, true},
			{"match filter", store.Query{Filter: admin, MatchFilter: system}, true},
			{"one type", store.Query{Type: "Observation", Filter: system}, true},
			{"admin", store.Query{Filter: admin}, false},
			{"no filter", store.Query{}, false},
		} {
			got, without := render(d, tc.q, withAudit), render(d, tc.q, params)
			if tc.hidden && got != without {
				t.Errorf("%d %s: the hidden AuditEvents are read:\n%s\nwant\n%s", d, tc.name, got, without)
			}
			if !tc.hidden && got == without {
				t.Errorf("%d %s: the visible AuditEvents are not searched: %s", d, tc.name, got)
			}
		}
	}
}
