package ratelimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/testutil/redistest"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// BenchmarkFHIRStage is the cost the FHIR stage adds to an admitted read
// of a patient (client and patient checks, headers) with the in-process
// limiter.
func BenchmarkFHIRStage(b *testing.B) {
	m := New(Options{FHIRBase: "/fhir", Client: Limit{Rate: MaxRate, Period: time.Second, Burst: MaxRate},
		Patient: Limit{Rate: MaxRate, Period: time.Second, Burst: MaxRate}})
	h := m.FHIR(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ctx := principal.NewContext(context.Background(), &principal.Principal{ClientID: "app"})
	req := httptest.NewRequest("GET", "/fhir/Patient/123", nil)
	req = req.WithContext(interaction.NewContext(ctx, interaction.Parse("/fhir", req)))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// BenchmarkRedisAllow is one GCRA round trip to a local Redis.
func BenchmarkRedisAllow(b *testing.B) {
	srv := redistest.Start(b)
	r, err := OpenRedis(srv.URL, RedisOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	l := Limit{Rate: MaxRate, Period: time.Second, Burst: MaxRate}
	i := 0
	for b.Loop() {
		i++
		if _, err := r.AllowN(context.Background(), "client:"+strconv.Itoa(i%64), l, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBundleCost prices a Synthea transaction Bundle (the ingest
// path: every POSTed Bundle is scanned for its entries' requests).
func BenchmarkBundleCost(b *testing.B) {
	files := shareddata.Glob(b, "*.json", "data", "synthea")
	body, err := os.ReadFile(files[0])
	if err != nil {
		b.Fatal(err)
	}
	c := DefaultCosts()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if c.bundleCost(body, "/fhir", 0) < 1 {
			b.Fatal("no cost")
		}
	}
}
