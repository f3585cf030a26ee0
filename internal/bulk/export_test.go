package bulk_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/poll"
)

func want(pairs ...any) map[string][]string {
	m := map[string][]string{}
	for i := 0; i < len(pairs); i += 2 {
		m[pairs[i].(string)] = pairs[i+1].([]string)
	}
	return m
}

func check(t *testing.T, what string, got, exp map[string][]string) {
	t.Helper()
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("%s: got %v, want %v", what, got, exp)
	}
}

// isOutcome reports whether body is an OperationOutcome.
func isOutcome(body []byte) bool {
	var o struct{ ResourceType string }
	return json.Unmarshal(body, &o) == nil && o.ResourceType == "OperationOutcome"
}

// TestExport runs conformance.md §4 and the export's exactness, scope
// and ownership rules on one server per dialect.
func TestExport(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, dbURL string) {
		stream := filepath.Join(t.TempDir(), "audit.jsonl")
		e := newEnv(t, dbURL, "--audit-stream", stream)
		t.Run("capability", func(t *testing.T) { testCapability(t, e) })
		t.Run("conformance", func(t *testing.T) { testConformance(t, e) })
		t.Run("refusals", func(t *testing.T) { testRefusals(t, e) })
		t.Run("exactness", func(t *testing.T) { testExactness(t, e) })
		t.Run("scopes", func(t *testing.T) { testScopes(t, e) })
		t.Run("ownership", func(t *testing.T) { testOwnership(t, e) })
		t.Run("parallel", func(t *testing.T) { testParallel(t, e) })
		t.Run("post", func(t *testing.T) { testPost(t, e) })
		t.Run("sdk", func(t *testing.T) { testSDK(t, e) })
		t.Run("cli", func(t *testing.T) { testCLI(t, e) })
		t.Run("group cli", func(t *testing.T) { testGroupCLI(t, e) })
		t.Run("audit", func(t *testing.T) { testAudit(t, e, stream) })
	})
}

func testCapability(t *testing.T, e *env) {
	r := e.Do(t, "GET", "/metadata", nil)
	var cs struct {
		Instantiates []string
		Rest         []struct {
			Operation []struct{ Name, Definition string }
			Resource  []struct {
				Type      string
				Operation []struct{ Name, Definition string }
			}
		}
	}
	if err := json.Unmarshal(r.Body, &cs); err != nil || len(cs.Rest) == 0 {
		t.Fatalf("metadata: %v", err)
	}
	if !strings.Contains(fmt.Sprint(cs.Instantiates), "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data") {
		t.Errorf("instantiates %v", cs.Instantiates)
	}
	if !strings.Contains(fmt.Sprint(cs.Rest[0].Operation), "export http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export}") {
		t.Errorf("rest.operation %v", cs.Rest[0].Operation)
	}
	found := map[string]string{}
	for _, res := range cs.Rest[0].Resource {
		for _, op := range res.Operation {
			if op.Name == "export" {
				found[res.Type] = op.Definition
			}
		}
	}
	if found["Patient"] != "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export" || found["Group"] != "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export" {
		t.Errorf("resource operations %v", found)
	}
}

