package fhirapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/access"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
)

// compartmentDialects runs f as a parallel subtest on a compartmentEnv of
// each dialect.
func compartmentDialects(t *testing.T, f func(t *testing.T, e *env)) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f(t, compartmentEnv(t, dialect))
		})
	}
}

// compartmentEnv loads a small data set on a dialect:
//
//	p1, p2, p3 (p3 links to p1), Practitioner dr, Organization org
//	o1: subject p1            o2: subject p2
//	o3: subject p2, performer p1 (in both compartments)
//	o4: subject p2, focus p1 (focus is not a compartment parameter)
//	e1: Encounter of p1       c1: Condition of p1
//
// Every write gets its own second (the service clock is a counter), in
// that order. Callers send X-Scopes (space-separated SMART scopes) and
// X-Patient to act under the access policy; without X-Scopes access is
// unrestricted.
func compartmentEnv(t *testing.T, dialect string, opts ...envOption) *env {
	t.Helper()
	reg, _, _ := shared(t)
	var tick atomic.Int64
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	opts = append([]envOption{func(c *Config, rc *resourceConfig) {
		rc.Now = func() time.Time { return t0.Add(time.Duration(tick.Add(1)) * time.Second) }
		rc.Access = access.NewPolicy(reg)
		c.Middleware = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p := &principal.Principal{Method: "bearer", ClientID: "test", Scopes: []string{"system/*.cruds"}}
				if s := r.Header.Get("X-Scopes"); s != "" {
					p.Scopes = strings.Fields(s)
					p.Patient = r.Header.Get("X-Patient")
				}
				next.ServeHTTP(w, r.WithContext(principal.NewContext(r.Context(), p)))
			})
		}
	}}, opts...)
	e := newEnvOn(t, dialect, opts...)
	for _, b := range []string{
		`{"resourceType":"Patient","id":"p1","name":[{"family":"One"}]}`,
		`{"resourceType":"Patient","id":"p2","name":[{"family":"Two"}]}`,
		`{"resourceType":"Patient","id":"p3","link":[{"other":{"reference":"Patient/p1"},"type":"seealso"}]}`,
		`{"resourceType":"Practitioner","id":"dr"}`,
		`{"resourceType":"Organization","id":"org","name":"Acme"}`,
		obsJSON("o1", "p1", ""),
		obsJSON("o2", "p2", ""),
		obsJSON("o3", "p2", `,"performer":[{"reference":"Patient/p1"}]`),
		obsJSON("o4", "p2", `,"focus":[{"reference":"Patient/p1"}]`),
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}}`,
		`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"text":"x"}}`,
	} {
		typ, id := typeOf(t, b), idOf(t, b)
		e.do("PUT", "/fhir/"+typ+"/"+id, b).expect(t, http.StatusCreated)
	}
	return e
}

// lastUpdated reads the meta.lastUpdated of a resource.
func lastUpdated(t *testing.T, e *env, path string) time.Time {
	t.Helper()
	v, _ := get(e.do("GET", path, "").expect(t, http.StatusOK).json(t), "meta", "lastUpdated").(string)
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t.Fatalf("%s: meta.lastUpdated %q", path, v)
	}
	return ts
}

func obsJSON(id, subject, extra string) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"subject":{"reference":"Patient/%s"}%s}`, id, subject, extra)
}

func idOf(t testing.TB, body string) string {
	t.Helper()
	_, rest, _ := strings.Cut(body, `"id":"`)
	id, _, _ := strings.Cut(rest, `"`)
	return id
}

// matches lists the Type/id of the match entries of a searchset, in order.
func matches(t testing.TB, b map[string]any) []string {
	t.Helper()
	var out []string
	for _, en := range entries(b) {
		if get(en, "search", "mode") != "match" {
			continue
		}
		out = append(out, fmt.Sprint(get(en, "resource", "resourceType"))+"/"+fmt.Sprint(get(en, "resource", "id")))
	}
	return out
}

// included lists the Type/id of the include entries of a searchset, in
// order.
func included(t testing.TB, b map[string]any) []string {
	t.Helper()
	var out []string
	for _, en := range entries(b) {
		if get(en, "search", "mode") == "include" {
			out = append(out, fmt.Sprint(get(en, "resource", "resourceType"))+"/"+fmt.Sprint(get(en, "resource", "id")))
		}
	}
	return out
}

