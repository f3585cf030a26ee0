package searchtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/jsonvalue"
	"github.com/lapis-health/lapis/internal/fhirapi"
	"github.com/lapis-health/lapis/internal/sandbox/dataset"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// This file runs every REQ search of conformance.md §5.3 (US Core 6.1.0 and
// 7.0.0 single-patient API, as the certification suite issues them) over
// HTTP against the certification reference server's two patients
// (../shared/data/uscore), with the §5.2 behaviours: GET = POST _search,
// patient=Patient/id = patient=id, system|code variants, date comparators
// around a found value, comma-OR on status and intent, _include of
// Medications and _revinclude of Provenance. Every returned resource is
// checked against every parameter by reading its JSON (ucMatch), not by the
// search engine; searches without a date also return every resource of the
// patient that ucMatch accepts.

// ucPatients are the patients of the reference data.
var ucPatients = []string{"85", "355"}

// loadUSCore loads the reference bundles (shareddata.USCoreBundles repairs
// the one invalid element of uscore_bundle_patient_355.json in memory).
func loadUSCore(t *testing.T, dialect string) *env {
	t.Helper()
	e := &env{app: openApp(t, dialect)}
	for _, b := range shareddata.USCoreBundles(t) {
		if _, err := e.app.Service.Bundle(context.Background(), b.Body, 0); err != nil {
			t.Fatalf("loading %s: %v", b.Name, err)
		}
	}
	return e
}

// ucClient issues searches through the FHIR HTTP handler.
type ucClient struct {
	t           *testing.T
	h           http.Handler
	medications int             // Medications included so far
	delayed     map[string]bool // references to delayed types seen in matches
}

// ucBundle is a parsed searchset.
type ucBundle struct {
	matches  []map[string]any
	included []map[string]any
}

func (c *ucClient) do(method, path, form string) *ucBundle {
	c.t.Helper()
	out := &ucBundle{}
	for path != "" {
		req := searchRequest(method, path, form)
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			c.t.Fatalf("%s %s %s: status %d: %s", method, path, form, rec.Code, rec.Body.String())
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Link         []struct{ Relation, URL string }
			Entry        []struct {
				Resource map[string]any
				Search   struct{ Mode string }
			}
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.ResourceType != "Bundle" {
			c.t.Fatalf("%s %s: not a Bundle: %v", method, path, err)
		}
		for _, en := range b.Entry {
			switch en.Search.Mode {
			case "match":
				out.matches = append(out.matches, en.Resource)
			case "include":
				out.included = append(out.included, en.Resource)
			}
		}
		path, form, method = "", "", "GET"
		for _, l := range b.Link {
			if l.Relation == "next" {
				path = strings.TrimPrefix(l.URL, base)
			}
		}
	}
	return out
}

// ucSearch is one REQ search (a group of queries whose union must be
// non-empty over the two patients).
type ucSearch struct {
	name string
	typ  string
	// queries returns the queries for patient p (values taken from the
	// patient's resources, as the certification suite does).
	queries func(c *ucCtx) []string
	// first marks the profile's first search (re-sent with
	// _revinclude=Provenance:target).
	first bool
}

// ucCtx is the state of one patient's run.
type ucCtx struct {
	c   *ucClient
	p   string
	all map[string][]map[string]any
}

// of returns every resource of typ of the patient (patient=p).
func (x *ucCtx) of(typ string) []map[string]any {
	if r, ok := x.all[typ]; ok {
		return r
	}
	r := x.c.do("GET", "/fhir/"+typ+"?patient="+x.p+"&_count=200", "").matches
	x.all[typ] = r
	return r
}

// withPatient prefixes q with patient=p.
func (x *ucCtx) withPatient(qs ...string) []string {
	var out []string
	for _, q := range qs {
		if q == "" {
			out = append(out, "patient="+x.p)
		} else {
			out = append(out, "patient="+x.p+"&"+q)
		}
	}
	return out
}

