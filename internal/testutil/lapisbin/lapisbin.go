// Package lapisbin builds the lapis binary for end-to-end tests and finds
// the shared test data, so each end-to-end package runs the real binary
// built from the working tree.
package lapisbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// root is the module root (this file is internal/testutil/lapisbin/lapisbin.go).
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Main builds cmd/lapis into a temporary directory, sets *bin to its path,
// runs the tests and exits; call it from TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "lapis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "lapis")
	cmd := exec.Command("go", "build", "-o", *bin, "./cmd/lapis")
	cmd.Dir = root()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lapis:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// SyntheaFiles returns the Synthea bundles of ../shared/data/synthea,
// sorted by name; the test is skipped when they are absent (and fails
// under CI).
func SyntheaFiles(t testing.TB) []string {
	return shareddata.Glob(t, "*.json", "data", "synthea")
}
