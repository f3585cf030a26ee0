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
	got, gotProfiles, err := generate(ig, filepath.Join("..", "data", "r4.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		filepath.Join("..", "data", "uscore.json"):                              got,
		filepath.Join("..", "..", "profile", "data", "uscore-profiles.json.gz"): gotProfiles,
	} {
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(content, want) {
			t.Errorf("%s is stale: run go generate ./internal/fhir/definitions", name)
		}
	}
}
