package fhirapi

import (
	"net/http"
	"testing"
	"time"
)

// FuzzCreate posts arbitrary bodies to POST /fhir/Patient: the server must
// never answer 5xx, and every non-201 answer must be an OperationOutcome.
func FuzzCreate(f *testing.F) {
	f.Add(`{"resourceType":"Patient","name":[{"family":"A"}]}`)
	f.Add(`{"resourceType":"Patient","birthDate":"2000-13-01"}`)
	f.Add(`{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":1e400}]}`)
	f.Add(`{"resourceType":"Patient","meta":"x"}`)
	f.Add(`{"resourceType":"Patient","id":123,"contained":[{"resourceType":"Patient","id":"c"}]}`)
	f.Add(`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script/></div>"}}`)
	f.Add(`{"resourceType":"Patient","managingOrganization":{"reference":"Organization?name=x"}}`)
	f.Add(`[]`)
	f.Add(`{"resourceType":"Patient","_active":{"extension":[]}}`)
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, body string) {
		start := time.Now()
		r := e.do("POST", "/fhir/Patient", body, "Content-Type: application/fhir+json")
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v for %q", d, body)
		}
		if r.code >= 500 {
			t.Fatalf("status %d for %q: %s", r.code, body, r.body)
		}
		if r.code != http.StatusCreated {
			r.outcome(t, r.code)
		}
	})
}