func testConformance(t *testing.T, e *env) {
	// No token: 401 (§4.1.3).
	if r := e.Do(t, "GET", "/Group/g1/$export", nil, "Accept", "application/fhir+json", "Prefer", "respond-async"); r.Status != http.StatusUnauthorized {
		t.Errorf("kick-off without a token: %d", r.Status)
	}
	// A method the URL does not serve: 405 naming the ones it does (it
	// was 404 "unknown resource type", 415 or a wrong Allow).
	status := e.start(t, e.sys, "/Patient/$export")
	done, _ := e.wait(t, e.sys, status)
	for _, c := range []struct{ method, url, allow string }{
		{"PUT", "/$export", "GET, POST"}, {"DELETE", "/Patient/$export", "GET, POST"}, {"PATCH", "/Group/g1/$export", "GET, POST"},
		{"PUT", status, "GET, DELETE"}, {"POST", status, "GET, DELETE"}, {"PATCH", status, "GET, DELETE"},
		{"DELETE", done.Output[0].URL, "GET, HEAD"}, {"POST", done.Output[0].URL, "GET, HEAD"},
		{"HEAD", "/Group/g1/$export", "GET, POST"}, {"HEAD", "/$export", "GET, POST"},
		{"OPTIONS", "/$export", "GET, POST"}, {"OPTIONS", "/Patient/$export", "GET, POST"}, {"OPTIONS", status, "GET, DELETE"},
		{"OPTIONS", done.Output[0].URL, "GET, HEAD"},
	} {
		r := e.Do(t, c.method, c.url, strings.NewReader("{}"), "X-API-Key", e.sys, "Content-Type", "application/fhir+json", "Prefer", "respond-async")
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != c.allow || (c.method != "HEAD" && !isOutcome(r.Body)) {
			t.Errorf("%s %s: %d Allow %q %s", c.method, c.url, r.Status, r.Header.Get("Allow"), r.Body)
		}
	}
	for _, path := range []string{"/$export", "/Patient/$export", "/Group/g1/$export"} {
		m, resp := e.wait(t, e.sys, e.start(t, e.sys, path))
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || resp.Header.Get("Expires") == "" {
			t.Errorf("%s manifest headers %v", path, resp.Header)
		}
		var raw map[string]json.RawMessage
		_ = json.Unmarshal(resp.Body, &raw)
		for _, k := range []string{"transactionTime", "request", "requiresAccessToken", "output", "error"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("%s manifest lacks %s: %s", path, k, resp.Body)
			}
		}
		if !m.RequiresAccessToken || m.Request != e.Base+path || string(raw["error"]) != "[]" {
			t.Errorf("%s manifest %s", path, resp.Body)
		}
		if _, err := time.Parse(time.RFC3339, m.TransactionTime); err != nil {
			t.Errorf("transactionTime %q", m.TransactionTime)
		}
		got := e.contents(t, e.sys, m)
		for _, o := range m.Output {
			if !strings.HasPrefix(o.URL, e.Base+"/") {
				t.Errorf("output url %q not absolute", o.URL)
			}
		}
		// A file without a token: 401 (§4.1.7).
		if r := e.Do(t, "GET", m.Output[0].URL, nil, "Accept", "application/fhir+ndjson"); r.Status != http.StatusUnauthorized {
			t.Errorf("file without a token: %d", r.Status)
		}
		core := only(got, "Patient", "Observation", "Condition", "Practitioner", "Group", "Device", "Binary")
		switch path {
		case "/Group/g1/$export":
			// A member's Device and Binary, not another patient's nor a
			// stock one.
			check(t, path, core, want("Patient", []string{"p1", "p2"}, "Observation", []string{"o1", "o2", "o3"}, "Condition", []string{"c1"}, "Practitioner", []string{"dr1"}, "Group", []string{"g1"}, "Device", []string{"dev1"}, "Binary", []string{"bin1"}))
		default:
			check(t, path, core, want("Patient", []string{"p1", "p2", "p3"}, "Observation", []string{"o1", "o2", "o3", "o4"}, "Condition", []string{"c1", "c2"}, "Practitioner", []string{"dr1"}, "Group", []string{"g1"}, "Device", []string{"dev1", "dev3", "stock"}, "Binary", []string{"bin1", "bin3", "binx"}))
		}
	}
	// Range requests on a file.
	m, _ := e.wait(t, e.sys, e.start(t, e.sys, "/$export?_type=Patient"))
	full := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.sys)
	part := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.sys, "Range", "bytes=5-")
	if part.Status != http.StatusPartialContent || string(part.Body) != string(full.Body[5:]) {
		t.Errorf("range: %d %q", part.Status, part.Body)
	}
	// A range beyond the file: 416 with an OperationOutcome (net/http's
	// answer is a text/plain line).
	for _, rng := range []string{fmt.Sprintf("bytes=%d-", len(full.Body)+10), "bytes=abc"} {
		r := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.sys, "Range", rng)
		if r.Status != http.StatusRequestedRangeNotSatisfiable || !isOutcome(r.Body) ||
			r.Header.Get("Content-Type") != "application/fhir+json" || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Range %s: %d %v %q, want 416 with an OperationOutcome", rng, r.Status, r.Header, r.Body)
		}
	}
	// Cancel: 202, then 404 with an OperationOutcome, files gone (§4.1.9).
	st := e.start(t, e.sys, "/Group/g1/$export")
	if r := e.Do(t, "DELETE", st, nil, "X-API-Key", e.sys, "Accept", "application/json"); r.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if r := e.Do(t, "GET", st, nil, "X-API-Key", e.sys); r.Status != http.StatusNotFound || !isOutcome(r.Body) {
		t.Errorf("status after cancel: %d %s", r.Status, r.Body)
	}
	if r := e.Do(t, "DELETE", st, nil, "X-API-Key", e.sys); r.Status != http.StatusNotFound {
		t.Errorf("second cancel: %d", r.Status)
	}
	job := st[strings.LastIndex(st, "/")+1:]
	poll.Until(t, 10*time.Second, "cancelled job's folder removed", func() bool {
		_, err := os.Stat(filepath.Join(e.DataDir, "export", job))
		return os.IsNotExist(err)
	})
	// _outputFormat ×3 and _since: 202, then DELETE 202 (§4.1.10).
	since := url.QueryEscape(time.Now().Add(-7 * 24 * time.Hour).UTC().Format(time.RFC3339))
	for _, q := range []string{"_outputFormat=application/fhir%2Bndjson", "_outputFormat=application/ndjson", "_outputFormat=ndjson", "_since=" + since,
		"_since=2020-01-01T00:00:00+01:00", // an unescaped + arrives as a space
		"_outputFormat=application/fhir+ndjson"} {
		st := e.start(t, e.sys, "/Group/g1/$export?"+q)
		if r := e.Do(t, "DELETE", st, nil, "X-API-Key", e.sys); r.Status != http.StatusAccepted {
			t.Errorf("%s cancel: %d", q, r.Status)
		}
	}
}