// tokenQueries returns, for the first resource of the patient's typ whose
// field holds a coding, param=code and param=system|code.
func (x *ucCtx) tokenQueries(typ, param, extra string, keep func(map[string]any) bool) []string {
	for _, r := range x.of(typ) {
		if keep != nil && !keep(r) {
			continue
		}
		for _, tk := range ucTokens(r, ucFields[typ][param].paths) {
			q := []string{param + "=" + url.QueryEscape(tk.code)}
			if tk.system != "" {
				q = append(q, param+"="+url.QueryEscape(tk.system+"|"+tk.code))
			}
			if extra != "" {
				for i := range q {
					q[i] = extra + "&" + q[i]
				}
			}
			return x.withPatient(q...)
		}
	}
	return nil
}

// dateQueries returns the four comparator searches (gt, ge, lt, le) a day
// around the date of the first resource of typ matching keep.
func (x *ucCtx) dateQueries(typ, param, extra string, keep func(map[string]any) bool) []string {
	for _, r := range x.of(typ) {
		if keep != nil && !keep(r) {
			continue
		}
		rs := ucDates(r, ucFields[typ][param].paths)
		if len(rs) == 0 {
			continue
		}
		d := rs[0].lo
		var q []string
		for _, cmp := range []struct {
			prefix string
			days   int
		}{{"gt", -1}, {"ge", -1}, {"lt", 1}, {"le", 1}} {
			v := cmp.prefix + d.AddDate(0, 0, cmp.days).Format("2006-01-02")
			if extra != "" {
				q = append(q, extra+"&"+param+"="+v)
			} else {
				q = append(q, param+"="+v)
			}
		}
		return x.withPatient(q...)
	}
	return nil
}

func hasToken(typ, param, code string) func(map[string]any) bool {
	return func(r map[string]any) bool {
		for _, tk := range ucTokens(r, ucFields[typ][param].paths) {
			if strings.EqualFold(tk.code, code) {
				return true
			}
		}
		return false
	}
}

// categoryFirst returns, for a category-based profile, the category search
// and, from a resource of that category, its date and code searches.
func categoryFirst(typ, category string, date string) func(x *ucCtx) []string {
	return func(x *ucCtx) []string {
		keep := hasToken(typ, "category", category)
		q := x.withPatient("category=" + category)
		for _, r := range x.of(typ) {
			if keep(r) {
				q = append(q, x.tokenQueries(typ, "category", "", keep)...)
				q = append(q, x.dateQueries(typ, date, "category="+category, keep)...)
				q = append(q, x.tokenQueries(typ, "code", "", keep)...)
				break
			}
		}
		return q
	}
}

// observationCode returns the searches of a code-based Observation profile.
func observationCode(codes ...string) func(x *ucCtx) []string {
	return func(x *ucCtx) []string {
		var q []string
		for _, code := range codes {
			keep := hasToken("Observation", "code", code)
			q = append(q, x.withPatient("code="+code)...)
			for _, r := range x.of("Observation") {
				if !keep(r) {
					continue
				}
				q = append(q, x.tokenQueries("Observation", "code", "", keep)...)
				for _, tk := range ucTokens(r, ucFields["Observation"]["category"].paths) {
					q = append(q, x.withPatient("category="+url.QueryEscape(tk.system+"|"+tk.code))...)
					q = append(q, x.dateQueries("Observation", "date", "category="+tk.code, keep)...)
					break
				}
				break
			}
		}
		return q
	}
}

func fixed(qs ...string) func(x *ucCtx) []string {
	return func(x *ucCtx) []string { return x.withPatient(qs...) }
}

// idQuery searches _id of the patient's first resource of typ.
func idQuery(typ string) func(x *ucCtx) []string {
	return func(x *ucCtx) []string {
		if r := x.of(typ); len(r) > 0 {
			return []string{"_id=" + r[0]["id"].(string)}
		}
		return nil
	}
}

const (
	allIntents  = "proposal,plan,order,original-order,reflex-order,filler-order,instance-order,option"
	allMRStatus = "active,on-hold,cancelled,completed,entered-in-error,stopped,draft,unknown"
)

