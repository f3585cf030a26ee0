package search

import (
	"errors"
	"net/url"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

// FuzzParse feeds arbitrary query strings to Parse and ParseConditional:
// they must never panic, and every error must be a 4xx *outcome.Error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name=x", "name:exact=a\\,b,c", "code=http://loinc.org|1234-5", "code=|x", "code:not=a,b",
		"identifier:of-type=a|b|c", "subject=Patient/1", "subject=http://example.org/fhir/Patient/1",
		"subject:Patient.name=x", "patient.birthdate=ge2000", "_has:Observation:patient:code=1",
		"birthdate=ap2015-01", "date=lt2015-06-15T10:30:00+02:00", "probability=1.0e2", "value-quantity=le5.4|http://u|mg",
		"code-value-quantity=a|b$gt5||mg", "url:below=http://x", "_sort=-date,_id&_count=5&_total=none",
		"_include=Observation:subject:Patient&_revinclude:iterate=Provenance:target", "_summary=count&_elements=a,b",
		"_type=Patient,Observation&_lastUpdated=gt2020", "_id=1&_id:not=2", "x:missing=true&name:missing=false",
		"%zz", "=&&=", "_has:::=", "a.b.c=d", "subject:.x=1", "code-value-quantity=$$$", "\\", "name=\\",
	} {
		f.Add("Observation", s, false)
		f.Add("Patient", s, true)
	}
	f.Add("", "_type=Patient&name=x", false)
	p := newTestParser(f)
	check := func(t *testing.T, what string, err error) {
		if err == nil {
			return
		}
		var oe *outcome.Error
		if !errors.As(err, &oe) {
			t.Fatalf("%s: error %T (%v) is not *outcome.Error", what, err, err)
		}
		if oe.Status < 400 || oe.Status >= 500 || len(oe.Issues) == 0 || oe.Issues[0].Diagnostics == "" {
			t.Fatalf("%s: bad error %+v", what, oe)
		}
	}
	f.Fuzz(func(t *testing.T, typ, raw string, strict bool) {
		switch typ {
		case "", "Patient", "Observation", "RiskAssessment", "ValueSet", "QuestionnaireResponse":
		default:
			typ = "Observation"
		}
		params, _ := url.ParseQuery(raw)
		r, err := p.Parse(typ, params, strict)
		check(t, raw, err)
		if err == nil {
			// The canonical query must parse again without error.
			_, err2 := p.Parse(typ, r.Canonical, true)
			check(t, "canonical of "+raw, err2)
			if err2 != nil {
				t.Fatalf("canonical %q of %q rejected: %v", r.Canonical.Encode(), raw, err2)
			}
		}
		_, err = p.ParseConditional(typ, raw)
		check(t, "conditional "+raw, err)
	})
}
