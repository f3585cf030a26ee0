package extract

import (
	"testing"
)

func firstOfType(t testing.TB, res []map[string]any, rt string) map[string]any {
	for _, r := range res {
		if r["resourceType"] == rt {
			return r
		}
	}
	t.Fatalf("no %s", rt)
	return nil
}

func benchType(b *testing.B, rt string) {
	e := newTestExtractor(b)
	res := loadBundle(b, bundleFiles(b, syntheaDir, 1)[0])
	r := firstOfType(b, res, rt)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Extract(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractObservation(b *testing.B)          { benchType(b, "Observation") }
func BenchmarkExtractEncounter(b *testing.B)            { benchType(b, "Encounter") }
func BenchmarkExtractClaim(b *testing.B)                { benchType(b, "Claim") }
func BenchmarkExtractExplanationOfBenefit(b *testing.B) { benchType(b, "ExplanationOfBenefit") }
func BenchmarkExtractPatient(b *testing.B)              { benchType(b, "Patient") }

// BenchmarkExtractSyntheaBundle extracts every resource of a few Synthea
// bundles and reports µs per resource.
func BenchmarkExtractSyntheaBundle(b *testing.B) {
	e := newTestExtractor(b)
	var res []map[string]any
	for _, f := range bundleFiles(b, syntheaDir, 5) {
		res = append(res, loadBundle(b, f)...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range res {
			if _, err := e.Extract(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(res)), "µs/resource")
}
