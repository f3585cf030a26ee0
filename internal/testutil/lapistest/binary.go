// Package lapistest runs the real lapis binary, built from the working
// tree, for end-to-end tests: it builds the binary, starts "lapis serve"
// on a port the server itself binds (--addr 127.0.0.1:0; the address and
// FHIR base are read from the server's "lapis serving" log line, so no
// port is ever guessed and released before the server takes it), waits
// for that line instead of sleeping, and stops, kills and restarts the
// process on the same data. It also runs lapis admin commands against a
// server's database and finds the shared Synthea bundles.
//
// A package whose tests all need the binary builds it once in TestMain:
//
//	func TestMain(m *testing.M) { lapistest.Main(m) }
//
// and its tests start servers with Start:
//
//	s := lapistest.Start(t, lapistest.Options{Database: pgtest.New(t)})
//	resp := s.Do(t, "GET", "/metadata", nil)
//
// A package that must not depend on the server compiling for its other
// tests leaves out Main; Binary then builds on first use.
package lapistest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// mainBin is the binary Main built for the whole test process ("" when
// Main was not used).
var mainBin string

// lazy builds the binary once per process for packages without Main.
var lazy struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Main builds cmd/lapis into a temporary directory, runs the tests and
// exits; call it from TestMain. Binary then returns the built binary.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "lapis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	bin, err := build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	mainBin = bin
	code := m.Run()
	os.RemoveAll(dir)
	if lazy.dir != "" {
		os.RemoveAll(lazy.dir)
	}
	os.Exit(code)
}

// Binary returns the path of the lapis binary built from the working
// tree: the one Main built, else one built on first use (once per test
// process; a build failure fails t).
func Binary(t testing.TB) string {
	t.Helper()
	if mainBin != "" {
		return mainBin
	}
	lazy.once.Do(func() {
		if lazy.dir, lazy.err = os.MkdirTemp("", "lapis-e2e-"); lazy.err == nil {
			lazy.path, lazy.err = build(lazy.dir)
		}
	})
	if lazy.err != nil {
		t.Fatal(lazy.err)
	}
	return lazy.path
}

// build compiles cmd/lapis into dir. It first stats every non-test Go
// source of the module, so that go test's result cache is invalidated
// when the server changes (the test binary itself may not import it).
func build(dir string) (string, error) {
	root := shareddata.Root()
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			_, _ = os.Stat(p)
		}
		return nil
	})
	bin := filepath.Join(dir, "lapis")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lapis")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building lapis: %v\n%s", err, out)
	}
	return bin, nil
}

// SyntheaFiles returns the Synthea bundles of ../shared/data/synthea,
// sorted by name; the test is skipped when they are absent (and fails
// under CI).
func SyntheaFiles(t testing.TB) []string {
	return shareddata.Glob(t, "*.json", "data", "synthea")
}