// pages follows the next links from path and returns every match, checking
// that each link stays on linkPath.
func (e *env) pages(t *testing.T, path, linkPath string, hdr ...string) (all []string, n int) {
	t.Helper()
	for path != "" {
		if n++; n > 20 {
			t.Fatal("too many pages")
		}
		b := e.do("GET", path, "", hdr...).expect(t, http.StatusOK).json(t)
		all = append(all, matches(t, b)...)
		next := link(b, "next")
		if next == "" {
			break
		}
		if u, _ := url.Parse(next); u == nil || u.Path != linkPath {
			t.Fatalf("next link %q is not on %s", next, linkPath)
		}
		path = pathOf(t, next)
	}
	return all, n
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func expectSet(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if g, w := sortedCopy(got), sortedCopy(want); !slices.Equal(g, w) {
		t.Errorf("%s: got %v, want %v", what, g, w)
	}
}

// TestCompartmentSearch: GET [base]/Patient/{id}/{type} is the search of
// type restricted to the Patient compartment of {id} (R4
// CompartmentDefinition/patient), paged on the compartment URL.
func TestCompartmentSearch(t *testing.T) {
	compartmentDialects(t, func(t *testing.T, e *env) {
		search := func(path string) []string {
			t.Helper()
			b := e.do("GET", path, "").expect(t, http.StatusOK).json(t)
			if got := matches(t, b); b["total"] != float64(len(got)) {
				t.Errorf("%s: total %v for %d matches", path, b["total"], len(got))
			}
			return matches(t, b)
		}
		expectSet(t, "Patient/p1/Observation", search("/fhir/Patient/p1/Observation"), "Observation/o1", "Observation/o3")
		expectSet(t, "Patient/p2/Observation", search("/fhir/Patient/p2/Observation"), "Observation/o2", "Observation/o3", "Observation/o4")
		expectSet(t, "with criteria", search("/fhir/Patient/p1/Observation?subject=Patient/p2"), "Observation/o3")
		expectSet(t, "Patient/p1/Patient", search("/fhir/Patient/p1/Patient"), "Patient/p1", "Patient/p3")
		expectSet(t, "Patient/p1/Encounter", search("/fhir/Patient/p1/Encounter"), "Encounter/e1")
		expectSet(t, "Patient/p1/*", search("/fhir/Patient/p1/*"),
			"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o3", "Encounter/e1", "Condition/c1")
		expectSet(t, "Patient/p1/* with _type", search("/fhir/Patient/p1/*?_type=Condition,Encounter"), "Encounter/e1", "Condition/c1")
		expectSet(t, "unknown patient", search("/fhir/Patient/nobody/Observation"))

		// POST _search with a form body.
		r := e.do("POST", "/fhir/Patient/p1/Observation/_search", "subject=Patient/p1", "Content-Type: application/x-www-form-urlencoded")
		expectSet(t, "POST _search", matches(t, r.expect(t, http.StatusOK).json(t)), "Observation/o1")

		// Paging stays on the compartment URL.
		all, n := e.pages(t, "/fhir/Patient/p2/Observation?_count=1", "/fhir/Patient/p2/Observation")
		expectSet(t, "paged", all, "Observation/o2", "Observation/o3", "Observation/o4")
		if n != 3 {
			t.Errorf("%d pages, want 3", n)
		}
		b := e.do("GET", "/fhir/Patient/p1/Observation?code=8310-5", "").json(t)
		if self := link(b, "self"); !strings.HasPrefix(self, testBase+"/Patient/p1/Observation?") {
			t.Errorf("self link %q", self)
		}

		// Errors.
		e.do("GET", "/fhir/Patient/p1/Organization", "").outcome(t, http.StatusBadRequest)
		e.do("GET", "/fhir/Patient/p1/Nonsense", "").outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Encounter/e1/Observation", "").outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Nonsense/e1/Observation", "").outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Patient/a%20b/Observation", "").outcome(t, http.StatusBadRequest)
		e.do("GET", "/fhir/Observation/o1/$validate", "").outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Patient/p1/Observation?bad-param=1", "", "Prefer: handling=strict").outcome(t, http.StatusBadRequest)
		// The other routes keep their meaning.
		e.do("GET", "/fhir/Patient/p1/_history", "").expect(t, http.StatusOK)
		e.do("GET", "/fhir/Patient/p1/_history/1", "").expect(t, http.StatusOK)
	})
}

