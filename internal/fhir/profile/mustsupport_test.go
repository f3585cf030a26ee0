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

// TestPrimitiveExtensions: the id and extensions of a primitive ("_name")
// are checked and counted like those of an object (the
// QuestionnaireResponse.questionnaire extension slices).
func TestPrimitiveExtensions(t *testing.T) {
	const qr = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-questionnaireresponse"
	display := map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/display", "valueString": "Wellbeing"}
	uri := map[string]any{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-extension-questionnaire-uri", "valueUri": "http://example.org/q"}
	res := func(q any, ext []any) map[string]any {
		r := map[string]any{"resourceType": "QuestionnaireResponse", "status": "completed",
			"subject": map[string]any{"reference": "Patient/1"}, "authored": "2023-01-01"}
		if q != nil {
			r["questionnaire"] = q
		}
		if ext != nil {
			r["_questionnaire"] = map[string]any{"extension": ext}
		}
		return r
	}
	for _, v := range []string{"6.1.0", "7.0.0"} {
		s := loadSets(t)[v]
		for name, tc := range map[string]struct {
			r       map[string]any
			present bool
		}{
			"value and extensions": {res("http://example.org/q", []any{display, uri}), true},
			"extensions alone":     {res(nil, []any{display, uri}), true},
			"value alone":          {res("http://example.org/q", nil), false},
		} {
			cov, err := s.Covered(tc.r, qr)
			if err != nil {
				t.Fatal(err)
			}
			for _, el := range []string{"QuestionnaireResponse.questionnaire.extension:questionnaireDisplay", "QuestionnaireResponse.questionnaire.extension:url"} {
				if cov.Present[el] != tc.present {
					t.Errorf("%s %s: %s present %t, want %t", v, name, el, cov.Present[el], tc.present)
				}
			}
			if issues, _ := s.Validate(tc.r, qr); len(issues) > 0 {
				t.Errorf("%s %s: %v", v, name, issues)
			}
		}
		// A slice rule inside a primitive's extensions is enforced: two
		// questionnaire displays where at most one is allowed.
		issues, err := s.Validate(res("http://example.org/q", []any{display, display}), qr)
		if err != nil {
			t.Fatal(err)
		}
		if len(issues) != 1 || issues[0].Rule != "slice" || issues[0].Element != "QuestionnaireResponse.questionnaire.extension:questionnaireDisplay" {
			t.Errorf("%s: two displays: %v", v, issues)
		}
	}
}
