package fhirapi

import (
	"net/http"
	"testing"
)

// TestInstanceHistoryExistence: an instance history with _since or _at
// answers 404 for a resource that does not exist, as it does for one
// outside the caller's compartment, so that a patient-bound caller cannot
// tell another patient's resources from ids no resource has (an empty
// page for one, 404 for the other); a resource the caller sees with no
// version in the period gets an empty page.
func TestInstanceHistoryExistence(t *testing.T) {
	compartmentDialects(t, func(t *testing.T, e *env) {
		p1 := []string{"X-Scopes: patient/*.rs", "X-Patient: p1"}
		for _, q := range []string{"?_at=2024-01-01", "?_since=2024-01-01T00:00:00Z", "?_at=2000"} {
			for _, c := range []struct {
				hdr  []string
				path string
			}{
				{p1, "/fhir/Observation/o2/_history"},     // p2's
				{p1, "/fhir/Observation/nobody/_history"}, // no one's
				{nil, "/fhir/Observation/nobody/_history"},
			} {
				e.do("GET", c.path+q, "", c.hdr...).outcome(t, http.StatusNotFound)
			}
		}
		for _, hdr := range [][]string{p1, nil} {
			b := e.do("GET", "/fhir/Observation/o1/_history?_at=2000", "", hdr...).expect(t, http.StatusOK).json(t)
			if len(entries(b)) != 0 {
				t.Errorf("o1 in 2000: %v", entries(b))
			}
		}
	})
}
