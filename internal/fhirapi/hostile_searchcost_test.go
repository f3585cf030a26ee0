package fhirapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestHostileCost extends the hostile-input class to requests whose
// database work grows with their input: many OR values of composite,
// chained, _has and scanning parameters, many chains, sorts and includes.
// Past the search cost bound each is a 400 too-costly OperationOutcome
// that names the parameter to reduce — as a search (GET and POST), as the
// criteria of a conditional interaction, and as a batch entry — and
// nothing is stored; under the bound it is answered.
func TestHostileSearchCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","name":[{"family":"Chalmers"}]}`).expect(t, http.StatusCreated)
	e.do("PUT", "/fhir/Observation/o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/p1"},`+
		`"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`).expect(t, http.StatusCreated)
	list := func(n int, f func(i int) string) string {
		v := make([]string, n)
		for i := range v {
			v[i] = f(i)
		}
		return url.QueryEscape(strings.Join(v, ","))
	}
	code := func(i int) string { return fmt.Sprintf("c%d", i) }
	comp := func(i int) string { return fmt.Sprintf("8480-6$gt%d", i) }
	chains := func(n int) string { return strings.TrimSuffix(strings.Repeat("subject:Patient.name=x&", n), "&") }
	for _, c := range []struct {
		name, typ, query, worst string
		ok                      bool // under the bound: answered
	}{
		{"composite 511", "Observation", "component-code-value-quantity=" + list(511, comp), "component-code-value-quantity", false},
		{"composite 255", "Observation", "component-code-value-quantity=" + list(255, comp), "", true},
		{"chain 511", "Observation", "subject:Patient.name=" + list(511, code), "subject:Patient.name", false},
		{"chain 100", "Observation", "subject:Patient.name=" + list(100, code), "", true},
		{"_has 511", "Patient", "_has:Observation:subject:code=" + list(511, code), "_has:Observation:subject:code", false},
		{"_has 100", "Patient", "_has:Observation:subject:code=" + list(100, code), "", true},
		{"contains 200", "Patient", "name:contains=" + list(200, code), "name:contains", false},
		{"contains 100", "Patient", "name:contains=" + list(100, code), "", true},
		{"text 200", "Observation", "code:text=" + list(200, code), "code:text", false},
		{"missing 200", "Patient", "name:missing=" + list(200, func(int) string { return "true" }), "name:missing", false},
		{"64 chains", "Observation", chains(64), "subject:Patient.name", false},
		{"16 chains", "Observation", chains(16), "", true},
		{"iterate wildcards", "Observation", "code=x" + strings.Repeat("&_include:iterate=Observation:*", 13), "_include", false},
		{"tokens 512", "Observation", "code=" + list(512, code), "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			check := func(how string, r *resp) {
				t.Helper()
				if c.ok {
					if r.code != http.StatusOK {
						t.Errorf("%s: %d, want 200: %.300s", how, r.code, r.body)
					}
					return
				}
				if r.code != http.StatusBadRequest || !strings.Contains(string(r.body), `"too-costly"`) || !strings.Contains(string(r.body), c.worst+" accounts for") {
					t.Errorf("%s: %d, want a too-costly 400 naming %s: %.400s", how, r.code, c.worst, r.body)
					return
				}
				checkOutcomeEcho(t, r, c.worst)
			}
			before := e.versionCount(t)
			check("GET", e.do("GET", "/fhir/"+c.typ+"?"+c.query, ""))
			check("POST _search", e.do("POST", "/fhir/"+c.typ+"/_search", c.query, "Content-Type: application/x-www-form-urlencoded"))
			if c.ok {
				return
			}
			raw, _ := url.QueryUnescape(c.query)
			check("conditional delete", e.do("DELETE", "/fhir/"+c.typ+"?"+c.query, ""))
			check("If-None-Exist", e.do("POST", "/fhir/"+c.typ, `{"resourceType":"`+c.typ+`","status":"final","code":{"text":"x"}}`, "If-None-Exist: "+raw))
			b := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"`+c.typ+"?"+c.query+`"}}]}`)
			if b.code != http.StatusOK || !strings.Contains(string(b.body), `"400 Bad Request"`) || !strings.Contains(string(b.body), `"too-costly"`) {
				t.Errorf("batch entry: %d %.400s", b.code, b.body)
			}
			if after := e.versionCount(t); after != before {
				t.Errorf("refused requests stored %d versions", after-before)
			}
		})
	}
}
