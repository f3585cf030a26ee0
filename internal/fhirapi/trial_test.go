package fhirapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/dbtest"
)

// Defects found by trying the server as a demanding user and as an
// attacker would; each test failed before its fix.

// A transaction or batch Bundle sent to [base]/Bundle (as `lapis create
// bundle.json` does) was stored as a Bundle resource: 201, and none of
// its entries written, so the user believed the data imported. It is a
// request for the base URL (R4 http.html#transaction), refused with a 400
// that says so, however it reaches the store (create, update, a batch
// entry; a patch that turns a stored collection into one is a 422, as
// other invalid patch results are).
func TestStoreTransactionBundleRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.versionCount(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}}]}`
	batch := strings.Replace(tx, `"transaction"`, `"batch"`, 1)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/fhir/Bundle", tx},
		{"POST", "/fhir/Bundle", batch},
		{"PUT", "/fhir/Bundle/b1", strings.Replace(tx, `{"resourceType":"Bundle",`, `{"resourceType":"Bundle","id":"b1",`, 1)},
	} {
		issues := e.do(c.method, c.path, c.body).outcome(t, http.StatusBadRequest)
		if d, _ := get(issues[0], "diagnostics").(string); !strings.Contains(d, "base URL") {
			t.Errorf("%s %s: diagnostics %q do not point to the base URL", c.method, c.path, d)
		}
	}
	r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"Bundle"},"resource":`+tx+`}]}`).expect(t, http.StatusOK)
	if s, _ := get(r.json(t), "entry", 0, "response", "status").(string); !strings.HasPrefix(s, "400") {
		t.Errorf("batch entry storing a transaction Bundle: status %q, want 400", s)
	}
	if n := e.versionCount(t); n != before {
		t.Errorf("%d versions stored", n-before)
	}

	// Documents and collections are stored, and stay so.
	id := e.create(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Basic","code":{"text":"x"}}}]}`)
	e.do("PATCH", "/fhir/Bundle/"+id, `[{"op":"replace","path":"/type","value":"transaction"}]`, "Content-Type: application/json-patch+json").outcome(t, http.StatusUnprocessableEntity)
}

// A NUL character or invalid UTF-8 in a search parameter (%00, %ff) was a
// 500 on PostgreSQL ("invalid byte sequence for encoding UTF8"), in every
// place criteria are read: searches, the POST _search form, conditional
// create/delete, conditional references of a transaction, _has, chains,
// and a _snapshot paging token. Now a 400 that names the parameter (or,
// for a token that is not one of the server's, the search run afresh).
func TestSearchNULAndInvalidUTF8(t *testing.T) {
	t.Parallel()
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			e := newEnvOn(t, dialect)
			e.create(`{"resourceType":"Patient","identifier":[{"system":"s","value":"v"}]}`)
			for _, q := range []string{
				"Patient?name=%00", "Patient?name:exact=%FF", "Patient?_id=%00a", "Patient?_id=%FF",
				"Patient?identifier=%00|%00", "Patient?identifier=%FF", "Patient?_tag=%00",
				"Patient?general-practitioner=%FF", "Patient?general-practitioner:Practitioner.name=%00",
				"Patient?_has:Observation:patient:code=%FF", "Observation?code=%00|x", "Patient?%00=1",
			} {
				e.do("GET", "/fhir/"+q, "").outcome(t, http.StatusBadRequest)
			}
			e.do("POST", "/fhir/Patient/_search", "name=%00", "Content-Type: application/x-www-form-urlencoded").outcome(t, http.StatusBadRequest)
			e.do("POST", "/fhir/Patient", `{"resourceType":"Patient"}`, "If-None-Exist: identifier=%00").outcome(t, http.StatusBadRequest)
			e.do("DELETE", "/fhir/Patient?identifier=%FF", "").outcome(t, http.StatusBadRequest)
			r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=%00"}}}]}`)
			r.outcome(t, http.StatusBadRequest)
			for _, snap := range []string{"%00", "%FF", "not-a-snapshot"} {
				b := e.do("GET", "/fhir/Patient?_count=1&_offset=0&_snapshot="+snap, "").expect(t, http.StatusOK).json(t)
				if n, _ := b["total"].(float64); n != 1 {
					t.Errorf("_snapshot=%s: total %v, want 1", snap, b["total"])
				}
			}
		})
	}
}

