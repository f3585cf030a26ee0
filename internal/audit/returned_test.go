package audit

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
)

// bundleStage runs one request through the stage in front of a handler
// answering status and reporting o, and returns the recorded event.
func bundleStage(t *testing.T, method, path, reqBody string, status int, o interaction.Outcome) Event {
	t.Helper()
	fr := &fakeRecorder{commit: make(chan struct{})}
	close(fr.commit)
	h := routedStage(StageConfig{Recorder: fr})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		*interaction.OutcomeFromContext(r.Context()) = o
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(status)
		// Response bytes that would have fooled the old byte counting.
		w.Write([]byte(`{"resourceType":"Bundle","entry":[{"fullUrl":"a","response":{"location":"Patient/x/_history/1"}}]}`))
	}))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(method, path, strings.NewReader(reqBody)))
	if len(fr.events) != 1 {
		t.Fatalf("%d events", len(fr.events))
	}
	return fr.events[0]
}

// TestReturnedCountsReads: the audit stage records what the handler
// reports in its interaction.Outcome, not what the response bytes look
// like: a transaction or batch counts as returned only the resources its
// read entries returned (counted by package resource, see
// fhirapi.TestOutcomeCounts), so uploading data does not trip the volume
// alert, and its written versions are its entities (at most 100).
func TestReturnedCountsReads(t *testing.T) {
	// An upload of 10,001 resources with Prefer: return=representation.
	written := make([]interaction.Ref, 10001)
	for i := range written {
		written[i] = interaction.Ref{Type: "Observation", ID: fmt.Sprintf("o%d", i), Version: "1"}
	}
	ev := bundleStage(t, "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[]}`, 200,
		interaction.Outcome{BundleType: "transaction", Written: written})
	if ev.Interaction != "transaction" || ev.Returned != 0 || len(ev.Entities) != maxBundleEntities || ev.Entities[99].ID != "o99" {
		t.Errorf("upload: interaction %s, returned %d, %d entities, want 0 and %d", ev.Interaction, ev.Returned, len(ev.Entities), maxBundleEntities)
	}
	ev = bundleStage(t, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[]}`, 200,
		interaction.Outcome{BundleType: "batch", Returned: 7, Written: written[:1]})
	if ev.Interaction != "batch" || ev.Returned != 7 || len(ev.Entities) != 1 {
		t.Errorf("batch: interaction %s, returned %d, %d entities, want 7", ev.Interaction, ev.Returned, len(ev.Entities))
	}
	// A Bundle the service refused still has its type.
	ev = bundleStage(t, "POST", "/fhir", ``, 413, interaction.Outcome{BundleType: "batch"})
	if ev.Interaction != "batch" || ev.Returned != 0 || len(ev.Entities) != 0 {
		t.Errorf("refused batch: %+v", ev)
	}

	// Searches and reads still count what they return.
	ev = bundleStage(t, "GET", "/fhir/Observation?code=x", "", 200, interaction.Outcome{Returned: 2})
	if ev.Returned != 2 {
		t.Errorf("search: returned %d", ev.Returned)
	}
	ev = bundleStage(t, "GET", "/fhir/Patient/p1/$everything", "", 200, interaction.Outcome{Returned: 3})
	if ev.Returned != 3 || ev.Interaction != "operation" || ev.Patient != "p1" {
		t.Errorf("$everything: %+v", ev)
	}
	ev = bundleStage(t, "POST", "/fhir/Patient/p1/$everything", `{"resourceType":"Parameters"}`, 200, interaction.Outcome{Returned: 1})
	if ev.Returned != 1 || ev.Interaction != "operation" || ev.Patient != "p1" {
		t.Errorf("POST $everything: %+v", ev)
	}
	ev = bundleStage(t, "GET", "/fhir/Patient/p1/Observation?code=x", "", 200, interaction.Outcome{Returned: 2})
	if ev.Returned != 2 || ev.Interaction != "search-type" || ev.Patient != "p1" {
		t.Errorf("compartment search: %+v", ev)
	}
	ev = bundleStage(t, "GET", "/fhir/Patient/p1", "", 200, interaction.Outcome{Resource: interaction.Ref{Type: "Patient", ID: "p1", Version: "4"}})
	if ev.Returned != 1 || len(ev.Entities) != 1 || ev.Entities[0].Version != "4" {
		t.Errorf("read: %+v", ev)
	}
	// A create echoing its resource is not a read; its id and version
	// come from the outcome.
	ev = bundleStage(t, "POST", "/fhir/Observation", `{}`, 201, interaction.Outcome{Resource: interaction.Ref{Type: "Observation", ID: "x", Version: "1"}})
	if ev.Returned != 0 || len(ev.Entities) != 1 || ev.Entities[0].ID != "x" || ev.Entities[0].Version != "1" {
		t.Errorf("create: %+v", ev)
	}
	// A conditional update names the resource it updated.
	ev = bundleStage(t, "PUT", "/fhir/Observation?identifier=s|1", `{}`, 200, interaction.Outcome{Resource: interaction.Ref{Type: "Observation", ID: "y", Version: "2"}})
	if len(ev.Entities) < 1 || ev.Entities[0].ID != "y" || ev.Entities[0].Version != "2" {
		t.Errorf("conditional update: %+v", ev)
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
