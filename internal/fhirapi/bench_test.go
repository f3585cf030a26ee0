package fhirapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/lapis-health/lapis/internal/fhirapi"
	"github.com/lapis-health/lapis/internal/importer"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
)

// benchServer loads n Synthea bundles into a fresh SQLite database and
// returns the FHIR handler and the patient ids.
func benchServer(b *testing.B, n int) (http.Handler, []string) {
	b.Helper()
	_, file, _, _ := runtime.Caller(0)
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "data", "synthea", "*.json"))
	sort.Strings(files)
	if len(files) < n {
		b.Skip("Synthea data not found")
	}
	a := apptest.Open(b, "sqlite", nil)
	if rep, err := importer.New(a.Service, importer.Options{}).Import(context.Background(), files[:n]); err != nil || rep.Failed > 0 {
		b.Fatal(err, rep)
	}
	h := fhirapi.New(fhirapi.Config{BaseURL: a.Config.FHIRBase()}, a.Service, a.Registry)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/fhir/Patient?_count=100&_elements=id", nil))
	var bundle struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &bundle)
	var ids []string
	for _, e := range bundle.Entry {
		ids = append(ids, e.Resource.ID)
	}
	return h, ids
}

func benchQueries(b *testing.B, h http.Handler, urls []string) {
	var i atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := urls[int(i.Add(1))%len(urls)]
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
			if rec.Code != 200 {
				b.Fatalf("%s: %d %s", u, rec.Code, rec.Body.String())
			}
		}
	})
}

// BenchmarkSearch measures the reference searches in process (no network).
func BenchmarkSearch(b *testing.B) {
	h, ids := benchServer(b, 20)
	var read, code, cat []string
	for _, id := range ids {
		read = append(read, "/fhir/Patient/"+id)
		code = append(code, "/fhir/Observation?patient="+id+"&code="+url.QueryEscape("http://loinc.org|29463-7"))
		cat = append(cat, "/fhir/Observation?patient="+id+"&category=laboratory&date=ge2015-01-01")
	}
	b.Run("read", func(b *testing.B) { benchQueries(b, h, read) })
	b.Run("patient-code", func(b *testing.B) { benchQueries(b, h, code) })
	b.Run("patient-category-date", func(b *testing.B) { benchQueries(b, h, cat) })
}
