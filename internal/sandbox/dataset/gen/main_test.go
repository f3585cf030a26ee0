package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// TestCommittedOutput: the generator, run on the shared data, writes
// exactly the committed dataset (it is deterministic and the committed
// file is up to date).
func TestCommittedOutput(t *testing.T) {
	shared := shareddata.Dir(t)
	out := filepath.Join(t.TempDir(), "sandbox.json.gz")
	if err := run(out, shared, false); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "data", "sandbox.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("generated %d bytes differ from the committed data/sandbox.json.gz (%d bytes): run go generate ./internal/sandbox/dataset", len(got), len(want))
	}
}

// TestRefusesBadSource: a missing source file is an error, not a partial
// dataset.
func TestRefusesBadSource(t *testing.T) {
	if err := run(filepath.Join(t.TempDir(), "x.json.gz"), t.TempDir(), false); err == nil {
		t.Fatal("no error for an empty shared directory")
	}
}
