package fhirapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
)

// "Bad input never hurts": every malformed or hostile request gets a 4xx
// (or the correct 2xx) with an OperationOutcome that says what is wrong and
// carries no internal detail, never a 500 or a panic, and a failed write
// stores nothing.

// leakRE matches text that must never reach a client: Go, SQL and driver
// internals, stack traces and file paths.
var leakRE = regexp.MustCompile(`(?i:sql|sqlite|pgx|postgres|runtime|panic|goroutine|nil pointer)|\.go:\d|/home/|/work/|/usr/|/tmp/|map\[|interface \{\}|%!\w\(|reflect\.|json: |strconv\.`)

// checkOutcome asserts r is a well-formed error OperationOutcome.
func checkOutcome(t testing.TB, r *resp) {
	t.Helper()
	checkOutcomeEcho(t, r, "")
}

// checkOutcomeEcho is checkOutcome for a request whose text is echo: text
// of the request quoted back in diagnostics is not a leak.
func checkOutcomeEcho(t testing.TB, r *resp, echo string) {
	t.Helper()
	if ct := r.hdr.Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
		t.Errorf("Content-Type %q on %d; body %.300s", ct, r.code, r.body)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Errorf("error body is not JSON (%d): %.300q", r.code, r.body)
		return
	}
	if m["resourceType"] != "OperationOutcome" {
		t.Errorf("error body is not an OperationOutcome (%d): %.300s", r.code, r.body)
		return
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Errorf("OperationOutcome without issues: %s", r.body)
	}
	for _, is := range issues {
		d, _ := get(is, "diagnostics").(string)
		if strings.TrimSpace(d) == "" {
			t.Errorf("issue without diagnostics: %s", r.body)
		}
		for _, m := range leakRE.FindAllString(d, -1) {
			if !strings.Contains(strings.ToLower(echo), strings.ToLower(m)) {
				t.Errorf("diagnostics leak internals (%q): %q", m, d)
				break
			}
		}
		if get(is, "severity") == nil || get(is, "code") == nil {
			t.Errorf("issue without severity/code: %s", r.body)
		}
	}
}