// Conditional creates and updates of the same criteria from several
// clients at once made duplicates on PostgreSQL (12 clients: 2 to 5
// Patients with the identifier, and 412s for the clients after): each
// transaction's search saw none of the others' uncommitted creations.
// R4 http.html#ccreate: the server creates the resource only when none
// matches. Now the transactions that run the same criteria take turns.
func TestConditionalWriteRace(t *testing.T) {
	t.Parallel()
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			e := newEnvOn(t, dialect)
			for _, mode := range []string{"create", "update", "transaction", "two"} {
				val := "race-" + mode
				body := `{"resourceType":"Patient","identifier":[{"system":"race","value":"` + val + `"}]}`
				var wg sync.WaitGroup
				codes := make([]int, 12)
				for i := range codes {
					wg.Go(func() {
						var r *resp
						switch mode {
						case "create":
							r = e.do("POST", "/fhir/Patient", body, "If-None-Exist: identifier=race|"+val)
						case "update":
							r = e.do("PUT", "/fhir/Patient?identifier=race|"+val, body)
						case "transaction":
							r = e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=race|`+val+`"},"resource":`+body+`}]}`)
						default:
							// Two conditional entries, in either order: no
							// deadlock, one of each.
							a := `{"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=race|` + val + `"},"resource":` + body + `}`
							b := `{"request":{"method":"PUT","url":"Patient?identifier=race|` + val + `-b"},"resource":` + strings.Replace(body, val, val+"-b", 1) + `}`
							if i%2 == 1 {
								a, b = b, a
							}
							r = e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+a+`,`+b+`]}`)
						}
						codes[i] = r.code
					})
				}
				wg.Wait()
				n, _ := e.do("GET", "/fhir/Patient?_summary=count&identifier=race|"+val, "").expect(t, http.StatusOK).json(t)["total"].(float64)
				if mode == "two" {
					nb, _ := e.do("GET", "/fhir/Patient?_summary=count&identifier=race|"+val+"-b", "").expect(t, http.StatusOK).json(t)["total"].(float64)
					n = n * nb
				}
				if n != 1 || slices.ContainsFunc(codes, func(c int) bool { return c != http.StatusOK && c != http.StatusCreated }) {
					t.Errorf("%s: %v Patients with the identifier, statuses %v", mode, n, codes)
				}
			}
		})
	}
}

// If-Match: * and a list of ETags were 400s. RFC 9110 §13.1.1: "*"
// matches when a current version exists, a list when any of its ETags is
// the current version; no match is a 412, and a malformed value stays a
// 400 that says what is wrong. The same holds for update, patch, delete
// and a Bundle entry's request.ifMatch.
func TestIfMatchStarAndList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	jp := "Content-Type: application/json-patch+json"
	id := e.create(`{"resourceType":"Patient","active":true}`)
	upd := func(active bool) string {
		return `{"resourceType":"Patient","id":"` + id + `","active":` + map[bool]string{true: "true", false: "false"}[active] + `}`
	}
	e.do("PUT", "/fhir/Patient/"+id, upd(false), `If-Match: *`).expect(t, http.StatusOK)           // v2
	e.do("PUT", "/fhir/Patient/"+id, upd(true), `If-Match: W/"1", W/"2"`).expect(t, http.StatusOK) // v3
	e.do("PUT", "/fhir/Patient/"+id, upd(false), `If-Match: W/"1", W/"2"`).outcome(t, http.StatusPreconditionFailed)
	e.do("PUT", "/fhir/Patient/"+id, upd(false), `If-Match: W/"1"`, `If-Match: W/"3"`).expect(t, http.StatusOK)                                  // v4, two header lines
	e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/active","value":true}]`, jp, `If-Match: *`).expect(t, http.StatusOK)           // v5
	e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/active","value":false}]`, jp, `If-Match: "9", W/"5"`).expect(t, http.StatusOK) // v6
	e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/active","value":true}]`, jp, `If-Match: W/"5",W/"7"`).outcome(t, http.StatusPreconditionFailed)
	e.do("DELETE", "/fhir/Patient/"+id, "", `If-Match: W/"1", W/"2"`).outcome(t, http.StatusPreconditionFailed)
	e.do("DELETE", "/fhir/Patient/"+id, "", `If-Match: W/"1", W/"6"`).expect(t, http.StatusNoContent)

	// "*" needs a current version: it does not create, nor delete what is gone.
	e.do("PUT", "/fhir/Patient/nobody", `{"resourceType":"Patient","id":"nobody"}`, `If-Match: *`).outcome(t, http.StatusPreconditionFailed)
	e.do("DELETE", "/fhir/Patient/"+id, "", `If-Match: *`).outcome(t, http.StatusPreconditionFailed)
	e.do("DELETE", "/fhir/Patient/nobody", "", `If-Match: *`).outcome(t, http.StatusPreconditionFailed)

	// Malformed values are 400s naming the fault.
	id2 := e.create(`{"resourceType":"Patient"}`)
	for im, want := range map[string]string{
		`W/"1", *`: `"*" must stand alone`,
		`W/"1", x`: `invalid version ETag "x"`,
		`,`:        "holds no ETag",
	} {
		issues := e.do("PUT", "/fhir/Patient/"+id2, `{"resourceType":"Patient","id":"`+id2+`"}`, "If-Match: "+im).outcome(t, http.StatusBadRequest)
		if d, _ := get(issues[0], "diagnostics").(string); !strings.Contains(d, want) {
			t.Errorf("If-Match %s: diagnostics %q, want %q", im, d, want)
		}
	}

	// A transaction entry's request.ifMatch likewise.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/` + id2 + `","ifMatch":"IM"},"resource":{"resourceType":"Patient","id":"` + id2 + `","active":true}}]}`
	e.do("POST", "/fhir", strings.Replace(tx, "IM", `W/\"7\", W/\"1\"`, 1)).expect(t, http.StatusOK)
	e.do("POST", "/fhir", strings.Replace(tx, "IM", `W/\"1\"`, 1)).outcome(t, http.StatusPreconditionFailed)
	e.do("POST", "/fhir", strings.Replace(tx, "IM", `*`, 1)).expect(t, http.StatusOK)
}

