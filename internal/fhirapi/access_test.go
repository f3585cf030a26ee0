package fhirapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

type patientKey struct{}

// compartmentAccess restricts callers carrying an X-Patient header to that
// patient's compartment and forbids deletes: a stand-in for SMART scopes.
type compartmentAccess struct{ params map[string][]string }

func (a compartmentAccess) Check(ctx context.Context, op resource.Interaction, typ string) error {
	if _, ok := ctx.Value(patientKey{}).(string); ok && op == resource.InteractionDelete {
		return outcome.New(http.StatusForbidden, "forbidden", "deletes are not allowed")
	}
	return nil
}

func (a compartmentAccess) Filter(ctx context.Context) *store.AccessFilter {
	id, ok := ctx.Value(patientKey{}).(string)
	if !ok {
		return nil
	}
	return &store.AccessFilter{Compartment: &store.Compartment{Type: "Patient", ID: id, Params: a.params}}
}

func TestAccessSeam(t *testing.T) {
	t.Parallel()
	reg, _, _ := shared(t)
	params := map[string][]string{}
	for _, typ := range reg.ResourceTypes() {
		if ps := reg.PatientCompartment(typ); len(ps) > 0 && typ != "Patient" {
			params[typ] = ps
		}
	}
	e := newEnv(t, func(c *Config, rc *resourceConfig) {
		rc.Access = compartmentAccess{params: params}
		c.Middleware = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if p := r.Header.Get("X-Patient"); p != "" {
					r = r.WithContext(context.WithValue(r.Context(), patientKey{}, p))
				}
				next.ServeHTTP(w, r)
			})
		}
	})
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`).expect(t, http.StatusCreated)
	e.do("PUT", "/fhir/Patient/p2", `{"resourceType":"Patient","id":"p2"}`).expect(t, http.StatusCreated)
	obs := func(id, pid string) string {
		return fmt.Sprintf(`{"resourceType":"Observation","id":"%s","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/%s"}}`, id, pid)
	}
	e.do("PUT", "/fhir/Observation/o1", obs("o1", "p1")).expect(t, http.StatusCreated)
	e.do("PUT", "/fhir/Observation/o2", obs("o2", "p2")).expect(t, http.StatusCreated)

	as := "X-Patient: p1"
	e.do("GET", "/fhir/Observation/o1", "", as).expect(t, http.StatusOK)
	e.do("GET", "/fhir/Observation/o2", "", as).outcome(t, http.StatusNotFound)
	e.do("GET", "/fhir/Observation/o2/_history/1", "", as).outcome(t, http.StatusNotFound)
	e.do("GET", "/fhir/Observation/o2/_history", "", as).outcome(t, http.StatusNotFound)
	e.do("GET", "/fhir/Patient/p2", "", as).outcome(t, http.StatusNotFound)
	b := e.do("GET", "/fhir/Observation", "", as).expect(t, http.StatusOK).json(t)
	if b["total"] != float64(1) {
		t.Errorf("filtered search total %v", b["total"])
	}
	h := e.do("GET", "/fhir/_history", "", as).expect(t, http.StatusOK).json(t)
	if h["total"] != float64(2) { // Patient/p1 and Observation/o1
		t.Errorf("filtered history total %v", h["total"])
	}
	// Updates outside the compartment look like 404; moving a resource
	// out of the compartment is refused.
	e.do("PUT", "/fhir/Observation/o2", obs("o2", "p2"), as).outcome(t, http.StatusNotFound)
	e.do("PUT", "/fhir/Observation/o1", obs("o1", "p2"), as).outcome(t, http.StatusForbidden)
	e.do("POST", "/fhir/Observation", obs("x", "p2"), as).outcome(t, http.StatusForbidden)
	e.do("POST", "/fhir/Observation", obs("x", "p1"), as).expect(t, http.StatusCreated)
	e.do("DELETE", "/fhir/Observation/o1", "", as).outcome(t, http.StatusForbidden)
	// Without identity: unrestricted.
	e.do("GET", "/fhir/Observation/o2", "").expect(t, http.StatusOK)
}

// Concurrent unversioned updates of one resource all succeed (the service
// retries on store conflicts) and produce consecutive versions.
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.do("PUT", "/fhir/Patient/c", `{"resourceType":"Patient","id":"c"}`).expect(t, http.StatusCreated)
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := e.do("PUT", "/fhir/Patient/c", fmt.Sprintf(`{"resourceType":"Patient","id":"c","birthDate":"2000-01-%02d"}`, i+1))
			codes[i] = r.code
		}(i)
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("update %d: %d", i, c)
		}
	}
	r := e.do("GET", "/fhir/Patient/c", "").expect(t, http.StatusOK)
	if r.hdr.Get("ETag") != fmt.Sprintf(`W/"%d"`, n+1) {
		t.Errorf("ETag %s", r.hdr.Get("ETag"))
	}
	h := e.do("GET", "/fhir/Patient/c/_history", "").json(t)
	if h["total"] != float64(n+1) || strings.Count(string(e.do("GET", "/fhir/Patient/c/_history", "").body), `"fullUrl"`) != n+1 {
		t.Errorf("history total %v", h["total"])
	}
}