// TestEverything: Patient/{id}/$everything returns the Patient and its
// compartment, with _type, _since, _count paging, the response size limit
// and POST with a Parameters body.
func TestEverything(t *testing.T) {
	compartmentDialects(t, func(t *testing.T, e *env) {
		p1All := []string{"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o3", "Encounter/e1", "Condition/c1"}
		const path = "/fhir/Patient/p1/$everything"
		b := e.do("GET", path, "").expect(t, http.StatusOK).json(t)
		if b["resourceType"] != "Bundle" || b["type"] != "searchset" || b["total"] != float64(len(p1All)) {
			t.Fatalf("not a searchset of %d: type %v total %v", len(p1All), b["type"], b["total"])
		}
		expectSet(t, "$everything", matches(t, b), p1All...)
		// Oldest change first (the writes' order).
		if got := matches(t, b); !slices.Equal(got, []string{"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o3", "Encounter/e1", "Condition/c1"}) {
			t.Errorf("order %v", got)
		}
		expectSet(t, "_type", matches(t, e.do("GET", path+"?_type=Observation,Encounter", "").expect(t, 200).json(t)),
			"Observation/o1", "Observation/o3", "Encounter/e1")
		expectSet(t, "_type repeated", matches(t, e.do("GET", path+"?_type=Observation&_type=Patient", "").expect(t, 200).json(t)),
			"Observation/o1", "Observation/o3", "Patient/p1", "Patient/p3")
		org := e.do("GET", path+"?_type=Organization", "").expect(t, 200)
		expectSet(t, "_type outside the compartment", matches(t, org.json(t)))
		if !strings.Contains(string(org.body), "not in the Patient compartment") {
			t.Errorf("no warning for a type outside the compartment: %s", org.body)
		}
		// _since: the writes are at least a second apart; o3 is
		// followed by o4, e1 and c1.
		since := lastUpdated(t, e, "/fhir/Observation/o3")
		expectSet(t, "_since", matches(t, e.do("GET", path+"?_since="+since.Format(time.RFC3339), "").expect(t, 200).json(t)),
			"Observation/o3", "Encounter/e1", "Condition/c1")
		expectSet(t, "_since with an offset", matches(t, e.do("GET", path+"?_since="+url.QueryEscape(since.In(time.FixedZone("", 3600)).Format(time.RFC3339)), "").expect(t, 200).json(t)),
			"Observation/o3", "Encounter/e1", "Condition/c1")
		expectSet(t, "_since just after", matches(t, e.do("GET", path+"?_since="+since.Add(time.Millisecond).Format(time.RFC3339Nano), "").expect(t, 200).json(t)),
			"Encounter/e1", "Condition/c1")

		// Paging by _count; the links keep _since and _type.
		all, n := e.pages(t, path+"?_count=2", "/fhir/Patient/p1/$everything")
		if !slices.Equal(all, []string{"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o3", "Encounter/e1", "Condition/c1"}) || n != 3 {
			t.Errorf("paged: %v in %d pages", all, n)
		}
		sinceQ := "_since=" + since.Format(time.RFC3339) + "&_type=Observation,Condition"
		first := e.do("GET", path+"?_count=1&"+sinceQ, "").json(t)
		next := link(first, "next")
		if q, _ := url.Parse(next); q == nil || q.Query().Get("_since") != since.Format(time.RFC3339) || q.Query().Get("_type") != "Observation,Condition" || q.Query().Has("_lastUpdated") {
			t.Errorf("next link %q", next)
		}
		all, _ = e.pages(t, path+"?_count=1&"+sinceQ, "/fhir/Patient/p1/$everything")
		expectSet(t, "paged with _since and _type", all, "Observation/o3", "Condition/c1")

		// POST with a Parameters body.
		params := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueCode":"Observation"},{"name":"_count","valueInteger":1}]}`
		r := e.do("POST", path, params).expect(t, http.StatusOK).json(t)
		if got := matches(t, r); len(got) != 1 || r["total"] != float64(2) || link(r, "next") == "" {
			t.Errorf("POST: matches %v total %v next %q", got, r["total"], link(r, "next"))
		}

		// Errors.
		e.do("GET", path+"?start=2020-01-01", "").outcome(t, http.StatusBadRequest)
		e.do("GET", path+"?foo=bar", "").outcome(t, http.StatusBadRequest)
		e.do("GET", path+"?_since=yesterday", "").outcome(t, http.StatusBadRequest)
		e.do("GET", path+"?_type=Nonsense", "").outcome(t, http.StatusBadRequest)
		e.do("GET", path+"?_count=-1", "").outcome(t, http.StatusBadRequest)
		e.do("POST", path, `{"resourceType":"Patient"}`).outcome(t, http.StatusBadRequest)
		e.do("GET", "/fhir/Patient/a%20b/$everything", "").outcome(t, http.StatusBadRequest)
		// The operation is on the Patient: unknown 404, deleted 410.
		e.do("GET", "/fhir/Patient/nobody/$everything", "").outcome(t, http.StatusNotFound)
		e.do("PUT", "/fhir/Patient/gone1", `{"resourceType":"Patient","id":"gone1"}`).expect(t, http.StatusCreated)
		e.do("DELETE", "/fhir/Patient/gone1", "").expect(t, http.StatusNoContent)
		e.do("GET", "/fhir/Patient/gone1/$everything", "").outcome(t, http.StatusGone)

		// A patient's Devices (Device.patient; Device is outside the R4
		// compartment) are part of its record, another's are not, for
		// every caller.
		e.do("PUT", "/fhir/Device/d1", `{"resourceType":"Device","id":"d1","patient":{"reference":"Patient/p1"}}`).expect(t, http.StatusCreated)
		e.do("PUT", "/fhir/Device/d2", `{"resourceType":"Device","id":"d2","patient":{"reference":"Patient/p2"}}`).expect(t, http.StatusCreated)
		dev := e.do("GET", path+"?_type=Device", "").expect(t, http.StatusOK)
		expectSet(t, "Devices", matches(t, dev.json(t)), "Device/d1")
		if strings.Contains(string(dev.body), "not in the Patient compartment") {
			t.Errorf("a warning for Device: %s", dev.body)
		}
		expectSet(t, "everything with Devices", matches(t, e.do("GET", path, "").expect(t, http.StatusOK).json(t)), append(p1All, "Device/d1")...)
		expectSet(t, "Devices, patient scope", matches(t, e.do("GET", path+"?_type=Device", "", "X-Scopes: patient/*.rs", "X-Patient: p1").expect(t, http.StatusOK).json(t)), "Device/d1")

		// What the record references outside it follows as include
		// entries, as far as the caller may read it: o5's Practitioner and
		// Organization, never another patient's record (p2).
		e.do("PUT", "/fhir/Observation/o5", obsJSON("o5", "p1", `,"performer":[{"reference":"Practitioner/dr"},{"reference":"Organization/org"},{"reference":"Patient/p2"}]`)).expect(t, http.StatusCreated)
		b = e.do("GET", path, "").expect(t, http.StatusOK).json(t)
		expectSet(t, "referenced", included(t, b), "Practitioner/dr", "Organization/org")
		expectSet(t, "everything with o5", matches(t, b), append(p1All, "Device/d1", "Observation/o5")...)
		if b["total"] != float64(len(p1All)+2) {
			t.Errorf("total %v counts the includes", b["total"])
		}
		expectSet(t, "_type without the referenced types", included(t, e.do("GET", path+"?_type=Observation", "").expect(t, 200).json(t)))
		typed := e.do("GET", path+"?_type=Observation,Practitioner", "").expect(t, 200)
		expectSet(t, "_type naming Practitioner", included(t, typed.json(t)), "Practitioner/dr")
		expectSet(t, "_type naming Practitioner, matches", matches(t, typed.json(t)), "Observation/o1", "Observation/o3", "Observation/o5")
		if !strings.Contains(string(typed.body), "only as referenced") {
			t.Errorf("no warning for Practitioner in _type: %s", typed.body)
		}
		expectSet(t, "patient scope", included(t, e.do("GET", path, "", "X-Scopes: patient/*.rs", "X-Patient: p1").expect(t, 200).json(t)),
			"Practitioner/dr", "Organization/org")
		expectSet(t, "patient scope without Practitioner", included(t, e.do("GET", path, "", "X-Scopes: patient/Observation.rs patient/Patient.rs patient/Organization.rs", "X-Patient: p1").expect(t, 200).json(t)),
			"Organization/org")
		// Paged: each page brings what its own matches reference.
		var inc []string
		for p := path + "?_count=2"; p != ""; {
			pb := e.do("GET", p, "").expect(t, http.StatusOK).json(t)
			for _, m := range included(t, pb) {
				inc = append(inc, m)
			}
			p = ""
			if next := link(pb, "next"); next != "" {
				p = pathOf(t, next)
			}
		}
		expectSet(t, "referenced, paged", inc, "Practitioner/dr", "Organization/org")
	})
}

