// Package e2e runs the real lapis binary over HTTP against SQLite and
// PostgreSQL: the CLI contract, import, and the main FHIR flows.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	// The binary under test is built from cmd/lapis; importing its code
	// makes go test's result cache notice when it changes.
	_ "github.com/lapis-health/lapis/internal/cli"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { lapistest.Main(m) }

// syntheaFiles returns the first n shared Synthea bundles.
func syntheaFiles(t *testing.T, n int) []string {
	files := lapistest.SyntheaFiles(t)
	if len(files) < n {
		t.Skipf("need %d Synthea bundles, found %d", n, len(files))
	}
	return files[:n]
}

// instance is a lapis serve process (lapistest.Server) with the test that
// uses it.
type instance struct {
	*lapistest.Server
	t       *testing.T
	apiKey  string // a system/*.cruds API key every request carries
	dataDir string
	dbURL   string
	base    string
}

// lapis runs a lapis command against the instance's database.
func (in *instance) lapis(args ...string) (stdout, stderr string, code int) {
	in.t.Helper()
	r := in.CLI(in.t, "", args...)
	return r.Stdout, r.Stderr, r.Code
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	r := lapistest.Run(t, nil, "", args...)
	return r.Stdout, r.Stderr, r.Code
}

// serve starts lapis serve (lapistest.Start).
func serve(t *testing.T, opts lapistest.Options) *instance {
	t.Helper()
	s := lapistest.Start(t, opts)
	return &instance{Server: s, t: t, dataDir: s.DataDir, dbURL: s.Database, base: s.Base}
}

// start starts lapis serve on dbURL with a system/*.cruds API key.
func start(t *testing.T, dbURL string) *instance {
	t.Helper()
	in := serve(t, lapistest.Options{Database: dbURL})
	out, errOut, code := in.lapis("apikey", "create", "--name", "e2e", "--scope", "system/*.cruds", "--json")
	if code != 0 {
		t.Fatalf("apikey create: %s", errOut)
	}
	var k struct{ Key string }
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" {
		t.Fatalf("apikey create output %q: %v", out, err)
	}
	in.apiKey = k.Key
	return in
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (in *instance) do(method, path string, body any, headers ...string) *response {
	in.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	var hdr []string
	if rd != nil {
		hdr = append(hdr, "Content-Type", "application/fhir+json")
	}
	if in.apiKey != "" {
		hdr = append(hdr, "X-API-Key", in.apiKey)
	}
	res := in.Do(in.t, method, path, rd, append(hdr, headers...)...)
	r := &response{status: res.Status, header: res.Header, raw: res.Body}
	if len(res.Body) > 0 {
		_ = json.Unmarshal(res.Body, &r.body)
	}
	return r
}

func (r *response) expect(t *testing.T, status int) *response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, truncate(r.raw))
	}
	return r
}

func (r *response) outcome(t *testing.T) {
	t.Helper()
	if r.body["resourceType"] != "OperationOutcome" {
		t.Fatalf("body is not an OperationOutcome: %s", truncate(r.raw))
	}
}

func truncate(b []byte) string {
	if len(b) > 800 {
		return string(b[:800]) + "..."
	}
	return string(b)
}

func ids(t *testing.T, bundle map[string]any, mode string) []string {
	t.Helper()
	var out []string
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		em := e.(map[string]any)
		if mode != "" {
			s, _ := em["search"].(map[string]any)
			if s == nil || s["mode"] != mode {
				continue
			}
		}
		res := em["resource"].(map[string]any)
		out = append(out, res["resourceType"].(string)+"/"+res["id"].(string))
	}
	return out
}

func link(bundle map[string]any, rel string) string {
	links, _ := bundle["link"].([]any)
	for _, l := range links {
		lm := l.(map[string]any)
		if lm["relation"] == rel {
			return lm["url"].(string)
		}
	}
	return ""
}

func dialects(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "" },
		"postgres": func(t *testing.T) string { return pgtest.New(t) },
	}
}

