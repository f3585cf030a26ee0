package searchtest

import (
	"fmt"
	"slices"
	"testing"
)

// prefixFixtures are body temperatures (Observation value-quantity, Cel)
// and plain numbers (RiskAssessment probability) around 37 for the
// boundaries of the comparison prefixes (FHIR R4 search.html#prefix and
// #number): eq, ne and ap use the precision range of the search value
// ("37" is [36.5, 37.5)); lt, gt, le, ge, sa and eb compare with the exact
// search value ("lt37" is less than exactly 37).
var prefixFixtures = func() []string {
	out := []string{`{"resourceType":"Patient","id":"pt"}`}
	for _, q := range []struct{ id, value string }{
		{"q364", `"value":36.4`},
		{"q365", `"value":36.5`},
		{"q369", `"value":36.9`},
		{"q37", `"value":37`},
		{"q370", `"value":37.0`},
		{"q372", `"value":37.2`},
		{"q375", `"value":37.5`},
		{"q38", `"value":38`},
		{"q45", `"value":45`},
		{"qlt37", `"value":37,"comparator":"<"`},     // everything below 37
		{"qge375", `"value":37.5,"comparator":">="`}, // 37.5 and above
	} {
		out = append(out, fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final",
		  "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"subject":{"reference":"Patient/pt"},
		  "valueQuantity":{%s,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"}}`, q.id, q.value))
	}
	for _, n := range []struct{ id, prob string }{
		{"n365", `"probabilityDecimal":36.5`},
		{"n369", `"probabilityDecimal":36.9`},
		{"n37", `"probabilityDecimal":37`},
		{"n370", `"probabilityDecimal":37.0`},
		{"n372", `"probabilityDecimal":37.2`},
		{"n375", `"probabilityDecimal":37.5`},
		{"nr", `"probabilityRange":{"low":{"value":36},"high":{"value":38}}`},
	} {
		out = append(out, fmt.Sprintf(`{"resourceType":"RiskAssessment","id":%q,"status":"final",
		  "subject":{"reference":"Patient/pt"},"prediction":[{%s}]}`, n.id, n.prob))
	}
	return out
}()

var prefixCases = []tc{
	// ---- quantity ----
	{typ: "Observation", query: "value-quantity=lt37", want: ids("q364", "q365", "q369", "qlt37")},
	{typ: "Observation", query: "value-quantity=lt37.0", want: ids("q364", "q365", "q369", "qlt37")},
	{typ: "Observation", query: "value-quantity=lt37|http://unitsofmeasure.org|Cel", want: ids("q364", "q365", "q369", "qlt37")},
	{typ: "Observation", query: "value-quantity=lt37||Cel", want: ids("q364", "q365", "q369", "qlt37")},
	{typ: "Observation", query: "value-quantity=lt37||[degF]", want: ids()},
	{typ: "Observation", query: "value-quantity=le37", want: ids("q364", "q365", "q369", "q37", "q370", "qlt37")},
	{typ: "Observation", query: "value-quantity=gt37", want: ids("q372", "q375", "q38", "q45", "qge375")},
	{typ: "Observation", query: "value-quantity=ge37", want: ids("q37", "q370", "q372", "q375", "q38", "q45", "qge375")},
	{typ: "Observation", query: "value-quantity=ge37.0", want: ids("q37", "q370", "q372", "q375", "q38", "q45", "qge375")},
	{typ: "Observation", query: "value-quantity=37", want: ids("q365", "q369", "q37", "q370", "q372")},
	{typ: "Observation", query: "value-quantity=eq37", want: ids("q365", "q369", "q37", "q370", "q372")},
	{typ: "Observation", query: "value-quantity=37.0", want: ids("q37", "q370")},
	{typ: "Observation", query: "value-quantity=ne37", want: ids("q364", "q375", "q38", "q45", "qlt37", "qge375")},
	{typ: "Observation", query: "value-quantity=sa37", want: ids("q372", "q375", "q38", "q45", "qge375")},
	{typ: "Observation", query: "value-quantity=eb37", want: ids("q364", "q365", "q369", "qlt37")},
	{typ: "Observation", query: "value-quantity=ap37", want: ids("q364", "q365", "q369", "q37", "q370", "q372", "q375", "q38", "qlt37", "qge375")},
	{typ: "Observation", query: "value-quantity=lt37.5", want: ids("q364", "q365", "q369", "q37", "q370", "q372", "qlt37")},
	{typ: "Observation", query: "value-quantity=le37.5", want: ids("q364", "q365", "q369", "q37", "q370", "q372", "q375", "qlt37", "qge375")},
	{typ: "Observation", query: "value-quantity=ge37.5", want: ids("q375", "q38", "q45", "qge375")},
	{typ: "Observation", query: "value-quantity=le36.5", want: ids("q364", "q365", "qlt37")},
	{typ: "Observation", query: "value-quantity=gt36.9", want: ids("q37", "q370", "q372", "q375", "q38", "q45", "qlt37", "qge375")},
	{typ: "Observation", query: "value-quantity=lt4e1", want: ids("q364", "q365", "q369", "q37", "q370", "q372", "q375", "q38", "qlt37", "qge375")},
	{typ: "Observation", query: "code-value-quantity=http://loinc.org|8310-5$lt37", want: ids("q364", "q365", "q369", "qlt37")},
	{typ: "Observation", query: "code-value-quantity=http://loinc.org|8310-5$ge37", want: ids("q37", "q370", "q372", "q375", "q38", "q45", "qge375")},
	// ---- number ----
	{typ: "RiskAssessment", query: "probability=lt37", want: ids("n365", "n369", "nr")},
	{typ: "RiskAssessment", query: "probability=le37", want: ids("n365", "n369", "n37", "n370", "nr")},
	{typ: "RiskAssessment", query: "probability=gt37", want: ids("n372", "n375", "nr")},
	{typ: "RiskAssessment", query: "probability=ge37", want: ids("n37", "n370", "n372", "n375", "nr")},
	{typ: "RiskAssessment", query: "probability=37", want: ids("n365", "n369", "n37", "n370", "n372")},
	{typ: "RiskAssessment", query: "probability=eq37", want: ids("n365", "n369", "n37", "n370", "n372")},
	{typ: "RiskAssessment", query: "probability=37.0", want: ids("n37", "n370")},
	{typ: "RiskAssessment", query: "probability=ne37", want: ids("n375", "nr")},
	{typ: "RiskAssessment", query: "probability=sa37", want: ids("n372", "n375")},
	{typ: "RiskAssessment", query: "probability=eb37", want: ids("n365", "n369")},
	{typ: "RiskAssessment", query: "probability=ap37", want: ids("n365", "n369", "n37", "n370", "n372", "n375", "nr")},
	{typ: "RiskAssessment", query: "probability=ap50", want: ids()},
	{typ: "RiskAssessment", query: "probability=lt36.5", want: ids("nr")},
	{typ: "RiskAssessment", query: "probability=le36.5", want: ids("n365", "nr")},
	{typ: "RiskAssessment", query: "probability=gt37.5", want: ids("nr")},
	{typ: "RiskAssessment", query: "probability=ge37.5", want: ids("n375", "nr")},
	{typ: "RiskAssessment", query: "probability=lt4e1", want: ids("n365", "n369", "n37", "n370", "n372", "n375", "nr")},
}

// TestPrefixBoundaries runs prefixCases on both dialects against
// prefixFixtures.
func TestPrefixBoundaries(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			e := &env{app: openApp(t, d)}
			putAll(t, e.app, prefixFixtures)
			for _, c := range prefixCases {
				t.Run(c.typ+"?"+c.query, func(t *testing.T) {
					r, err := e.search(t, c.typ, c.query+"&_count=100", false)
					if err != nil {
						t.Fatalf("search failed: %v", err)
					}
					if got, want := sorted(r.matches), sorted(c.want); !slices.Equal(got, want) && len(got)+len(want) > 0 {
						t.Errorf("matches = %v, want %v", got, want)
					}
					if r.total == nil || *r.total != len(c.want) {
						t.Errorf("total = %v, want %d", fmtp(r.total), len(c.want))
					}
				})
			}
		})
	}
}
