package app_test

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
)

// TestPatientsPicker checks the patient and encounter pickers over the
// typed search results, on both dialects: the matches of the search
// only, in its order, condensed into summaries.
func TestPatientsPicker(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			a := apptest.Open(t, dialect, nil)
			for id, body := range map[string]string{
				"p1": `{"resourceType":"Patient","id":"p1","name":[{"given":["Ada"],"family":"Lovelace"}],"gender":"female","birthDate":"1815-12-10"}`,
				"p2": `{"resourceType":"Patient","id":"p2","name":[{"text":"Charles Babbage"}]}`,
			} {
				if _, err := a.Service.Update(ctx, "Patient", id, []byte(body), ""); err != nil {
					t.Fatal(err)
				}
			}
			for id, body := range map[string]string{
				"e1": `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2020-01-01","end":"2020-01-01"},"type":[{"text":"Checkup"}]}`,
				"e2": `{"resourceType":"Encounter","id":"e2","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2021-01-01","end":"2021-01-01"}}`,
				"e3": `{"resourceType":"Encounter","id":"e3","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p2"}}`,
			} {
				if _, err := a.Service.Update(ctx, "Encounter", id, []byte(body), ""); err != nil {
					t.Fatal(err)
				}
			}
			f := app.Patients{Service: a.Service}
			ps, err := f.SearchPatients(ctx, "lovelace", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != 1 || ps[0].ID != "p1" || ps[0].Name != "Ada Lovelace" || ps[0].Gender != "female" || ps[0].BirthDate != "1815-12-10" {
				t.Fatalf("patients %+v", ps)
			}
			if ps, err = f.SearchPatients(ctx, "", 1); err != nil || len(ps) != 1 {
				t.Fatalf("limit 1: %+v, %v", ps, err)
			}
			es, err := f.Encounters(ctx, "p1", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 2 || es[0].ID != "e2" || es[0].Label != "2021-01-01" || es[1].ID != "e1" || es[1].Label != "2020-01-01 Checkup" {
				t.Fatalf("encounters %+v", es)
			}
		})
	}
}
