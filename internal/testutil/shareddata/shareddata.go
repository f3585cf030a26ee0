// Package shareddata finds the project's shared test data (../shared beside
// the repository: Synthea bundles, US Core examples and IG packages) for
// tests, relative to the module root and never by an absolute path.
//
// When the data is missing a test is skipped locally, but fails when the
// CI environment variable is set, so a CI run can never pass by silently
// skipping the tests that need the data.
package shareddata

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// Root returns the module root (this file is internal/testutil/shareddata/shareddata.go).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Dir returns ../shared/PARTS… beside the repository. It skips t (or fails
// it under CI) when the directory does not exist.
func Dir(t testing.TB, parts ...string) string {
	t.Helper()
	dir := filepath.Join(append([]string{Root(), "..", "shared"}, parts...)...)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		missing(t, dir)
	}
	return dir
}

// Glob returns the files matching pattern inside ../shared/DIR…, sorted.
// It skips t (or fails it under CI) when none match.
func Glob(t testing.TB, pattern string, dir ...string) []string {
	t.Helper()
	d := Dir(t, dir...)
	files, err := filepath.Glob(filepath.Join(d, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		missing(t, filepath.Join(d, pattern))
	}
	sort.Strings(files)
	return files
}

// File returns ../shared/PARTS… (a file), skipping t (or failing it under
// CI) when it does not exist.
func File(t testing.TB, parts ...string) string {
	t.Helper()
	f := filepath.Join(append([]string{Root(), "..", "shared"}, parts...)...)
	if _, err := os.Stat(f); err != nil {
		missing(t, f)
	}
	return f
}

func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("shared test data missing: %s (CI must run with ../shared beside the repository)", what)
	}
	t.Skipf("shared test data missing: %s (need ../shared beside the repository)", what)
}

// USCoreBundle is one Bundle of ../shared/data/uscore.
type USCoreBundle struct {
	Name string // file name
	Body []byte // the Bundle's JSON
}

// USCoreBundles returns the certification reference server's Bundles in
// ../shared/data/uscore (patients 85 and 355, and the asserted-date one),
// ready to load. uscore_bundle_patient_355.json holds one invalid element
// (an Observation.effectivePeriod with "stop" for "end", see its README):
// it is repaired in the returned copy, and t fails if the file no longer
// holds exactly that one.
func USCoreBundles(t testing.TB) []USCoreBundle {
	t.Helper()
	var out []USCoreBundle
	for _, name := range []string{"uscore_bundle_patient_85.json", "uscore_bundle_patient_355.json", "uscore_bundle_asserted-date.json"} {
		b, err := os.ReadFile(File(t, "data", "uscore", name))
		if err != nil {
			t.Fatal(err)
		}
		var bundle map[string]any
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		repaired := 0
		entries, _ := bundle["entry"].([]any)
		for _, en := range entries {
			entry, _ := en.(map[string]any)
			res, _ := entry["resource"].(map[string]any)
			if p, ok := res["effectivePeriod"].(map[string]any); ok && p["stop"] != nil {
				p["end"] = p["stop"]
				delete(p, "stop")
				repaired++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[strings.Contains(name, "355")]; repaired != want {
			t.Fatalf("%s: repaired %d effectivePeriod.stop, want %d", name, repaired, want)
		}
		body, err := json.Marshal(bundle)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, USCoreBundle{Name: name, Body: body})
	}
	return out
}