// An empty JSON Patch, or an update with the content already stored,
// wrote a new, identical version. Now neither writes (as HAPI does; R4
// leaves it open): 200 with the current version, its ETag and
// Last-Modified, and no history entry — also for a conditional update and
// a transaction entry. Preconditions still apply, and a real change
// still writes a version.
func TestUnchangedWriteKeepsVersion(t *testing.T) {
	t.Parallel()
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			testUnchangedWrite(t, newEnvOn(t, dialect))
		})
	}
}

func testUnchangedWrite(t *testing.T, e *env) {
	jp := "Content-Type: application/json-patch+json"
	body := `{"resourceType":"Patient","identifier":[{"system":"s","value":"u1"}],"active":true,"birthDate":"1970-01-01"}`
	id := e.create(body)
	v1 := e.do("GET", "/fhir/Patient/"+id, "").expect(t, http.StatusOK)
	before := e.versionCount(t)
	same := func(what string, r *resp) {
		t.Helper()
		r.expect(t, http.StatusOK)
		if r.hdr.Get("ETag") != `W/"1"` || r.hdr.Get("Last-Modified") != v1.hdr.Get("Last-Modified") || string(r.body) != string(v1.body) {
			t.Errorf("%s: ETag %s, Last-Modified %s, body %s; want the current version %s", what, r.hdr.Get("ETag"), r.hdr.Get("Last-Modified"), r.body, v1.body)
		}
		if n := e.versionCount(t); n != before {
			t.Errorf("%s: %d versions written", what, n-before)
		}
	}
	withID := strings.Replace(body, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1)
	same("empty patch", e.do("PATCH", "/fhir/Patient/"+id, `[]`, jp))
	same("test-only patch", e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"test","path":"/active","value":true}]`, jp, `If-Match: W/"1"`))
	same("patch to the same value", e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/active","value":true}]`, jp))
	same("update with the read body", e.do("PUT", "/fhir/Patient/"+id, string(v1.body)))
	same("update without meta", e.do("PUT", "/fhir/Patient/"+id, withID, `If-Match: W/"1"`))
	same("conditional update", e.do("PUT", "/fhir/Patient?identifier=s|u1", withID))
	tx := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/`+id+`"},"resource":`+withID+`}]}`).expect(t, http.StatusOK)
	if etag, _ := get(tx.json(t), "entry", 0, "response", "etag").(string); etag != `W/"1"` {
		t.Errorf("transaction entry: etag %q, want W/\"1\"", etag)
	}
	same("after the transaction", e.do("GET", "/fhir/Patient/"+id, ""))
	issues := e.do("PATCH", "/fhir/Patient/"+id, `[]`, jp, "Prefer: return=OperationOutcome").outcome(t, http.StatusOK)
	if d, _ := get(issues[0], "diagnostics").(string); !strings.Contains(d, "unchanged") {
		t.Errorf("Prefer: return=OperationOutcome: diagnostics %q do not say the content is unchanged", d)
	}

	// Preconditions hold; a change (a value, a tag, precision) writes.
	e.do("PATCH", "/fhir/Patient/"+id, `[]`, jp, `If-Match: W/"2"`).outcome(t, http.StatusPreconditionFailed)
	e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"test","path":"/active","value":false}]`, jp).outcome(t, http.StatusUnprocessableEntity)
	e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"add","path":"/meta/tag","value":[{"code":"t"}]}]`, jp).expect(t, http.StatusOK)
	e.do("PUT", "/fhir/Patient/"+id, strings.Replace(withID, `"active":true`, `"active":false`, 1)).expect(t, http.StatusOK)
	if r := e.do("GET", "/fhir/Patient/"+id, "").expect(t, http.StatusOK); r.hdr.Get("ETag") != `W/"3"` {
		t.Errorf("after two changes: ETag %s, want W/\"3\"", r.hdr.Get("ETag"))
	}
	oid := e.create(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.0}}`)
	e.do("PATCH", "/fhir/Observation/"+oid, `[{"op":"replace","path":"/valueQuantity/value","value":1.00}]`, jp).expect(t, http.StatusOK)
	if r := e.do("GET", "/fhir/Observation/"+oid, "").expect(t, http.StatusOK); r.hdr.Get("ETag") != `W/"2"` {
		t.Errorf("1.0 to 1.00: ETag %s, want W/\"2\"", r.hdr.Get("ETag"))
	}
}

// The type-level Patient/$everything (R4 patient-operation-everything:
// all patients) was routed as a read of the id "$everything": 400
// "invalid resource id". It is not supported, and the 400 says so and
// what to use instead; another operation in the place of an id likewise
// names the operation.
func TestTypeLevelEverythingNotSupported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create(`{"resourceType":"Patient"}`)
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/fhir/Patient/$everything", "Patient/[id]/$everything"},
		{"GET", "/fhir/Patient/$everything?_count=10", "Patient/[id]/$everything"},
		{"POST", "/fhir/Patient/$everything", "Patient/[id]/$everything"},
		{"GET", "/fhir/Observation/$lastn", "operation $lastn is not supported on the type Observation"},
	} {
		issues := e.do(c.method, c.path, "").outcome(t, http.StatusBadRequest)
		if code, _ := get(issues[0], "code").(string); code != "not-supported" {
			t.Errorf("%s %s: code %q, want not-supported", c.method, c.path, code)
		}
		if d, _ := get(issues[0], "diagnostics").(string); !strings.Contains(d, c.want) {
			t.Errorf("%s %s: diagnostics %q, want %q", c.method, c.path, d, c.want)
		}
	}
	e.do("GET", "/fhir/Nothing/$everything", "").outcome(t, http.StatusNotFound)
}

// A decimal beyond float64 (valueQuantity.value 1e400) was stored but
// never indexed, and a search for it was a 400: the resource could not
// be found by its value. R4 applies the IEEE 754 double limits to
// decimals; such a value is now a 400 naming the element.
func TestDecimalOutOfRangeRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.versionCount(t)
	for _, c := range []struct{ typ, body, at string }{
		{"Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400,"unit":"kg"}}`, "Observation.valueQuantity.value"},
		{"Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":-2E+308}}`, "Observation.valueQuantity.value"},
		{"Patient", `{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":1e309}]}`, "Patient.extension[0].valueDecimal"},
	} {
		issues := e.do("POST", "/fhir/"+c.typ, c.body).outcome(t, http.StatusBadRequest)
		d, _ := get(issues[0], "diagnostics").(string)
		expr, _ := get(issues[0], "expression", 0).(string)
		if !strings.Contains(d, "out of range") || expr != c.at {
			t.Errorf("%s: diagnostics %q at %q, want out of range at %s", c.body, d, expr, c.at)
		}
	}
	if n := e.versionCount(t); n != before {
		t.Errorf("%d versions stored", n-before)
	}
	e.create(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.7976931348623157e308}}`)
	e.create(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e-400}}`)
}

