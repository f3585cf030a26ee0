package extract

import (
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

// Code systems of "code" elements.
//
// A code element (Patient.gender, Observation.status) carries no system in
// the instance, but its required binding fixes one: FHIR R4 search.html
// lets clients search gender=http://hl7.org/fhir/administrative-gender|male,
// and the certification suite repeats every token search as system|code. The
// extractor therefore indexes such codes with the code system of the bound
// value set.
//
// The registry records only the bound value set's URL, so the system is
// derived from the R4 core convention (http://hl7.org/fhir/ValueSet/X
// includes the codes of http://hl7.org/fhir/X) with the exceptions below,
// taken from the R4 core value set definitions (compose.include.system)
// for every value set that a required binding of a code element names.

// codeSystemOf lists the R4 core value sets, bound (required) to code
// elements, whose single code system does not follow the convention.
var codeSystemOf = map[string]string{
	"http://hl7.org/fhir/ValueSet/care-plan-activity-kind":        "http://hl7.org/fhir/resource-types",
	"http://hl7.org/fhir/ValueSet/care-plan-intent":               "http://hl7.org/fhir/request-intent",
	"http://hl7.org/fhir/ValueSet/clinicalimpression-status":      "http://hl7.org/fhir/event-status",
	"http://hl7.org/fhir/ValueSet/currencies":                     "urn:iso:std:iso:4217",
	"http://hl7.org/fhir/ValueSet/immunization-evaluation-status": "http://terminology.hl7.org/CodeSystem/medication-admin-status",
	"http://hl7.org/fhir/ValueSet/immunization-status":            "http://hl7.org/fhir/event-status",
	"http://hl7.org/fhir/ValueSet/medication-admin-status":        "http://terminology.hl7.org/CodeSystem/medication-admin-status",
	"http://hl7.org/fhir/ValueSet/medication-statement-status":    "http://hl7.org/fhir/CodeSystem/medication-statement-status",
	"http://hl7.org/fhir/ValueSet/medication-status":              "http://hl7.org/fhir/CodeSystem/medication-status",
	"http://hl7.org/fhir/ValueSet/medicationdispense-status":      "http://terminology.hl7.org/CodeSystem/medicationdispense-status",
	"http://hl7.org/fhir/ValueSet/medicationknowledge-status":     "http://terminology.hl7.org/CodeSystem/medicationknowledge-status",
	"http://hl7.org/fhir/ValueSet/medicationrequest-intent":       "http://hl7.org/fhir/CodeSystem/medicationrequest-intent",
	"http://hl7.org/fhir/ValueSet/medicationrequest-status":       "http://hl7.org/fhir/CodeSystem/medicationrequest-status",
	"http://hl7.org/fhir/ValueSet/mimetypes":                      "urn:ietf:bcp:13",
	"http://hl7.org/fhir/ValueSet/system-restful-interaction":     "http://hl7.org/fhir/restful-interaction",
	"http://hl7.org/fhir/ValueSet/type-restful-interaction":       "http://hl7.org/fhir/restful-interaction",
	"http://hl7.org/fhir/ValueSet/units-of-time":                  "http://unitsofmeasure.org",
	"http://hl7.org/fhir/ValueSet/verificationresult-status":      "http://hl7.org/fhir/CodeSystem/status",
}

// multiSystem lists the R4 core value sets, bound (required) to code
// elements, that include several code systems: their codes are indexed
// without a system.
var multiSystem = map[string]bool{
	"http://hl7.org/fhir/ValueSet/all-types":     true,
	"http://hl7.org/fhir/ValueSet/defined-types": true,
	"http://hl7.org/fhir/ValueSet/event-timing":  true,
	"http://hl7.org/fhir/ValueSet/task-intent":   true,
}

const coreValueSetPrefix = "http://hl7.org/fhir/ValueSet/"

// codeSystem returns the code system implied by a code element's binding,
// or "" when the binding is not required or names no single known system.
func codeSystem(b *definitions.Binding) string {
	if b == nil || b.Strength != "required" {
		return ""
	}
	vs := b.ValueSet
	if i := strings.IndexByte(vs, '|'); i >= 0 {
		vs = vs[:i]
	}
	if s, ok := codeSystemOf[vs]; ok {
		return s
	}
	if multiSystem[vs] {
		return ""
	}
	name, ok := strings.CutPrefix(vs, coreValueSetPrefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return ""
	}
	return "http://hl7.org/fhir/" + name
}