// forDialects runs fn in a parallel subtest per database dialect with
// the dialect's database URL ("" for SQLite). Each subtest has its own
// server and database: nothing is shared between them.
func forDialects(t *testing.T, fn func(t *testing.T, dbURL string)) {
	for name, db := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, db(t))
		})
	}
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	for name, db := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := start(t, db(t))
			files := syntheaFiles(t, 3)
			t.Run("import", func(t *testing.T) { testImport(t, in, files) })
			t.Run("crud", func(t *testing.T) { testCRUD(t, in) })
			t.Run("search", func(t *testing.T) { testSearch(t, in) })
			t.Run("paging", func(t *testing.T) { testPaging(t, in) })
			t.Run("transaction", func(t *testing.T) { testTransaction(t, in) })
			t.Run("rejections", func(t *testing.T) { testRejections(t, in) })
			t.Run("authentication", func(t *testing.T) { testAuthentication(t, in) })
		})
	}
}

func testImport(t *testing.T, in *instance, files []string) {
	// Import while the server runs: the server must see the data at once.
	before := in.do("GET", "/Patient?_summary=count", nil).expect(t, 200)
	out, errOut, code := in.lapis(append([]string{"import", "--json"}, files...)...)
	if code != 0 {
		t.Fatalf("import exit %d: %s", code, errOut)
	}
	var rep struct{ Files, Resources, Failed int }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("import --json output %q: %v", out, err)
	}
	if rep.Files != len(files) || rep.Failed != 0 || rep.Resources < 100 {
		t.Fatalf("report %+v", rep)
	}
	after := in.do("GET", "/Patient?_summary=count", nil).expect(t, 200)
	if after.body["total"].(float64) != before.body["total"].(float64)+float64(len(files)) {
		t.Fatalf("patients before %v after %v", before.body["total"], after.body["total"])
	}

	// NDJSON with ids, one bad line: imported, the bad line reported, exit non-zero.
	nd := filepath.Join(t.TempDir(), "x.ndjson")
	os.WriteFile(nd, []byte(`{"resourceType":"Patient","id":"nd-1","gender":"female"}
{"resourceType":"Patient","id":"nd-2","gender":"bogus"}
not json
{"resourceType":"Observation","id":"nd-3","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/nd-1"}}
`), 0o600)
	_, errOut, code = in.lapis("import", "--json", nd)
	if code == 0 || !strings.Contains(errOut, "line 3") || !strings.Contains(errOut, "entry 2") {
		t.Fatalf("ndjson import: exit %d stderr %q", code, errOut)
	}
	in.do("GET", "/Patient/nd-1", nil).expect(t, 200)
	in.do("GET", "/Patient/nd-2", nil).expect(t, 404)
	in.do("GET", "/Observation/nd-3", nil).expect(t, 200)
	// A missing file: non-zero exit, one line on stderr.
	_, errOut, code = in.lapis("import", "/nonexistent/file.json")
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("missing file: exit %d stderr %q", code, errOut)
	}
}

func patient(family string) map[string]any {
	return map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": family, "given": []any{"Test"}}},
		"gender": "female", "birthDate": "1980-05-17",
		"identifier": []any{map[string]any{"system": "http://example.org/mrn", "value": family}}}
}

