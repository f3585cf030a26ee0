package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// benchBody is a ~1 KB resource body.
var benchBody = []byte(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},` +
	`"subject":{"reference":"Patient/x"},"encounter":{"reference":"Encounter/y"},"effectiveDateTime":"2020-01-01T00:00:00Z","issued":"2020-01-01T00:00:00.000Z","valueQuantity":{"value":80,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},` +
	`"note":[{"text":"` + strings.Repeat("lorem ipsum ", 45) + `"}]}`)

// benchIndex returns ~20 index rows of an Observation of patient p with code c.
func benchIndex(p, c int, when int64) store.Index {
	pid := fmt.Sprintf("p%d", p)
	code := fmt.Sprintf("c%d", c)
	return store.Index{
		Tokens: []store.TokenRow{
			{Param: "code", System: "http://loinc.org", Code: code, Text: "heart rate"},
			{Param: "combo-code", System: "http://loinc.org", Code: code},
			{Param: "category", System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs"},
			{Param: "status", Code: "final"},
			{Param: "_tag", System: "urn:bench", Code: "b"},
		},
		References: []store.ReferenceRow{
			{Param: "patient", TargetType: "Patient", TargetID: pid, URL: "Patient/" + pid},
			{Param: "subject", TargetType: "Patient", TargetID: pid, URL: "Patient/" + pid},
			{Param: "encounter", TargetType: "Encounter", TargetID: fmt.Sprintf("e%d", c), URL: fmt.Sprintf("Encounter/e%d", c)},
		},
		Dates: []store.DateRow{
			{Param: "date", Lo: when, Hi: when},
			{Param: "_lastUpdated", Lo: when, Hi: when},
			{Param: "issued", Lo: when, Hi: when + 999},
		},
		Strings: []store.StringRow{
			{Param: "_text", Norm: "heart rate", Exact: "Heart rate"},
			{Param: "code-display", Norm: "heart rate", Exact: "Heart rate"},
			{Param: "note", Norm: "lorem ipsum", Exact: "lorem ipsum"},
			{Param: "performer-name", Norm: "dr who", Exact: "Dr Who"},
		},
		Quantities: []store.QuantityRow{
			{Param: "value-quantity", System: "http://unitsofmeasure.org", Code: "/min", Unit: "/min", Lo: 79.5, Hi: 80.5},
			{Param: "combo-value-quantity", System: "http://unitsofmeasure.org", Code: "/min", Unit: "/min", Lo: 79.5, Hi: 80.5},
		},
		Numbers: []store.NumberRow{{Param: "value-number", Lo: 80, Hi: 80}},
		URIs: []store.URIRow{
			{Param: "_profile", URI: "http://hl7.org/fhir/StructureDefinition/heartrate"},
			{Param: "_source", URI: "urn:bench"},
		},
	}
}

// load writes n Observations (over patients patients and codes codes) in
// transactions of batch resources, with ids prefix+i.
func load(tb testing.TB, s store.Store, prefix string, start, n, batch, patients, codes int) {
	tb.Helper()
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := start; i < start+n; i += batch {
		err := s.Update(ctx, func(tx store.Tx) error {
			for j := i; j < min(i+batch, start+n); j++ {
				when := base.Add(time.Duration(j) * time.Minute)
				w := &store.Write{Type: "Observation", ID: fmt.Sprintf("%s%d", prefix, j), Version: 1, LastUpdated: when, Method: "POST",
					Body: benchBody, Index: benchIndex(j%patients, (j/patients)%codes, when.UnixMilli())}
				if err := tx.Put(ctx, w); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchPut measures Put throughput: each iteration is one transaction of
// 150 new resources with 20 index rows each.
func BenchPut(b *testing.B, s store.Store) {
	const batch = 150
	n := 0
	start := time.Now()
	for b.Loop() {
		load(b, s, "put", n, batch, batch, 50, 20)
		n += batch
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "resources/s")
}

// BenchRead measures Read by id over 10,000 stored resources.
func BenchRead(b *testing.B, s store.Store) {
	const n = 10000
	load(b, s, "r", 0, n, 500, 100, 20)
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		id := fmt.Sprintf("r%d", rng.IntN(n))
		r, err := s.Read(ctx, "Observation", id)
		if err != nil || r.ID != id {
			b.Fatal(r, err)
		}
	}
}

// SearchFixture loads the 50,000 Observations (1,000 patients, 20 codes)
// that BenchSearch searches.
func SearchFixture(b *testing.B, s store.Store) {
	load(b, s, "s", 0, 50000, 1000, 1000, 20)
}

// BenchSearch loads the SearchFixture into s, runs analyze when it is not
// nil (to refresh the planner statistics) and measures
// Observation?patient=X&code=http://loinc.org|c on it (2-3 matches per
// search).
func BenchSearch(b *testing.B, s store.Store, analyze func(context.Context) error) {
	SearchFixture(b, s)
	if analyze != nil {
		if err := analyze(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	sys := "http://loinc.org"
	b.ResetTimer()
	for b.Loop() {
		p, c := rng.IntN(1000), rng.IntN(20)
		q := &store.Query{Type: "Observation", Count: 50, Where: []store.Clause{
			one(store.Predicate{Param: "patient", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: fmt.Sprintf("p%d", p)}}),
			one(store.Predicate{Param: "code", Token: &store.TokenMatch{System: &sys, Code: fmt.Sprintf("c%d", c)}}),
		}}
		r, err := s.Search(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Matches) == 0 || r.Total != len(r.Matches) {
			b.Fatalf("patient p%d code c%d: %d matches, total %d", p, c, len(r.Matches), r.Total)
		}
	}
}
