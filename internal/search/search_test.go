package search

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

const testBase = "http://example.org/fhir"

var (
	regOnce sync.Once
	reg     *definitions.Registry
	regErr  error
)

// fixedNow is the clock of test parsers.
var fixedNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestParser(t testing.TB) *Parser {
	t.Helper()
	regOnce.Do(func() { reg, regErr = definitions.Load() })
	if regErr != nil {
		t.Fatalf("definitions.Load: %v", regErr)
	}
	p := NewParser(reg, testBase+"/", 100, 20)
	p.now = func() time.Time { return fixedNow }
	return p
}

func mustQuery(t testing.TB, raw string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", raw, err)
	}
	return v
}

func parseOK(t *testing.T, p *Parser, typ, raw string, strict bool) *Request {
	t.Helper()
	r, err := p.Parse(typ, mustQuery(t, raw), strict)
	if err != nil {
		t.Fatalf("Parse(%q, %q): unexpected error %v", typ, raw, err)
	}
	return r
}

func ms(s string) float64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return float64(t.UnixMilli())
}

func ptr[T any](v T) *T { return &v }

// one returns the single predicate of a single-clause query.
func one(t *testing.T, r *Request) store.Predicate {
	t.Helper()
	if len(r.Query.Where) != 1 || len(r.Query.Where[0].Any) != 1 {
		t.Fatalf("want one clause with one predicate, got %+v", r.Query.Where)
	}
	return r.Query.Where[0].Any[0]
}

