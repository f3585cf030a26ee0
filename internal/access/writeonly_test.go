package access_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/lapis-health/lapis/internal/principal"
)

// TestWriteOnlyScopes: a client with create/update scopes but no read
// scope (an ingest feed) can create and update, cannot read, and cannot
// write outside its types; a patient-bound writer stays in its compartment.
func TestWriteOnlyScopes(t *testing.T) {
	e := open(t, "sqlite")
	feed := principal.NewContext(context.Background(), &principal.Principal{Method: "apikey", ClientID: "feed", Scopes: []string{"system/Observation.cu"}})
	body := `{"resourceType":"Observation","status":"final","code":{"text":"feed"},"subject":{"reference":"Patient/pa"}}`
	if st, _ := outcomeOf(t, feed, e.svc, create("Observation", body)); st != http.StatusCreated {
		t.Fatalf("create by a write-only client: %d", st)
	}
	upd := `{"resourceType":"Observation","id":"feed-1","status":"amended","code":{"text":"feed"}}`
	if st, _ := outcomeOf(t, feed, e.svc, update("Observation", "feed-1", upd)); st != http.StatusCreated {
		t.Fatalf("create-on-update by a write-only client: %d", st)
	}
	if st, _ := outcomeOf(t, feed, e.svc, update("Observation", "feed-1", upd)); st != http.StatusOK {
		t.Fatalf("update by a write-only client: %d", st)
	}
	if st, _ := outcomeOf(t, feed, e.svc, read("Observation", "feed-1")); st != http.StatusForbidden {
		t.Fatalf("read by a write-only client: %d", st)
	}
	if st, _ := outcomeOf(t, feed, e.svc, create("Condition", `{"resourceType":"Condition","subject":{"reference":"Patient/pa"}}`)); st != http.StatusForbidden {
		t.Fatalf("create of another type: %d", st)
	}
	if st, _ := outcomeOf(t, feed, e.svc, del("Observation", "feed-1")); st != http.StatusForbidden {
		t.Fatalf("delete without d: %d", st)
	}
	// A patient-bound writer cannot write into another patient's compartment.
	pw := principal.NewContext(context.Background(), &principal.Principal{Method: "apikey", ClientID: "pw", Patient: "pa", Scopes: []string{"patient/Observation.c"}})
	mine := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pa"}}`
	other := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pb"}}`
	if st, _ := outcomeOf(t, pw, e.svc, create("Observation", mine)); st != http.StatusCreated {
		t.Fatalf("patient writer, own compartment: %d", st)
	}
	if st, _ := outcomeOf(t, pw, e.svc, create("Observation", other)); st != http.StatusForbidden {
		t.Fatalf("patient writer, other compartment: %d", st)
	}
}