// TestEverythingResponseLimit: a $everything page that would exceed the
// response size limit is cut short; its next link continues where it was
// cut, so paging still returns everything once.
func TestEverythingResponseLimit(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			const limit = 1400
			e := compartmentEnv(t, dialect, func(c *Config, rc *resourceConfig) { rc.MaxResponseBytes = limit })
			// c1 references a Practitioner: its page must hold it too
			// (a page too large with it is run again with fewer matches).
			e.do("PUT", "/fhir/Condition/c1", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"text":"x"},`+
				`"asserter":{"reference":"Practitioner/dr"}}`).expect(t, http.StatusOK)
			var all, inc []string
			pages := 0
			for path := "/fhir/Patient/p1/$everything?_count=100"; path != ""; pages++ {
				if pages > 10 {
					t.Fatal("too many pages")
				}
				r := e.do("GET", path, "").expect(t, http.StatusOK)
				if len(r.body) > limit {
					t.Errorf("page of %d bytes over the %d-byte limit", len(r.body), limit)
				}
				b := r.json(t)
				if len(matches(t, b)) == 0 {
					t.Fatalf("empty page %s", r.body)
				}
				all = append(all, matches(t, b)...)
				inc = append(inc, included(t, b)...)
				path = ""
				if next := link(b, "next"); next != "" {
					path = pathOf(t, next)
					if !strings.Contains(next, "_count=100") {
						t.Errorf("next link %s: not the request's _count", next)
					}
				}
			}
			if !slices.Equal(all, []string{"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o3", "Encounter/e1", "Condition/c1"}) {
				t.Errorf("pages gave %v", all)
			}
			if !slices.Equal(inc, []string{"Practitioner/dr"}) {
				t.Errorf("pages included %v", inc)
			}
			if pages < 3 {
				t.Errorf("%d pages under a %d-byte limit", pages, limit)
			}
			// A compartment search keeps the search rule: 413.
			e.do("GET", "/fhir/Patient/p1/*?_count=100", "").outcome(t, http.StatusRequestEntityTooLarge)
		})
	}
}

// TestCompartmentAccess: compartment search and $everything run under the
// caller's scopes: a patient-bound caller asking for another patient's
// compartment gets only what is also in its own.
func TestCompartmentAccess(t *testing.T) {
	compartmentDialects(t, func(t *testing.T, e *env) {
		p1 := []string{"X-Scopes: patient/*.rs", "X-Patient: p1"}
		// o3 (subject p2, performer p1) is in both compartments; o2,
		// o4 and p2 are p2's alone.
		// p2 is outside p1's scopes: its $everything is a 404, as its read.
		e.do("GET", "/fhir/Patient/p2/$everything", "", p1...).outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Patient/p2", "", p1...).outcome(t, http.StatusNotFound)
		// A caller who may not read Patients gets the compartment's page,
		// which does not tell whether p2 exists: what is also in p1's.
		obsOnly := []string{"X-Scopes: patient/Observation.rs", "X-Patient: p1"}
		b := e.do("GET", "/fhir/Patient/p2/$everything", "", obsOnly...).expect(t, http.StatusOK).json(t)
		expectSet(t, "Observation scope asking for p2's everything", matches(t, b), "Observation/o3")
		for _, m := range matches(t, b) {
			if m == "Patient/p2" || m == "Observation/o2" || m == "Observation/o4" {
				t.Errorf("p1 got %s", m)
			}
		}
		expectSet(t, "Observation scope asking for nobody's everything", matches(t, e.do("GET", "/fhir/Patient/nobody/$everything", "", obsOnly...).expect(t, http.StatusOK).json(t)))
		expectSet(t, "p1 asking for p2's observations", matches(t, e.do("GET", "/fhir/Patient/p2/Observation", "", p1...).expect(t, 200).json(t)), "Observation/o3")
		expectSet(t, "p1 asking for p2's patients", matches(t, e.do("GET", "/fhir/Patient/p2/Patient", "", p1...).expect(t, 200).json(t)))
		expectSet(t, "p1's own everything", matches(t, e.do("GET", "/fhir/Patient/p1/$everything", "", p1...).expect(t, 200).json(t)),
			"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o3", "Encounter/e1", "Condition/c1")
		// Paging links of another compartment do not reuse a snapshot.
		all, _ := e.pages(t, "/fhir/Patient/p2/$everything?_count=1", "/fhir/Patient/p2/$everything", obsOnly...)
		expectSet(t, "Observation scope paging p2's everything", all, "Observation/o3")
		// Only what the scopes grant: Observations alone.
		expectSet(t, "Observation scope", matches(t, e.do("GET", "/fhir/Patient/p1/$everything", "", obsOnly...).expect(t, 200).json(t)),
			"Observation/o1", "Observation/o3")
		e.do("GET", "/fhir/Patient/p1/Encounter", "", obsOnly...).outcome(t, http.StatusForbidden)
		// Read without search: $everything is a search.
		readOnly := []string{"X-Scopes: patient/*.r", "X-Patient: p1"}
		e.do("GET", "/fhir/Patient/p1/$everything", "", readOnly...).outcome(t, http.StatusForbidden)
		e.do("GET", "/fhir/Patient/p1/Observation", "", readOnly...).outcome(t, http.StatusForbidden)
		// A snapshot made for one caller is not served to another.
		sys := e.do("GET", "/fhir/Patient/p2/$everything?_count=1", "").json(t)
		if next := link(sys, "next"); next != "" {
			b := e.do("GET", pathOf(t, next), "", obsOnly...).expect(t, http.StatusOK).json(t)
			for _, m := range matches(t, b) {
				if m != "Observation/o3" {
					t.Errorf("p1 following a system caller's next link got %s", m)
				}
			}
		} else {
			t.Error("no next link")
		}
	})
}

// TestCapabilityCompartment: the CapabilityStatement announces the Patient
// compartment and $everything.
func TestCapabilityCompartment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := e.do("GET", "/fhir/metadata", "").expect(t, http.StatusOK).json(t)
	if c := get(cs, "rest", 0, "compartment", 0); c != "http://hl7.org/fhir/CompartmentDefinition/patient" {
		t.Errorf("rest.compartment %v", c)
	}
	found := false
	for _, r := range get(cs, "rest", 0, "resource").([]any) {
		if get(r, "type") != "Patient" {
			if get(r, "operation") != nil {
				t.Errorf("%v has operations", get(r, "type"))
			}
			continue
		}
		found = get(r, "operation", 0, "name") == "everything" &&
			get(r, "operation", 0, "definition") == "http://hl7.org/fhir/OperationDefinition/Patient-everything"
	}
	if !found {
		t.Error("Patient has no everything operation")
	}
}

// TestEverythingRefusalCause: $everything of a caller who may not read
// Patients answers the compartment's page without noting a scope refusal
// for the request (the cause its activity and audit event report): one
// that then fails for another reason (a bad _count: 400) is not a scope
// refusal, and a scope refusal (a _type not granted) still is.
func TestEverythingRefusalCause(t *testing.T) {
	var cause atomic.Pointer[httpx.Cause]
	e := compartmentEnv(t, "sqlite", func(c *Config, _ *resourceConfig) {
		inner := c.Middleware
		c.Middleware = func(next http.Handler) http.Handler {
			h := inner(next)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx, _ := httpx.NewContext(r.Context(), "req")
				h.ServeHTTP(w, r.WithContext(ctx))
				c := httpx.Refusal(ctx)
				cause.Store(&c)
			})
		}
	})
	obsOnly := []string{"X-Scopes: patient/Observation.rs", "X-Patient: p1"}
	for _, c := range []struct {
		path   string
		status int
		cause  httpx.Cause
	}{
		{"/fhir/Patient/p2/$everything", http.StatusOK, ""},
		{"/fhir/Patient/p2/$everything?_count=-1", http.StatusBadRequest, ""},
		{"/fhir/Patient/p2", http.StatusForbidden, httpx.CauseScope},
	} {
		r := e.do("GET", c.path, "", obsOnly...)
		if got := *cause.Load(); r.code != c.status || got != c.cause {
			t.Errorf("%s: %d, refusal cause %q; want %d, %q", c.path, r.code, got, c.status, c.cause)
		}
	}
}

// TestEverythingTypeLinks: a _type naming a type outside the record (it
// comes only as referenced) stays in the paging links, so that every page
// brings the resources of that type its matches reference, not only the
// first.
func TestEverythingTypeLinks(t *testing.T) {
	compartmentDialects(t, func(t *testing.T, e *env) {
		// o1 and o3 are p1's first and second Observations; o3 is
		// re-written to reference dr, which makes it the last one.
		e.do("PUT", "/fhir/Observation/o3", obsJSON("o3", "p2", `,"performer":[{"reference":"Patient/p1"},{"reference":"Practitioner/dr"}]`)).expect(t, http.StatusOK)
		const path = "/fhir/Patient/p1/$everything?_type=Observation,Practitioner&_count=1"
		var all, inc []string
		for p, n := path, 0; p != ""; n++ {
			if n > 5 {
				t.Fatal("too many pages")
			}
			b := e.do("GET", p, "").expect(t, http.StatusOK).json(t)
			all = append(all, matches(t, b)...)
			inc = append(inc, included(t, b)...)
			p = ""
			if next := link(b, "next"); next != "" {
				if q, _ := url.Parse(next); q == nil || q.Query().Get("_type") != "Observation,Practitioner" {
					t.Errorf("next link %q does not keep _type", next)
				}
				p = pathOf(t, next)
			}
		}
		if !slices.Equal(all, []string{"Observation/o1", "Observation/o3"}) || !slices.Equal(inc, []string{"Practitioner/dr"}) {
			t.Errorf("pages gave %v, included %v", all, inc)
		}
	})
}

// TestEverythingIncludesTooLarge: a page whose single match fits the
// response size limit only without what it references still comes: its
// match alone, with a warning, and the paging goes on (never a 413 for
// resources outside the record, which would stop the paging there).
func TestEverythingIncludesTooLarge(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			const limit = 1400
			e := compartmentEnv(t, dialect, func(c *Config, rc *resourceConfig) { rc.MaxResponseBytes = limit })
			e.do("PUT", "/fhir/Practitioner/big", `{"resourceType":"Practitioner","id":"big","name":[{"text":"`+strings.Repeat("x", limit)+`"}]}`).expect(t, http.StatusCreated)
			e.do("PUT", "/fhir/Condition/c1", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"text":"x"},`+
				`"asserter":{"reference":"Practitioner/big"}}`).expect(t, http.StatusOK)
			var all []string
			warned := false
			for p, n := "/fhir/Patient/p1/$everything?_count=100", 0; p != ""; n++ {
				if n > 10 {
					t.Fatal("too many pages")
				}
				r := e.do("GET", p, "").expect(t, http.StatusOK)
				b := r.json(t)
				all = append(all, matches(t, b)...)
				if inc := included(t, b); len(inc) > 0 {
					t.Errorf("included %v", inc)
				}
				if strings.Contains(string(r.body), "were left out") {
					warned = true
				}
				p = ""
				if next := link(b, "next"); next != "" {
					p = pathOf(t, next)
				}
			}
			if !slices.Equal(all, []string{"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o3", "Encounter/e1", "Condition/c1"}) {
				t.Errorf("pages gave %v", all)
			}
			if !warned {
				t.Error("no warning that the referenced resources were left out")
			}
		})
	}
}