func testRefusals(t *testing.T, e *env) {
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/$export?_outputFormat=text/csv", 400},
		{"/$export?_type=Nonsense", 400},
		{"/$export?_typeFilter=Observation%3Fnonsense%3D1", 400},
		{"/$export?_typeFilter=Observation%3Fcategory%3Alove%3Dx", 400},
		{"/$export?_type=Patient&_typeFilter=Observation%3Fcategory%3Dlaboratory", 400},
		{"/$export?_typeFilter=Observation%3F_count%3D5", 400},
		{"/$export?_since=yesterday", 400},
		{"/$export?includeAssociatedData=Everything", 400},
		{"/$export?nonsense=1", 400},
		{"/$export?patient=Patient/p1", 400},
		{"/Group/nope/$export", 404},
		{"/Group/g1/$export?_elements=Nonsense.id", 400},
	} {
		r := e.kick(t, e.sys, c.path)
		if r.Status != c.status || !isOutcome(r.Body) {
			t.Errorf("%s: %d %s, want %d with an OperationOutcome", c.path, r.Status, r.Body, c.status)
		}
	}
	// A bad _since/_until is refused in the client's words: the parameter
	// and the value it sent, not the _lastUpdated search it becomes.
	for _, c := range []struct{ query, want string }{
		{"_since=garbage", `_since: "garbage"`},
		{"_since=ge2020-01-01", `_since: "ge2020-01-01"`},
		{"_until=2020-13-01", `_until: "2020-13-01"`},
	} {
		r := e.kick(t, e.sys, "/$export?"+c.query)
		var oo struct {
			Issue []struct{ Diagnostics string }
		}
		_ = json.Unmarshal(r.Body, &oo)
		if r.Status != 400 || len(oo.Issue) != 1 || !strings.HasPrefix(oo.Issue[0].Diagnostics, c.want) ||
			strings.Contains(oo.Issue[0].Diagnostics, "_lastUpdated") {
			t.Errorf("%s: %d %s, want 400 starting %s", c.query, r.Status, r.Body, c.want)
		}
	}
	if r := e.Do(t, "GET", "/$export", nil, "X-API-Key", e.sys); r.Status != 400 || !isOutcome(r.Body) {
		t.Errorf("without Prefer: %d", r.Status)
	}
	if r := e.Do(t, "GET", "/$export-status/nonexistent", nil, "X-API-Key", e.sys); r.Status != 404 || !isOutcome(r.Body) {
		t.Errorf("unknown job: %d", r.Status)
	}
}

