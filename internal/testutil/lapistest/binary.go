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
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
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

// build compiles cmd/lapis into dir. The binary is built without -race
// even under go test -race: the race detector slows the server's start
// and requests by an order of magnitude (a TLS subtest of client's
// TestEndToEndAgainstLapis took 57 s instead of 3 s), and the server's
// packages run under the detector in their own, in-process tests.
//
// The test processes of one go test run share the build: it is made under
// a file lock in one directory per user and working tree, where go build
// leaves an up-to-date binary alone, and each process hard-links (or
// copies) it into dir so that a later rebuild never changes the binary a
// running test uses. Without the lock the packages that need the binary
// (client, bulk, e2e, e2e/smart, lapistest) would compile the whole
// server at the same time on a cold build cache, and each would link it.
//
// build first stats every non-test Go source of the module, so that go
// test's result cache is invalidated when the server changes (the test
// binary itself may not import it).
func build(dir string) (string, error) {
	root := shareddata.Root()
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			_, _ = os.Stat(p)
		}
		return nil
	})
	bin := filepath.Join(dir, "lapis")
	sum := sha256.Sum256([]byte(root))
	shared := filepath.Join(os.TempDir(), fmt.Sprintf("lapis-test-bin-%d-%x", os.Getuid(), sum[:6]))
	if err := os.Mkdir(shared, 0o700); err != nil && !errors.Is(err, fs.ErrExist) || !privateDir(shared) {
		return bin, goBuild(root, bin)
	}
	unlock, err := lockFile(filepath.Join(shared, "lock"))
	if err != nil {
		return bin, goBuild(root, bin)
	}
	defer unlock()
	sharedBin := filepath.Join(shared, "lapis")
	if err := goBuild(root, sharedBin); err != nil {
		return "", err
	}
	if err := os.Link(sharedBin, bin); err == nil {
		return bin, nil
	}
	return bin, copyFile(sharedBin, bin)
}

// goBuild runs go build for cmd/lapis into bin.
func goBuild(root, bin string) error {
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lapis")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building lapis: %v\n%s", err, out)
	}
	return nil
}

// copyFile copies the executable src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// SyntheaFiles returns the Synthea bundles of ../shared/data/synthea,
// sorted by name; the test is skipped when they are absent (and fails
// under CI).
func SyntheaFiles(t testing.TB) []string {
	return shareddata.Glob(t, "*.json", "data", "synthea")
}
