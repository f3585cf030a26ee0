package fhirapi_test

import (
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// BenchmarkReadCPU is read by id with the process CPU time per read
// reported as cpu-ns/op (GC included): steadier than ns/op on a shared
// machine.
func BenchmarkReadCPU(b *testing.B) {
	h, ids := benchServer(b, 20)
	var urls []string
	for _, id := range ids {
		urls = append(urls, "/fhir/Patient/"+id)
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := cpu()
	i := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", urls[i%len(urls)], nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
		i++
	}
	b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
}
