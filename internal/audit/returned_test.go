package audit

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bundleStage runs one request through the stage in front of a handler
// answering status and body, and returns the recorded event.
func bundleStage(t *testing.T, method, path, reqBody string, status int, body string) Event {
	t.Helper()
	fr := &fakeRecorder{commit: make(chan struct{})}
	close(fr.commit)
	h := Stage(StageConfig{Recorder: fr, BaseURL: base})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(method, path, strings.NewReader(reqBody)))
	if len(fr.events) != 1 {
		t.Fatalf("%d events", len(fr.events))
	}
	return fr.events[0]
}

// createdEntry is a transaction-response entry of a create with Prefer:
// return=representation, as package resource renders it.
func createdEntry(i int) string {
	return fmt.Sprintf(`{"fullUrl":"%[1]s/Observation/o%[2]d","resource":{"resourceType":"Observation","id":"o%[2]d","status":"final"},`+
		`"response":{"status":"201 Created","location":"Observation/o%[2]d/_history/1","etag":"W/\"1\"","lastModified":"2024-01-01T00:00:00Z"}}`, base, i)
}

// TestReturnedCountsReads: a transaction or batch counts as returned only
// the resources its GET entries read, not the resources its writes echo
// back, so uploading data does not trip the volume alert.
func TestReturnedCountsReads(t *testing.T) {
	// An upload of 10,001 resources with Prefer: return=representation.
	var entries []string
	for i := range 10001 {
		entries = append(entries, createdEntry(i))
	}
	upload := `{"resourceType":"Bundle","type":"transaction-response","entry":[` + strings.Join(entries, ",") + `]}`
	ev := bundleStage(t, "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[]}`, 200, upload)
	if ev.Interaction != "transaction" || ev.Returned != 0 {
		t.Errorf("upload: interaction %s, returned %d, want 0", ev.Interaction, ev.Returned)
	}

	// A batch mixing writes and reads: a read (1), a search with two
	// matches, an include and an outcome entry (3), a history (2), an
	// update echoed (0), a delete (0), a HEAD (0), a failed read (0), a
	// read of a stored document Bundle (1).
	batch := `{"resourceType":"Bundle","type":"batch-response","entry":[` +
		`{"fullUrl":"` + base + `/Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"response":{"status":"200 OK","etag":"W/\"1\""}},` +
		`{"resource":{"resourceType":"Bundle","type":"searchset","total":2,"entry":[` +
		`{"fullUrl":"` + base + `/Observation/a","resource":{"resourceType":"Observation","id":"a"},"search":{"mode":"match"}},` +
		`{"fullUrl":"` + base + `/Observation/b","resource":{"resourceType":"Observation","id":"b"},"search":{"mode":"match"}},` +
		`{"fullUrl":"` + base + `/Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"search":{"mode":"include"}},` +
		`{"resource":{"resourceType":"OperationOutcome","issue":[]},"search":{"mode":"outcome"}}]},"response":{"status":"200 OK"}},` +
		`{"resource":{"resourceType":"Bundle","type":"history","entry":[{"fullUrl":"` + base + `/Patient/p1","resource":{"resourceType":"Patient","id":"p1"}},{"fullUrl":"` + base + `/Patient/p1","request":{"method":"DELETE","url":"Patient/p1"}}]},"response":{"status":"200 OK"}},` +
		createdEntry(1) + `,` +
		`{"response":{"status":"204 No Content"}},` +
		`{"fullUrl":"` + base + `/Patient/p1","response":{"status":"200 OK","etag":"W/\"1\""}},` +
		`{"response":{"status":"404 Not Found","outcome":{"resourceType":"OperationOutcome","issue":[]}}},` +
		`{"fullUrl":"` + base + `/Bundle/doc","resource":{"resourceType":"Bundle","id":"doc","type":"document","entry":[{"fullUrl":"urn:uuid:1"},{"fullUrl":"urn:uuid:2"}]},"response":{"status":"200 OK"}}` +
		`]}`
	ev = bundleStage(t, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[]}`, 200, batch)
	if ev.Interaction != "batch" || ev.Returned != 1+3+2+1 {
		t.Errorf("batch: interaction %s, returned %d, want 7", ev.Interaction, ev.Returned)
	}

	// Searches and reads still count what they return.
	ev = bundleStage(t, "GET", "/fhir/Observation?code=x", "", 200, `{"resourceType":"Bundle","entry":[{"fullUrl":"a"},{"fullUrl":"b"}]}`)
	if ev.Returned != 2 {
		t.Errorf("search: returned %d", ev.Returned)
	}
	ev = bundleStage(t, "GET", "/fhir/Patient/p1/$everything", "", 200, `{"resourceType":"Bundle","entry":[{"fullUrl":"a"},{"fullUrl":"b"},{"fullUrl":"c"}]}`)
	if ev.Returned != 3 || ev.Interaction != "operation" || ev.Patient != "p1" {
		t.Errorf("$everything: %+v", ev)
	}
	ev = bundleStage(t, "POST", "/fhir/Patient/p1/$everything", `{"resourceType":"Parameters"}`, 200, `{"resourceType":"Bundle","entry":[{"fullUrl":"a"}]}`)
	if ev.Returned != 1 || ev.Interaction != "operation" || ev.Patient != "p1" {
		t.Errorf("POST $everything: %+v", ev)
	}
	ev = bundleStage(t, "GET", "/fhir/Patient/p1/Observation?code=x", "", 200, `{"resourceType":"Bundle","entry":[{"fullUrl":"a"},{"fullUrl":"b"}]}`)
	if ev.Returned != 2 || ev.Interaction != "search-type" || ev.Patient != "p1" {
		t.Errorf("compartment search: %+v", ev)
	}
	// A create echoing its resource is not a read.
	ev = bundleStage(t, "POST", "/fhir/Observation", `{}`, 201, `{"resourceType":"Observation","id":"x"}`)
	if ev.Returned != 0 {
		t.Errorf("create: returned %d", ev.Returned)
	}
}

// TestClassifyCompartment: compartment searches are searches of their
// type in the patient's compartment; Patient $everything is a read-only
// operation about the patient.
func TestClassifyCompartment(t *testing.T) {
	for _, tc := range []struct {
		method, path, query string
		want                Classified
	}{
		{"GET", "/Patient/p1/Observation", "status=final", Classified{Interaction: "search-type", Action: "E", Type: "Observation", Search: true, Patient: "p1", Query: "Patient/p1/Observation?status=final"}},
		{"GET", "/Patient/p1/Observation", "", Classified{Interaction: "search-type", Action: "E", Type: "Observation", Search: true, Patient: "p1", Query: "Patient/p1/Observation"}},
		{"HEAD", "/Patient/p1/*", "", Classified{Interaction: "search-system", Action: "E", Search: true, Patient: "p1", Query: "Patient/p1/*"}},
		{"POST", "/Patient/p1/Observation/_search", "", Classified{Interaction: "search-type", Action: "E", Type: "Observation", Search: true, Patient: "p1", Query: "Patient/p1/Observation"}},
		{"GET", "/Patient/p1/$everything", "_since=2024-01-01", Classified{Interaction: "operation", Action: "E", Type: "Patient", ID: "p1", Search: true, Patient: "p1", Query: "Patient/p1/$everything?_since=2024-01-01"}},
		{"POST", "/Patient/p1/$everything", "", Classified{Interaction: "operation", Action: "E", Type: "Patient", ID: "p1", Search: true, Patient: "p1", Query: "Patient/p1/$everything"}},
		// Other operations stay writes when posted.
		{"POST", "/Group/g/$export", "", Classified{Interaction: "operation", Action: "E", Type: "Group", ID: "g", Write: true}},
		// Unchanged neighbours; the patient of the path is the target
		// (interaction.Parse), also before the outcome is known.
		{"GET", "/Patient/p1/_history", "", Classified{Interaction: "history-instance", Action: "R", Type: "Patient", ID: "p1", History: true, Patient: "p1"}},
		{"POST", "/Patient/p1/Observation", "", Classified{Interaction: "create", Action: "C", Type: "Patient", ID: "p1", Write: true, Patient: "p1"}},
	} {
		c := Classify(tc.method, tc.path, tc.query)
		if c != tc.want {
			t.Errorf("%s %s?%s = %+v, want %+v", tc.method, tc.path, tc.query, c, tc.want)
		}
	}
}
