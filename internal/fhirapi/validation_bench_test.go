package fhirapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhirapi"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
)

// validationServer opens a fresh SQLite server with --profile-validation
// mode (US Core 6.1.0) and returns its FHIR handler.
func validationServer(b *testing.B, mode string) http.Handler {
	b.Helper()
	a := apptest.Open(b, "sqlite", func(c *config.Config) { c.FHIR.ProfileValidation = mode })
	return fhirapi.New(fhirapi.Config{BaseURL: a.Config.FHIRBase()}, a.Service, a.Registry)
}

// validationData returns transaction Bundles of a data set and their
// resource count: "synthea" (the first 8 Synthea patients; no resource
// claims a profile) or "uscore" (the certification reference patients,
// every resource claiming US Core profiles; the one invalid
// effectivePeriod.stop of patient 355 repaired).
func validationData(b *testing.B, set string) ([][]byte, int) {
	b.Helper()
	_, file, _, _ := runtime.Caller(0)
	shared := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "data")
	var files []string
	switch set {
	case "synthea":
		files, _ = filepath.Glob(filepath.Join(shared, "synthea", "*.json"))
		sort.Strings(files)
		files = files[:min(8, len(files))]
	case "uscore":
		files, _ = filepath.Glob(filepath.Join(shared, "uscore", "uscore_bundle_patient_*.json"))
	}
	if len(files) == 0 {
		b.Skip("data not found")
	}
	var out [][]byte
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		var bundle map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&bundle); err != nil {
			b.Fatal(err)
		}
		entries, _ := bundle["entry"].([]any)
		for _, e := range entries {
			r, _ := e.(map[string]any)["resource"].(map[string]any)
			if p, ok := r["effectivePeriod"].(map[string]any); ok && p["stop"] != nil {
				p["end"] = p["stop"]
				delete(p, "stop")
			}
		}
		n += len(entries)
		body, _ := json.Marshal(bundle)
		out = append(out, body)
	}
	return out, n
}

// processCPU returns the CPU time (user and system) the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteValidation measures whole writes (transaction Bundles over
// the FHIR handler into SQLite: decoding, validation, indexing, storage)
// with --profile-validation off and claimed, alternating the two servers
// within each iteration so that both see the same machine load; it
// reports each one's resources/s and the slowdown of claimed (the target:
// at most 30 %), and the process CPU time per resource of each (a steadier
// figure on a loaded machine: wall-clock ratios swing with the others'
// load).
//
//	go test -run '^$' -bench WriteValidation -benchtime 5x ./internal/fhirapi/
func BenchmarkWriteValidation(b *testing.B) {
	for _, set := range []string{"synthea", "uscore"} {
		b.Run(set, func(b *testing.B) {
			bundles, n := validationData(b, set)
			servers := map[string]http.Handler{"off": validationServer(b, "off"), "claimed": validationServer(b, "claimed")}
			elapsed, cpu := map[string]time.Duration{}, map[string]time.Duration{}
			post := func(mode string) {
				h := servers[mode]
				start, startCPU := time.Now(), processCPU()
				for _, body := range bundles {
					req := httptest.NewRequest("POST", "/fhir", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/fhir+json")
					req.Header.Set("Prefer", "return=minimal")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("%s: %d %s", mode, rec.Code, rec.Body.String()[:min(rec.Body.Len(), 600)])
					}
				}
				elapsed[mode] += time.Since(start)
				cpu[mode] += processCPU() - startCPU
			}
			post("off") // warm both (statistics, caches, profile sets)
			post("claimed")
			elapsed, cpu = map[string]time.Duration{}, map[string]time.Duration{}
			b.ResetTimer()
			for i := range b.N {
				if i%2 == 0 {
					post("off")
					post("claimed")
				} else {
					post("claimed")
					post("off")
				}
			}
			total := float64(n * b.N)
			off, claimed := total/elapsed["off"].Seconds(), total/elapsed["claimed"].Seconds()
			b.ReportMetric(off, "off-res/s")
			b.ReportMetric(claimed, "claimed-res/s")
			b.ReportMetric(100*(1-claimed/off), "slowdown-%")
			// The process's CPU time per resource, which the other
			// processes of a loaded machine disturb less than wall time.
			offCPU, claimedCPU := float64(cpu["off"].Microseconds())/total, float64(cpu["claimed"].Microseconds())/total
			b.ReportMetric(offCPU, "off-cpu-µs/res")
			b.ReportMetric(claimedCPU, "claimed-cpu-µs/res")
			b.ReportMetric(100*(claimedCPU/offCPU-1), "cpu-cost-%")
		})
	}
}
