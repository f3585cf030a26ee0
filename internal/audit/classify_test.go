package audit

import (
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
)

// TestClassifyPatientRule: audit names the patient a request targets by
// the rule rate limiting charges (interaction.Parse). It used to skip
// comma-separated and repeated values (no patient recorded for a search
// of two patients), take any modifier (patient:missing=true recorded
// patient "true") and pick among parameters in map order.
func TestClassifyPatientRule(t *testing.T) {
	for _, tc := range []struct{ path, query, want string }{
		{"/Observation", "patient=p1,p2", "p1"},
		{"/Observation", "patient=p1&patient=p2", "p1"},
		{"/Observation", "subject=Patient/p3&patient=p4", "p4"},
		{"/Observation", "patient:missing=true", ""},
		{"/Observation", "subject:Patient=p5", "p5"},
		{"/Coverage", "beneficiary=Patient/p6", "p6"},
		{"/Patient", "_id=p7,p8", "p7"},
	} {
		if c := Classify("GET", tc.path, tc.query); c.Patient != tc.want {
			t.Errorf("%s?%s: patient %q, want %q", tc.path, tc.query, c.Patient, tc.want)
		}
	}
}

// TestUnchangedWriteDescribed: the record of an update that changed
// nothing says so (its entity names the current version, which an earlier
// request wrote); a real update's record does not.
func TestUnchangedWriteDescribed(t *testing.T) {
	c := &Classified{Interaction: "update", Action: "U", Type: "Patient", ID: "p1", Write: true}
	for _, unchanged := range []bool{true, false} {
		var e Event
		fillEvent(&e, c, 200, &interaction.Outcome{Resource: interaction.Ref{Type: "Patient", ID: "p1", Version: "3"}, Unchanged: unchanged})
		if got := strings.Contains(e.Description, "unchanged"); got != unchanged {
			t.Errorf("unchanged %t: description %q", unchanged, e.Description)
		}
		if len(e.Entities) == 0 {
			t.Errorf("unchanged %t: no entity", unchanged)
		}
	}
	// A refused request is described by its status alone.
	var e Event
	fillEvent(&e, c, 412, &interaction.Outcome{Unchanged: true})
	if e.Description != "" {
		t.Errorf("412: description %q", e.Description)
	}
}
