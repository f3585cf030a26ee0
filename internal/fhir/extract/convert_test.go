package extract

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("bad test JSON: %v", err)
	}
	return m
}

// rowsOf returns the dumped rows of the given parameters (exact code or
// "code$n"), sorted.
func rowsOf(x store.Index, params ...string) []string {
	want := map[string]bool{}
	for _, p := range params {
		want[p] = true
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(dumpIndex(x)), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && want[f[1]] {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func checkRows(t *testing.T, res string, params []string, want ...string) {
	t.Helper()
	e := newTestExtractor(t)
	idx, err := e.Extract(decode(t, res))
	if err != nil {
		t.Fatal(err)
	}
	got := rowsOf(idx, params...)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows of %v:\ngot:\n  %s\nwant:\n  %s", params, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

func dateRange(lo, hi int64) string { return formatInt(lo) + ".." + formatInt(hi) }

func TestStringHumanNameAddress(t *testing.T) {
	res := `{"resourceType":"Patient","id":"p1",
	  "name":[{"family":"Müller","given":["Anna  Lena","B"],"prefix":["Dr."],"suffix":["III"],"text":"Dr. Anna Müller"}],
	  "address":[{"line":["1 Main St","Apt 2"],"city":"Zürich","district":"ZH","state":"Zurich","postalCode":"8000","country":"CH","text":"somewhere"}]}`
	checkRows(t, res, []string{"name"},
		`string name g0 "muller" "Müller"`,
		`string name g0 "anna lena" "Anna  Lena"`,
		`string name g0 "b" "B"`,
		`string name g0 "dr." "Dr."`,
		`string name g0 "iii" "III"`,
		`string name g0 "dr. anna muller" "Dr. Anna Müller"`)
	checkRows(t, res, []string{"family", "given"},
		`string family g0 "muller" "Müller"`,
		`string given g0 "anna lena" "Anna  Lena"`,
		`string given g0 "b" "B"`)
	checkRows(t, res, []string{"address", "address-city", "address-postalcode"},
		`string address g0 "1 main st" "1 Main St"`,
		`string address g0 "apt 2" "Apt 2"`,
		`string address g0 "zurich" "Zürich"`,
		`string address g0 "zh" "ZH"`,
		`string address g0 "zurich" "Zurich"`,
		`string address g0 "8000" "8000"`,
		`string address g0 "ch" "CH"`,
		`string address g0 "somewhere" "somewhere"`,
		`string address-city g0 "zurich" "Zürich"`,
		`string address-postalcode g0 "8000" "8000"`)
}

func TestStringPrimitive(t *testing.T) {
	checkRows(t, `{"resourceType":"Organization","name":"Acme  Health","alias":["ACME","  x "]}`, []string{"name"},
		`string name g0 "acme health" "Acme  Health"`,
		`string name g0 "acme" "ACME"`,
		`string name g0 "x" "  x "`)
}

func TestTokenTypes(t *testing.T) {
	res := `{"resourceType":"Patient","id":"p1","active":true,"gender":"female",
	  "identifier":[{"system":"urn:mrn","value":"123","type":{"text":"Medical Record","coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}},
	                {"system":"urn:ssn","value":"999","type":{"coding":[{"code":"SS","display":"Social Security"}]}},
	                {"use":"official"}],
	  "telecom":[{"system":"phone","value":"555-1234"},{"system":"email","value":"a@b.org"}],
	  "communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"en","display":"English"}],"text":"English"}},
	                   {"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"fr"}],"text":"Français"}},
	                   {"language":{"text":"Klingon"}}],
	  "meta":{"tag":[{"system":"urn:t","code":"x","display":"X Tag"}],"security":[{"system":"urn:s","code":"R"}]}}`
	checkRows(t, res, []string{"active", "gender"},
		`token active g0 |true ""`,
		`token gender g0 http://hl7.org/fhir/administrative-gender|female ""`)
	checkRows(t, res, []string{"identifier", "identifier:of-type"},
		`token identifier g0 urn:mrn|123 "medical record"`,
		`token identifier g0 urn:ssn|999 "social security"`,
		`token identifier:of-type g0 http://terminology.hl7.org/CodeSystem/v2-0203|MR|123 ""`,
		`token identifier:of-type g0 |SS|999 ""`)
	checkRows(t, res, []string{"telecom", "phone", "email"},
		`token telecom g0 |555-1234 ""`,
		`token telecom g0 |a@b.org ""`,
		`token phone g0 |555-1234 ""`,
		`token email g0 |a@b.org ""`)
	checkRows(t, res, []string{"language"},
		`token language g0 urn:ietf:bcp:47|en "english"`,
		`token language g0 urn:ietf:bcp:47|fr "francais"`,
		`token language g0 | "klingon"`)
	checkRows(t, res, []string{"_tag", "_security"},
		`token _tag g0 urn:t|x "x tag"`,
		`token _security g0 urn:s|R ""`)
}

func TestTokenDeceased(t *testing.T) {
	checkRows(t, `{"resourceType":"Patient"}`, []string{"deceased"}, `token deceased g0 |false ""`)
	checkRows(t, `{"resourceType":"Patient","deceasedBoolean":false}`, []string{"deceased"}, `token deceased g0 |false ""`)
	checkRows(t, `{"resourceType":"Patient","deceasedBoolean":true}`, []string{"deceased"}, `token deceased g0 |true ""`)
	checkRows(t, `{"resourceType":"Patient","deceasedDateTime":"2020-01-01"}`, []string{"deceased"}, `token deceased g0 |true ""`)
}

func TestReference(t *testing.T) {
	res := `{"resourceType":"Observation","status":"final","code":{"text":"x"},
	  "subject":{"reference":"Patient/123/_history/4"},
	  "performer":[{"reference":"http://localhost:8080/fhir/Practitioner/p9"},
	               {"reference":"http://other.org/fhir/Organization/o1"},
	               {"reference":"#contained1"},
	               {"identifier":{"system":"urn:x","value":"1"}},
	               {"reference":"urn:uuid:0b4e4e0e-3c2b-4b2e-9d8f-1a2b3c4d5e6f"}],
	  "focus":[{"reference":"Group/g1"}],
	  "hasMember":[{"reference":"Observation/o2"}]}`
	checkRows(t, res, []string{"subject", "patient", "performer", "has-member"},
		`reference subject g0 Patient/123 Patient/123/_history/4`,
		`reference patient g0 Patient/123 Patient/123/_history/4`,
		`reference performer g0 Practitioner/p9 http://localhost:8080/fhir/Practitioner/p9`,
		`reference performer g0 / http://other.org/fhir/Organization/o1`,
		`reference performer g0 / urn:uuid:0b4e4e0e-3c2b-4b2e-9d8f-1a2b3c4d5e6f`,
		`reference has-member g0 Observation/o2 Observation/o2`)
	// resolve() is Patient: the type part decides, also for absolute URLs
	// and via Reference.type.
	checkRows(t, `{"resourceType":"Observation","subject":{"reference":"Group/1"}}`, []string{"patient", "subject"},
		`reference subject g0 Group/1 Group/1`)
	checkRows(t, `{"resourceType":"Observation","subject":{"reference":"http://other.org/fhir/Patient/7"}}`, []string{"patient"},
		`reference patient g0 / http://other.org/fhir/Patient/7`)
	checkRows(t, `{"resourceType":"Observation","subject":{"reference":"urn:uuid:1","type":"Patient"}}`, []string{"patient"},
		`reference patient g0 / urn:uuid:1`)
}

func TestReferenceCanonical(t *testing.T) {
	res := `{"resourceType":"PlanDefinition","status":"active",
	  "relatedArtifact":[{"type":"depends-on","resource":"http://x.org/Library/lib|1.0"},{"type":"successor","resource":"http://x.org/PlanDefinition/p2"}],
	  "library":["http://x.org/Library/main|2"]}`
	checkRows(t, res, []string{"depends-on", "successor"},
		`reference depends-on g0 / http://x.org/Library/lib`,
		`reference depends-on g0 / http://x.org/Library/main`,
		`reference successor g0 / http://x.org/PlanDefinition/p2`)
}

func TestDate(t *testing.T) {
	checkRows(t, `{"resourceType":"Patient","birthDate":"1974-12-25"}`, []string{"birthdate"},
		`date birthdate g0 `+dateRange(ms("1974-12-25T00:00:00Z"), ms("1974-12-25T23:59:59.999Z")))
	checkRows(t, `{"resourceType":"Patient","birthDate":"1974-13-25"}`, []string{"birthdate"})
	checkRows(t, `{"resourceType":"Encounter","period":{"start":"2020-01-01T10:00:00Z","end":"2020-01-02"}}`, []string{"date"},
		`date date g0 `+dateRange(ms("2020-01-01T10:00:00Z"), ms("2020-01-02T23:59:59.999Z")))
	checkRows(t, `{"resourceType":"Encounter","period":{"start":"2020-01-01T10:00:00+02:00"}}`, []string{"date"},
		`date date g0 `+dateRange(ms("2020-01-01T08:00:00Z"), store.MaxTime))
	checkRows(t, `{"resourceType":"Encounter","period":{"end":"2020"}}`, []string{"date"},
		`date date g0 `+dateRange(store.MinTime, ms("2020-12-31T23:59:59.999Z")))
	checkRows(t, `{"resourceType":"Encounter","period":{}}`, []string{"date"})
	// Timing: events and repeat.boundsPeriod.
	checkRows(t, `{"resourceType":"CarePlan","activity":[{"detail":{"scheduledTiming":{"event":["2021-03-04"],"repeat":{"boundsPeriod":{"start":"2021-01-01"}}}}}]}`,
		[]string{"activity-date"},
		`date activity-date g0 `+dateRange(ms("2021-03-04T00:00:00Z"), ms("2021-03-04T23:59:59.999Z")),
		`date activity-date g0 `+dateRange(ms("2021-01-01T00:00:00Z"), store.MaxTime))
	// Choice with ofType: Condition.onset.ofType(dateTime) | Period.
	checkRows(t, `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetPeriod":{"start":"2019-05"}}`, []string{"onset-date"},
		`date onset-date g0 `+dateRange(ms("2019-05-01T00:00:00Z"), store.MaxTime))
	checkRows(t, `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetString":"childhood"}`, []string{"onset-date", "onset-info"},
		`string onset-info g0 "childhood" "childhood"`)
}

func TestNumberAndQuantity(t *testing.T) {
	checkRows(t, `{"resourceType":"RiskAssessment","prediction":[{"probabilityDecimal":0.25},{"probabilityRange":{"low":{"value":0.1},"high":{"value":0.3}}}]}`,
		[]string{"probability"},
		`number probability g0 0.25..0.25`,
		`number probability g0 0.1..0.3`)
	checkRows(t, `{"resourceType":"Observation","valueQuantity":{"value":5.4,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}}`,
		[]string{"value-quantity"},
		`quantity value-quantity g0 5.4..5.4 http://unitsofmeasure.org|mmol/L "mmol/L"`)
	checkRows(t, `{"resourceType":"Observation","valueQuantity":{"unit":"mmol/L"}}`, []string{"value-quantity"})
	checkRows(t, `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":52,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}}`,
		[]string{"onset-age"},
		`quantity onset-age g0 52..52 http://unitsofmeasure.org|a "a"`)
	checkRows(t, `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetRange":{"low":{"value":10,"unit":"a","code":"a"}}}`,
		[]string{"onset-age"},
		`quantity onset-age g0 10..1.7976931348623157e+308 |a "a"`)
	checkRows(t, `{"resourceType":"ChargeItem","priceOverride":{"value":12.5,"currency":"EUR"}}`, []string{"price-override"},
		`quantity price-override g0 12.5..12.5 urn:iso:std:iso:4217|EUR "EUR"`)
	checkRows(t, `{"resourceType":"Observation","valueSampledData":{"origin":{"value":1},"period":1,"dimensions":1}}`, []string{"value-quantity"})
}

func TestURI(t *testing.T) {
	checkRows(t, `{"resourceType":"ValueSet","url":"http://x.org/vs","status":"active","meta":{"profile":["http://x.org/sd|1.0"],"source":"http://src"}}`,
		[]string{"url", "_profile", "_source"},
		`uri url g0 http://x.org/vs`,
		`uri _profile g0 http://x.org/sd|1.0`,
		`uri _profile g0 http://x.org/sd`,
		`uri _source g0 http://src`)
}

func TestComposite(t *testing.T) {
	res := `{"resourceType":"Observation","status":"final",
	  "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
	  "component":[
	    {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
	    {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
	    {"code":{"coding":[{"system":"http://loinc.org","code":"x"}]},"valueString":"n/a"}]}`
	checkRows(t, res, []string{"component-code-value-quantity$1", "component-code-value-quantity$2"},
		`token component-code-value-quantity$1 g1 http://loinc.org|8480-6 ""`,
		`quantity component-code-value-quantity$2 g1 120..120 http://unitsofmeasure.org|mm[Hg] "mmHg"`,
		`token component-code-value-quantity$1 g2 http://loinc.org|8462-4 ""`,
		`quantity component-code-value-quantity$2 g2 80..80 http://unitsofmeasure.org|mm[Hg] "mmHg"`)
	// The Observation itself has no value: no code-value-quantity group.
	checkRows(t, res, []string{"code-value-quantity$1", "code-value-quantity$2"})
	// combo: the Observation (no value) and its components.
	checkRows(t, res, []string{"combo-code-value-quantity$1"},
		`token combo-code-value-quantity$1 g1 http://loinc.org|8480-6 ""`,
		`token combo-code-value-quantity$1 g2 http://loinc.org|8462-4 ""`)
	checkRows(t, `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}]},"valueDateTime":"2020-02-02"}`,
		[]string{"code-value-date$1", "code-value-date$2"},
		`token code-value-date$1 g1 s|c ""`,
		`date code-value-date$2 g1 `+dateRange(ms("2020-02-02T00:00:00Z"), ms("2020-02-02T23:59:59.999Z")))
	// %resource inside a component expression.
	checkRows(t, `{"resourceType":"MolecularSequence","type":"dna","coordinateSystem":0,
	  "referenceSeq":{"chromosome":{"coding":[{"system":"s","code":"1"}]}},
	  "variant":[{"start":10,"end":20},{"start":30,"end":40}]}`,
		[]string{"chromosome-variant-coordinate$1", "chromosome-variant-coordinate$2", "chromosome-variant-coordinate$3"},
		`token chromosome-variant-coordinate$1 g1 s|1 ""`,
		`number chromosome-variant-coordinate$2 g1 10..10`,
		`number chromosome-variant-coordinate$3 g1 20..20`,
		`token chromosome-variant-coordinate$1 g2 s|1 ""`,
		`number chromosome-variant-coordinate$2 g2 30..30`,
		`number chromosome-variant-coordinate$3 g2 40..40`)
}

func TestSkipped(t *testing.T) {
	e := newTestExtractor(t)
	idx, err := e.Extract(decode(t, `{"resourceType":"Location","id":"l1","meta":{"lastUpdated":"2020-01-01T00:00:00Z"},"position":{"longitude":1,"latitude":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(idx, "_id", "_lastUpdated", "near"); len(got) != 0 {
		t.Errorf("unexpected rows %v", got)
	}
	if _, err := e.Extract(decode(t, `{"resourceType":"Nonsense"}`)); err == nil {
		t.Error("expected an error for an unknown resource type")
	}
	if _, err := e.Extract(map[string]any{}); err == nil {
		t.Error("expected an error without resourceType")
	}
}

func TestOddValues(t *testing.T) {
	// Wrong JSON shapes must be skipped, not panic or fail.
	res := `{"resourceType":"Observation","code":"oops","subject":["x"],"status":7,
	  "category":[null,{"coding":{"system":"s","code":"c"}}],"valueQuantity":{"value":"abc"},
	  "effectivePeriod":{"start":5},"component":{"code":{"coding":[{"code":"c"}]},"valueQuantity":{"value":1}}}`
	e := newTestExtractor(t)
	idx, err := e.Extract(decode(t, res))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", dumpIndex(idx))
}

func TestNormalizeFastPath(t *testing.T) {
	for _, s := range []string{"", "abc", "ABC def", "  a  b  ", "a\tb\nc", "x ", " x", "Zürich", "a\u00a0b", "a\u0085b", "\v\f", "MIXED case 123 !?"} {
		if got, want := normalize(s), store.NormalizeString(s); got != want {
			t.Errorf("normalize(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add("Hello  World")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := normalize(s), store.NormalizeString(s); got != want {
			t.Errorf("normalize(%q) = %q, want %q", s, got, want)
		}
	})
}

func TestSplitReference(t *testing.T) {
	cases := []struct{ in, typ, id string }{
		{"Patient/1", "Patient", "1"},
		{"Patient/1/_history/2", "Patient", "1"},
		{"http://x/fhir/Patient/a.b-c/_history/2", "Patient", "a.b-c"},
		{"urn:uuid:123", "", ""},
		{"patient/1", "", ""},
		{"Patient/", "", ""},
		{"Patient/1/foo", "", ""},
		{"#x", "", ""},
	}
	for _, c := range cases {
		typ, id, _ := splitReference(c.in)
		if typ != c.typ || id != c.id {
			t.Errorf("splitReference(%q) = %q %q, want %q %q", c.in, typ, id, c.typ, c.id)
		}
	}
}

func TestDocumentReferenceRelationship(t *testing.T) {
	// R4 defines the components of DocumentReference-relationship in the
	// wrong order (reference -> code, token -> target); both are indexed.
	checkRows(t, `{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"url":"http://x"}}],
	  "relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/d0"}}]}`,
		[]string{"relationship$1", "relationship$2", "relatesto", "relation"},
		`reference relationship$1 g1 /replaces replaces`,
		`token relationship$2 g1 |DocumentReference/d0 ""`,
		`reference relatesto g0 DocumentReference/d0 DocumentReference/d0`,
		`token relation g0 http://hl7.org/fhir/document-relationship-type|replaces ""`)
}