// ucSearches are the REQ searches of conformance.md §5.3 (6.1.0, plus the
// 7.0.0 additions: Location, average blood pressure, the preferences).
var ucSearches = []ucSearch{
	{name: "Patient", typ: "Patient", first: true, queries: func(x *ucCtx) []string { return []string{"_id=" + x.p} }},
	{name: "Patient identifier", typ: "Patient", queries: func(x *ucCtx) []string {
		p := x.patient()
		ids := p["identifier"].([]any)
		id := ids[0].(map[string]any)
		return []string{"identifier=" + url.QueryEscape(id["value"].(string)), "identifier=" + url.QueryEscape(id["system"].(string)+"|"+id["value"].(string))}
	}},
	{name: "Patient name", typ: "Patient", queries: func(x *ucCtx) []string {
		p := x.patient()
		fam := p["name"].([]any)[0].(map[string]any)["family"].(string)
		return []string{
			"name=" + url.QueryEscape(fam),
			"name=" + url.QueryEscape(strings.ToLower(fam[:3])),
			"birthdate=" + p["birthDate"].(string) + "&name=" + url.QueryEscape(fam),
			"gender=" + p["gender"].(string) + "&name=" + url.QueryEscape(fam),
		}
	}},
	{name: "Patient race/ethnicity", typ: "Patient", queries: func(x *ucCtx) []string {
		return []string{"_id=" + x.p + "&race=2106-3", "_id=" + x.p + "&ethnicity=2186-5,2135-2"}
	}},
	{name: "AllergyIntolerance", typ: "AllergyIntolerance", first: true, queries: fixed("")},
	{name: "CarePlan", typ: "CarePlan", first: true, queries: fixed("category=assess-plan", "category="+url.QueryEscape("http://hl7.org/fhir/us/core/CodeSystem/careplan-category|assess-plan"))},
	{name: "CareTeam", typ: "CareTeam", first: true, queries: fixed("status=proposed", "status=active", "status=suspended", "status=inactive", "status=entered-in-error", "status=proposed,active,suspended,inactive,entered-in-error")},
	{name: "Condition encounter-diagnosis", typ: "Condition", first: true, queries: categoryOnly("Condition", "encounter-diagnosis")},
	{name: "Condition problems-health-concerns", typ: "Condition", queries: categoryOnly("Condition", "problem-list-item", "health-concern")},
	{name: "Condition patient", typ: "Condition", queries: fixed("")},
	{name: "Coverage", typ: "Coverage", first: true, queries: fixed("")},
	{name: "Device", typ: "Device", first: true, queries: fixed("")},
	{name: "DiagnosticReport lab", typ: "DiagnosticReport", first: true, queries: categoryFirst("DiagnosticReport", "LAB", "date")},
	{name: "DiagnosticReport note", typ: "DiagnosticReport", queries: func(x *ucCtx) []string {
		var q []string
		for _, c := range []string{"LP29684-5", "LP29708-2", "LP7839-6"} {
			q = append(q, categoryFirst("DiagnosticReport", c, "date")(x)...)
		}
		return append(q, x.withPatient("")...)
	}},
	{name: "DocumentReference", typ: "DocumentReference", first: true, queries: func(x *ucCtx) []string {
		q := x.withPatient("", "category=clinical-note", "category="+url.QueryEscape("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category|clinical-note"))
		q = append(q, idQuery("DocumentReference")(x)...)
		q = append(q, x.tokenQueries("DocumentReference", "type", "", nil)...)
		return append(q, x.dateQueries("DocumentReference", "date", "category=clinical-note", hasToken("DocumentReference", "category", "clinical-note"))...)
	}},
	{name: "Encounter", typ: "Encounter", first: true, queries: func(x *ucCtx) []string {
		q := append(x.withPatient(""), idQuery("Encounter")(x)...)
		return append(q, x.dateQueries("Encounter", "date", "", nil)...)
	}},
	{name: "Goal", typ: "Goal", first: true, queries: fixed("")},
	{name: "Immunization", typ: "Immunization", first: true, queries: fixed("")},
	{name: "MedicationDispense", typ: "MedicationDispense", first: true, queries: fixed("", "_include=MedicationDispense:medication")},
	{name: "MedicationRequest", typ: "MedicationRequest", first: true, queries: fixed(
		"intent=order", "intent="+allIntents, "intent="+allIntents+"&_include=MedicationRequest:medication",
		"intent="+allIntents+"&status="+allMRStatus, "intent="+allIntents+"&status="+allMRStatus+"&_include=MedicationRequest:medication")},
	{name: "Observation lab", typ: "Observation", first: true, queries: categoryFirst("Observation", "laboratory", "date")},
	{name: "Observation clinical-result", typ: "Observation", queries: func(x *ucCtx) []string {
		var q []string
		for _, c := range []string{"laboratory", "exam", "therapy", "imaging", "procedure", "vital-signs", "activity"} {
			q = append(q, categoryFirst("Observation", c, "date")(x)...)
		}
		return q
	}},
	{name: "Observation screening-assessment", typ: "Observation", queries: categoryFirst("Observation", "survey", "date")},
	{name: "Observation blood-pressure", typ: "Observation", queries: observationCode("85354-9")},
	{name: "Observation bmi", typ: "Observation", queries: observationCode("39156-5")},
	{name: "Observation body-height", typ: "Observation", queries: observationCode("8302-2")},
	{name: "Observation body-temperature", typ: "Observation", queries: observationCode("8310-5")},
	{name: "Observation body-weight", typ: "Observation", queries: observationCode("29463-7")},
	{name: "Observation head-circumference", typ: "Observation", queries: observationCode("9843-4")},
	{name: "Observation head-circumference-percentile", typ: "Observation", queries: observationCode("8289-1")},
	{name: "Observation heart-rate", typ: "Observation", queries: observationCode("8867-4")},
	{name: "Observation pulse-oximetry", typ: "Observation", queries: observationCode("59408-5", "2708-6")},
	{name: "Observation respiratory-rate", typ: "Observation", queries: observationCode("9279-1")},
	{name: "Observation pediatric-bmi-for-age", typ: "Observation", queries: observationCode("59576-9")},
	{name: "Observation pediatric-weight-for-height", typ: "Observation", queries: observationCode("77606-2")},
	{name: "Observation smokingstatus", typ: "Observation", queries: observationCode("72166-2", "11367-0", "401201003", "782516008")},
	{name: "Observation occupation", typ: "Observation", queries: observationCode("11341-5")},
	{name: "Observation pregnancystatus", typ: "Observation", queries: observationCode("82810-3")},
	{name: "Observation pregnancyintent", typ: "Observation", queries: observationCode("86645-9")},
	{name: "Observation average-blood-pressure (7.0)", typ: "Observation", queries: observationCode("96607-7")},
	{name: "Observation care-experience-preference (7.0)", typ: "Observation", queries: observationCode("95541-9")},
	{name: "Observation treatment-intervention-preference (7.0)", typ: "Observation", queries: observationCode("75773-2")},
	{name: "Procedure", typ: "Procedure", first: true, queries: func(x *ucCtx) []string {
		return append(x.withPatient(""), x.dateQueries("Procedure", "date", "", nil)...)
	}},
	{name: "ServiceRequest", typ: "ServiceRequest", first: true, queries: func(x *ucCtx) []string {
		q := append(x.withPatient(""), idQuery("ServiceRequest")(x)...)
		q = append(q, x.tokenQueries("ServiceRequest", "category", "", nil)...)
		q = append(q, x.tokenQueries("ServiceRequest", "code", "", nil)...)
		for _, r := range x.of("ServiceRequest") {
			for _, tk := range ucTokens(r, ucFields["ServiceRequest"]["category"].paths) {
				return append(q, x.dateQueries("ServiceRequest", "authored", "category="+url.QueryEscape(tk.code), hasToken("ServiceRequest", "category", tk.code))...)
			}
		}
		return q
	}},
	{name: "Location (7.0)", typ: "Location", queries: func(x *ucCtx) []string {
		// Location is not searched by patient: its values come from the
		// Locations of the server, as the suite takes them from the
		// references it collected.
		for _, r := range x.c.do("GET", "/fhir/Location?_count=50", "").matches {
			city := ""
			if cs := jsonvalue.At(r, "address.city"); len(cs) > 0 {
				city, _ = cs[0].(string)
			}
			name, _ := r["name"].(string)
			if city == "" || name == "" {
				continue
			}
			return []string{"address=" + url.QueryEscape(city), "address=" + url.QueryEscape(strings.ToLower(city[:3])), "name=" + url.QueryEscape(name)}
		}
		return nil
	}},
}

