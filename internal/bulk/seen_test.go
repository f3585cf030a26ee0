package bulk

import (
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// TestNamesOther checks which resources of a compartment export may be
// found again in another of the plan's patients' compartments (and so
// go through the seen table).
func TestNamesOther(t *testing.T) {
	plan := map[string]struct{}{"p1": {}, "p2": {}, "p3.x": {}}
	for _, c := range []struct {
		typ, id, body, patient string
		want                   bool
	}{
		{"Observation", "o1", `{"subject":{"reference":"Patient/p1"}}`, "p1", false},
		{"Observation", "o1", `{"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p2"}]}`, "p1", true},
		{"Observation", "o1", `{"subject":{"reference":"http://x/fhir/Patient/p2/_history/3"}}`, "p1", true},
		{"Observation", "o1", `{"subject":{"reference":"Patient/p3.x"}}`, "p1", true},
		// Not a plan patient, or a longer id that starts like one.
		{"Observation", "o1", `{"subject":{"reference":"Patient/p9"},"note":[{"text":"Patient/p22"}]}`, "p1", false},
		// A Patient is in its own compartment and in those it links to.
		{"Patient", "p2", `{"link":[{"other":{"reference":"Patient/p1"}}]}`, "p1", true},
		{"Patient", "p2", `{"link":[{"other":{"reference":"Patient/p1"}}]}`, "p2", true},
		{"Patient", "p1", `{"name":[{"family":"One"}]}`, "p1", false},
	} {
		r := &store.Resource{Type: c.typ, ID: c.id, Body: []byte(c.body)}
		if got := namesOther(c.typ, r, c.patient, plan); got != c.want {
			t.Errorf("namesOther(%s/%s %s, in %s) = %v, want %v", c.typ, c.id, c.body, c.patient, got, c.want)
		}
	}
}
