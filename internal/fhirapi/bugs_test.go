package fhirapi

import (
	"net/http"
	"testing"
)

// Bugs found by the hostile-input tests in packages outside fhirapi and
// resource. Each test fails when the Skip is removed, until the owning
// package is fixed.

// internal/fhir/validate checks date, dateTime and instant with the R4
// regular expressions only, which admit impossible calendar dates; R4
// datatypes.html requires valid dates.
func TestBugValidateImpossibleDate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, b := range []string{
		`{"resourceType":"Patient","birthDate":"2020-02-30"}`,
		`{"resourceType":"Patient","birthDate":"2021-02-29"}`,
		`{"resourceType":"Patient","deceasedDateTime":"2020-04-31T10:00:00Z"}`,
	} {
		e.do("POST", "/fhir/Patient", b).outcome(t, http.StatusBadRequest)
	}
}

// internal/fhir/validate does not enforce the narrative rules (txt-1,
// txt-2): script elements, event-handler attributes and non-XHTML content
// in Narrative.div are accepted and later served to clients.
func TestBugValidateNarrativeScript(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, div := range []string{
		`<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>`,
		`<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"x\" onerror=\"alert(1)\"/></div>`,
	} {
		e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"`+div+`"}}`).outcome(t, http.StatusBadRequest)
	}
}

// The R4 integer grammar is -?([0]|([1-9][0-9]*)) (datatypes.html): "-0"
// is an integer. unsignedInt ([0]|([1-9][0-9]*)) and positiveInt
// ([1-9][0-9]*) have no sign.
func TestValidateIntegerMinusZero(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","multipleBirthInteger":-0}`).expect(t, http.StatusCreated)
	e.do("POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":-0}`).expect(t, http.StatusCreated)
	e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","extension":[{"url":"http://example.org/u","valueUnsignedInt":-0}]}`).outcome(t, http.StatusBadRequest)
	e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","extension":[{"url":"http://example.org/u","valuePositiveInt":-0}]}`).outcome(t, http.StatusBadRequest)
}
