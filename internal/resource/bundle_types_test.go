package resource

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestBundleBytes checks the hand-written Bundle encoder against encoding/json.
func TestBundleBytes(t *testing.T) {
	total := 2
	b := &bundle{ResourceType: "Bundle", ID: "x", Meta: &bundleMeta{LastUpdated: "2020-01-01T00:00:00.000Z"}, Type: "searchset", Total: &total,
		Link: []bundleLink{{Relation: "self", URL: "http://h/fhir/Patient?a=<b>&c=d"}},
		Entry: []*bundleEntry{
			{FullURL: "http://h/fhir/Patient/1", Resource: json.RawMessage(`{"resourceType":"Patient","id":"1","name":[{"family":"<Ö>"}]}`), Search: &entrySearch{Mode: "match"}},
			{Resource: json.RawMessage(`{"resourceType":"OperationOutcome"}`), Search: &entrySearch{Mode: "outcome"}},
			{Response: &entryResponse{Status: "201 Created", Location: "Patient/1/_history/1", Outcome: json.RawMessage(`{"resourceType":"OperationOutcome"}`)}, Request: &entryRequest{Method: "POST", URL: "Patient"}},
		}}
	for _, bb := range []*bundle{b, {ResourceType: "Bundle", Type: "history"}} {
		var got, want any
		if err := json.Unmarshal(bb.bytes(), &got); err != nil {
			t.Fatalf("invalid JSON: %v\n%s", err, bb.bytes())
		}
		if err := json.Unmarshal(marshalJSON(bb), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %s\nwant %s", bb.bytes(), marshalJSON(bb))
		}
	}
}

// TestBundleSizeBound: size, which the response size limit is checked
// with, never under-counts what bytes renders.
func TestBundleSizeBound(t *testing.T) {
	total := 12345
	full := &bundle{ResourceType: "Bundle", ID: NewID(), Meta: &bundleMeta{LastUpdated: "2020-01-01T00:00:00.000Z"}, Type: "batch-response", Total: &total,
		Link: []bundleLink{{Relation: "self", URL: "http://h/fhir/Observation?_count=1000&_include=%2A"}, {Relation: "next", URL: "http://h/fhir/Observation?_offset=1000&_snapshot=abc"}}}
	oo := marshalJSON(map[string]any{"resourceType": "OperationOutcome", "issue": []any{map[string]any{"severity": "error", "code": "too-costly", "diagnostics": "x"}}})
	for i := range 50 {
		full.Entry = append(full.Entry,
			&bundleEntry{FullURL: "http://h/fhir/Patient/" + NewID(), Resource: json.RawMessage(`{"resourceType":"Patient","id":"1"}`), Search: &entrySearch{Mode: "include"}},
			&bundleEntry{FullURL: "http://h/fhir/Patient/1", Resource: json.RawMessage(`{"resourceType":"Patient"}`),
				Request:  &entryRequest{Method: "PATCH", URL: "Patient/1"},
				Response: &entryResponse{Status: "200 OK", Location: "Patient/1/_history/" + NewID(), Etag: ETag(int64(i) << 40), LastModified: "2020-01-01T00:00:00.000+00:00", Outcome: oo}},
			&bundleEntry{Response: &entryResponse{Status: "413 Request Entity Too Large", Outcome: oo}},
			&bundleEntry{},
		)
	}
	for _, b := range []*bundle{full, {ResourceType: "Bundle", Type: "history"}, {ResourceType: "Bundle", Type: "searchset", Entry: []*bundleEntry{{}}}} {
		if n, est := len(b.bytes()), b.size(); int64(n) > est {
			t.Errorf("%s of %d entries: %d bytes rendered, size %d", b.Type, len(b.Entry), n, est)
		}
	}
}
