package audit

import "testing"

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
