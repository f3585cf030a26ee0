package fhirapi

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
)

// TestOutcomeCounts: the handler reports what it did in the context's
// interaction.Outcome (the audit trail reads it instead of regexing the
// response): the resource a read or write touched, the resources a search
// returns — not the entries inside a returned document Bundle, which
// counting "fullUrl" in the response bytes took for more — and for a batch
// or transaction only what its read entries returned, with the versions
// it wrote.
func TestOutcomeCounts(t *testing.T) {
	t.Parallel()
	var last *interaction.Outcome
	e := newEnv(t, func(c *Config, _ *resourceConfig) {
		c.Middleware = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				last = &interaction.Outcome{}
				next.ServeHTTP(w, r.WithContext(interaction.NewOutcomeContext(r.Context(), last)))
			})
		}
	})
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`).expect(t, http.StatusCreated)
	if want := (interaction.Ref{Type: "Patient", ID: "p1", Version: "1"}); last.Resource != want {
		t.Errorf("update: %+v", last)
	}
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","active":true}`).expect(t, http.StatusOK)
	e.do("GET", "/fhir/Patient/p1", "").expect(t, http.StatusOK)
	if want := (interaction.Ref{Type: "Patient", ID: "p1", Version: "2"}); last.Resource != want {
		t.Errorf("read: %+v", last)
	}
	doc := `{"resourceType":"Bundle","id":"doc","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Basic","code":{"text":"x"}}},{"fullUrl":"urn:uuid:2","resource":{"resourceType":"Basic","code":{"text":"y"}}}]}`
	e.do("PUT", "/fhir/Bundle/doc", doc).expect(t, http.StatusCreated)
	e.do("GET", "/fhir/Bundle", "").expect(t, http.StatusOK)
	if last.Returned != 1 {
		t.Errorf("search of a Bundle with 2 entries: returned %d, want 1", last.Returned)
	}
	e.do("GET", "/fhir/Patient/p1/_history", "").expect(t, http.StatusOK)
	if last.Returned != 2 {
		t.Errorf("history: returned %d, want 2", last.Returned)
	}

	batch := `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient/p1"}},
		{"request":{"method":"GET","url":"Patient?_id=p1"}},
		{"request":{"method":"GET","url":"Patient/p1/_history"}},
		{"request":{"method":"GET","url":"Bundle/doc"}},
		{"request":{"method":"GET","url":"Patient/missing"}},
		{"request":{"method":"POST","url":"Basic"},"resource":{"resourceType":"Basic","id":"n","code":{"text":"z"}}},
		{"request":{"method":"DELETE","url":"Bundle/doc"}}]}`
	e.do("POST", "/fhir", batch, "Prefer: return=representation").expect(t, http.StatusOK)
	if last.BundleType != "batch" || last.Returned != 1+1+2+1 || len(last.Written) != 1 || last.Written[0].Type != "Basic" || last.Written[0].Version != "1" {
		t.Errorf("batch: %+v", last)
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:a","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}},
		{"request":{"method":"PUT","url":"Patient/p2"},"resource":{"resourceType":"Patient","id":"p2"}}]}`
	e.do("POST", "/fhir", tx, "Prefer: return=representation").expect(t, http.StatusOK)
	if last.BundleType != "transaction" || last.Returned != 0 || len(last.Written) != 2 || !reflect.DeepEqual(last.Written[1], interaction.Ref{Type: "Patient", ID: "p2", Version: "1"}) {
		t.Errorf("transaction: %+v", last)
	}
	e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":{}}`).expect(t, http.StatusBadRequest)
	if last.BundleType != "batch" || last.Returned != 0 {
		t.Errorf("refused batch: %+v", last)
	}
}
