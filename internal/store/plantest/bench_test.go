package plantest_test

import (
	"context"
	"net/url"
	"testing"
)

// BenchmarkShapes measures the reference searches (searches) through the
// resource service, on a store filled from empty through service
// transactions, on every dialect: the per-request cost of the search path
// below HTTP (SQL, loading, includes, the Bundle's JSON).
func BenchmarkShapes(b *testing.B) {
	files, reg := setup(b)
	for name, open := range dialects(b) {
		b.Run(name, func(b *testing.B) {
			st := open(b)
			defer st.Close()
			svc := service(b, reg, st)
			for _, f := range files {
				post(b, svc, f)
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