// categoryOnly returns patient+category (and its system|code variant) for
// each category.
func categoryOnly(typ string, categories ...string) func(x *ucCtx) []string {
	return func(x *ucCtx) []string {
		var q []string
		for _, c := range categories {
			q = append(q, x.withPatient("category="+c)...)
			q = append(q, x.tokenQueries(typ, "category", "", hasToken(typ, "category", c))...)
		}
		return q
	}
}

func (x *ucCtx) patient() map[string]any {
	b := x.c.do("GET", "/fhir/Patient?_id="+x.p, "")
	if len(b.matches) != 1 {
		x.c.t.Fatalf("Patient %s: %d matches", x.p, len(b.matches))
	}
	return b.matches[0]
}

// TestUSCoreSearches runs every REQ search on both dialects.
func TestUSCoreSearches(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			runUSCoreSearches(t, loadUSCore(t, d), ucPatients, nil)
		})
	}
}

// TestUSCoreSearchesSandbox runs every REQ search on both dialects
// against the sandbox dataset (package sandbox/dataset), over all its
// patients.
func TestUSCoreSearchesSandbox(t *testing.T) {
	bundles, err := dataset.Bundles()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			e := &env{app: openApp(t, d)}
			for i, b := range bundles {
				if _, err := e.app.Service.Bundle(context.Background(), b, 0); err != nil {
					t.Fatalf("loading bundle %d: %v", i, err)
				}
			}
			// Each reference patient alone has results for every search
			// (the suite may be run with either one).
			runUSCoreSearches(t, e, dataset.PatientIDs(), dataset.PatientIDs()[:2])
		})
	}
}

