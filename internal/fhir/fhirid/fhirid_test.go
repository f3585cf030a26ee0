package fhirid_test

import (
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/fhirid"
)

func TestValid(t *testing.T) {
	for s, want := range map[string]bool{
		"a":                     true,
		"Abc-1.2":               true,
		strings.Repeat("x", 64): true,
		"":                      false,
		strings.Repeat("x", 65): false,
		"a/b":                   false,
		"a b":                   false,
		"a_b":                   false,
		"é":                     false,
	} {
		if got := fhirid.Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestSplitRelative(t *testing.T) {
	for s, want := range map[string][2]string{
		"Patient/p1":              {"Patient", "p1"},
		"Patient/p1/_history/2":   {"Patient", "p1"},
		"Patient/p1/_history/":    {},
		"Patient/p1/_history/2/x": {},
		"Patient/p1/x":            {},
		"patient/p1":              {},
		"Patient/":                {},
		"/p1":                     {},
		"Patient":                 {},
		"Pa-tient/p1":             {},
	} {
		typ, id, ok := fhirid.SplitRelative(s)
		if ok != (want[0] != "") || typ != want[0] || id != want[1] {
			t.Errorf("SplitRelative(%q) = %q, %q, %v; want %q", s, typ, id, ok, want)
		}
	}
}
