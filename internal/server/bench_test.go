package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lapis-health/lapis/internal/metrics"
)

// BenchmarkOverhead measures what the server adds to a request: request
// id, route class, metrics, security headers, the (disabled) debug log
// line and the mux.
func BenchmarkOverhead(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	h := New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: ok, Logger: quiet, Metrics: metrics.New()}).http.Handler
	r := httptest.NewRequest("GET", "/fhir/Patient/123", nil)
	r.RemoteAddr = "127.0.0.1:5000"
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
	}
}

// BenchmarkBare is the same request through the mux alone.
func BenchmarkBare(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	mux := http.NewServeMux()
	mux.Handle("/fhir/", ok)
	r := httptest.NewRequest("GET", "/fhir/Patient/123", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
	}
}