// runUSCoreSearches runs every REQ search of ucSearches for patients on
// the loaded e: the union of each search's results over the patients is
// non-empty and every first search's _revinclude finds a Provenance; for
// each patient of each, by itself.
func runUSCoreSearches(t *testing.T, e *env, patients, each []string) {
	c := &ucClient{t: t, h: fhirapi.New(fhirapi.Config{BaseURL: base + "/fhir"}, e.app.Service, e.app.Registry)}
	queries := 0
	c.delayed = map[string]bool{}
	defer func() {
		t.Logf("%d queries, %d Medications included, %d delayed references read", queries, c.medications, len(c.delayed))
	}()
	ctxs := map[string]*ucCtx{}
	for _, p := range patients {
		ctxs[p] = &ucCtx{c: c, p: p, all: map[string][]map[string]any{}}
	}
	for _, s := range ucSearches {
		found, provenance := 0, 0
		for _, p := range patients {
			x := ctxs[p]
			first := "" // the first query with results, as the suite's first search
			pFound, pProvenance := 0, 0
			for i, q := range s.queries(x) {
				// The suite compares POST and patient=Patient/id on
				// the first search; here also on every _include.
				n := c.checkQuery(x, s.typ, q, i == 0 || strings.Contains(q, "_include"))
				queries++
				if n > 0 && first == "" {
					first = q
				}
				pFound += n
			}
			if s.first && first != "" {
				q := first + "&_revinclude=Provenance:target"
				for _, r := range c.do("GET", "/fhir/"+s.typ+"?"+q, "").included {
					if r["resourceType"] == "Provenance" {
						pProvenance++
					}
				}
			}
			if slices.Contains(each, p) && (pFound == 0 || (s.first && pProvenance == 0)) {
				t.Errorf("%s: patient %s: %d results, %d Provenance", s.name, p, pFound, pProvenance)
			}
			found += pFound
			provenance += pProvenance
		}
		if found == 0 {
			t.Errorf("%s: no results for any patient", s.name)
		}
		if s.first && provenance == 0 {
			t.Errorf("%s: _revinclude=Provenance:target returned no Provenance", s.name)
		}
	}
	c.readDelayed()
}

// checkQuery runs one query by GET (with variants: by POST and with
// patient=Patient/id), checks the results and returns the number of
// matches.
func (c *ucClient) checkQuery(x *ucCtx, typ, q string, variants bool) int {
	t := c.t
	t.Helper()
	get := c.do("GET", "/fhir/"+typ+"?"+q, "")
	if !variants {
		return c.checkResults(x, typ, q, get)
	}
	post := c.do("POST", "/fhir/"+typ+"/_search", q)
	if !slices.Equal(ucIDs(get.matches), ucIDs(post.matches)) || !slices.Equal(ucIDs(get.included), ucIDs(post.included)) {
		t.Errorf("%s?%s: GET %v, POST %v", typ, q, ucIDs(get.matches), ucIDs(post.matches))
	}
	if strings.Contains(q, "patient="+x.p) {
		ref := c.do("GET", "/fhir/"+typ+"?"+strings.Replace(q, "patient="+x.p, "patient=Patient/"+x.p, 1), "")
		if !slices.Equal(ucIDs(get.matches), ucIDs(ref.matches)) {
			t.Errorf("%s?%s: patient=Patient/%s gives %v, not %v", typ, q, x.p, ucIDs(ref.matches), ucIDs(get.matches))
		}
	}
	return c.checkResults(x, typ, q, get)
}

