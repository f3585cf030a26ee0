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
