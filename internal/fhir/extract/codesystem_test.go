package extract

import (
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

func TestCodeSystem(t *testing.T) {
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"Patient.gender":                  "http://hl7.org/fhir/administrative-gender",
		"Observation.status":              "http://hl7.org/fhir/observation-status",
		"MedicationRequest.status":        "http://hl7.org/fhir/CodeSystem/medicationrequest-status",
		"MedicationRequest.intent":        "http://hl7.org/fhir/CodeSystem/medicationrequest-intent",
		"MedicationDispense.status":       "http://terminology.hl7.org/CodeSystem/medicationdispense-status",
		"Immunization.status":             "http://hl7.org/fhir/event-status",
		"Attachment.contentType":          "urn:ietf:bcp:13",
		"Task.intent":                     "", // several code systems
		"SearchParameter.target":          "http://hl7.org/fhir/resource-types",
		"Patient.communication.preferred": "",
		"Identifier.use":                  "http://hl7.org/fhir/identifier-use",
	} {
		e := reg.Element(path)
		if e == nil {
			t.Errorf("%s: no element", path)
			continue
		}
		if got := codeSystem(e.Binding); got != want {
			t.Errorf("%s (%+v): code system %q, want %q", path, e.Binding, got, want)
		}
	}
	checkRows(t, `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationCodeableConcept":{"text":"x"}}`,
		[]string{"status", "intent"},
		`token intent g0 http://hl7.org/fhir/CodeSystem/medicationrequest-intent|order ""`,
		`token status g0 http://hl7.org/fhir/CodeSystem/medicationrequest-status|active ""`)
}