// checkResults checks every returned resource against the parameters (and
// completeness, and included Medications) and returns the number of
// matches.
func (c *ucClient) checkResults(x *ucCtx, typ, q string, get *ucBundle) int {
	t := c.t
	t.Helper()
	params, _ := url.ParseQuery(q)
	for _, r := range get.matches {
		collectDelayed(r, c.delayed)
		if r["resourceType"] != typ {
			t.Errorf("%s?%s: match of type %v", typ, q, r["resourceType"])
			continue
		}
		for name, vals := range params {
			if strings.HasPrefix(name, "_include") || strings.HasPrefix(name, "_revinclude") || name == "_count" {
				continue
			}
			if !ucMatch(typ, name, vals[0], r, x.p) {
				t.Errorf("%s?%s: %s/%v does not match %s=%s", typ, q, typ, r["id"], name, vals[0])
			}
		}
	}
	// Completeness: without a date parameter, every resource of the
	// patient that the parameters accept is returned.
	if _, hasPatient := params["patient"]; hasPatient && !ucHasDate(typ, params) {
		var want []string
		for _, r := range x.of(typ) {
			ok := true
			for name, vals := range params {
				if !strings.HasPrefix(name, "_") && !ucMatch(typ, name, vals[0], r, x.p) {
					ok = false
				}
			}
			if ok {
				want = append(want, typ+"/"+r["id"].(string))
			}
		}
		sort.Strings(want)
		if got := ucIDs(get.matches); !slices.Equal(got, want) {
			t.Errorf("%s?%s: got %v, the patient's matching resources are %v", typ, q, got, want)
		}
	}
	// Included Medications: each referenced by a returned resource, and
	// present whenever a returned resource references one outside itself.
	if inc := params.Get("_include"); inc != "" {
		refs := map[string]bool{}
		for _, r := range get.matches {
			if m, ok := r["medicationReference"].(map[string]any); ok {
				if ref, _ := m["reference"].(string); ref != "" && !strings.HasPrefix(ref, "#") {
					refs[ref] = true
				}
			}
		}
		for _, r := range get.included {
			if r["resourceType"] != "Medication" || !refs["Medication/"+r["id"].(string)] {
				t.Errorf("%s?%s: included %v/%v is not a referenced Medication", typ, q, r["resourceType"], r["id"])
			}
		}
		c.medications += len(get.included)
		if len(refs) > 0 && len(get.included) != len(refs) {
			t.Errorf("%s?%s: %d Medications referenced, %d included", typ, q, len(refs), len(get.included))
		}
	}
	return len(get.matches)
}

func ucIDs(rs []map[string]any) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r["resourceType"].(string)+"/"+r["id"].(string))
	}
	sort.Strings(out)
	return out
}

func ucHasDate(typ string, params url.Values) bool {
	for name := range params {
		if ucFields[typ][name].kind == "date" {
			return true
		}
	}
	return false
}

// ---- independent matching of returned JSON ----

// ucField says where a parameter's values are in a resource.
type ucField struct {
	kind  string   // token, reference, date, string, name, address, id
	paths []string // dotted JSON paths; arrays are flattened
}

var (
	subject = ucField{"reference", []string{"subject"}}
	status  = ucField{"token", []string{"status"}}
)