func testCRUD(t *testing.T, in *instance) {
	r := in.do("POST", "/Patient", patient("Crudova")).expect(t, 201)
	id, _ := r.body["id"].(string)
	loc := r.header.Get("Location")
	if id == "" || !strings.HasPrefix(loc, in.base+"/Patient/"+id+"/_history/1") || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("create: id %q Location %q ETag %q", id, loc, r.header.Get("ETag"))
	}
	meta := r.body["meta"].(map[string]any)
	if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
		t.Fatalf("meta %v", meta)
	}
	rd := in.do("GET", "/Patient/"+id, nil).expect(t, 200)
	if rd.header.Get("Last-Modified") == "" || rd.header.Get("ETag") != `W/"1"` {
		t.Fatalf("read headers %v", rd.header)
	}
	in.do("GET", "/Patient/"+id, nil, "If-None-Match", `W/"1"`).expect(t, 304)
	upd := patient("Crudova")
	upd["id"] = id
	upd["active"] = true
	in.do("PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`).expect(t, 200)
	in.do("PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`).expect(t, 412).outcome(t)
	in.do("PATCH", "/Patient/"+id, `[{"op":"replace","path":"/active","value":false}]`, "Content-Type", "application/json-patch+json").expect(t, 200)
	h := in.do("GET", "/Patient/"+id+"/_history", nil).expect(t, 200)
	if h.body["type"] != "history" || len(h.body["entry"].([]any)) != 3 {
		t.Fatalf("history: %s", truncate(h.raw))
	}
	v1 := in.do("GET", "/Patient/"+id+"/_history/1", nil).expect(t, 200)
	if v1.body["active"] != nil {
		t.Fatalf("vread 1 has active: %s", truncate(v1.raw))
	}
	if d := in.do("DELETE", "/Patient/"+id, nil); d.status != 200 && d.status != 204 {
		t.Fatalf("delete: %d", d.status)
	}
	in.do("GET", "/Patient/"+id, nil).expect(t, 410).outcome(t)
	in.do("GET", "/Patient/"+id+"/_history/3", nil).expect(t, 200)
	// Create-on-update with a client id, conditional create.
	p := patient("Clientid")
	p["id"] = "client-chosen-1"
	in.do("PUT", "/Patient/client-chosen-1", p).expect(t, 201)
	c1 := in.do("POST", "/Patient", patient("Condova"), "If-None-Exist", "identifier=http://example.org/mrn|Condova").expect(t, 201)
	c2 := in.do("POST", "/Patient", patient("Condova"), "If-None-Exist", "identifier=http://example.org/mrn|Condova").expect(t, 200)
	if c1.body["id"] != c2.body["id"] {
		t.Fatalf("conditional create made a second resource")
	}
	// Conditional update by identifier, conditional delete.
	cu := patient("Condova")
	cu["active"] = true
	in.do("PUT", "/Patient?identifier=http://example.org/mrn|Condova", cu).expect(t, 200)
	in.do("DELETE", "/Patient?identifier=http://example.org/mrn|Condova", nil)
	in.do("GET", "/Patient/"+c1.body["id"].(string), nil).expect(t, 410)
	// Prefer: return=minimal.
	m := in.do("POST", "/Patient", patient("Minimal"), "Prefer", "return=minimal").expect(t, 201)
	if len(m.raw) != 0 || m.header.Get("Location") == "" {
		t.Fatalf("return=minimal gave a body %q", m.raw)
	}
}

func testSearch(t *testing.T, in *instance) {
	pid := ""
	{
		r := in.do("GET", "/Patient?name=Test&family=Crudova&_summary=count", nil).expect(t, 200)
		_ = r
		b := in.do("GET", "/Observation?code=http://loinc.org|29463-7&_count=1", nil).expect(t, 200)
		es := ids(t, b.body, "match")
		if len(es) != 1 {
			t.Fatalf("no body-weight observation: %s", truncate(b.raw))
		}
		obs := in.do("GET", "/"+es[0], nil).expect(t, 200)
		pid = strings.TrimPrefix(obs.body["subject"].(map[string]any)["reference"].(string), "Patient/")
	}
	count := func(q string) int {
		t.Helper()
		r := in.do("GET", q, nil).expect(t, 200)
		return int(r.body["total"].(float64))
	}
	all := count("/Observation?patient=" + pid + "&_summary=count")
	if all == 0 {
		t.Fatal("patient has no observations")
	}
	if n := count("/Observation?subject=Patient/" + pid + "&_summary=count"); n != all {
		t.Fatalf("subject=Patient/id %d vs patient=id %d", n, all)
	}
	if n := count("/Observation?patient=" + url.QueryEscape(in.base+"/Patient/"+pid) + "&_summary=count"); n != all {
		t.Fatalf("absolute reference %d vs %d", n, all)
	}
	weight := count("/Observation?patient=" + pid + "&code=http://loinc.org|29463-7")
	lab := count("/Observation?patient=" + pid + "&category=laboratory")
	labNew := count("/Observation?patient=" + pid + "&category=laboratory&date=ge2015-01-01")
	labOld := count("/Observation?patient=" + pid + "&category=laboratory&date=lt2015-01-01")
	if weight == 0 || lab == 0 || labNew+labOld != lab {
		t.Fatalf("weight %d lab %d new %d old %d", weight, lab, labNew, labOld)
	}
	// POST _search gives the same results as GET.
	req, _ := http.NewRequest("POST", in.base+"/Observation/_search", strings.NewReader("patient="+pid+"&category=laboratory"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-API-Key", in.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pb map[string]any
	json.NewDecoder(resp.Body).Decode(&pb)
	resp.Body.Close()
	if resp.StatusCode != 200 || int(pb["total"].(float64)) != lab {
		t.Fatalf("POST _search: %d total %v want %d", resp.StatusCode, pb["total"], lab)
	}
	// Chain and reverse chain.
	pat := in.do("GET", "/Patient/"+pid, nil).expect(t, 200)
	family := pat.body["name"].([]any)[0].(map[string]any)["family"].(string)
	if n := count("/Observation?subject:Patient.family=" + url.QueryEscape(family) + "&code=http://loinc.org|29463-7"); n < weight {
		t.Fatalf("chain gave %d, want >= %d", n, weight)
	}
	hb := in.do("GET", "/Patient?_has:Observation:patient:code=29463-7&_id="+pid, nil).expect(t, 200)
	if got := ids(t, hb.body, "match"); len(got) != 1 || got[0] != "Patient/"+pid {
		t.Fatalf("_has: %v", got)
	}
	// _include and _revinclude.
	ib := in.do("GET", "/Observation?patient="+pid+"&code=http://loinc.org|29463-7&_include=Observation:patient", nil).expect(t, 200)
	if inc := ids(t, ib.body, "include"); len(inc) != 1 || inc[0] != "Patient/"+pid {
		t.Fatalf("_include: %v", inc)
	}
	rb := in.do("GET", "/Patient?_id="+pid+"&_revinclude=Observation:patient&_count=1000", nil).expect(t, 200)
	if n := len(ids(t, rb.body, "include")); n != all {
		t.Fatalf("_revinclude gave %d observations, want %d", n, all)
	}
	// _sort descending by date.
	sb := in.do("GET", "/Observation?patient="+pid+"&code=http://loinc.org|29463-7&_sort=-date", nil).expect(t, 200)
	var prev string
	for _, e := range sb.body["entry"].([]any) {
		d := e.(map[string]any)["resource"].(map[string]any)["effectiveDateTime"].(string)
		if prev != "" && d > prev {
			t.Fatalf("not sorted descending: %s after %s", d, prev)
		}
		prev = d
	}
	// String search is case- and accent-insensitive starts-with.
	in.do("POST", "/Patient", patient("Zoë-Ångström")).expect(t, 201)
	if n := count("/Patient?family=zoe-ang"); n != 1 {
		t.Fatalf("accent-insensitive search found %d", n)
	}
	if n := count("/Patient?family:exact=Zoë-Ångström"); n != 1 {
		t.Fatalf(":exact found %d", n)
	}
	if n := count("/Patient?family:contains=ngstr"); n != 1 {
		t.Fatalf(":contains found %d", n)
	}
	// Unknown parameters are ignored (and left out of the self link) unless strict.
	u := in.do("GET", "/Patient?bogus=1&family=zoe", nil).expect(t, 200)
	if strings.Contains(link(u.body, "self"), "bogus") {
		t.Fatalf("self link keeps unknown param: %s", link(u.body, "self"))
	}
	in.do("GET", "/Patient?bogus=1", nil, "Prefer", "handling=strict").expect(t, 400).outcome(t)
}

func testPaging(t *testing.T, in *instance) {
	first := in.do("GET", "/Observation?_count=50&_sort=_id", nil).expect(t, 200)
	total := int(first.body["total"].(float64))
	seen := map[string]bool{}
	page := first
	pages := 0
	// Writes must not shift the pages: before each page a new Observation
	// that sorts first is written, and another one is written while the
	// page is being read.
	put := func(id string) {
		body, _ := json.Marshal(map[string]any{"resourceType": "Observation", "id": id, "status": "final", "code": map[string]any{"text": "x"}})
		req, _ := http.NewRequest("PUT", in.base+"/Observation/"+id, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("X-API-Key", in.apiKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	var wg sync.WaitGroup
	during := make(chan int, 1)
	wg.Go(func() {
		for i := range during {
			put(fmt.Sprintf("aaaa-paging-c%d", i))
		}
	})
	defer func() { close(during); wg.Wait() }()
	for {
		pages++
		for _, id := range ids(t, page.body, "match") {
			if seen[id] {
				t.Fatalf("%s seen twice (page %d)", id, pages)
			}
			seen[id] = true
		}
		next := link(page.body, "next")
		if next == "" {
			break
		}
		put(fmt.Sprintf("aaaa-paging-%d", pages))
		select {
		case during <- pages:
		default: // the previous concurrent write is still running
		}
		page = in.do("GET", next, nil).expect(t, 200)
		if pages > 1000 {
			t.Fatal("too many pages")
		}
	}
	if len(seen) != total {
		t.Fatalf("paged through %d resources, total said %d", len(seen), total)
	}
	// previous link of the second page leads back to the first.
	second := in.do("GET", link(first.body, "next"), nil).expect(t, 200)
	back := in.do("GET", link(second.body, "previous"), nil).expect(t, 200)
	if fmt.Sprint(ids(t, back.body, "match")) != fmt.Sprint(ids(t, first.body, "match")) {
		t.Fatal("previous page differs from the first page")
	}
}

func testTransaction(t *testing.T, in *instance) {
	tx := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"fullUrl": "urn:uuid:5c1b7d2a-0000-4000-8000-000000000001", "resource": patient("Transacta"),
			"request": map[string]any{"method": "POST", "url": "Patient"}},
		map[string]any{"fullUrl": "urn:uuid:5c1b7d2a-0000-4000-8000-000000000002", "resource": map[string]any{
			"resourceType": "Observation", "status": "final", "code": map[string]any{"text": "t"},
			"subject": map[string]any{"reference": "urn:uuid:5c1b7d2a-0000-4000-8000-000000000001"}},
			"request": map[string]any{"method": "POST", "url": "Observation"}},
	}}
	r := in.do("POST", "", tx).expect(t, 200)
	if r.body["type"] != "transaction-response" {
		t.Fatalf("type %v", r.body["type"])
	}
	es := r.body["entry"].([]any)
	loc0 := es[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	loc1 := es[1].(map[string]any)["response"].(map[string]any)["location"].(string)
	pid := strings.Split(loc0, "/")[1]
	obs := in.do("GET", "/"+strings.Join(strings.Split(loc1, "/")[:2], "/"), nil).expect(t, 200)
	if obs.body["subject"].(map[string]any)["reference"] != "Patient/"+pid {
		t.Fatalf("urn:uuid not rewritten: %v", obs.body["subject"])
	}
	// Atomic: a bad second entry means nothing is written.
	before := in.do("GET", "/Patient?family=Atomica&_summary=count", nil).expect(t, 200).body["total"]
	bad := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"resource": patient("Atomica"), "request": map[string]any{"method": "POST", "url": "Patient"}},
		map[string]any{"resource": map[string]any{"resourceType": "Observation", "status": "not-a-status", "code": map[string]any{"text": "t"}},
			"request": map[string]any{"method": "POST", "url": "Observation"}},
	}}
	in.do("POST", "", bad).expect(t, 400).outcome(t)
	after := in.do("GET", "/Patient?family=Atomica&_summary=count", nil).expect(t, 200).body["total"]
	if before != after {
		t.Fatalf("failed transaction wrote data: %v -> %v", before, after)
	}
}

func testRejections(t *testing.T, in *instance) {
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
	}{
		{"malformed json", "POST", "/Patient", `{"resourceType":"Patient",`, nil, 400},
		{"unknown element", "POST", "/Patient", `{"resourceType":"Patient","foo":1}`, nil, 400},
		{"bad date", "POST", "/Patient", `{"resourceType":"Patient","birthDate":"1980-13-01"}`, nil, 400},
		{"type mismatch", "POST", "/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400},
		{"id mismatch", "PUT", "/Patient/abc", `{"resourceType":"Patient","id":"xyz"}`, nil, 400},
		{"invalid id", "GET", "/Patient/" + strings.Repeat("x", 65), "", nil, 400},
		{"unknown type", "GET", "/Foo/1", "", nil, 404},
		{"xml body", "POST", "/Patient", `<Patient/>`, []string{"Content-Type", "application/fhir+xml"}, 415},
		{"xml accept", "GET", "/metadata", "", []string{"Accept", "application/fhir+xml"}, 406},
		{"bad search date", "GET", "/Observation?date=2015-13-01", "", nil, 400},
		{"bad prefix", "GET", "/Observation?date=xx2015", "", nil, 400},
		{"not found", "GET", "/Patient/does-not-exist", "", nil, 404},
		{"too large", "POST", "/Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("x", 17<<20) + `</div>"}}`, nil, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := in.do(c.method, c.path, body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, truncate(r.raw))
			}
			r.outcome(t)
		})
	}
}

func TestCLIContract(t *testing.T) {
	t.Parallel()
	_, errOut, code := run(t, "serve", "--addr", "0.0.0.0:1")
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.HasPrefix(errOut, "lapis: ") {
		t.Fatalf("non-loopback serve: exit %d stderr %q", code, errOut)
	}
	_, errOut, code = run(t, "serve", "--bogus-flag")
	if code == 0 || errOut == "" {
		t.Fatalf("bad flag: exit %d", code)
	}
	out, _, code := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "lapis ") {
		t.Fatalf("version: %d %q", code, out)
	}
	// Env variables configure serve like flags.
	dir := t.TempDir()
	s := lapistest.Start(t, lapistest.Options{EnvConfig: true, DataDir: dir,
		Env: []string{"LAPIS_ADDR=127.0.0.1:0", "LAPIS_DATA_DIR=" + dir, "LAPIS_DATABASE_URL=", "LAPIS_BASE_URL=https://fhir.example.org"}})
	if s.Base != "https://fhir.example.org/fhir" {
		t.Fatalf("served FHIR base %q", s.Base)
	}
	if files, _ := os.ReadDir(dir); len(files) == 0 {
		t.Fatal("LAPIS_DATA_DIR is empty: the server did not use it")
	}
	var cs map[string]any
	res := s.Do(t, "GET", "http://"+s.Addr+"/fhir/metadata", nil)
	if err := json.Unmarshal(res.Body, &cs); err != nil {
		t.Fatalf("metadata %d: %v", res.Status, err)
	}
	impl := cs["implementation"].(map[string]any)
	if impl["url"] != "https://fhir.example.org/fhir" {
		t.Fatalf("implementation.url %v", impl["url"])
	}
}

// testAuthentication checks that the FHIR API needs a credential (but
// /metadata does not) and that a key limited to one patient sees only that
// patient's compartment.
func testAuthentication(t *testing.T, in *instance) {
	for _, h := range [][]string{{"X-API-Key", ""}, {"X-API-Key", "lapis_bogus"}, {"X-API-Key", "", "Authorization", "Bearer not-a-token"}} {
		r := in.do("GET", "/Patient", nil, h...)
		if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%v: status %d, WWW-Authenticate %q", h, r.status, r.header.Get("WWW-Authenticate"))
		}
		r.outcome(t)
	}
	in.do("GET", "/metadata", nil, "X-API-Key", "").expect(t, 200)
	// A patient-bound key: its own Patient and Observations only.
	b := in.do("GET", "/Observation?code=http://loinc.org|29463-7&_count=1", nil).expect(t, 200)
	obs := in.do("GET", "/"+ids(t, b.body, "match")[0], nil).expect(t, 200)
	pid := strings.TrimPrefix(obs.body["subject"].(map[string]any)["reference"].(string), "Patient/")
	out, errOut, code := in.lapis("apikey", "create", "--name", "one-patient", "--scope", "patient/*.rs", "--patient", pid, "--json")
	if code != 0 {
		t.Fatalf("apikey create: %s", errOut)
	}
	var k struct{ Key string }
	_ = json.Unmarshal([]byte(out), &k)
	own := in.do("GET", "/Observation?_summary=count", nil, "X-API-Key", k.Key).expect(t, 200)
	all := in.do("GET", "/Observation?patient="+pid+"&_summary=count", nil).expect(t, 200)
	if own.body["total"] != all.body["total"] {
		t.Fatalf("patient key sees %v observations, the patient has %v", own.body["total"], all.body["total"])
	}
	in.do("GET", "/Patient/"+pid, nil, "X-API-Key", k.Key).expect(t, 200)
	other := in.do("GET", "/Patient?_id:not="+pid+"&_count=1", nil).expect(t, 200)
	if es := ids(t, other.body, "match"); len(es) == 1 {
		in.do("GET", "/"+es[0], nil, "X-API-Key", k.Key).expect(t, 404)
	}
	in.do("POST", "/Patient", patient("Nowrite"), "X-API-Key", k.Key).expect(t, 403).outcome(t)
}