func testExactness(t *testing.T, e *env) {
	// _type, comma-separated and repeated alike.
	a := e.export(t, e.sys, "/$export?_type=Patient,Condition")
	b := e.export(t, e.sys, "/$export?_type=Patient&_type=Condition")
	check(t, "_type", a, want("Patient", []string{"p1", "p2", "p3"}, "Condition", []string{"c1", "c2"}))
	check(t, "_type repeated", b, a)
	// _typeFilter: exactly the matches; two filters of a type are ORed,
	// each resource once.
	lab := url.QueryEscape("Observation?category=laboratory")
	check(t, "_typeFilter", e.export(t, e.sys, "/$export?_type=Observation&_typeFilter="+lab),
		want("Observation", []string{"o1", "o3", "o4"}))
	two := url.QueryEscape("Observation?subject=Patient/p1,Observation?category=laboratory")
	check(t, "_typeFilter OR", e.export(t, e.sys, "/$export?_type=Observation&_typeFilter="+two),
		want("Observation", []string{"o1", "o2", "o3", "o4"}))
	check(t, "_typeFilter in a Group", e.export(t, e.sys, "/Group/g1/$export?_type=Observation&_typeFilter="+lab),
		want("Observation", []string{"o1", "o3"}))
	// _since / _until: meta.lastUpdated > _since, <= _until, to the
	// millisecond. o5 is written after everything else.
	e.load(t, `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Observation/o5"},"resource":{"resourceType":"Observation","id":"o5","status":"final","code":{"text":"e"},"subject":{"reference":"Patient/p2"}}}]}`)
	var times = map[string]string{}
	r := e.Do(t, "GET", "/Observation?_count=100", nil, "X-API-Key", e.sys)
	var bundle struct {
		Entry []struct {
			Resource struct {
				ID   string
				Meta struct{ LastUpdated string }
			}
		}
	}
	_ = json.Unmarshal(r.Body, &bundle)
	for _, en := range bundle.Entry {
		times[en.Resource.ID] = en.Resource.Meta.LastUpdated
	}
	t4, t5 := times["o4"], times["o5"]
	if t4 == "" || t5 == "" || t4 >= t5 {
		t.Fatalf("lastUpdated o4 %q, o5 %q", t4, t5)
	}
	check(t, "_since", e.export(t, e.sys, "/$export?_type=Observation&_since="+url.QueryEscape(t4)), want("Observation", []string{"o5"}))
	got := e.export(t, e.sys, "/$export?_type=Observation&_until="+url.QueryEscape(t4))
	if ids := got["Observation"]; len(ids) == 0 || strings.Contains(fmt.Sprint(ids), "o5") || !strings.Contains(fmt.Sprint(ids), "o4") {
		t.Errorf("_until: %v", ids)
	}
	// _elements: the listed elements (and the mandatory ones) only.
	m, _ := e.wait(t, e.sys, e.start(t, e.sys, "/$export?_type=Patient&_elements=id"))
	f := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.sys)
	if strings.Contains(string(f.Body), `"name"`) || !strings.Contains(string(f.Body), "SUBSETTED") {
		t.Errorf("_elements: %s", f.Body)
	}
	// _elements in a Group export: g1 is in the compartments of both its
	// members, and is still written once (the subsetted JSON no longer
	// names them).
	check(t, "_elements in a Group", e.export(t, e.sys, "/Group/g1/$export?_type=Group,Patient&_elements=id"),
		want("Group", []string{"g1"}, "Patient", []string{"p1", "p2"}))
}