// ucFields lists the parameters the REQ searches use, per type, read from
// the resource JSON as the US Core SearchParameter expressions define them.
var ucFields = map[string]map[string]ucField{
	"Patient": {"_id": {"id", nil}, "identifier": {"token", []string{"identifier"}}, "name": {"name", []string{"name"}},
		"birthdate": {"date", []string{"birthDate"}}, "gender": {"token", []string{"gender"}},
		"race":      {"ext", []string{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"}},
		"ethnicity": {"ext", []string{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"}}},
	"AllergyIntolerance": {"patient": {"reference", []string{"patient"}}},
	"CarePlan":           {"patient": subject, "category": {"token", []string{"category"}}},
	"CareTeam":           {"patient": subject, "status": status},
	"Condition":          {"patient": subject, "category": {"token", []string{"category"}}},
	"Coverage":           {"patient": {"reference", []string{"beneficiary"}}},
	"Device":             {"patient": {"reference", []string{"patient"}}},
	"DiagnosticReport": {"patient": subject, "category": {"token", []string{"category"}}, "code": {"token", []string{"code"}},
		"date": {"date", []string{"effectiveDateTime", "effectivePeriod", "effectiveInstant"}}},
	"DocumentReference": {"patient": subject, "_id": {"id", nil}, "type": {"token", []string{"type"}},
		"category": {"token", []string{"category"}}, "date": {"date", []string{"date"}}},
	"Encounter":          {"patient": subject, "_id": {"id", nil}, "date": {"date", []string{"period"}}},
	"Goal":               {"patient": subject},
	"Immunization":       {"patient": {"reference", []string{"patient"}}},
	"MedicationDispense": {"patient": subject},
	"MedicationRequest":  {"patient": subject, "intent": {"token", []string{"intent"}}, "status": status},
	"Observation": {"patient": subject, "category": {"token", []string{"category"}}, "code": {"token", []string{"code"}},
		"date": {"date", []string{"effectiveDateTime", "effectivePeriod", "effectiveInstant", "effectiveTiming.event"}}},
	"Procedure": {"patient": subject, "date": {"date", []string{"performedDateTime", "performedPeriod"}}},
	"Location": {"name": {"string", []string{"name", "alias"}},
		"address": {"string", []string{"address.line", "address.city", "address.district", "address.state", "address.postalCode", "address.country", "address.text"}}},
	"ServiceRequest": {"patient": subject, "_id": {"id", nil}, "category": {"token", []string{"category"}},
		"code": {"token", []string{"code"}}, "authored": {"date", []string{"authoredOn"}}},
}

// ucValues returns the values at dotted paths, arrays flattened.
func ucValues(v any, paths []string) []any {
	var out []any
	for _, p := range paths {
		out = append(out, jsonvalue.At(v, p)...)
	}
	return out
}

type ucToken struct{ system, code string }

// ucTokens returns the codes of code, Coding, CodeableConcept and
// Identifier values at paths.
func ucTokens(r map[string]any, paths []string) []ucToken {
	var out []ucToken
	for _, v := range ucValues(r, paths) {
		switch x := v.(type) {
		case string:
			out = append(out, ucToken{"", x})
		case map[string]any:
			codings := []any{x}
			if cs, ok := x["coding"].([]any); ok {
				codings = cs
			}
			for _, c := range codings {
				cm, _ := c.(map[string]any)
				sys, _ := cm["system"].(string)
				code, _ := cm["code"].(string)
				if code == "" {
					code, _ = cm["value"].(string) // Identifier
				}
				if code != "" {
					out = append(out, ucToken{sys, code})
				}
			}
		}
	}
	return out
}

// ucRange is a date value as an instant range [lo, hi).
type ucRange struct{ lo, hi time.Time }

func ucParseDate(s string) (ucRange, bool) {
	for _, l := range []struct {
		layout string
		years  int
		months int
		days   int
	}{{"2006", 1, 0, 0}, {"2006-01", 0, 1, 0}, {"2006-01-02", 0, 0, 1}} {
		if t, err := time.Parse(l.layout, s); err == nil {
			return ucRange{t, t.AddDate(l.years, l.months, l.days)}, true
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return ucRange{t, t.Add(time.Second)}, true
	}
	return ucRange{}, false
}

// ucDates returns the ranges of date, dateTime, instant and Period values.
func ucDates(r map[string]any, paths []string) []ucRange {
	var out []ucRange
	for _, v := range ucValues(r, paths) {
		switch x := v.(type) {
		case string:
			if d, ok := ucParseDate(x); ok {
				out = append(out, d)
			}
		case map[string]any: // Period
			rg := ucRange{time.Unix(-1<<40, 0), time.Unix(1<<40, 0)}
			if s, ok := x["start"].(string); ok {
				d, _ := ucParseDate(s)
				rg.lo = d.lo
			}
			if s, ok := x["end"].(string); ok {
				d, _ := ucParseDate(s)
				rg.hi = d.hi
			}
			out = append(out, rg)
		}
	}
	return out
}

// ucMatch reports whether resource r matches name=value (one value, or a
// comma-separated OR list).
func ucMatch(typ, name, value string, r map[string]any, patient string) bool {
	f, ok := ucFields[typ][name]
	if !ok {
		return true // a parameter this check does not model
	}
	for _, v := range strings.Split(value, ",") {
		if ucMatchOne(f, v, r, patient) {
			return true
		}
	}
	return false
}

func ucMatchOne(f ucField, v string, r map[string]any, patient string) bool {
	switch f.kind {
	case "id":
		return r["id"] == v
	case "reference":
		for _, x := range ucValues(r, f.paths) {
			ref, _ := x.(map[string]any)["reference"].(string)
			if ref == "Patient/"+patient && (v == patient || v == "Patient/"+patient || v == base+"/fhir/Patient/"+patient) {
				return true
			}
		}
	case "token":
		sys, code, hasSys := strings.Cut(v, "|")
		if !hasSys {
			code = sys
		}
		for _, tk := range ucTokens(r, f.paths) {
			if strings.EqualFold(tk.code, code) && (!hasSys || tk.system == sys) {
				return true
			}
		}
	case "ext":
		for _, x := range ucValues(r, []string{"extension"}) {
			m := x.(map[string]any)
			if m["url"] != f.paths[0] {
				continue
			}
			for _, tk := range ucTokens(m, []string{"extension.valueCoding"}) {
				if tk.code == v {
					return true
				}
			}
		}
	case "string":
		for _, x := range ucValues(r, f.paths) {
			if str, ok := x.(string); ok && strings.HasPrefix(strings.ToLower(str), strings.ToLower(v)) {
				return true
			}
		}
	case "name":
		for _, x := range ucValues(r, f.paths) {
			for _, s := range ucValues(x, []string{"family", "given", "text", "prefix", "suffix"}) {
				if str, ok := s.(string); ok && strings.HasPrefix(strings.ToLower(str), strings.ToLower(v)) {
					return true
				}
			}
		}
	case "date":
		prefix := "eq"
		if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' {
			prefix, v = v[:2], v[2:]
		}
		p, ok := ucParseDate(v)
		if !ok {
			return false
		}
		for _, d := range ucDates(r, f.paths) {
			switch prefix {
			case "eq":
				if d.lo.Before(p.hi) && d.hi.After(p.lo) {
					return true
				}
			case "gt":
				if d.hi.After(p.hi) {
					return true
				}
			case "ge":
				if d.hi.After(p.lo) {
					return true
				}
			case "lt":
				if d.lo.Before(p.lo) {
					return true
				}
			case "le":
				if d.lo.Before(p.hi) {
					return true
				}
			}
		}
	}
	return false
}

// ucDelayed are the types the certification suite reads by reference
// instead of searching (conformance.md §5.1).
var ucDelayed = []string{"Organization", "Practitioner", "Provenance", "RelatedPerson", "Specimen", "Location", "PractitionerRole"}

// collectDelayed records every reference to a delayed type in v.
func collectDelayed(v any, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["reference"].(string); ok {
			typ, _, _ := strings.Cut(ref, "/")
			if slices.Contains(ucDelayed, typ) {
				into[ref] = true
			}
		}
		for _, c := range x {
			collectDelayed(c, into)
		}
	case []any:
		for _, c := range x {
			collectDelayed(c, into)
		}
	}
}

// readDelayed reads every collected reference: 200, the right type and id.
func (c *ucClient) readDelayed() {
	if len(c.delayed) == 0 {
		c.t.Error("no references to delayed resources found")
	}
	for ref := range c.delayed {
		req := httptest.NewRequest("GET", "/fhir/"+ref, nil)
		req.Header.Set("Accept", "application/fhir+json")
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, req)
		var r struct{ ResourceType, ID string }
		_ = json.Unmarshal(rec.Body.Bytes(), &r)
		if rec.Code != http.StatusOK || r.ResourceType+"/"+r.ID != ref {
			c.t.Errorf("GET %s: %d %s/%s", ref, rec.Code, r.ResourceType, r.ID)
		}
	}
}
