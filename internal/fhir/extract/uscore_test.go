package extract

import (
	"encoding/json"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// TestUSCoreParams checks that the US Core SearchParameters loaded with the
// definitions (race, ethnicity, gender-identity, asserted-date,
// discharge-disposition, CareTeam role, Goal description) are compiled by
// the path walker (no FHIRPath fallback) and produce the index rows their
// expressions define.
func TestUSCoreParams(t *testing.T) {
	e := newTestExtractor(t)
	for _, f := range e.Fallbacks() {
		t.Errorf("fallback %s.%s", f.ResourceType, f.Code)
	}
	cases := []struct {
		name, body, param string
		tokens            []string // system|code
		dates             int
	}{
		{"race", `{"resourceType":"Patient","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[
			{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3"}},
			{"url":"detailed","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2108-9"}},
			{"url":"text","valueString":"White"}]}]}`, "race", []string{"|2106-3", "|2108-9"}, 0},
		{"ethnicity", `{"resourceType":"Patient","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity","extension":[
			{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2186-5"}}]},
			{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"code":"2106-3"}}]}]}`,
			"ethnicity", []string{"|2186-5"}, 0},
		{"gender-identity", `{"resourceType":"Patient","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-genderIdentity",
			"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"446141000124107"}]}}]}`,
			"gender-identity", []string{"|446141000124107"}, 0},
		{"asserted-date", `{"resourceType":"Condition","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/condition-assertedDate","valueDateTime":"2020-01-02"}]}`,
			"asserted-date", nil, 1},
		{"discharge-disposition", `{"resourceType":"Encounter","hospitalization":{"dischargeDisposition":{"coding":[{"system":"http://www.nubc.org/patient-discharge","code":"01"}]}}}`,
			"discharge-disposition", []string{"http://www.nubc.org/patient-discharge|01"}, 0},
		{"careteam-role", `{"resourceType":"CareTeam","participant":[{"role":[{"coding":[{"system":"http://snomed.info/sct","code":"223366009"}]}]}]}`,
			"role", []string{"http://snomed.info/sct|223366009"}, 0},
		{"goal-description", `{"resourceType":"Goal","description":{"coding":[{"system":"http://snomed.info/sct","code":"281004"}],"text":"x"}}`,
			"description", []string{"http://snomed.info/sct|281004"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var res map[string]any
			if err := json.Unmarshal([]byte(c.body), &res); err != nil {
				t.Fatal(err)
			}
			ix, err := e.Extract(res)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range ix.Tokens {
				if r.Param == c.param && r.Code != "" {
					got = append(got, r.System+"|"+r.Code)
				}
			}
			if len(got) != len(c.tokens) {
				t.Fatalf("%s tokens = %v, want %v", c.param, got, c.tokens)
			}
			for i := range got {
				if got[i] != c.tokens[i] {
					t.Errorf("%s tokens = %v, want %v", c.param, got, c.tokens)
				}
			}
			if n := countDates(ix, c.param); n != c.dates {
				t.Errorf("%s dates = %d, want %d", c.param, n, c.dates)
			}
		})
	}
}

func countDates(ix store.Index, param string) int {
	n := 0
	for _, r := range ix.Dates {
		if r.Param == param {
			n++
		}
	}
	return n
}
