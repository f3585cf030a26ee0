package plantest_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// wholeOwnerRE matches a read of every reference to one target (the
// reference target index by target_id alone), whatever their type.
var wholeOwnerRE = regexp.MustCompile(`idx_reference_target \(target_id=\?\)`)

// TestCompartmentSkipsHiddenReferrers: every request about a patient
// leaves an AuditEvent naming it, which only an admin may see. A
// patient-bound caller's system _history, driven by the patient's
// compartment, reads the references of each visible member type by its
// own index range, never every reference to the patient: on the old SQL
// it read and tested all of them, thousands for a patient much asked
// about, on every request.
func TestCompartmentSkipsHiddenReferrers(t *testing.T) {
	files, reg := setup(t)
	for name, open := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			defer st.Close()
			svc := service(t, reg, st)
			post(t, svc, files[0])
			pat := firstPatient(t, svc)
			ctx := context.Background()
			for i := range 300 {
				body := fmt.Sprintf(`{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},`+
					`"recorded":"2026-01-01T00:00:%02d.%03dZ","agent":[{"requestor":true,"who":{"display":"app"}}],"source":{"observer":{"display":"Lapis"}},`+
					`"entity":[{"what":{"reference":"Patient/%s"}}]}`, i%60, i, pat.id)
				if _, err := svc.Create(ctx, "AuditEvent", []byte(body), ""); err != nil {
					t.Fatal(err)
				}
			}
			if an, ok := st.(store.Analyzer); ok {
				if err := an.Analyze(ctx); err != nil {
					t.Fatal(err)
				}
			}
			params := map[string][]string{}
			for _, typ := range reg.ResourceTypes() {
				if ps := reg.PatientCompartment(typ); len(ps) > 0 {
					params[typ] = ps
				}
			}
			// A patient-bound caller: its patient's compartment, every
			// type, AuditEvent hidden (the access policy's filter).
			f := &store.AccessFilter{Compartment: &store.Compartment{Type: "Patient", ID: pat.id, Params: params},
				Types: map[string][]store.AccessRule{"*": {{Compartment: true}}, "AuditEvent": {}}}
			p := &sqlgen.Plans{}
			page, err := st.History(sqlgen.WithExplain(ctx, p), store.HistoryQuery{Filter: f, Count: 50})
			if err != nil {
				t.Fatal(err)
			}
			if page.Total == 0 {
				t.Fatal("no version of the patient's compartment listed")
			}
			for _, v := range page.Versions {
				if v.Type == "AuditEvent" {
					t.Fatalf("AuditEvent/%s listed to a patient-bound caller", v.ID)
				}
			}
			plan := strings.Join(p.Steps(), "\n--\n")
			if name == "sqlite" && wholeOwnerRE.MatchString(plan) {
				t.Fatalf("history reads every reference to the patient:\n%s", plan)
			}
			t.Logf("%d versions", page.Total)
		})
	}
}