// versionCount is the number of stored versions of all resources.
func (e *env) versionCount(t testing.TB) int {
	t.Helper()
	p, err := e.st.History(context.Background(), store.HistoryQuery{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	return p.Total
}

type hostileCase struct {
	name   string
	method string
	path   string
	body   string
	hdr    []string
	want   []int // acceptable statuses; nil = any 4xx
}

const (
	jp      = "Content-Type: application/json-patch+json"
	ctFHIR  = "Content-Type: application/fhir+json"
	noCT    = "Content-Type:"
	pat     = `{"resourceType":"Patient","active":true}`
	patP1   = `{"resourceType":"Patient","id":"p1","active":true}`
	nested  = 100000
	obsBody = `{"resourceType":"Observation","status":"final","code":{"text":"x"},%s}`
)

func obs(extra string) string { return fmt.Sprintf(obsBody, extra) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func bundle(typ string, entries ...string) string {
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

// malformedBodies are JSON bodies no resource endpoint may accept. Each is
// tried on every route that takes a resource body.
func malformedBodies() map[string]string {
	deepArr := `{"resourceType":"Patient","extension":` + strings.Repeat("[", nested) + strings.Repeat("]", nested) + `}`
	deepObj := `{"resourceType":"Patient","x":` + strings.Repeat(`{"a":`, nested) + "1" + strings.Repeat("}", nested) + `}`
	deepOnly := strings.Repeat("[", nested)
	return map[string]string{
		"truncated":                `{"resourceType":"Patient","active":tr`,
		"truncated object":         `{"resourceType":"Patient"`,
		"trailing comma":           `{"resourceType":"Patient",}`,
		"single quotes":            `{'resourceType':'Patient'}`,
		"deep arrays":              deepArr,
		"deep objects":             deepObj,
		"deep unterminated":        deepOnly,
		"duplicate resourceType":   `{"resourceType":"Patient","resourceType":"Observation"}`,
		"duplicate key":            `{"resourceType":"Patient","active":true,"active":false}`,
		"duplicate escaped key":    `{"resourceType":"Patient","active":true,"\u0061ctive":false}`,
		"duplicate nested key":     `{"resourceType":"Patient","name":[{"family":"a","family":"b"}]}`,
		"huge integer":             `{"resourceType":"Patient","multipleBirthInteger":99999999999999999999999}`,
		"integer 1e3":              `{"resourceType":"Patient","multipleBirthInteger":1e3}`,
		"NaN string integer":       `{"resourceType":"Patient","multipleBirthInteger":"NaN"}`,
		"NaN bare":                 `{"resourceType":"Patient","multipleBirthInteger":NaN}`,
		"Infinity bare":            `{"resourceType":"Patient","multipleBirthInteger":Infinity}`,
		"NaN decimal string":       `{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":"NaN"}]}`,
		"invalid UTF-8":            "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}",
		"invalid UTF-8 key":        "{\"resourceType\":\"Patient\",\"\xc3\":1}",
		"raw NUL":                  "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"a\x00b\"}]}",
		"escaped NUL":              `{"resourceType":"Patient","name":[{"family":"a\u0000b"}]}`,
		"escaped NUL key":          `{"resourceType":"Patient","act\u0000ive":true}`,
		"lone surrogate":           `{"resourceType":"Patient","name":[{"family":"\ud800"}]}`,
		"NUL after body":           "{\"resourceType\":\"Patient\"}\x00",
		"empty":                    ``,
		"whitespace":               " \n\t ",
		"null":                     `null`,
		"array":                    `[]`,
		"string":                   `"x"`,
		"number":                   `1`,
		"true":                     `true`,
		"empty object":             `{}`,
		"resourceType number":      `{"resourceType":1}`,
		"resourceType null":        `{"resourceType":null}`,
		"unknown resourceType":     `{"resourceType":"Hacker"}`,
		"two objects":              `{"resourceType":"Patient"}{"resourceType":"Patient"}`,
		"meta array":               `{"resourceType":"Patient","meta":[]}`,
		"meta versionId object":    `{"resourceType":"Patient","meta":{"versionId":{}}}`,
		"unknown element":          `{"resourceType":"Patient","hacker":true}`,
		"contained Bundle":         `{"resourceType":"Patient","contained":[{"resourceType":"Bundle","type":"transaction"}]}`,
		"contained no type":        `{"resourceType":"Patient","contained":[{"id":"x"}]}`,
		"contained not object":     `{"resourceType":"Patient","contained":[1]}`,
		"huge string key":          `{"resourceType":"Patient","` + strings.Repeat("k", 100000) + `":1}`,
		"BOM then garbage":         "\xef\xbb\xbf{",
		"gender code array":        `{"resourceType":"Patient","gender":["male"]}`,
		"primitive extension junk": `{"resourceType":"Patient","_birthDate":1}`,
	}
}

func TestHostileInput(t *testing.T) {
	t.Parallel()
	// Failed requests must not change anything, so one seeded environment
	// serves every case until a request stores a version; then a copy of
	// the seeded database file replaces it (cheaper than migrating a new one).
	opts := func(c *Config, rc *resourceConfig) {
		c.MaxBodyBytes = 8 << 20
		rc.MaxBundleEntries = 5000
	}
	seeded := dbtest.StoreDir(t)
	{
		e := newEnvDir(t, seeded, opts)
		// Seed: Patient/p1 (2 versions), Patient/gone (deleted), Observation/o1.
		e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://h","value":"1"}]}`).expect(t, 201)
		e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://h","value":"1"}],"active":true}`).expect(t, 200)
		e.do("PUT", "/fhir/Patient/gone", `{"resourceType":"Patient","id":"gone"}`).expect(t, 201)
		e.do("DELETE", "/fhir/Patient/gone", "").expect(t, 204)
		e.do("PUT", "/fhir/Observation/o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`).expect(t, 201)
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fresh := func() *env {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(seeded)); err != nil {
			t.Fatal(err)
		}
		return newEnvDir(t, dir, opts)
	}
	e := fresh()

	var cases []hostileCase
	add := func(c hostileCase) { cases = append(cases, c) }

	// Every body-taking route × every malformed body.
	bodyRoutes := []struct{ name, method, path string }{
		{"create", "POST", "/fhir/Patient"},
		{"conditional create", "POST", "/fhir/Patient"},
		{"update", "PUT", "/fhir/Patient/p1"},
		{"update-as-create", "PUT", "/fhir/Patient/newone"},
		{"conditional update", "PUT", "/fhir/Patient?identifier=http://h|1"},
		{"conditional update no match", "PUT", "/fhir/Patient?identifier=http://h|none"},
		{"transaction", "POST", "/fhir"},
		{"batch", "POST", "/fhir/"},
	}
	for bn, body := range malformedBodies() {
		for _, rt := range bodyRoutes {
			hdr := []string{ctFHIR}
			if rt.name == "conditional create" {
				hdr = append(hdr, "If-None-Exist: identifier=http://h|none")
			}
			want := []int(nil)
			switch bn {
			case "unknown element", "huge string key":
				want = []int{400, 422}
			case "contained Bundle", "meta versionId object":
				want = []int{200, 201, 400, 422} // legal or refused, never a 500
			}
			add(hostileCase{name: rt.name + "/" + bn, method: rt.method, path: rt.path, body: body, hdr: hdr, want: want})
		}
		for _, pp := range []string{"/fhir/Patient/p1", "/fhir/Patient?identifier=http://h|1"} {
			if bn == "array" {
				continue // an empty JSON Patch is valid
			}
			add(hostileCase{name: "patch " + pp + "/" + bn, method: "PATCH", path: pp, body: body, hdr: []string{jp}})
		}
	}

	// Content-Type and charset variants.
	for _, ct := range []string{"text/plain", "application/xml", "application/fhir+xml", "multipart/form-data; boundary=x", ";;;", "application/fhir+json; charset=iso-8859-1", "application/fhir+json; fhirVersion=3.0", "application/x-www-form-urlencoded", "application/fhir+json; charset=\"utf-16\""} {
		add(hostileCase{name: "create CT " + ct, method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{"Content-Type: " + ct}, want: []int{415}})
		add(hostileCase{name: "update CT " + ct, method: "PUT", path: "/fhir/Patient/p1", body: patP1, hdr: []string{"Content-Type: " + ct}, want: []int{415}})
		add(hostileCase{name: "bundle CT " + ct, method: "POST", path: "/fhir", body: bundle("batch"), hdr: []string{"Content-Type: " + ct}, want: []int{415}})
		add(hostileCase{name: "patch CT " + ct, method: "PATCH", path: "/fhir/Patient/p1", body: `[]`, hdr: []string{"Content-Type: " + ct}, want: []int{415}})
	}
	for _, ct := range []string{"application/fhir+json; charset=utf-8", "application/fhir+json;charset=UTF-8", "application/fhir+json; fhirVersion=4.0", "application/fhir+json; charset=utf-8; fhirVersion=4.0", "application/json", "application/json+fhir", "APPLICATION/FHIR+JSON"} {
		add(hostileCase{name: "create CT ok " + ct, method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{"Content-Type: " + ct}, want: []int{201}})
	}
	// Numbers the index cannot represent as float64 must not break writes
	// or searches.
	for _, v := range []string{"1e400", "-1e400", "1e-400", "123456789012345678901234567890.5", "1E+308", "0.0000000000000000000000000000001", "-0", "1.0e0"} {
		add(hostileCase{name: "decimal " + v, method: "POST", path: "/fhir/Observation", body: obs(`"valueQuantity":{"value":` + v + `,"unit":"kg"}`), want: []int{201, 400}})
		add(hostileCase{name: "search decimal " + v, method: "GET", path: "/fhir/Observation?value-quantity=" + strings.ReplaceAll(v, "+", "%2B"), want: []int{200, 400}})
		add(hostileCase{name: "search decimal ge " + v, method: "GET", path: "/fhir/Observation?value-quantity=ge" + strings.ReplaceAll(v, "+", "%2B") + "||kg", want: []int{200, 400}})
	}
	for _, v := range []string{"2147483648", "-2147483649", "99999999999999999999999", "1.5", "1e3"} {
		add(hostileCase{name: "integer " + v, method: "POST", path: "/fhir/Patient", body: `{"resourceType":"Patient","multipleBirthInteger":` + v + `}`, want: []int{400}})
	}
	add(hostileCase{name: "max params ok", method: "GET", path: "/fhir/Patient?" + strings.Repeat("name=x&", 64), want: []int{200}})
	add(hostileCase{name: "max values ok", method: "GET", path: "/fhir/Patient?name=" + strings.Repeat("x,", 255) + "x", want: []int{200}})
	add(hostileCase{name: "max values ok mixed", method: "GET", path: "/fhir/Patient?" + strings.Repeat("name="+strings.Repeat("x,", 3)+"x&", 64), want: []int{200}})
	add(hostileCase{name: "create gzip", method: "POST", path: "/fhir/Patient", body: "\x1f\x8b\x08\x00", hdr: []string{ctFHIR, "Content-Encoding: gzip"}, want: []int{415}})
	add(hostileCase{name: "create identity encoding", method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{ctFHIR, "Content-Encoding: identity"}, want: []int{201}})
	add(hostileCase{name: "create no CT", method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{noCT}, want: []int{201}})
	add(hostileCase{name: "create BOM", method: "POST", path: "/fhir/Patient", body: "\xef\xbb\xbf" + pat, want: []int{201}})
	add(hostileCase{name: "patch CT with charset", method: "PATCH", path: "/fhir/Patient/p1", body: `[{"op":"test","path":"/id","value":"p1"}]`, hdr: []string{"Content-Type: application/json-patch+json; charset=utf-8"}, want: []int{200}})

	// Accept variants.
	for _, a := range []string{"application/fhir+json;q=0.9, */*;q=0.1", "application/fhir+json; fhirVersion=4.0", "application/json", "*/*", "application/*", "application/fhir+json;q=1.0", "text/html, */*;q=0.01", "application/fhir+json; charset=utf-8"} {
		add(hostileCase{name: "Accept " + a, method: "GET", path: "/fhir/Patient/p1", hdr: []string{"Accept: " + a}, want: []int{200}})
		add(hostileCase{name: "Accept search " + a, method: "GET", path: "/fhir/Patient", hdr: []string{"Accept: " + a}, want: []int{200}})
	}
	for _, a := range []string{"application/fhir+xml", "text/html", "application/fhir+json;q=0", "application/fhir+json; fhirVersion=3.0", "image/png, application/xml"} {
		add(hostileCase{name: "Accept bad " + a, method: "GET", path: "/fhir/Patient/p1", hdr: []string{"Accept: " + a}, want: []int{406}})
	}
	for _, f := range []string{"json", "application/fhir%2Bjson", "application/json", "application/fhir%2Bjson;fhirVersion=4.0"} {
		add(hostileCase{name: "_format " + f, method: "GET", path: "/fhir/Patient/p1?_format=" + f, want: []int{200}})
	}
	for _, f := range []string{"xml", "ttl", "turtle", "html", "application/fhir%2Bjson;fhirVersion=3.0"} {
		add(hostileCase{name: "_format bad " + f, method: "GET", path: "/fhir/Patient/p1?_format=" + f, want: []int{406}})
	}

	// Ids with path tricks, invalid ids, on every id-taking route.
	long := strings.Repeat("a", 65)
	huge := strings.Repeat("a", 20000)
	for _, id := range []string{"..", ".", "a%2Fb", "%2E%2E", "%C3%A9", "a%00b", "a%20b", long, huge, "a$b", "%E2%80%AE", "a;b", "a,b", "a:b", "a%25b"} {
		add(hostileCase{name: "read id " + id, method: "GET", path: "/fhir/Patient/" + id, want: []int{400, 404}})
		add(hostileCase{name: "vread id " + id, method: "GET", path: "/fhir/Patient/" + id + "/_history/1", want: []int{400, 404}})
		add(hostileCase{name: "history id " + id, method: "GET", path: "/fhir/Patient/" + id + "/_history", want: []int{400, 404}})
		add(hostileCase{name: "update id " + id, method: "PUT", path: "/fhir/Patient/" + id, body: `{"resourceType":"Patient","id":"` + id + `"}`, want: []int{400}})
		add(hostileCase{name: "patch id " + id, method: "PATCH", path: "/fhir/Patient/" + id, body: `[]`, hdr: []string{jp}, want: []int{400, 404}})
		add(hostileCase{name: "delete id " + id, method: "DELETE", path: "/fhir/Patient/" + id, want: []int{400}})
	}
	for _, p := range []string{"/fhir/Patient/../Observation/o1", "/fhir/./Patient/p1", "/fhir//Patient/p1", "/fhir/Patient/p1/", "/fhir/Patient/p1/_history/", "/fhir/Patient%2Fp1", "/x/../fhir/Patient/p1", "/fhir/Patient/%2e%2E/Observation/o1", "/fhir/Patient/p1/..", "/fhir/Patient/p1/_history/.."} {
		add(hostileCase{name: "path trick GET " + p, method: "GET", path: p, want: []int{400, 404}})
		add(hostileCase{name: "path trick PUT " + p, method: "PUT", path: p, body: `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"hacked"}}`, want: []int{400, 404, 405}})
		add(hostileCase{name: "path trick DELETE " + p, method: "DELETE", path: p, want: []int{400, 404, 405}})
	}
	for _, typ := range []string{"patient", "Hacker", "Resource", "DomainResource", "Bundle%00", "Patient%20"} {
		add(hostileCase{name: "type " + typ, method: "GET", path: "/fhir/" + typ + "/p1", want: []int{400, 404}})
		add(hostileCase{name: "create type " + typ, method: "POST", path: "/fhir/" + typ, body: `{"resourceType":"` + typ + `"}`, want: []int{400, 404}})
		add(hostileCase{name: "search type " + typ, method: "GET", path: "/fhir/" + typ, want: []int{400, 404}})
	}

	// Version ids.
	for _, v := range []string{"abc", "-1", "0", "99999999999999999999", "1.0", "+1", "01", "1e3", "%20", "1%00"} {
		add(hostileCase{name: "vread vid " + v, method: "GET", path: "/fhir/Patient/p1/_history/" + v, want: []int{400, 404}})
	}
	add(hostileCase{name: "vread deleted version", method: "GET", path: "/fhir/Patient/gone/_history/2", want: []int{410}})
	add(hostileCase{name: "vread existing", method: "GET", path: "/fhir/Patient/gone/_history/1", want: []int{200}})
	add(hostileCase{name: "vread huge version", method: "GET", path: "/fhir/Patient/p1/_history/9223372036854775807", want: []int{404}})
	add(hostileCase{name: "read deleted", method: "GET", path: "/fhir/Patient/gone", want: []int{410}})

	// If-Match / If-None-Match / If-None-Exist.
	for _, im := range []string{"x", `W/"x"`, `W/"-1"`, `W/"0"`, `W/"99999999999999999999"`, `"98", "99"`, `W/"1", *`, `W/`} {
		add(hostileCase{name: "update If-Match " + im, method: "PUT", path: "/fhir/Patient/p1", body: patP1, hdr: []string{"If-Match: " + im}, want: []int{400, 412}})
		add(hostileCase{name: "delete If-Match " + im, method: "DELETE", path: "/fhir/Patient/p1", hdr: []string{"If-Match: " + im}, want: []int{400, 412}})
		add(hostileCase{name: "patch If-Match " + im, method: "PATCH", path: "/fhir/Patient/p1", body: `[]`, hdr: []string{jp, "If-Match: " + im}, want: []int{400, 412}})
	}
	add(hostileCase{name: "update If-Match stale", method: "PUT", path: "/fhir/Patient/p1", body: patP1, hdr: []string{`If-Match: W/"1"`}, want: []int{412}})
	for _, ine := range []string{"bogus=1", "identifier=%zz", "_sort=name", "_count=abc", "name:nosuchmodifier=x", "birthdate=notadate", "_include=Patient:organization", "http://h|1", "=", "&&&"} {
		add(hostileCase{name: "If-None-Exist " + ine, method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{"If-None-Exist: " + ine}, want: []int{400}})
	}
	add(hostileCase{name: "If-None-Exist full URL", method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{"If-None-Exist: " + testBase + "/Patient?identifier=http://h|1"}, want: []int{200, 400}})
	add(hostileCase{name: "If-None-Exist ?query", method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{"If-None-Exist: Patient?identifier=http://h|1"}, want: []int{200, 400}})
	add(hostileCase{name: "If-None-Exist matches", method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{"If-None-Exist: identifier=http://h|1"}, want: []int{200}})
	for _, inm := range []string{"x", `W/"abc"`, ",,,", `W/"99999999999999999999"`} {
		add(hostileCase{name: "If-None-Match " + inm, method: "GET", path: "/fhir/Patient/p1", hdr: []string{"If-None-Match: " + inm}, want: []int{200}})
	}
	add(hostileCase{name: "If-Modified-Since junk", method: "GET", path: "/fhir/Patient/p1", hdr: []string{"If-Modified-Since: yesterday"}, want: []int{200}})

	// Conditional interactions with bad criteria.
	for _, q := range []string{"bogus=1", "identifier=%zz", "_count=-1", "birthdate=notadate", "_format=json", "_pretty=true", "_id=p1&_id=gone&_id=", "_has:Observation=x", "_sort=name", "_include=Patient:organization", "name:exact", "=x", "_summary=count"} {
		add(hostileCase{name: "cond update ?" + q, method: "PUT", path: "/fhir/Patient?" + q, body: pat, want: []int{400, 412}})
		add(hostileCase{name: "cond delete ?" + q, method: "DELETE", path: "/fhir/Patient?" + q, want: []int{400, 412}})
		add(hostileCase{name: "cond patch ?" + q, method: "PATCH", path: "/fhir/Patient?" + q, body: `[]`, hdr: []string{jp}, want: []int{400, 412}})
	}
	add(hostileCase{name: "cond update body id differs", method: "PUT", path: "/fhir/Patient?identifier=http://h|1", body: `{"resourceType":"Patient","id":"other"}`, want: []int{400}})
	add(hostileCase{name: "cond update no match, body id exists", method: "PUT", path: "/fhir/Observation?code=nomatch", body: obs(`"id":"o1"`), want: []int{409}})
	add(hostileCase{name: "cond update bad body id", method: "PUT", path: "/fhir/Patient?identifier=http://h|none", body: `{"resourceType":"Patient","id":"a/b"}`, want: []int{400}})
	add(hostileCase{name: "cond update numeric body id", method: "PUT", path: "/fhir/Patient?identifier=http://h|none", body: `{"resourceType":"Patient","id":1}`, want: []int{400}})
	add(hostileCase{name: "update body id missing", method: "PUT", path: "/fhir/Patient/p1", body: pat, want: []int{400}})
	add(hostileCase{name: "update body id differs", method: "PUT", path: "/fhir/Patient/p1", body: `{"resourceType":"Patient","id":"p2"}`, want: []int{400}})
	add(hostileCase{name: "update body type differs", method: "PUT", path: "/fhir/Patient/o1", body: obs(`"id":"o1"`), want: []int{400}})

	// Search / history parameters.
	for _, q := range []string{"_count=-1", "_count=99999999999999999999", "_count=abc", "_count=1.5", "_count=", "_count=1&_count=2", "_sort=nosuchparam", "_sort=", "_sort=-", "_include=*", "_include=Patient:nosuch", "_include=Nosuch:x", "_revinclude=*", "_summary=bogus", "_elements=$$$", "_total=bogus", "_offset=-1", "_offset=99999999999999999999", "name=%zz", "name:nosuch=x", "birthdate=xx2020", "birthdate=ge", "_lastUpdated=2020-13-01", "_id=" + huge, "identifier=" + strings.Repeat("|", 5000), "_has:Observation:patient:code=", "_has=x", "general-practitioner.name=x", "general-practitioner:Hacker.name=x", "organization.partof.partof.partof.partof.partof.partof.name=x", "_type=Hacker", "_snapshot=junk", "_snapshot=" + huge, "_offset=5&_snapshot=../../etc", "name=" + strings.Repeat("%F0%9F%98%80", 3000), "name=a%00b", "_filter=name eq x", "_query=x", "_text=x", "_content=x", "_list=x"} {
		add(hostileCase{name: "search ?" + q, method: "GET", path: "/fhir/Patient?" + q, want: []int{200, 400}})
		add(hostileCase{name: "search POST ?" + q, method: "POST", path: "/fhir/Patient/_search", body: q, hdr: []string{"Content-Type: application/x-www-form-urlencoded"}, want: []int{200, 400}})
		add(hostileCase{name: "search strict ?" + q, method: "GET", path: "/fhir/Patient?" + q, hdr: []string{"Prefer: handling=strict"}, want: []int{200, 400}})
		add(hostileCase{name: "system search ?" + q, method: "GET", path: "/fhir?" + q, want: []int{200, 400}})
	}
	for _, q := range []string{"_count=-1", "_count=abc", "_count=99999999999999999999", "_since=bad", "_since=2020-13-01", "_since=", "_since=2020", "_at=2020-01-01", "_cursor=!!", "_cursor=" + huge, "_list=x", "bogus=1"} {
		want := []int{400}
		if q == "_since=2020" || q == "_at=2020-01-01" || q == "_list=x" || q == "bogus=1" || q == "_count=99999999999999999999" {
			want = []int{200, 400}
		}
		for _, p := range []string{"/fhir/_history", "/fhir/Patient/_history", "/fhir/Patient/p1/_history"} {
			add(hostileCase{name: "history " + p + "?" + q, method: "GET", path: p + "?" + q, want: want})
		}
	}
	add(hostileCase{name: "search POST wrong CT", method: "POST", path: "/fhir/Patient/_search", body: `{"name":"x"}`, hdr: []string{ctFHIR}, want: []int{415}})
	add(hostileCase{name: "search POST bad form", method: "POST", path: "/fhir/Patient/_search", body: `name=%zz`, hdr: []string{"Content-Type: application/x-www-form-urlencoded"}, want: []int{400}})
	add(hostileCase{name: "overlong query", method: "GET", path: "/fhir/Patient?name=" + strings.Repeat("x", 200000), want: []int{200, 400, 414}})
	add(hostileCase{name: "many params", method: "GET", path: "/fhir/Patient?" + strings.Repeat("name=x&", 5000), want: []int{200, 400}})
	add(hostileCase{name: "overlong path", method: "GET", path: "/fhir/" + strings.Repeat("Patient/", 20000), want: []int{400, 404, 414}})
	add(hostileCase{name: "malformed query", method: "GET", path: "/fhir/Patient?%", want: []int{400}})
	add(hostileCase{name: "malformed query on read", method: "GET", path: "/fhir/Patient/p1?a=%zz", want: []int{200, 400}})
	add(hostileCase{name: "semicolon query", method: "GET", path: "/fhir/Patient?name=a;b", want: []int{200, 400}})

	// Methods.
	for _, m := range []string{"OPTIONS", "TRACE", "PROPFIND", "FOO"} {
		add(hostileCase{name: "method " + m, method: m, path: "/fhir/Patient/p1", want: []int{405}})
	}
	add(hostileCase{name: "POST to instance", method: "POST", path: "/fhir/Patient/p1", body: pat, want: []int{405}})
	add(hostileCase{name: "PUT to history", method: "PUT", path: "/fhir/Patient/p1/_history/1", body: patP1, want: []int{405}})
	add(hostileCase{name: "DELETE history", method: "DELETE", path: "/fhir/_history", want: []int{405}})
	add(hostileCase{name: "PUT type history", method: "PUT", path: "/fhir/Patient/_history", body: pat, want: []int{405}})
	add(hostileCase{name: "POST type history", method: "POST", path: "/fhir/Patient/_history", body: pat, want: []int{405}})
	add(hostileCase{name: "GET _search", method: "GET", path: "/fhir/_search", want: []int{405}})
	add(hostileCase{name: "GET type _search", method: "GET", path: "/fhir/Patient/_search", want: []int{405}})
	add(hostileCase{name: "DELETE type _search", method: "DELETE", path: "/fhir/Patient/_search", want: []int{405}})
	add(hostileCase{name: "cond delete unknown type", method: "DELETE", path: "/fhir/Hacker?x=1", want: []int{404}})
	add(hostileCase{name: "cond update unknown type", method: "PUT", path: "/fhir/Hacker?x=1", body: pat, want: []int{404}})
	add(hostileCase{name: "many values", method: "GET", path: "/fhir/Patient?name=" + strings.Repeat("x,", 5000) + "x", want: []int{200, 400}})
	add(hostileCase{name: "many conditional params", method: "DELETE", path: "/fhir/Patient?" + strings.Repeat("name=x&", 5000), want: []int{400}})
	add(hostileCase{name: "many If-None-Exist values", method: "POST", path: "/fhir/Patient", body: pat, hdr: []string{"If-None-Exist: name=" + strings.Repeat("x,", 5000) + "x"}, want: []int{400}})
	add(hostileCase{name: "PUT no criteria", method: "PUT", path: "/fhir/Patient", body: pat, want: []int{400}})
	add(hostileCase{name: "PUT only _format", method: "PUT", path: "/fhir/Patient?_format=json", body: pat, want: []int{400}})
	add(hostileCase{name: "DELETE no criteria", method: "DELETE", path: "/fhir/Patient", want: []int{400}})
	add(hostileCase{name: "PATCH no criteria", method: "PATCH", path: "/fhir/Patient", body: `[]`, hdr: []string{jp}, want: []int{400}})
	add(hostileCase{name: "create with query", method: "POST", path: "/fhir/Patient?x=1", body: pat, want: []int{400}})
	add(hostileCase{name: "create with _format", method: "POST", path: "/fhir/Patient?_format=json", body: pat, want: []int{201}})
	add(hostileCase{name: "create with malformed query", method: "POST", path: "/fhir/Patient?%zz", body: pat, want: []int{400}})
	add(hostileCase{name: "delete deleted", method: "DELETE", path: "/fhir/Patient/gone", want: []int{204}})
	add(hostileCase{name: "delete unknown", method: "DELETE", path: "/fhir/Patient/nope", want: []int{204}})
	add(hostileCase{name: "metadata POST", method: "POST", path: "/fhir/metadata", body: pat, want: []int{405}})
	add(hostileCase{name: "metadata Accept xml", method: "GET", path: "/fhir/metadata", hdr: []string{"Accept: application/fhir+xml"}, want: []int{406}})
	add(hostileCase{name: "metadata junk query", method: "GET", path: "/fhir/metadata?%zz", want: []int{200, 400}})
	add(hostileCase{name: "metadata _format xml", method: "GET", path: "/fhir/metadata?_format=xml", want: []int{406}})
	add(hostileCase{name: "operation", method: "POST", path: "/fhir/Patient/$everything", body: `{}`, want: []int{400, 404, 405}})
	add(hostileCase{name: "operation GET", method: "GET", path: "/fhir/$meta", want: []int{400, 404}})
	add(hostileCase{name: "_pretty junk", method: "GET", path: "/fhir/Patient/p1?_pretty=banana", want: []int{200}})
	add(hostileCase{name: "_summary bad on read", method: "GET", path: "/fhir/Patient/p1?_summary=x", want: []int{400}})
	add(hostileCase{name: "_elements junk on read", method: "GET", path: "/fhir/Patient/p1?_elements=a.b.c,%2C,$", want: []int{200, 400}})

	// JSON Patch.
	patchCases := map[string]struct {
		body string
		want []int
	}{
		"not array":              {`{"op":"add"}`, []int{400}},
		"op not object":          {`[1]`, []int{400}},
		"unknown op":             {`[{"op":"hack","path":"/active"}]`, []int{400}},
		"missing path":           {`[{"op":"remove"}]`, []int{400}},
		"path not pointer":       {`[{"op":"remove","path":"active"}]`, []int{400}},
		"bad escape ~2":          {`[{"op":"add","path":"/a/~2","value":1}]`, []int{400}},
		"bad escape ~":           {`[{"op":"add","path":"/a~","value":1}]`, []int{400}},
		"add missing value":      {`[{"op":"add","path":"/active"}]`, []int{400}},
		"replace missing value":  {`[{"op":"replace","path":"/active"}]`, []int{400}},
		"test missing value":     {`[{"op":"test","path":"/active"}]`, []int{400}},
		"move missing from":      {`[{"op":"move","path":"/active"}]`, []int{400}},
		"copy from number":       {`[{"op":"copy","from":1,"path":"/active"}]`, []int{400}},
		"move into child":        {`[{"op":"move","from":"/identifier","path":"/identifier/0"}]`, []int{400}},
		"remove missing":         {`[{"op":"remove","path":"/gender"}]`, []int{422}},
		"replace missing":        {`[{"op":"replace","path":"/gender","value":"male"}]`, []int{422}},
		"remove -":               {`[{"op":"remove","path":"/identifier/-"}]`, []int{422}},
		"replace -":              {`[{"op":"replace","path":"/identifier/-","value":{}}]`, []int{422}},
		"test -":                 {`[{"op":"test","path":"/identifier/-","value":{}}]`, []int{422}},
		"add index 01":           {`[{"op":"add","path":"/identifier/01","value":{"value":"x"}}]`, []int{422}},
		"add index out of range": {`[{"op":"add","path":"/identifier/5","value":{"value":"x"}}]`, []int{422}},
		"add index negative":     {`[{"op":"add","path":"/identifier/-1","value":{"value":"x"}}]`, []int{422}},
		"add index huge":         {`[{"op":"add","path":"/identifier/99999999999999999999","value":{"value":"x"}}]`, []int{422}},
		"add deep missing":       {`[{"op":"add","path":"/a/b/c","value":1}]`, []int{422}},
		"test fails":             {`[{"op":"test","path":"/active","value":false}]`, []int{422}},
		"copy from missing":      {`[{"op":"copy","from":"/nope","path":"/x"}]`, []int{422}},
		"move from missing":      {`[{"op":"move","from":"/nope","path":"/x"}]`, []int{422}},
		"remove whole":           {`[{"op":"remove","path":""}]`, []int{422}},
		"replace whole number":   {`[{"op":"replace","path":"","value":1}]`, []int{422}},
		"replace whole other":    {`[{"op":"replace","path":"","value":{"resourceType":"Patient","id":"zz"}}]`, []int{400, 422}},
		"change id":              {`[{"op":"replace","path":"/id","value":"p2"}]`, []int{400, 422}},
		"remove id":              {`[{"op":"remove","path":"/id"}]`, []int{400, 422}},
		"change resourceType":    {`[{"op":"replace","path":"/resourceType","value":"Group"}]`, []int{400, 422}},
		"invalid result":         {`[{"op":"add","path":"/gender","value":"robot"}]`, []int{422}},
		"invalid result element": {`[{"op":"add","path":"/hacker","value":1}]`, []int{422}},
		"invalid result meta":    {`[{"op":"replace","path":"/meta","value":"x"}]`, []int{422}},
		"add NUL string":         {`[{"op":"add","path":"/gender","value":"ma\u0000le"}]`, []int{400, 422}},
		"add deep value":         {`[{"op":"add","path":"/extension","value":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}]`, []int{400, 422}},
		"duplicate op key":       {`[{"op":"add","op":"remove","path":"/active","value":1}]`, []int{400}},
		"empty":                  {``, []int{400}},
		"null":                   {`null`, []int{400}},
		"trailing":               {`[] []`, []int{400}},
		"op null":                {`[null]`, []int{400}},
		"copy bomb":              {`[` + strings.TrimSuffix(strings.Repeat(`{"op":"copy","from":"/identifier","path":"/identifier/-"},`, 64), ",") + `]`, []int{422}},
		"nesting bomb":           {`[` + strings.TrimSuffix(strings.Repeat(`{"op":"copy","from":"/identifier","path":"/identifier/0/x"},`, 64), ",") + `]`, []int{422}},
		"move deep":              {`[{"op":"add","path":"/x","value":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `},{"op":"add","path":"/y","value":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `},{"op":"move","from":"/x","path":"/y/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0"}]`, []int{422}},
		"ok noop":                {`[]`, []int{200}},
		"ok test":                {`[{"op":"test","path":"/identifier/0/value","value":"1"}]`, []int{200}},
	}
	for n, pc := range patchCases {
		add(hostileCase{name: "patch " + n, method: "PATCH", path: "/fhir/Patient/p1", body: pc.body, hdr: []string{jp}, want: pc.want})
		add(hostileCase{name: "cond patch " + n, method: "PATCH", path: "/fhir/Patient?identifier=http://h|1", body: pc.body, hdr: []string{jp}, want: pc.want})
		// The same patch carried in a transaction and in a batch.
		ent := `{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + b64(pc.body) + `"},"request":{"method":"PATCH","url":"Patient/p1"}}`
		txWant := pc.want
		if txWant[0] == 200 {
			txWant = []int{200}
		}
		add(hostileCase{name: "tx patch " + n, method: "POST", path: "/fhir", body: bundle("transaction", ent), want: txWant})
	}
	add(hostileCase{name: "patch deleted", method: "PATCH", path: "/fhir/Patient/gone", body: `[]`, hdr: []string{jp}, want: []int{410}})
	add(hostileCase{name: "patch unknown", method: "PATCH", path: "/fhir/Patient/nope", body: `[]`, hdr: []string{jp}, want: []int{404}})
	add(hostileCase{name: "patch fhirpath", method: "PATCH", path: "/fhir/Patient/p1", body: `{"resourceType":"Parameters"}`, hdr: []string{ctFHIR}, want: []int{415}})
	add(hostileCase{name: "patch no CT", method: "PATCH", path: "/fhir/Patient/p1", body: `[]`, hdr: []string{noCT}, want: []int{415}})

	// Bundles.
	pe := func(extra string) string {
		return `{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}` + extra + `}`
	}
	bundleCases := map[string]string{
		"no type":                  `{"resourceType":"Bundle","entry":[]}`,
		"type number":              `{"resourceType":"Bundle","type":1}`,
		"searchset":                `{"resourceType":"Bundle","type":"searchset"}`,
		"entry object":             `{"resourceType":"Bundle","type":"TYPE","entry":{}}`,
		"entry string":             bundle("TYPE", `"x"`),
		"entry null":               bundle("TYPE", `null`),
		"missing request":          bundle("TYPE", `{"resource":{"resourceType":"Patient"}}`),
		"request string":           bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":"POST Patient"}`),
		"unknown method":           bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"HACK","url":"Patient"}}`),
		"lowercase method":         bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"post","url":"Patient"}}`),
		"method number":            bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":1,"url":"Patient"}}`),
		"missing url":              bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST"}}`),
		"url number":               bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":5}}`),
		"absolute url other":       bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"http://evil.example/fhir/Patient"}}`),
		"url dotdot":               bundle("TYPE", `{"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"h"}},"request":{"method":"PUT","url":"Patient/../Observation/o1"}}`),
		"url dotdot id":            bundle("TYPE", `{"resource":{"resourceType":"Patient","id":".."},"request":{"method":"PUT","url":"Patient/.."}}`),
		"url encoded slash":        bundle("TYPE", `{"resource":{"resourceType":"Patient","id":"a/b"},"request":{"method":"PUT","url":"Patient/a%2Fb"}}`),
		"url leading slash":        bundle("TYPE", `{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"/Patient"}}`),
		"url double slash":         bundle("TYPE", `{"request":{"method":"GET","url":"Patient//p1"}}`),
		"url base prefix trick":    bundle("TYPE", `{"request":{"method":"GET","url":"`+testBase+`evil/Patient/p1"}}`),
		"url scheme-relative":      bundle("TYPE", `{"request":{"method":"GET","url":"//evil.example/Patient/p1"}}`),
		"url javascript":           bundle("TYPE", `{"request":{"method":"GET","url":"javascript:alert(1)"}}`),
		"url metadata":             bundle("TYPE", `{"request":{"method":"GET","url":"metadata"}}`),
		"url operation":            bundle("TYPE", `{"request":{"method":"GET","url":"Patient/$everything"}}`),
		"url fragment":             bundle("TYPE", `{"request":{"method":"GET","url":"Patient/p1#x"}}`),
		"url bad escape":           bundle("TYPE", `{"request":{"method":"GET","url":"Patient?name=%zz"}}`),
		"url bad vid":              bundle("TYPE", `{"request":{"method":"GET","url":"Patient/p1/_history/abc"}}`),
		"url vid deleted":          bundle("TYPE", `{"request":{"method":"GET","url":"Patient/gone/_history/2"}}`),
		"url bad history since":    bundle("TYPE", `{"request":{"method":"GET","url":"Patient/_history?_since=bad"}}`),
		"POST with id url":         bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient/x"}}`),
		"POST type mismatch":       bundle("TYPE", `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Patient"}}`),
		"POST no resource":         bundle("TYPE", `{"request":{"method":"POST","url":"Patient"}}`),
		"POST resource array":      bundle("TYPE", `{"resource":[],"request":{"method":"POST","url":"Patient"}}`),
		"POST invalid resource":    bundle("TYPE", `{"resource":{"resourceType":"Patient","gender":"robot"},"request":{"method":"POST","url":"Patient"}}`),
		"POST bad ifNoneExist":     bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"bogus=1"}}`),
		"PUT id mismatch":          bundle("TYPE", `{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/b"}}`),
		"PUT bad ifMatch":          bundle("TYPE", `{"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"junk"}}`),
		"PUT stale ifMatch":        bundle("TYPE", `{"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"1\""}}`),
		"PUT no criteria":          bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient"}}`),
		"PUT bad criteria":         bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient?bogus=1"}}`),
		"DELETE bad criteria":      bundle("TYPE", `{"request":{"method":"DELETE","url":"Patient?bogus=1"}}`),
		"DELETE type only":         bundle("TYPE", `{"request":{"method":"DELETE","url":"Patient"}}`),
		"PATCH non-Binary":         bundle("TYPE", `{"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PATCH","url":"Patient/p1"}}`),
		"PATCH Binary bad CT":      bundle("TYPE", `{"resource":{"resourceType":"Binary","contentType":"text/plain","data":"W10="},"request":{"method":"PATCH","url":"Patient/p1"}}`),
		"PATCH Binary bad b64":     bundle("TYPE", `{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"!!!"},"request":{"method":"PATCH","url":"Patient/p1"}}`),
		"PATCH Binary no data":     bundle("TYPE", `{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json"},"request":{"method":"PATCH","url":"Patient/p1"}}`),
		"PATCH no resource":        bundle("TYPE", `{"request":{"method":"PATCH","url":"Patient/p1"}}`),
		"fullUrl number":           bundle("TYPE", `{"fullUrl":1,"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}`),
		"nested transaction":       bundle("TYPE", `{"resource":{"resourceType":"Bundle","type":"transaction","entry":[`+pe("")+`]},"request":{"method":"POST","url":"Bundle"}}`),
		"nested Bundle POST base":  bundle("TYPE", `{"resource":{"resourceType":"Bundle","type":"transaction","entry":[`+pe("")+`]},"request":{"method":"POST","url":"`+testBase+`"}}`),
		"nested Bundle bad":        bundle("TYPE", `{"resource":{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","gender":"robot"}}]},"request":{"method":"POST","url":"Bundle"}}`),
		"GET _include=*":           bundle("TYPE", `{"request":{"method":"GET","url":"Observation?_include=*"}}`),
		"GET _include bad":         bundle("TYPE", `{"request":{"method":"GET","url":"Observation?_include=Nosuch:x"}}`),
		"GET _revinclude":          bundle("TYPE", `{"request":{"method":"GET","url":"Patient?_revinclude=Observation:subject"}}`),
		"GET bad count":            bundle("TYPE", `{"request":{"method":"GET","url":"Patient?_count=-1"}}`),
		"GET unknown type":         bundle("TYPE", `{"request":{"method":"GET","url":"Hacker/1"}}`),
		"GET with resource":        bundle("TYPE", `{"resource":{"resourceType":"Patient"},"request":{"method":"GET","url":"Patient/p1"}}`),
		"GET read deleted":         bundle("TYPE", `{"request":{"method":"GET","url":"Patient/gone"}}`),
		"urn:uuid not a uuid":      bundle("TYPE", pe(`,"fullUrl":"urn:uuid:not-a-uuid"`)),
		"urn:uuid empty":           bundle("TYPE", pe(`,"fullUrl":"urn:uuid:"`)),
		"urn:oid bad":              bundle("TYPE", pe(`,"fullUrl":"urn:oid:abc"`)),
		"fullUrl relative":         bundle("TYPE", pe(`,"fullUrl":"Patient/zz"`)),
		"fullUrl other server":     bundle("TYPE", pe(`,"fullUrl":"http://evil.example/fhir/Patient/zz"`)),
		"fullUrl dup":              bundle("TYPE", pe(`,"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111"`), pe(`,"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111"`)),
		"same resource twice":      bundle("TYPE", `{"request":{"method":"DELETE","url":"Patient/p1"}}`, `{"request":{"method":"DELETE","url":"Patient/p1"}}`),
		"circular refs":            bundle("TYPE", `{"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Patient","link":[{"type":"seealso","other":{"reference":"urn:uuid:33333333-3333-4333-8333-333333333333"}}]},"request":{"method":"POST","url":"Patient"}}`, `{"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"Patient","link":[{"type":"seealso","other":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"}}]},"request":{"method":"POST","url":"Patient"}}`),
		"self ref":                 bundle("TYPE", `{"fullUrl":"urn:uuid:44444444-4444-4444-8444-444444444444","resource":{"resourceType":"Patient","link":[{"type":"seealso","other":{"reference":"urn:uuid:44444444-4444-4444-8444-444444444444"}}]},"request":{"method":"POST","url":"Patient"}}`),
		"dangling urn ref":         bundle("TYPE", `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:55555555-5555-4555-8555-555555555555"}},"request":{"method":"POST","url":"Observation"}}`),
		"conditional ref unknown":  bundle("TYPE", `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Hacker?x=1"}},"request":{"method":"POST","url":"Observation"}}`),
		"conditional ref bad":      bundle("TYPE", `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?bogus=1"}},"request":{"method":"POST","url":"Observation"}}`),
		"conditional ref no match": bundle("TYPE", `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=http://h|none"}},"request":{"method":"POST","url":"Observation"}}`),
		"ok one create":            bundle("TYPE", pe("")),
		"ok empty":                 bundle("TYPE"),
		"ok no entry":              `{"resourceType":"Bundle","type":"TYPE"}`,
	}
	for n, b := range bundleCases {
		for _, typ := range []string{"transaction", "batch"} {
			body := strings.ReplaceAll(b, `"TYPE"`, `"`+typ+`"`)
			var want []int
			switch {
			case strings.HasPrefix(n, "ok "), n == "circular refs", n == "self ref", n == "GET _revinclude":
				want = []int{200}
			case typ == "batch" && !strings.Contains(body, `"entry":[`):
				want = nil // Bundle-level error
			case n == "url vid deleted":
				// vread runs after the commit (entry-level 410). A
				// transaction Bundle in an entry is neither executed nor
				// stored (a 400: it is a request for the base URL).
				want = []int{200}
			case typ == "batch" && n != "no type" && n != "type number" && n != "searchset" && n != "entry object":
				want = []int{200} // per-entry errors
			case n == "GET _include=*", n == "urn:uuid not a uuid", n == "urn:uuid empty", n == "urn:oid bad", n == "fullUrl relative", n == "fullUrl other server", n == "dangling urn ref", n == "url fragment", n == "GET with resource", n == "url leading slash":
				want = []int{200, 400, 404}
			}
			add(hostileCase{name: "bundle " + typ + " " + n, method: "POST", path: "/fhir", body: body, want: want})
		}
	}
	// 10k entries: above MaxBundleEntries (5000) → 413 for both.
	var many []string
	for i := 0; i < 10000; i++ {
		many = append(many, pe(""))
	}
	add(hostileCase{name: "bundle transaction 10k entries", method: "POST", path: "/fhir", body: bundle("transaction", many...), want: []int{413}})
	add(hostileCase{name: "bundle batch 10k entries", method: "POST", path: "/fhir", body: bundle("batch", many...), want: []int{413}})
	// A transaction whose last entry fails writes nothing.
	add(hostileCase{name: "bundle transaction last entry bad", method: "POST", path: "/fhir", body: bundle("transaction", append(many[:50:50], `{"resource":{"resourceType":"Patient","gender":"robot"},"request":{"method":"POST","url":"Patient"}}`)...), want: []int{400}})

	// Prefer header junk never breaks anything.
	for _, p := range []string{"return=junk", "return", "handling=strict, return=minimal", "respond-async", ";;;", "return=\"OperationOutcome\""} {
		add(hostileCase{name: "Prefer " + p, method: "GET", path: "/fhir/Patient/p1", hdr: []string{"Prefer: " + p}, want: []int{200}})
	}

	seen := map[string]bool{}
	for _, c := range cases {
		name := c.name
		if len(name) > 120 {
			name = name[:120]
		}
		for seen[name] {
			name += "'"
		}
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			before := e.versionCount(t)
			r := e.do(c.method, strings.ReplaceAll(c.path, " ", "%20"), c.body, c.hdr...)
			ok := false
			if c.want == nil {
				ok = r.code >= 400 && r.code < 500
			}
			for _, w := range c.want {
				ok = ok || r.code == w
			}
			if !ok {
				t.Errorf("%s %.200s: status %d, want %v; body %.400s", c.method, c.path, r.code, c.want, r.body)
			}
			if c.method != "GET" && c.method != "HEAD" && r.code < 400 {
				// Every write stores a version: a request that stored
				// none (a search by POST, a batch of failed entries, a
				// matched If-None-Exist) left the seeded data as it was.
				if after := e.versionCount(t); after != before {
					defer func() { e = fresh() }()
				}
			}
			if r.code >= 400 {
				checkOutcome(t, r)
				if after := e.versionCount(t); after != before {
					t.Errorf("failed request stored %d versions", after-before)
				}
			}
			if r.code >= 200 && r.code < 300 && r.code != 204 && c.method != "HEAD" {
				if ct := r.hdr.Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
					t.Errorf("Content-Type %q on %d", ct, r.code)
				}
				if !json.Valid(r.body) {
					t.Errorf("success body is not JSON: %.300q", r.body)
				}
			}
			// Batch responses: every failed entry carries a clean outcome.
			if r.code == 200 && strings.HasPrefix(c.name, "bundle batch") {
				var b map[string]any
				_ = json.Unmarshal(r.body, &b)
				for i, en := range entries(b) {
					st, _ := get(en, "response", "status").(string)
					if strings.HasPrefix(st, "5") {
						t.Errorf("entry %d: %s %v", i, st, get(en, "response", "outcome"))
					}
					if strings.HasPrefix(st, "4") {
						oo, _ := json.Marshal(get(en, "response", "outcome"))
						checkOutcome(t, &resp{code: 400, hdr: http.Header{"Content-Type": {contentType}}, body: oo})
					}
				}
			}
		})
	}
}
