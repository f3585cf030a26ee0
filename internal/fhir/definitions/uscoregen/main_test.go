package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// TestCommittedUpToDate regenerates the US Core extract from the packages
// and compares it with the committed data/uscore.json.
func TestCommittedUpToDate(t *testing.T) {
	ig := shareddata.Dir(t, "data", "us-core-ig")
	got, err := generate(ig, filepath.Join("..", "data", "r4.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "data", "uscore.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("data/uscore.json is stale: run go generate ./internal/fhir/definitions")
	}
}
