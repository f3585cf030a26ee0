// Package shareddata finds the project's shared test data (../shared beside
// the repository: Synthea bundles, US Core examples and IG packages) for
// tests, relative to the module root and never by an absolute path.
//
// When the data is missing a test is skipped locally, but fails when the
// CI environment variable is set, so a CI run can never pass by silently
// skipping the tests that need the data.
package shareddata

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
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
