package validate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// firstResource returns the first entry resource of the given type in a
// Synthea bundle.
func firstResource(b *testing.B, file, typ string) map[string]any {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Skip(err)
	}
	bundle := decode(b, data)
	for _, e := range bundle["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		if r["resourceType"] == typ {
			return r
		}
	}
	b.Skipf("no %s in %s", typ, file)
	return nil
}

// benchFile is one Synthea bundle of the shared test data.
var benchFile = filepath.Join(shareddata.Root(), "..", "shared", "data", "synthea", "Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json")

func benchResource(b *testing.B, typ string) {
	v := testValidator(b)
	r := firstResource(b, benchFile, typ)
	if is := v.Validate(r); len(is) != 0 {
		b.Fatalf("invalid: %+v", is)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = v.Validate(r)
	}
}

func BenchmarkValidateObservation(b *testing.B) { benchResource(b, "Observation") }
func BenchmarkValidatePatient(b *testing.B)     { benchResource(b, "Patient") }
func BenchmarkValidateClaim(b *testing.B)       { benchResource(b, "Claim") }

func BenchmarkValidateBundle(b *testing.B) {
	v := testValidator(b)
	data, err := os.ReadFile(benchFile)
	if err != nil {
		b.Skip(err)
	}
	bundle := decode(b, data)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		_ = v.Validate(bundle)
	}
}

func BenchmarkNew(b *testing.B) {
	v := testValidator(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = New(v.reg)
	}
}
