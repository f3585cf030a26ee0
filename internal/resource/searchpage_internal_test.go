package resource

import (
	"regexp"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// TestSearchPageJSON checks that a page renders byte for byte as the
// generic Bundle writer renders the same searchset (links, total, the
// outcome entry, matches and includes, strings that need escaping), and
// that the page's size bounds its rendering.
func TestSearchPageJSON(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	issues := []outcome.Issue{{Severity: "warning", Code: "not-supported", Diagnostics: `parameter "x<y>" was ignored`}}
	for _, tc := range []struct {
		name, base string
		total      int
		links      []Link
		issues     []outcome.Issue
		matches    []store.Resource
		included   []store.Resource
	}{
		{name: "empty", base: "http://h/fhir", total: 0, links: []Link{{"self", "http://h/fhir/Patient"}}},
		{name: "no total, no links", base: "http://h/fhir", total: -1},
		{name: "full", base: "http://h/fhir", total: 12,
			links:    []Link{{"self", "http://h/fhir/Patient?name=a&b"}, {"next", "http://h/fhir/Patient?_count=2&_offset=2&_snapshot=s"}},
			issues:   issues,
			matches:  []store.Resource{{Type: "Patient", ID: "a", Body: []byte(`{"resourceType":"Patient","id":"a"}`)}, {Type: "Patient", ID: "b", Body: []byte(`{"resourceType":"Patient","id":"b","name":[{"text":"é \"q\" <x>"}]}`)}},
			included: []store.Resource{{Type: "Organization", ID: "o", Body: []byte(`{"resourceType":"Organization","id":"o"}`)}}},
		{name: "outcome only", base: "http://h/fhir", total: 0, issues: issues},
		{name: "escaped base", base: "http://h/f\"h\\ir\u2028é", total: 1, links: []Link{{"self", "http://h/f\"h\\ir\u2028é/Patient?x=<&>"}},
			matches: []store.Resource{{Type: "Patient", ID: "a", Body: []byte(`{"resourceType":"Patient","id":"a"}`)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &SearchPage{Matches: tc.matches, Included: tc.included, Total: tc.total, Links: tc.links, Issues: tc.issues, Timestamp: ts, base: tc.base}
			b := &bundle{ResourceType: "Bundle", ID: "ID", Meta: &bundleMeta{LastUpdated: "2026-01-02T03:04:05.006Z"}, Type: "searchset", Link: tc.links}
			if tc.total >= 0 {
				n := tc.total
				b.Total = &n
			}
			if len(tc.issues) > 0 {
				b.Entry = append(b.Entry, &bundleEntry{Resource: marshalJSON(outcome.Resource(tc.issues)), Search: &entrySearch{Mode: "outcome"}})
			}
			for _, r := range tc.matches {
				b.Entry = append(b.Entry, &bundleEntry{FullURL: tc.base + "/" + r.Type + "/" + r.ID, Resource: r.Body, Search: &entrySearch{Mode: "match"}})
			}
			for _, r := range tc.included {
				b.Entry = append(b.Entry, &bundleEntry{FullURL: tc.base + "/" + r.Type + "/" + r.ID, Resource: r.Body, Search: &entrySearch{Mode: "include"}})
			}
			got := regexp.MustCompile(`^\{"resourceType":"Bundle","id":"[0-9a-f-]{36}"`).ReplaceAll(p.JSON(), []byte(`{"resourceType":"Bundle","id":"ID"`))
			if want := b.bytes(); string(got) != string(want) {
				t.Fatalf("page renders\n%s\nthe Bundle writer\n%s", got, want)
			}
			if p.size() != b.size() || p.size() < int64(len(got)) {
				t.Fatalf("size %d, Bundle writer's %d, rendered %d bytes", p.size(), b.size(), len(got))
			}
		})
	}
}

// BenchmarkSearchsetJSON renders a page of 100 matches: as a SearchPage,
// and as the generic Bundle writer renders the same searchset (the
// entries built as search rendered them before typed pages).
func BenchmarkSearchsetJSON(b *testing.B) {
	const base = "http://localhost:8080/fhir"
	ms := make([]store.Resource, 100)
	for i := range ms {
		id := NewID()
		ms[i] = store.Resource{Type: "Observation", ID: id, VersionID: 1, Body: []byte(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"valueQuantity":{"value":72.5,"unit":"kg"}}`)}
	}
	links := []Link{{"self", base + "/Observation?code=29463-7"}, {"next", base + "/Observation?_count=100&_offset=100&_snapshot=abc&code=29463-7"}}
	ts := time.Now()
	b.Run("page", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := &SearchPage{Matches: ms, Total: 1000, Links: links, Timestamp: ts, base: base}
			_ = p.JSON()
		}
	})
	b.Run("bundle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 1000
			bd := &bundle{ResourceType: "Bundle", ID: NewID(), Meta: &bundleMeta{LastUpdated: fhirtime.FormatInstant(ts)}, Type: "searchset", Total: &n, Link: links}
			for i := range ms {
				bd.Entry = append(bd.Entry, &bundleEntry{FullURL: base + "/" + ms[i].Type + "/" + ms[i].ID, Resource: ms[i].Body, Search: &entrySearch{Mode: "match"}})
			}
			_ = bd.bytes()
		}
	})
}
