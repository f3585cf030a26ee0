package plantest_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// BenchmarkShapes measures the reference searches (searches) through the
// resource service, on a store filled from empty through service
// transactions, on every dialect: the per-request cost of the search path
// below HTTP (SQL, loading, includes, the Bundle's JSON).
func BenchmarkShapes(b *testing.B) {
	files := shareddata.Glob(b, "*.json", "data", "synthea")
	if len(files) > bundles {
		files = files[:bundles]
	}
	reg, err := definitions.Load()
	if err != nil {
		b.Fatal(err)
	}
	for name, open := range dialects(b) {
		b.Run(name, func(b *testing.B) {
			st := open(b)
			defer st.Close()
			svc := service(b, reg, st)
			for _, f := range files {
				body, err := os.ReadFile(f)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := svc.Bundle(context.Background(), body, resource.ReturnMinimal); err != nil {
					b.Fatalf("%s: %v", filepath.Base(f), err)
				}
			}
			pat := firstPatient(b, svc)
			for _, s := range searches(pat) {
				v, err := url.ParseQuery(s.query)
				if err != nil {
					b.Fatal(err)
				}
				b.Run(s.typ+"?"+s.query, func(b *testing.B) {
					for b.Loop() {
						res, err := svc.Search(context.Background(), s.typ, v, true)
						if err != nil {
							b.Fatal(err)
						}
						_ = res.JSON()
					}
				})
			}
		})
	}
}
