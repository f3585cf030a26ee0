package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// historyPatients is the number of patients of the HistoryFixture.
const historyPatients = 1000

// HistoryFixture loads the SearchFixture (50,000 Observations of 1,000
// patients, 50 each) and gives every tenth Observation of each patient a
// second version that moves it to the next patient, so that
// compartment-limited history must decide membership per version: each
// patient then has 50 versions visible to it (45 of its own, 5 moved in).
func HistoryFixture(b *testing.B, s store.Store) {
	SearchFixture(b, s)
	base := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	const n, batch = 50000, historyPatients
	for i := 0; i < n; i += 10 * batch {
		err := s.Update(ctx, func(tx store.Tx) error {
			for j := i; j < i+batch; j++ {
				when := base.Add(time.Duration(j) * time.Minute)
				w := &store.Write{Type: "Observation", ID: fmt.Sprintf("s%d", j), Version: 2, LastUpdated: when, Method: "PUT",
					Body: benchBody, Index: benchIndex((j+1)%historyPatients, (j/historyPatients)%20, when.UnixMilli())}
				if err := tx.Put(ctx, w); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// PatientFilter is the filter of a patient-bound credential with
// patient/*.rs for patient p of the bench fixtures (R4 Patient compartment
// parameters of a few types, every type limited to the compartment).
func PatientFilter(p int) *store.AccessFilter {
	return &store.AccessFilter{
		Compartment: &store.Compartment{Type: "Patient", ID: fmt.Sprintf("p%d", p), Params: map[string][]string{
			"Observation":       {"subject", "performer"},
			"Encounter":         {"patient"},
			"Condition":         {"patient", "asserter"},
			"MedicationRequest": {"subject"},
			"Patient":           {"link"},
		}},
		Types: map[string][]store.AccessRule{"*": {{Compartment: true}}, "AuditEvent": {}},
	}
}

// Analyzer is a store whose planner statistics can be refreshed after a
// bulk load.
type Analyzer interface {
	store.Store
	Analyze(ctx context.Context) error
}

// BenchHistory loads the HistoryFixture into s, refreshes its statistics
// and runs BenchHistoryPatient at the system level ("system") and the type
// level ("type").
func BenchHistory(b *testing.B, s Analyzer) {
	HistoryFixture(b, s)
	if err := s.Analyze(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Run("system", func(b *testing.B) { BenchHistoryPatient(b, s, "") })
	b.Run("type", func(b *testing.B) { BenchHistoryPatient(b, s, "Observation") })
}

// BenchHistoryPatient measures the first page of system-level _history
// (total included) for a random patient of the HistoryFixture through a
// patient-bound filter (50 versions each); typ "" is the system level,
// otherwise the type level.
func BenchHistoryPatient(b *testing.B, s store.Store, typ string) {
	rng := rand.New(rand.NewPCG(5, 6))
	b.ResetTimer()
	for b.Loop() {
		p := rng.IntN(historyPatients)
		page, err := s.History(ctx, store.HistoryQuery{Type: typ, Count: 50, Filter: PatientFilter(p)})
		if err != nil {
			b.Fatal(err)
		}
		if page.Total != 50 || len(page.Versions) != 50 {
			b.Fatalf("patient p%d: total %d, %d versions", p, page.Total, len(page.Versions))
		}
	}
}