func testScopes(t *testing.T, e *env) {
	// Granular scope: lab Observations only, nothing else.
	labKey, _ := e.key(t, "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", "")
	check(t, "granular scope", e.export(t, labKey, "/$export"), want("Observation", []string{"o1", "o3", "o4"}))
	// A Patient export naming patients, by a client that may not search
	// Patients: their Observations, as without the patient parameter
	// (whether a named patient exists is not the client's to learn).
	named := `{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/p1"}}]}`
	r := e.Do(t, "POST", "/Patient/$export", strings.NewReader(named), "X-API-Key", labKey, "Content-Type", "application/fhir+json", "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Errorf("patient parameter without Patient access: %d %s", r.Status, r.Body)
	} else {
		m, _ := e.wait(t, labKey, r.Header.Get("Content-Location"))
		check(t, "patient parameter without Patient access", e.contents(t, labKey, m), want("Observation", []string{"o1"}))
	}
	// A named type the scopes do not allow: 403.
	if r := e.kick(t, labKey, "/$export?_type=Patient"); r.Status != http.StatusForbidden {
		t.Errorf("forbidden _type: %d %s", r.Status, r.Body)
	}
	// A patient-bound key: that patient's compartment and the shared
	// types (Practitioner) its scopes read whole, and no system or Group
	// export.
	patKey, _ := e.key(t, "patient/*.rs", "p1")
	got := e.export(t, patKey, "/Patient/$export")
	check(t, "patient-bound", only(got, "Patient", "Observation", "Condition", "Practitioner", "Group", "Device", "Binary"),
		want("Patient", []string{"p1"}, "Observation", []string{"o1", "o2"}, "Condition", []string{"c1"}, "Group", []string{"g1"}, "Practitioner", []string{"dr1"}, "Device", []string{"dev1"}, "Binary", []string{"bin1"}))
	for _, p := range []string{"/$export", "/Group/g1/$export"} {
		if r := e.kick(t, patKey, p); r.Status != http.StatusForbidden || !isOutcome(r.Body) {
			t.Errorf("patient key %s: %d", p, r.Status)
		}
	}
}

func testOwnership(t *testing.T, e *env) {
	key, id := e.key(t, "system/*.rs", "")
	st := e.start(t, key, "/$export?_type=Patient")
	m, _ := e.wait(t, key, st)
	for _, u := range []string{st, m.Output[0].URL} {
		if r := e.Do(t, "GET", u, nil, "X-API-Key", e.other); r.Status != http.StatusForbidden || !isOutcome(r.Body) {
			t.Errorf("another client GET %s: %d", u, r.Status)
		}
	}
	if r := e.Do(t, "DELETE", st, nil, "X-API-Key", e.other); r.Status != http.StatusForbidden {
		t.Errorf("another client DELETE: %d", r.Status)
	}
	// Revoked: 401 at once, on status and files.
	e.MustCLI(t, "", "apikey", "revoke", id)
	poll.Until(t, 10*time.Second, "revoked key refused", func() bool {
		return e.Do(t, "GET", st, nil, "X-API-Key", key).Status == http.StatusUnauthorized
	})
	if r := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", key); r.Status != http.StatusUnauthorized {
		t.Errorf("revoked key file: %d", r.Status)
	}
}