func TestPredicates(t *testing.T) {
	p := newTestParser(t)
	cases := []struct {
		name  string
		typ   string
		query string
		want  []store.Clause
	}{
		{"string default", "Patient", "name=Jos%C3%A9%20%20Smith",
			[]store.Clause{{Any: []store.Predicate{{Param: "name", String: &store.StringMatch{Value: "jose smith", Mode: store.StringPrefix}}}}}},
		{"string exact", "Patient", "name:exact=Jos%C3%A9",
			[]store.Clause{{Any: []store.Predicate{{Param: "name", String: &store.StringMatch{Value: "José", Mode: store.StringExact}}}}}},
		{"string contains", "Patient", "family:contains=MITH",
			[]store.Clause{{Any: []store.Predicate{{Param: "family", String: &store.StringMatch{Value: "mith", Mode: store.StringContains}}}}}},
		{"string OR with escaped comma", "Patient", `name=a\,b,c`,
			[]store.Clause{{Any: []store.Predicate{
				{Param: "name", String: &store.StringMatch{Value: "a,b"}},
				{Param: "name", String: &store.StringMatch{Value: "c"}},
			}}}},
		{"string AND by repetition", "Patient", "given=a&given=b",
			[]store.Clause{
				{Any: []store.Predicate{{Param: "given", String: &store.StringMatch{Value: "a"}}}},
				{Any: []store.Predicate{{Param: "given", String: &store.StringMatch{Value: "b"}}}},
			}},
		{"token code", "Observation", "code=1234-5",
			[]store.Clause{{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{Code: "1234-5"}}}}}},
		{"token system|code", "Observation", "code=http://loinc.org|1234-5",
			[]store.Clause{{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{System: ptr("http://loinc.org"), Code: "1234-5"}}}}}},
		{"token |code", "Observation", "code=|1234-5",
			[]store.Clause{{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{System: ptr(""), Code: "1234-5"}}}}}},
		{"token system|", "Observation", "code=http://loinc.org|",
			[]store.Clause{{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{System: ptr("http://loinc.org"), Code: ""}}}}}},
		{"token escaped pipe", "Patient", `identifier=a\|b`,
			[]store.Clause{{Any: []store.Predicate{{Param: "identifier", Token: &store.TokenMatch{Code: "a|b"}}}}}},
		{"token escaped backslash then pipe", "Patient", `identifier=a\\|b`,
			[]store.Clause{{Any: []store.Predicate{{Param: "identifier", Token: &store.TokenMatch{System: ptr(`a\`), Code: "b"}}}}}},
		{"token not", "Patient", "gender:not=male,female",
			[]store.Clause{{Negate: true, Any: []store.Predicate{
				{Param: "gender", Token: &store.TokenMatch{Code: "male"}},
				{Param: "gender", Token: &store.TokenMatch{Code: "female"}},
			}}}},
		{"token text", "Observation", "code:text=Blood%20Pressure",
			[]store.Clause{{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{Text: true, Code: "blood pressure"}}}}}},
		{"token of-type", "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053",
			[]store.Clause{{Any: []store.Predicate{{Param: "identifier", Token: &store.TokenMatch{OfType: true,
				System: ptr("http://terminology.hl7.org/CodeSystem/v2-0203"), Code: "MR", Value: "446053"}}}}}},
		{"_id", "Patient", "_id=a,b",
			[]store.Clause{{Any: []store.Predicate{{Param: "_id", ID: ptr("a")}, {Param: "_id", ID: ptr("b")}}}}},
		{"_id not", "Patient", "_id:not=a",
			[]store.Clause{{Negate: true, Any: []store.Predicate{{Param: "_id", ID: ptr("a")}}}}},
		{"_tag", "Patient", "_tag=http://s|c",
			[]store.Clause{{Any: []store.Predicate{{Param: "_tag", Token: &store.TokenMatch{System: ptr("http://s"), Code: "c"}}}}}},
		{"_security", "Patient", "_security=R",
			[]store.Clause{{Any: []store.Predicate{{Param: "_security", Token: &store.TokenMatch{Code: "R"}}}}}},
		{"_profile", "Patient", "_profile=http://p/sd",
			[]store.Clause{{Any: []store.Predicate{{Param: "_profile", URI: &store.URIMatch{Value: "http://p/sd"}}}}}},
		{"_source", "Patient", "_source=http://src",
			[]store.Clause{{Any: []store.Predicate{{Param: "_source", URI: &store.URIMatch{Value: "http://src"}}}}}},
		{"missing true", "Patient", "birthdate:missing=true",
			[]store.Clause{{Any: []store.Predicate{{Param: "birthdate", Missing: ptr(true)}}}}},
		{"missing composite", "Observation", "code-value-quantity:missing=true",
			[]store.Clause{{Any: []store.Predicate{{Param: "code-value-quantity$1", Missing: ptr(true)}}}}},
		{"missing false", "Observation", "subject:missing=false",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Missing: ptr(false)}}}}},
		{"reference id", "Observation", "subject=123",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Reference: &store.ReferenceMatch{TargetID: "123"}}}}}},
		{"reference id single target", "Observation", "patient=123",
			[]store.Clause{{Any: []store.Predicate{{Param: "patient", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "123"}}}}}},
		{"reference type/id", "Observation", "subject=Patient/123",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "123"}}}}}},
		{"reference versioned", "Observation", "subject=Patient/123/_history/4",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "123"}}}}}},
		{"reference type modifier", "Observation", "subject:Patient=123",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "123"}}}}}},
		{"reference local absolute", "Observation", "subject=" + url.QueryEscape(testBase+"/Patient/123"),
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "123"}}}}}},
		{"reference foreign absolute", "Observation", "subject=" + url.QueryEscape("http://other.org/fhir/Patient/123"),
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Reference: &store.ReferenceMatch{URL: "http://other.org/fhir/Patient/123"}}}}}},
		{"reference urn", "Observation", "subject=urn:uuid:0f3c",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Reference: &store.ReferenceMatch{URL: "urn:uuid:0f3c"}}}}}},
		{"reference below", "QuestionnaireResponse", "questionnaire:below=http://q.org/Questionnaire/",
			[]store.Clause{{Any: []store.Predicate{{Param: "questionnaire", Reference: &store.ReferenceMatch{URL: "http://q.org/Questionnaire/", Below: true}}}}}},
		{"reference canonical |version", "QuestionnaireResponse", "questionnaire=http://q.org/Questionnaire/x|2.0",
			[]store.Clause{{Any: []store.Predicate{{Param: "questionnaire", Reference: &store.ReferenceMatch{URL: "http://q.org/Questionnaire/x"}}}}}},
		{"uri", "ValueSet", "url=http://vs.org/a",
			[]store.Clause{{Any: []store.Predicate{{Param: "url", URI: &store.URIMatch{Value: "http://vs.org/a"}}}}}},
		{"uri below", "ValueSet", "url:below=http://vs.org/",
			[]store.Clause{{Any: []store.Predicate{{Param: "url", URI: &store.URIMatch{Value: "http://vs.org/", Below: true}}}}}},
		{"uri above", "ValueSet", "url:above=http://vs.org/a/b",
			[]store.Clause{{Any: []store.Predicate{{Param: "url", URI: &store.URIMatch{Value: "http://vs.org/a/b", Above: true}}}}}},
		{"date day", "Patient", "birthdate=2015-06-15",
			[]store.Clause{{Any: []store.Predicate{{Param: "birthdate", Date: &store.RangeMatch{Prefix: store.PrefixEq,
				Lo: ms("2015-06-15T00:00:00Z"), Hi: ms("2015-06-15T23:59:59.999Z")}}}}}},
		{"date year ge", "Patient", "birthdate=ge2015",
			[]store.Clause{{Any: []store.Predicate{{Param: "birthdate", Date: &store.RangeMatch{Prefix: store.PrefixGe,
				Lo: ms("2015-01-01T00:00:00Z"), Hi: ms("2015-12-31T23:59:59.999Z")}}}}}},
		{"date with offset, + decoded as space", "Observation", "date=lt2015-06-15T10:30:00+02:00",
			[]store.Clause{{Any: []store.Predicate{{Param: "date", Date: &store.RangeMatch{Prefix: store.PrefixLt,
				Lo: ms("2015-06-15T08:30:00Z"), Hi: ms("2015-06-15T08:30:00.999Z")}}}}}},
		{"date range AND", "Observation", "date=ge2015&date=lt2016",
			[]store.Clause{
				{Any: []store.Predicate{{Param: "date", Date: &store.RangeMatch{Prefix: store.PrefixGe, Lo: ms("2015-01-01T00:00:00Z"), Hi: ms("2015-12-31T23:59:59.999Z")}}}},
				{Any: []store.Predicate{{Param: "date", Date: &store.RangeMatch{Prefix: store.PrefixLt, Lo: ms("2016-01-01T00:00:00Z"), Hi: ms("2016-12-31T23:59:59.999Z")}}}},
			}},
		{"_lastUpdated", "Patient", "_lastUpdated=gt2020-01-01T00:00:00Z",
			[]store.Clause{{Any: []store.Predicate{{Param: "_lastUpdated", LastUpdated: &store.RangeMatch{Prefix: store.PrefixGt,
				Lo: ms("2020-01-01T00:00:00Z"), Hi: ms("2020-01-01T00:00:00.999Z")}}}}}},
		{"quantity full", "Observation", "value-quantity=le5.4|http://unitsofmeasure.org|mg",
			[]store.Clause{{Any: []store.Predicate{{Param: "value-quantity", Quantity: &store.QuantityMatch{
				Range: store.RangeMatch{Prefix: store.PrefixLe, Lo: 5.4, Hi: 5.4}, System: "http://unitsofmeasure.org", Code: "mg"}}}}}},
		{"quantity ||code", "Observation", "value-quantity=5.4||mg",
			[]store.Clause{{Any: []store.Predicate{{Param: "value-quantity", Quantity: &store.QuantityMatch{
				Range: store.RangeMatch{Prefix: store.PrefixEq, Lo: 5.35, Hi: math.Nextafter(5.45, 0)}, Code: "mg"}}}}}},
		{"quantity number only", "Observation", "value-quantity=gt5",
			[]store.Clause{{Any: []store.Predicate{{Param: "value-quantity", Quantity: &store.QuantityMatch{
				Range: store.RangeMatch{Prefix: store.PrefixGt, Lo: 5, Hi: 5}}}}}}},
		{"number", "RiskAssessment", "probability=100",
			[]store.Clause{{Any: []store.Predicate{{Param: "probability", Number: &store.RangeMatch{Prefix: store.PrefixEq, Lo: 99.5, Hi: math.Nextafter(100.5, 0)}}}}}},
		{"number ap", "RiskAssessment", "probability=ap100",
			[]store.Clause{{Any: []store.Predicate{{Param: "probability", Number: &store.RangeMatch{Prefix: store.PrefixAp, Lo: 99.5, Hi: math.Nextafter(100.5, 0),
				ApLo: 89.5, ApHi: math.Nextafter(100.5, 0) + 10}}}}}},
		{"composite", "Observation", "code-value-quantity=http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]",
			[]store.Clause{{Any: []store.Predicate{{Param: "code-value-quantity", Composite: []store.Predicate{
				{Param: "code-value-quantity$1", Token: &store.TokenMatch{System: ptr("http://loinc.org"), Code: "8480-6"}},
				{Param: "code-value-quantity$2", Quantity: &store.QuantityMatch{Range: store.RangeMatch{Prefix: store.PrefixGt, Lo: 100, Hi: 100},
					System: "http://unitsofmeasure.org", Code: "mm[Hg]"}},
			}}}}}},
		{"composite escaped $", "Observation", `code-value-string=a\$b$x`,
			[]store.Clause{{Any: []store.Predicate{{Param: "code-value-string", Composite: []store.Predicate{
				{Param: "code-value-string$1", Token: &store.TokenMatch{Code: "a$b"}},
				{Param: "code-value-string$2", String: &store.StringMatch{Value: "x"}},
			}}}}}},
		{"chain with type", "Observation", "subject:Patient.name=peter",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Chain: &store.Chain{TargetType: "Patient",
				Where: store.Clause{Any: []store.Predicate{{Param: "name", String: &store.StringMatch{Value: "peter"}}}}}}}}}},
		{"chain single target", "Observation", "patient.name:exact=Peter",
			[]store.Clause{{Any: []store.Predicate{{Param: "patient", Chain: &store.Chain{TargetType: "Patient",
				Where: store.Clause{Any: []store.Predicate{{Param: "name", String: &store.StringMatch{Value: "Peter", Mode: store.StringExact}}}}}}}}}},
		{"chain resolved by parameter", "Observation", "subject.birthdate=2000",
			[]store.Clause{{Any: []store.Predicate{{Param: "subject", Chain: &store.Chain{TargetType: "Patient",
				Where: store.Clause{Any: []store.Predicate{{Param: "birthdate", Date: &store.RangeMatch{Prefix: store.PrefixEq,
					Lo: ms("2000-01-01T00:00:00Z"), Hi: ms("2000-12-31T23:59:59.999Z")}}}}}}}}}},
		{"chain token not", "Observation", "patient.gender:not=male",
			[]store.Clause{{Any: []store.Predicate{{Param: "patient", Chain: &store.Chain{TargetType: "Patient",
				Where: store.Clause{Negate: true, Any: []store.Predicate{{Param: "gender", Token: &store.TokenMatch{Code: "male"}}}}}}}}}},
		{"has", "Patient", "_has:Observation:patient:code=1234-5",
			[]store.Clause{{Any: []store.Predicate{{Param: "_has", Has: &store.Has{Type: "Observation", RefParam: "patient",
				Where: store.Clause{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{Code: "1234-5"}}}}}}}}}},
		{"has with modifier", "Patient", "_has:Observation:subject:code:text=bp",
			[]store.Clause{{Any: []store.Predicate{{Param: "_has", Has: &store.Has{Type: "Observation", RefParam: "subject",
				Where: store.Clause{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{Code: "bp", Text: true}}}}}}}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := parseOK(t, p, c.typ, c.query, true)
			if !reflect.DeepEqual(r.Query.Where, c.want) {
				t.Errorf("%s?%s\n got %s\nwant %s", c.typ, c.query, dump(r.Query.Where), dump(c.want))
			}
		})
	}
}

func dump(cls []store.Clause) string {
	var b strings.Builder
	for _, c := range cls {
		b.WriteString("{")
		if c.Negate {
			b.WriteString("NOT ")
		}
		for _, pr := range c.Any {
			b.WriteString(dumpPred(pr))
			b.WriteString(" ")
		}
		b.WriteString("} ")
	}
	return b.String()
}

func dumpPred(pr store.Predicate) string {
	var parts []string
	add := func(s string) { parts = append(parts, s) }
	add("param=" + pr.Param)
	if pr.Missing != nil {
		add("missing=" + map[bool]string{true: "true", false: "false"}[*pr.Missing])
	}
	if pr.String != nil {
		add("string" + strings.TrimPrefix(sprint(*pr.String), "store.StringMatch"))
	}
	if pr.Token != nil {
		tm := *pr.Token
		sys := "<nil>"
		if tm.System != nil {
			sys = *tm.System
		}
		add("token{sys=" + sys + " " + sprint(tm) + "}")
	}
	for _, x := range []any{pr.Reference, pr.Date, pr.Number, pr.Quantity, pr.URI, pr.ID, pr.LastUpdated} {
		if !reflect.ValueOf(x).IsNil() {
			add(sprint(reflect.ValueOf(x).Elem().Interface()))
		}
	}
	if pr.Chain != nil {
		add("chain " + pr.Chain.TargetType + " " + dump([]store.Clause{pr.Chain.Where}))
	}
	if pr.Has != nil {
		add("has " + pr.Has.Type + ":" + pr.Has.RefParam + " " + dump([]store.Clause{pr.Has.Where}))
	}
	for _, c := range pr.Composite {
		add("comp[" + dumpPred(c) + "]")
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func TestDatePrecisionAndAp(t *testing.T) {
	p := newTestParser(t)
	r := parseOK(t, p, "Patient", "birthdate=ap2015-01-01", false)
	d := one(t, r).Date
	lo, hi := ms("2015-01-01T00:00:00Z"), ms("2015-01-01T23:59:59.999Z")
	if d.Lo != lo || d.Hi != hi {
		t.Fatalf("range [%v,%v]", d.Lo, d.Hi)
	}
	// Ten years before now: margin is 10% of the distance.
	margin := (float64(fixedNow.UnixMilli()) - (lo+hi)/2) * 0.1
	if math.Abs((lo-d.ApLo)-margin) > 1 || math.Abs((d.ApHi-hi)-margin) > 1 {
		t.Errorf("ap margin: got %v/%v want %v", lo-d.ApLo, d.ApHi-hi, margin)
	}
	// Close to now: at least a day.
	r = parseOK(t, p, "Patient", "birthdate=ap2024-12-31T23:00:00Z", false)
	d = one(t, r).Date
	if d.Lo-d.ApLo != dayMs || d.ApHi-d.Hi != dayMs {
		t.Errorf("ap minimum margin: %v %v", d.Lo-d.ApLo, d.ApHi-d.Hi)
	}
	// Non-ap prefixes do not set the approximation range.
	r = parseOK(t, p, "Patient", "birthdate=sa2015&birthdate=eb2020&birthdate=ne2016&birthdate=le2030", false)
	for _, cl := range r.Query.Where {
		if dd := cl.Any[0].Date; dd.ApLo != 0 || dd.ApHi != 0 {
			t.Errorf("%s: ap range set", dd.Prefix)
		}
	}
}

// TestNumberPrefixRanges pins R4's prefix semantics for numbers and
// quantities: eq, ne and ap use the precision range of the search value,
// the ordering prefixes the exact value ("lt100": less than exactly 100).
func TestNumberPrefixRanges(t *testing.T) {
	p := newTestParser(t)
	lo, hi := 36.5, math.Nextafter(37.5, 0)
	for _, c := range []struct {
		pfx    string
		lo, hi float64
	}{
		{"", lo, hi}, {"eq", lo, hi}, {"ne", lo, hi}, {"ap", lo, hi},
		{"lt", 37, 37}, {"gt", 37, 37}, {"le", 37, 37}, {"ge", 37, 37}, {"sa", 37, 37}, {"eb", 37, 37},
	} {
		n := one(t, parseOK(t, p, "RiskAssessment", "probability="+c.pfx+"37", false)).Number
		q := one(t, parseOK(t, p, "Observation", "value-quantity="+c.pfx+"37||Cel", false)).Quantity.Range
		for _, r := range []*store.RangeMatch{n, &q} {
			if r.Lo != c.lo || r.Hi != c.hi {
				t.Errorf("%q37: range [%v, %v], want [%v, %v]", c.pfx, r.Lo, r.Hi, c.lo, c.hi)
			}
		}
	}
}

func TestNumberPrecision(t *testing.T) {
	cases := []struct {
		in     string
		lo, hi float64
	}{
		{"100", 99.5, 100.5},
		{"100.00", 99.995, 100.005},
		{"1e2", 50, 150},
		{"1.0e2", 95, 105},
		{"0.1", 0.05, 0.15},
		{"-5", -5.5, -4.5},
		{"+7", 6.5, 7.5},
		{".5", 0.45, 0.55},
		{"2.", 1.5, 2.5},
	}
	for _, c := range cases {
		_, lo, hi, ok := parseNumber(c.in)
		if !ok {
			t.Errorf("%s: rejected", c.in)
			continue
		}
		if math.Abs(lo-c.lo) > 1e-9 || math.Abs(hi-c.hi) > 1e-9 || hi >= c.hi+1e-12 {
			t.Errorf("%s: got [%v,%v) want [%v,%v)", c.in, lo, hi, c.lo, c.hi)
		}
	}
	for _, bad := range []string{"", "abc", "1e", "1e999", "--1", "1.2.3", "0x10", "Inf", "NaN", "1,5", " 1"} {
		if _, _, _, ok := parseNumber(bad); ok {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestResultParams(t *testing.T) {
	p := newTestParser(t)
	r := parseOK(t, p, "Observation", "_sort=-date,code,_id,-_lastUpdated&_count=10&_total=none&_summary=true&_elements=code,subject&_elements=code,status", true)
	wantSort := []store.SortKey{{Param: "date", Type: "date", Desc: true}, {Param: "code", Type: "token"}, {Param: "_id", Type: "token"}, {Param: "_lastUpdated", Type: "date", Desc: true}}
	if !reflect.DeepEqual(r.Query.Sort, wantSort) {
		t.Errorf("sort %+v", r.Query.Sort)
	}
	if r.Query.Count != 10 || r.Query.Total != store.TotalNone || r.Summary != "true" {
		t.Errorf("count %d total %v summary %q", r.Query.Count, r.Query.Total, r.Summary)
	}
	if !reflect.DeepEqual(r.Elements, []string{"code", "subject", "status"}) {
		t.Errorf("elements %v", r.Elements)
	}
	// Defaults.
	r = parseOK(t, p, "Observation", "", true)
	if r.Query.Count != 20 || r.Query.Total != store.TotalAccurate || r.Query.Type != "Observation" || len(r.Query.Where) != 0 {
		t.Errorf("defaults: %+v", r.Query)
	}
	// _count clamp.
	r = parseOK(t, p, "Observation", "_count=5000", true)
	if r.Query.Count != 100 || len(r.Warnings) != 1 || r.Canonical.Get("_count") != "100" {
		t.Errorf("clamp: count %d warnings %v canonical %v", r.Query.Count, r.Warnings, r.Canonical)
	}
	// _count=0 and _summary=count.
	r = parseOK(t, p, "Observation", "_count=0", true)
	if r.Query.Count != 0 {
		t.Errorf("_count=0: %d", r.Query.Count)
	}
	r = parseOK(t, p, "Observation", "_summary=count&_count=7", true)
	if r.Query.Count != 0 || r.Summary != "count" {
		t.Errorf("_summary=count: %d", r.Query.Count)
	}
	r = parseOK(t, p, "Observation", "_total=estimate&_offset=40&_sort:desc=date", true)
	if r.Query.Total != store.TotalEstimate || r.Query.Offset != 40 || !r.Query.Sort[0].Desc {
		t.Errorf("%+v", r.Query)
	}
	// _format and _pretty are left to the HTTP layer.
	r = parseOK(t, p, "Observation", "_format=xml&_pretty=true", true)
	if len(r.Canonical) != 0 || len(r.Ignored) != 0 {
		t.Errorf("_format: %v %v", r.Canonical, r.Ignored)
	}
	r = parseOK(t, p, "Observation", "_contained=false&_containedType=container", true)
	if len(r.Ignored) != 0 {
		t.Errorf("_contained default: %v", r.Ignored)
	}
}

func TestIncludes(t *testing.T) {
	p := newTestParser(t)
	r := parseOK(t, p, "Observation", "_include=Observation:subject&_include=Observation:subject:Patient&_include:iterate=Patient:general-practitioner&_revinclude=Provenance:target&_include:recurse=Patient:organization", true)
	want := []store.Include{
		{SourceType: "Observation", Param: "subject"},
		{SourceType: "Observation", Param: "subject", TargetType: "Patient"},
		{SourceType: "Patient", Param: "general-practitioner", Iterate: true},
		{SourceType: "Patient", Param: "organization", Iterate: true},
	}
	if !reflect.DeepEqual(r.Query.Include, want) {
		t.Errorf("include %+v", r.Query.Include)
	}
	if !reflect.DeepEqual(r.Query.RevInclude, []store.Include{{SourceType: "Provenance", Param: "target"}}) {
		t.Errorf("revinclude %+v", r.Query.RevInclude)
	}
	r = parseOK(t, p, "Observation", "_include=*&_include=Observation:*", true)
	if !reflect.DeepEqual(r.Query.Include, []store.Include{{SourceType: "Observation", Param: "*"}, {SourceType: "Observation", Param: "*"}}) {
		t.Errorf("include * %+v", r.Query.Include)
	}
}

func TestSystemLevel(t *testing.T) {
	p := newTestParser(t)
	r := parseOK(t, p, "", "_type=Patient,Observation&_lastUpdated=ge2020&_tag=x", true)
	if r.Query.Type != "" || !reflect.DeepEqual(r.Query.Types, []string{"Patient", "Observation"}) || len(r.Query.Where) != 2 {
		t.Errorf("%+v", r.Query)
	}
	if r.Canonical.Get("_type") != "Patient,Observation" {
		t.Errorf("canonical %v", r.Canonical)
	}
	// Parameter common to the listed types.
	r = parseOK(t, p, "", "_type=Observation,Condition&patient=Patient/1", true)
	if len(r.Query.Where) != 1 {
		t.Errorf("%+v", r.Query)
	}
	// No _type: only Resource-level parameters.
	r = parseOK(t, p, "", "_id=1&_sort=_lastUpdated", true)
	if len(r.Query.Where) != 1 || r.Query.Types != nil || len(r.Query.Sort) != 1 {
		t.Errorf("%+v", r.Query)
	}
	if _, err := p.Parse("", mustQuery(t, "name=x"), true); err == nil {
		t.Error("system-level name accepted in strict mode")
	}
	r = parseOK(t, p, "", "name=x", false)
	if !reflect.DeepEqual(r.Ignored, []string{"name"}) {
		t.Errorf("ignored %v", r.Ignored)
	}
}

func TestLenientIgnored(t *testing.T) {
	p := newTestParser(t)
	r := parseOK(t, p, "Patient", "foo=1&foo=2&name=x&_text=abc&bar:exact=y&subject.name=z&_has:Observation:nope:code=1&near=1&_contained=true", false)
	want := []string{"_contained", "_has:Observation:nope:code", "_text", "bar:exact", "foo", "near", "subject.name"}
	if !reflect.DeepEqual(r.Ignored, want) {
		t.Errorf("ignored %v want %v", r.Ignored, want)
	}
	if len(r.Warnings) != len(r.Ignored) {
		t.Errorf("warnings %v", r.Warnings)
	}
	if len(r.Query.Where) != 1 {
		t.Errorf("where %+v", r.Query.Where)
	}
	if enc := r.Canonical.Encode(); enc != "name=x" {
		t.Errorf("canonical %q", enc)
	}
}

func TestCanonical(t *testing.T) {
	p := newTestParser(t)
	r := parseOK(t, p, "Observation", "code=http://loinc.org|1,2&date=lt2020&date=ge2010&_count=5&_sort=-date&unknown=1", false)
	want := "_count=5&_sort=-date&code=http%3A%2F%2Floinc.org%7C1%2C2&date=ge2010&date=lt2020"
	if enc := r.Canonical.Encode(); enc != want {
		t.Errorf("canonical\n got %s\nwant %s", enc, want)
	}
	// Round trip: the canonical query parses to the same query.
	r2 := parseOK(t, p, "Observation", r.Canonical.Encode(), true)
	if !reflect.DeepEqual(r2.Query.Where, r.Query.Where) && len(r2.Query.Where) != len(r.Query.Where) {
		t.Errorf("round trip differs")
	}
}

func TestConditional(t *testing.T) {
	p := newTestParser(t)
	r, err := p.ParseConditional("Patient", "identifier=http://s|1&birthdate=2000")
	if err != nil || len(r.Query.Where) != 2 {
		t.Fatalf("%v %+v", err, r)
	}
	for _, q := range []string{"?identifier=1", "Patient?identifier=1", "/Patient?identifier=1"} {
		if r, err := p.ParseConditional("Patient", q); err != nil || len(r.Query.Where) != 1 {
			t.Errorf("%q: %v", q, err)
		}
	}
	for _, q := range []string{"", "_count=1", "_sort=name&_summary=count", "foo=1", "identifier=1&foo=2", "name=%zz", "_text=x", "identifier=", "_contained=true"} {
		_, err := p.ParseConditional("Patient", q)
		checkErr(t, q, err)
	}
}

func checkErr(t *testing.T, what string, err error) *outcome.Error {
	t.Helper()
	if err == nil {
		t.Errorf("%s: expected an error", what)
		return nil
	}
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		t.Errorf("%s: error %T is not *outcome.Error", what, err)
		return nil
	}
	if oe.Status < 400 || oe.Status > 499 || len(oe.Issues) == 0 {
		t.Errorf("%s: status %d issues %v", what, oe.Status, oe.Issues)
	}
	return oe
}

func TestRejections(t *testing.T) {
	p := newTestParser(t)
	cases := []struct {
		typ, query string
		strict     bool
		code       string // issue code
		msg        string // substring of diagnostics
	}{
		// Values.
		{"Patient", "birthdate=2015-13-01", false, "invalid", `"2015-13-01"`},
		{"Patient", "birthdate=2015-02-30", false, "invalid", "birthdate"},
		{"Patient", "birthdate=xx2015", false, "invalid", "unknown prefix"},
		{"Patient", "birthdate=", false, "invalid", "Empty value"},
		{"Patient", "birthdate=2015,", false, "invalid", "Empty value"},
		{"Patient", "birthdate=gt", false, "invalid", "birthdate"},
		{"Patient", "birthdate=2015-01-01T10", false, "invalid", "birthdate"},
		{"Patient", "_lastUpdated=yesterday", false, "invalid", "_lastUpdated"},
		{"RiskAssessment", "probability=abc", false, "invalid", `"probability"`},
		// A word is not a number (or a date), not a prefix "ab" followed by "c".
		{"RiskAssessment", "probability=abc", false, "invalid", "not a number"},
		{"RiskAssessment", "probability=NaN", false, "invalid", "not a number"},
		{"Observation", "value-quantity=abc", false, "invalid", "not a number"},
		{"Observation", "value-quantity=Infinity||mg", false, "invalid", "not a number"},
		{"Patient", "birthdate=today", false, "invalid", "not a valid date"},
		{"RiskAssessment", "probability=5x", false, "invalid", "not a number"},
		{"RiskAssessment", "probability=zz5", false, "invalid", "unknown prefix"},
		{"RiskAssessment", "probability=1e999", false, "invalid", "probability"},
		{"Observation", "value-quantity=5|mg", false, "invalid", "value-quantity"},
		{"Observation", "value-quantity=abc||mg", false, "invalid", `"value-quantity"`},
		{"Observation", "value-quantity=1.2.3||mg", false, "invalid", "not a number"},
		{"Observation", "value-quantity=5|http://u|", false, "invalid", "requires a code"},
		{"Observation", "value-quantity=5|a|b|c", false, "invalid", "value-quantity"},
		{"Observation", "code=|", false, "invalid", "code"},
		{"Observation", "code=a|b|c", false, "invalid", "too many"},
		{"Patient", "identifier:of-type=a|b", false, "invalid", "of-type"},
		{"Patient", "identifier:of-type=a||c", false, "invalid", "of-type"},
		{"Patient", "name=%20%20", false, "invalid", "empty string"},
		{"Patient", "gender:of-type=a|b|c", false, "invalid", "identifier parameters"},
		{"Patient", "name:missing=maybe", false, "invalid", "true or false"},
		{"Observation", "code-value-quantity=http://loinc.org|1", false, "invalid", "2 components"},
		{"Observation", "code-value-quantity=a$b$c", false, "invalid", "2 components"},
		{"Observation", "code-value-quantity=a$", false, "invalid", "component 2 is empty"},
		{"Observation", "code-value-quantity=a$xx5", false, "invalid", "unknown prefix"},
		// References.
		{"Observation", "subject=Foo/1", false, "invalid", `"Foo" is not a resource type`},
		{"Observation", "subject=Medication/1", false, "invalid", "cannot refer to Medication"},
		{"Observation", "subject:Patient=Group/1", false, "invalid", "does not match"},
		{"Observation", "subject:Medication=1", false, "invalid", "cannot refer to Medication"},
		{"Observation", "subject=Patient/", false, "invalid", "empty resource id"},
		{"Observation", "subject=a/b/c", false, "invalid", "expected id"},
		{"Observation", "subject=Patient/1|2", false, "invalid", "version"},
		{"Observation", "subject:identifier=http://s|1", false, "not-supported", ":identifier"},
		{"Observation", "subject:above=http://x", false, "not-supported", ":above"},
		{"Observation", "subject:below=Patient/1", false, "invalid", ":below"},
		{"Observation", "subject:Patient=http://other/Patient/1", false, "invalid", "absolute"},
		// Modifiers.
		{"Observation", "code:in=http://vs", false, "not-supported", ":in"},
		{"Observation", "code:not-in=http://vs", false, "not-supported", ":not-in"},
		{"Observation", "code:below=http://s|1", false, "not-supported", ":below"},
		{"Observation", "code:above=http://s|1", false, "not-supported", ":above"},
		{"Observation", "code:exact=1", false, "invalid", ":exact"},
		{"Observation", "code:bogus=1", false, "invalid", "Unknown modifier"},
		{"Patient", "name:not=x", false, "invalid", ":not"},
		{"Patient", "name:", false, "invalid", "empty modifier"},
		{"Patient", "birthdate:exact=2015", false, "invalid", ":exact"},
		{"Patient", "_id:text=x", false, "invalid", "_id"},
		{"Patient", "_id:missing=true", false, "not-supported", ":missing"},
		{"Patient", "_lastUpdated:missing=true", false, "not-supported", ":missing"},
		{"ValueSet", "url:contains=x", false, "invalid", ":contains"},
		// Chains and _has.
		{"Observation", "subject.name=x", false, "invalid", "ambiguous"},
		{"Observation", "focus.name=x", false, "invalid", "ambiguous"},
		{"Observation", "code.name=x", false, "invalid", "not a reference"},
		{"Observation", "subject:Foo.name=x", false, "invalid", "not a resource type"},
		{"Observation", "subject:Medication.code=x", false, "invalid", "cannot refer to Medication"},
		{"Observation", "patient.organization.name=x", false, "not-supported", "one level"},
		{"Observation", "patient.=x", false, "invalid", "missing the chained"},
		{"Observation", "patient._has:Observation:patient:code=x", false, "not-supported", "_has"},
		{"Observation", "patient.birthdate=13", false, "invalid", "birthdate"},
		{"Patient", "_has:Observation:patient=x", false, "invalid", "_has:Type"},
		{"Patient", "_has=x", false, "invalid", "_has:Type"},
		{"Patient", "_has:Foo:patient:code=x", false, "invalid", "not a resource type"},
		{"Patient", "_has:Observation:code:code=x", false, "invalid", "not a reference"},
		{"Patient", "_has:Observation:patient:_has:Provenance:target:agent=x", false, "not-supported", "Nested"},
		{"Patient", "_has:Observation:patient:subject.name=x", false, "not-supported", "Chained"},
		{"Organization", "_has:Observation:patient:code=x", false, "invalid", "cannot refer to Organization"},
		// Result parameters.
		{"Observation", "_count=-1", false, "invalid", "_count"},
		{"Observation", "_count=ten", false, "invalid", "_count"},
		{"Observation", "_count=1&_count=2", false, "invalid", "only once"},
		{"Observation", "_offset=-3", false, "invalid", "_offset"},
		{"Observation", "_total=some", false, "invalid", "_total"},
		{"Observation", "_summary=yes", false, "invalid", "_summary"},
		{"Observation", "_elements=a,,b", false, "invalid", "_elements"},
		{"Observation", "_elements=a b", false, "invalid", "_elements"},
		{"Observation", "_sort=nope", false, "invalid", "nope"},
		{"Observation", "_sort=date,", false, "invalid", "empty sort key"},
		{"Observation", "_sort=-", false, "invalid", "empty sort key"},
		{"Observation", "_sort=date,-date", false, "invalid", "twice"},
		{"Observation", "_sort=code-value-quantity", false, "not-supported", "Sorting"},
		{"Observation", "_sort=date&_sort=code", false, "invalid", "only once"},
		{"Observation", "_sort:sideways=date", false, "invalid", "modifier"},
		{"Observation", "_include=Observation", false, "invalid", "SourceType:searchParameter"},
		{"Observation", "_include=Observation:code", false, "invalid", "not a reference"},
		{"Observation", "_include=Observation:nope", false, "invalid", "not a reference"},
		{"Observation", "_include=Foo:subject", false, "invalid", "not a resource type"},
		{"Observation", "_include=Patient:organization", false, "invalid", ":iterate"},
		{"Observation", "_include=Observation:subject:Medication", false, "invalid", "cannot refer to Medication"},
		{"Observation", "_include=Observation:subject:Foo", false, "invalid", "not a resource type"},
		{"Observation", "_include=Observation:*:Patient", false, "invalid", "target type"},
		{"Observation", "_include:deep=Observation:subject", false, "invalid", "modifier"},
		{"Observation", "_revinclude=*", false, "not-supported", "_revinclude"},
		{"Observation", "_revinclude=Observation:organization", false, "invalid", "not a reference"},
		{"Patient", "_revinclude=Observation:device", false, "invalid", "cannot refer to Patient"},
		{"", "_include=*", false, "invalid", "single resource type"},
		{"Observation", "_type=Patient", false, "invalid", "system-level"},
		{"", "_type=Patient,Foo", false, "invalid", "not a resource type"},
		{"", "_type=Patient,", false, "invalid", "_type"},
		{"Foo", "name=x", false, "not-supported", "Unknown resource type"},
		// Strict mode.
		{"Patient", "foo=1", true, "not-supported", `"foo"`},
		{"Patient", "_text=x", true, "not-supported", "_text"},
		{"Patient", "_content=x", true, "not-supported", "_content"},
		{"Location", "near=1|2|3|km", true, "not-supported", "near"},
		{"Patient", "_contained=true", true, "not-supported", "_contained"},
		{"Patient", "_has:Observation:nope:code=1", true, "not-supported", "nope"},
		{"Observation", "patient.nope=1", true, "not-supported", "nope"},
		{"Observation", "nope.name=1", true, "not-supported", "nope"},
	}
	for _, c := range cases {
		name := c.typ + "?" + c.query
		_, err := p.Parse(c.typ, mustQuery(t, c.query), c.strict)
		oe := checkErr(t, name, err)
		if oe == nil {
			continue
		}
		if oe.Issues[0].Code != c.code {
			t.Errorf("%s: issue code %q want %q (%s)", name, oe.Issues[0].Code, c.code, oe.Error())
		}
		if !strings.Contains(oe.Issues[0].Diagnostics, c.msg) {
			t.Errorf("%s: diagnostics %q do not mention %q", name, oe.Issues[0].Diagnostics, c.msg)
		}
	}
}

func TestEmptyValueSlices(t *testing.T) {
	p := newTestParser(t)
	r, err := p.Parse("", url.Values{"_type": {}, "_count": {}, "name": nil, "_id": {"1"}}, true)
	if err != nil || len(r.Query.Where) != 1 || r.Query.Types != nil {
		t.Fatalf("%v %+v", err, r)
	}
}

func TestEscapes(t *testing.T) {
	if got := splitEscaped(`a\,b,c\\,d`, ','); !reflect.DeepEqual(got, []string{`a\,b`, `c\\`, "d"}) {
		t.Errorf("split %q", got)
	}
	if got := unescape(`a\,b\$c\|d\\e\x\`); got != `a,b$c|d\e\x\` {
		t.Errorf("unescape %q", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	p := newTestParser(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, err := p.Parse("Observation", url.Values{"code": {"a,b"}, "subject:Patient.name": {"x"}, "_sort": {"-date"}}, true); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func sprint(v any) string { return fmt.Sprintf("%+v", v) }
