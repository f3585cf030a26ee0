package profile

import (
	"slices"
	"testing"
)

func TestMustSupportCoverage(t *testing.T) {
	s := loadSets(t)["7.0.0"]
	const lab = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"
	ms := s.MustSupport(lab + "|7.0.0")
	for _, want := range []string{"Observation.status", "Observation.category:us-core", "Observation.value[x]", "Observation.value[x]:valueQuantity", "Observation.value[x]:valueString", "Observation.effective[x]:effectiveDateTime"} {
		if !slices.Contains(ms, want) {
			t.Errorf("MustSupport(lab) lacks %s: %v", want, ms)
		}
	}
	if slices.Contains(ms, "Observation.value[x]:valueBoolean") || slices.Contains(ms, "Observation.note") {
		t.Errorf("MustSupport(lab) lists elements that are not Must Support: %v", ms)
	}
	if s.Type(lab) != "Observation" || s.MustSupport("http://example.org/x") != nil || s.Type("http://example.org/x") != "" {
		t.Error("Type/MustSupport of known and unknown profiles")
	}
	obs := map[string]any{
		"resourceType": "Observation", "status": "final",
		"category":    []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}}}},
		"code":        map[string]any{"text": "x"},
		"_issued":     map[string]any{"extension": []any{}},
		"valueString": "positive",
	}
	cov, err := s.Covered(obs, lab)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Observation.status", "Observation.category", "Observation.category:us-core", "Observation.code", "Observation.value[x]", "Observation.value[x]:valueString"} {
		if !cov.Present[want] {
			t.Errorf("%s not present: %v", want, cov.Present)
		}
	}
	for _, absent := range []string{"Observation.subject", "Observation.value[x]:valueQuantity", "Observation.effective[x]"} {
		if cov.Present[absent] {
			t.Errorf("%s present", absent)
		}
	}
	if _, err := s.Covered(map[string]any{"resourceType": "Patient"}, lab); err == nil {
		t.Error("Covered accepted a Patient for an Observation profile")
	}
}
