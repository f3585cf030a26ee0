package fhirapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/httpx"
)

// TestRoutingBeforeStages: the stages run after routing — they see
// r.Pattern and the interaction built from the route; what no route
// matches runs them too (as an unrouted interaction) before its 404 or
// 405; /metadata runs none; searches carry the search time budget; the
// request log learns the route.
func TestRoutingBeforeStages(t *testing.T) {
	t.Parallel()
	type seen struct {
		pattern     string
		ix          *interaction.Interaction
		hasDeadline bool
	}
	var got *seen
	stage := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, dl := r.Context().Deadline()
			got = &seen{pattern: r.Pattern, ix: interaction.FromContext(r.Context()), hasDeadline: dl}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, func(c *Config, _ *resourceConfig) {
		c.Middleware = stage
		c.SearchTimeout = time.Minute
	})
	for _, c := range []struct {
		method, path, pattern string
		kind                  interaction.Kind
		typ, id               string
		status                int
		deadline              bool
		class                 string
	}{
		{"GET", "/fhir/Patient?name=x", "GET /fhir/{type}", interaction.SearchType, "Patient", "", 200, true, "fhir.search-type"},
		{"GET", "/fhir/Patient/p1", "GET /fhir/{type}/{id}", interaction.Read, "Patient", "p1", 404, false, "fhir.read"},
		{"GET", "/fhir/Patient/p1/_history", "GET /fhir/{type}/{id}/_history", interaction.HistoryInst, "Patient", "p1", 404, true, "fhir.history-instance"},
		{"GET", "/fhir/Patient/p1/$everything", "GET /fhir/Patient/{id}/$everything", interaction.Operation, "Patient", "p1", 404, true, "fhir.operation"},
		{"GET", "/fhir/Patient/p1/Observation", "GET /fhir/{comp}/{cid}/{type}", interaction.SearchType, "Observation", "", 200, true, "fhir.search-compartment"},
		{"DELETE", "/fhir/Patient?name=x", "DELETE /fhir/{type}", interaction.Delete, "Patient", "", 204, false, "fhir.conditional-delete"},
		// Unrouted: the stages run, then 405 or 404.
		{"POST", "/fhir/Patient/_history", "", interaction.HistoryType, "Patient", "", 405, true, "fhir.history-type"},
		{"POST", "/fhir/Patient/p1", "/", interaction.Unknown, "Patient", "p1", 405, false, "fhir.other"},
		{"GET", "/fhir/a/b/c/d/e", "/", interaction.Unknown, "a", "b", 404, false, "fhir.other"},
	} {
		got = nil
		ctx, info := httpx.NewContext(context.Background(), "r1")
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, c.method, "http://lapis.test"+c.path, nil))
		if got == nil {
			t.Errorf("%s %s: the stages did not run", c.method, c.path)
			continue
		}
		if got.pattern != c.pattern || got.ix == nil || got.ix.Kind != c.kind || got.ix.Type != c.typ || got.ix.ID != c.id || got.hasDeadline != c.deadline {
			t.Errorf("%s %s: stages saw pattern %q, %+v, deadline %v", c.method, c.path, got.pattern, got.ix, got.hasDeadline)
		}
		if rec.Code != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, rec.Code, c.status)
		}
		if route, _ := info.Route(); route.Class != c.class || !strings.HasPrefix(route.Pattern, "/fhir") || strings.Contains(route.Pattern, "p1") {
			t.Errorf("%s %s: request log route %+v, want class %s", c.method, c.path, route, c.class)
		}
	}
	got = nil
	e.do("GET", "/fhir/metadata", "").expect(t, 200)
	if got != nil {
		t.Fatal("/metadata ran the stages")
	}
}