// A URL past the listener's header limit got net/http's plain-text 431.
// A URL longer than MaxURLBytes (3/4 of that limit) is a 414
// OperationOutcome that points to POST _search; one just within is served.
func TestLongURLIs414(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	long := "/fhir/Patient?name=" + strings.Repeat("x", MaxURLBytes)
	issues := e.do("GET", long, "").outcome(t, http.StatusRequestURITooLong)
	if d, _ := get(issues[0], "diagnostics").(string); !strings.Contains(d, "POST [type]/_search") {
		t.Errorf("diagnostics %q do not point to POST _search", d)
	}
	e.do("GET", "/fhir/Patient/"+strings.Repeat("x", MaxURLBytes), "").outcome(t, http.StatusRequestURITooLong)
	e.do("GET", long[:MaxURLBytes-len("http://lapis.test")], "").expect(t, http.StatusOK) // the target as sent: absolute here

	// Over a listener with the server's header limit
	// (server.DefaultMaxHeaderBytes): 414 from Lapis up to it, net/http's
	// 431 beyond.
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.MaxHeaderBytes = 64 << 10
	srv.Start()
	defer srv.Close()
	for n, want := range map[int]int{56 << 10: http.StatusRequestURITooLong, 100 << 10: http.StatusRequestHeaderFieldsTooLarge} {
		res, err := srv.Client().Get(srv.URL + "/fhir/Patient?name=" + strings.Repeat("x", n))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("URL of %d bytes: status %d, want %d", n, res.StatusCode, want)
		}
		if ct := res.Header.Get("Content-Type"); want == http.StatusRequestURITooLong && !strings.HasPrefix(ct, "application/fhir+json") {
			t.Errorf("414 Content-Type %q", ct)
		}
	}
}
