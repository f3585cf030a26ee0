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
