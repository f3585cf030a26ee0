package audit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
)

// captured is a Committer keeping the last event.
type captured struct{ e Event }

func (c *captured) Record(_ context.Context, e Event) { c.e = e }
func (c *captured) Commit(_ context.Context, e Event) error {
	c.e = e
	return nil
}

// TestStageActivityFields: the stage gives each event its latency, its
// route shape (the pattern, never an id or a value) and the cause a
// stage inside it named.
func TestStageActivityFields(t *testing.T) {
	for _, tc := range []struct {
		method, target, pattern string
		cause                   httpx.Cause
		status                  int
		route                   string
	}{
		{"GET", "/fhir/Patient/secret-id?_elements=name", "/fhir/Patient/{id}", "", 200, "GET /fhir/Patient/{id}?…"},
		{"GET", "/fhir/Observation?code=secret", "/fhir/Observation", httpx.CauseScope, 403, "GET /fhir/Observation?…"},
		{"POST", "/fhir/Observation", "/fhir/Observation", httpx.CauseCompartment, 403, "POST /fhir/Observation"},
		{"GET", "/fhir/Patient/x", "", "", 200, "GET /{path}"},
	} {
		c := &captured{}
		h := routedStage(StageConfig{Recorder: c})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.cause != "" {
				httpx.SetRefusal(r.Context(), tc.cause)
			}
			w.WriteHeader(tc.status)
		}))
		r := httptest.NewRequest(tc.method, tc.target, nil)
		ctx, _ := httpx.NewContext(r.Context(), "id")
		if tc.pattern != "" {
			httpx.SetRoute(ctx, "fhir.x", tc.pattern)
		}
		ctx = principal.NewContext(ctx, &principal.Principal{ClientID: "app"})
		h.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx))
		if c.e.Route != tc.route || c.e.Cause != string(tc.cause) || c.e.Status != tc.status || c.e.Latency <= 0 || c.e.ClientID != "app" {
			t.Errorf("%s %s: route %q cause %q status %d latency %v", tc.method, tc.target, c.e.Route, c.e.Cause, c.e.Status, c.e.Latency)
		}
	}
}