func testParallel(t *testing.T, e *env) {
	const n = 4
	var wg sync.WaitGroup
	results := make([]map[string][]string, n)
	for i := range n {
		wg.Go(func() {
			results[i] = only(e.export(t, e.other, "/Group/g1/$export"), "Patient", "Observation", "Condition")
		})
	}
	wg.Wait()
	exp := want("Patient", []string{"p1", "p2"}, "Observation", []string{"o1", "o2", "o3", "o5"}, "Condition", []string{"c1"})
	for i, r := range results {
		check(t, fmt.Sprintf("parallel job %d", i), r, exp)
	}
}

func testPost(t *testing.T, e *env) {
	body := `{"resourceType":"Parameters","parameter":[
		{"name":"_type","valueString":"Patient,Observation"},
		{"name":"_typeFilter","valueString":"Observation?category=laboratory"},
		{"name":"patient","valueReference":{"reference":"Patient/p1"}},
		{"name":"patient","valueReference":{"reference":"Patient/p3"}}]}`
	r := e.Do(t, "POST", "/Patient/$export", strings.NewReader(body), "X-API-Key", e.sys, "Content-Type", "application/fhir+json", "Accept", "application/fhir+json", "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST kick-off: %d %s", r.Status, r.Body)
	}
	m, _ := e.wait(t, e.sys, r.Header.Get("Content-Location"))
	check(t, "POST patient", e.contents(t, e.sys, m), want("Patient", []string{"p1", "p3"}, "Observation", []string{"o1", "o4"}))
	// A Group export naming a member (twice: written once): that member
	// only; naming a patient outside the Group (p3): 400 naming it, not an
	// export without it.
	member := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"},{"name":"patient","valueReference":{"reference":"Patient/p2"}},{"name":"patient","valueReference":{"reference":"Patient/p2"}}]}`
	r = e.Do(t, "POST", "/Group/g1/$export", strings.NewReader(member), "X-API-Key", e.sys, "Content-Type", "application/fhir+json", "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST Group kick-off: %d %s", r.Status, r.Body)
	}
	m, _ = e.wait(t, e.sys, r.Header.Get("Content-Location"))
	check(t, "POST Group patient", e.contents(t, e.sys, m), want("Patient", []string{"p2"}))
	outside := strings.Replace(member, "Patient/p2", "Patient/p3", 1)
	outside = strings.Replace(outside, `"valueReference":{"reference":"Patient/p3"}}`, `"valueReference":{"reference":"Patient/p3"}},{"name":"patient","valueReference":{"reference":"Patient/p1"}}`, 1)
	r = e.Do(t, "POST", "/Group/g1/$export", strings.NewReader(outside), "X-API-Key", e.sys, "Content-Type", "application/fhir+json", "Prefer", "respond-async")
	if r.Status != http.StatusBadRequest || !isOutcome(r.Body) || !strings.Contains(string(r.Body), "Patient/p3 is not a member") {
		t.Errorf("POST Group naming a non-member: %d %s", r.Status, r.Body)
	}
	bad := e.Do(t, "POST", "/$export", strings.NewReader(`{"resourceType":"Patient"}`), "X-API-Key", e.sys, "Prefer", "respond-async")
	if bad.Status != 400 || !isOutcome(bad.Body) {
		t.Errorf("POST with a Patient body: %d", bad.Status)
	}
	// A patient nobody has, or one the caller may not read: 404 naming it,
	// no job.
	unknown := `{"resourceType":"Parameters","parameter":[
		{"name":"patient","valueReference":{"reference":"Patient/p1"}},
		{"name":"patient","valueReference":{"reference":"Patient/nobody"}}]}`
	p2Key, _ := e.key(t, "patient/*.rs", "p2")
	for _, key := range []string{e.sys, p2Key} {
		r := e.Do(t, "POST", "/Patient/$export", strings.NewReader(unknown), "X-API-Key", key, "Content-Type", "application/fhir+json", "Prefer", "respond-async")
		if r.Status != http.StatusNotFound || !isOutcome(r.Body) || !strings.Contains(string(r.Body), "Patient/") || r.Header.Get("Content-Location") != "" {
			t.Errorf("POST naming an unknown patient: %d %s", r.Status, r.Body)
		}
	}
}

