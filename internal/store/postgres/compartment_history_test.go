package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// TestPatientSystemHistoryProbesTypes: the system _history of a
// patient-bound caller, driven by the patient's references and the shared
// types its scopes show whole, reads each of those types' ranges of the
// (type, id) index, never the whole resources table. The statement runs
// with a generic plan, which took the shared types, an IN list of bound
// values, for most of the table and read all of it, at every request.
func TestPatientSystemHistoryProbesTypes(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	t0 := time.UnixMilli(1700000000000).UTC()
	shared := []string{"Location", "Medication", "Organization", "Practitioner", "PractitionerRole"}
	members := []string{"Observation"}
	var ws []*store.Write
	add := func(typ, id string, ix store.Index) {
		ws = append(ws, &store.Write{Type: typ, ID: id, Version: 1, LastUpdated: t0, Method: "POST",
			Body: []byte(`{"resourceType":"` + typ + `","id":"` + id + `"}`), Index: ix})
	}
	for p := range 20 {
		pid := fmt.Sprint("p", p)
		add("Patient", pid, store.Index{})
		for i := range 300 {
			typ := members[i%len(members)]
			add(typ, fmt.Sprint(pid, "-", i), store.Index{References: []store.ReferenceRow{{Param: "subject", TargetType: "Patient", TargetID: pid}}})
		}
	}
	for i := range 40 {
		add(shared[i%len(shared)], fmt.Sprint("s", i), store.Index{})
	}
	putBatches(t, s, ws)
	if _, err := s.Pool().Exec(ctx, "VACUUM (ANALYZE) resources, idx_reference, history"); err != nil {
		t.Fatal(err)
	}
	params := map[string][]string{}
	for _, m := range members {
		params[m] = []string{"subject"}
	}
	types := map[string][]store.AccessRule{"*": {{Compartment: true}}, "AuditEvent": {}}
	for _, typ := range shared {
		types[typ] = []store.AccessRule{{}}
	}
	filter := &store.AccessFilter{Compartment: &store.Compartment{Type: "Patient", ID: "p3", Params: params}, Types: types}
	p := &sqlgen.Plans{}
	page, err := s.History(sqlgen.WithExplain(ctx, p), store.HistoryQuery{Filter: filter, Count: 10, TotalLimit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if want := 300 + 1 + 40; page.Total != want {
		t.Fatalf("total %d, want %d (the patient, its resources, the shared ones)", page.Total, want)
	}
	steps := p.Steps()
	for _, plan := range steps {
		if strings.Contains(plan, "Seq Scan on resources") {
			t.Fatalf("the patient's system history reads the whole resources table:\n%s", strings.Join(steps, "\n--\n"))
		}
	}
}