// testAudit checks that kick-offs, completions, cancellations and
// downloads are AuditEvents.
func testAudit(t *testing.T, e *env, stream string) {
	kinds := []string{"bulk export accepted", "bulk export done", "bulk export cancelled", "bulk export file downloaded"}
	poll.Until(t, 10*time.Second, "audit records of the export", func() bool {
		b, _ := os.ReadFile(stream)
		for _, k := range kinds {
			if !strings.Contains(string(b), `"outcomeDesc":"`+k+`"`) {
				return false
			}
		}
		return true
	})
}

// provenanceFixture: two Provenances of o1 (pv2 the newer), one of p1
// and o3, one of o4 (a versioned reference) and one of nothing exported.
const provenanceFixture = `{"resourceType":"Bundle","type":"transaction","entry":[
{"request":{"method":"PUT","url":"Provenance/pv1"},"resource":{"resourceType":"Provenance","id":"pv1","recorded":"2024-01-01T00:00:00Z","target":[{"reference":"Observation/o1"}],"agent":[{"who":{"reference":"Practitioner/dr1"}}]}},
{"request":{"method":"PUT","url":"Provenance/pv2"},"resource":{"resourceType":"Provenance","id":"pv2","recorded":"2025-01-01T00:00:00Z","target":[{"reference":"Observation/o1"}],"agent":[{"who":{"reference":"Practitioner/dr1"}}]}},
{"request":{"method":"PUT","url":"Provenance/pv3"},"resource":{"resourceType":"Provenance","id":"pv3","recorded":"2024-06-01T00:00:00Z","target":[{"reference":"Patient/p1"},{"reference":"Observation/o3"}],"agent":[{"who":{"reference":"Practitioner/dr1"}}]}},
{"request":{"method":"PUT","url":"Provenance/pv4"},"resource":{"resourceType":"Provenance","id":"pv4","recorded":"2024-06-01T00:00:00Z","target":[{"reference":"Observation/o4/_history/1"}],"agent":[{"who":{"reference":"Practitioner/dr1"}}]}},
{"request":{"method":"PUT","url":"Provenance/pv5"},"resource":{"resourceType":"Provenance","id":"pv5","recorded":"2026-01-01T00:00:00Z","target":[{"reference":"Practitioner/dr1"}],"agent":[{"who":{"reference":"Practitioner/dr1"}}]}}
]}`

// TestExportProvenance checks includeAssociatedData=LatestProvenanceResources:
// for each resource exported, the latest Provenance that targets it, and
// no other.
func TestExportProvenance(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		e.load(t, provenanceFixture)
		const inc = "&includeAssociatedData=LatestProvenanceResources"
		check(t, "system", e.export(t, e.sys, "/$export?_type=Observation"+inc),
			want("Observation", []string{"o1", "o2", "o3", "o4"}, "Provenance", []string{"pv2", "pv3", "pv4"}))
		check(t, "group", e.export(t, e.sys, "/Group/g1/$export?_type=Patient,Observation"+inc),
			want("Patient", []string{"p1", "p2"}, "Observation", []string{"o1", "o2", "o3"}, "Provenance", []string{"pv2", "pv3"}))
		// Provenance named in _type too: still only the latest ones.
		check(t, "named", e.export(t, e.sys, "/$export?_type=Practitioner,Provenance"+inc),
			want("Practitioner", []string{"dr1"}, "Provenance", []string{"pv5"}))
		// Without it, Provenance is a type like any other.
		check(t, "plain", e.export(t, e.sys, "/$export?_type=Provenance"),
			want("Provenance", []string{"pv1", "pv2", "pv3", "pv4", "pv5"}))
	})
}
