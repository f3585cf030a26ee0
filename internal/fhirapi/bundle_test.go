package fhirapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func countOf(t *testing.T, e *env, query string) float64 {
	t.Helper()
	b := e.do("GET", "/fhir/"+query, "").expect(t, http.StatusOK).json(t)
	n, _ := b["total"].(float64)
	return n
}

func TestTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const pu = "urn:uuid:8a4fbd5e-3c43-4f1e-9d4c-6c3b8e3a3e11"
	const ou = "urn:oid:1.2.3.4.5"
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"fullUrl":"urn:uuid:0b1c7f3e-6a6c-4e63-9b0a-6b8b2a3c4d5e","resource":{"resourceType":"Observation","status":"final","code":{"text":"bp"},
	     "subject":{"reference":"` + pu + `"},"performer":[{"reference":"` + ou + `"}],
	     "extension":[{"url":"http://example.org/x","valueReference":{"reference":"` + pu + `"}}],
	     "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"` + pu + `\">patient</a></div>"}},
	   "request":{"method":"POST","url":"Observation"}},
	  {"fullUrl":"` + pu + `","resource":{"resourceType":"Patient","name":[{"family":"Tx"}],"identifier":[{"system":"http://example.org/mrn","value":"tx-1"}]},
	   "request":{"method":"POST","url":"Patient"}},
	  {"fullUrl":"` + ou + `","resource":{"resourceType":"Practitioner","id":"prac-1","name":[{"family":"Doc"}]},
	   "request":{"method":"PUT","url":"Practitioner/prac-1"}}
	]}`
	r := e.do("POST", "/fhir", tx).expect(t, http.StatusOK)
	b := r.json(t)
	if b["type"] != "transaction-response" {
		t.Fatalf("type %v", b["type"])
	}
	es := entries(b)
	if len(es) != 3 {
		t.Fatalf("%d entries", len(es))
	}
	for i, want := range []string{"201 Created", "201 Created", "201 Created"} {
		if get(es[i], "response", "status") != want {
			t.Errorf("entry %d status %v", i, get(es[i], "response", "status"))
		}
		if get(es[i], "response", "etag") != `W/"1"` || get(es[i], "response", "lastModified") == nil {
			t.Errorf("entry %d etag/lastModified: %v", i, es[i]["response"])
		}
	}
	loc := get(es[1], "response", "location").(string)
	if !strings.HasPrefix(loc, "Patient/") || !strings.HasSuffix(loc, "/_history/1") {
		t.Fatalf("location %q", loc)
	}
	pid := strings.Split(loc, "/")[1]
	obs := get(es[0], "resource").(map[string]any)
	if get(obs, "subject", "reference") != "Patient/"+pid {
		t.Errorf("subject not rewritten: %v", get(obs, "subject"))
	}
	if get(obs, "performer", 0, "reference") != "Practitioner/prac-1" {
		t.Errorf("urn:oid not rewritten: %v", get(obs, "performer"))
	}
	if get(obs, "extension", 0, "valueReference", "reference") != "Patient/"+pid {
		t.Errorf("extension reference not rewritten")
	}
	if !strings.Contains(get(obs, "text", "div").(string), `href="Patient/`+pid+`"`) {
		t.Errorf("narrative not rewritten: %v", get(obs, "text", "div"))
	}
	// Stored form is rewritten too.
	oid := obs["id"].(string)
	stored := e.do("GET", "/fhir/Observation/"+oid, "").expect(t, http.StatusOK).json(t)
	if get(stored, "subject", "reference") != "Patient/"+pid {
		t.Errorf("stored subject %v", get(stored, "subject"))
	}
	// And searchable by the rewritten reference.
	if n := countOf(t, e, "Observation?subject=Patient/"+pid); n != 1 {
		t.Errorf("search by rewritten reference: %v", n)
	}

	t.Run("atomic: one bad entry writes nothing", func(t *testing.T) {
		before := countOf(t, e, "Patient")
		bad := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"resource":{"resourceType":"Patient","name":[{"family":"Atomic"}]},"request":{"method":"POST","url":"Patient"}},
		  {"resource":{"resourceType":"Patient","id":"atom-2","name":[{"family":"Atomic"}]},"request":{"method":"PUT","url":"Patient/atom-2"}},
		  {"resource":{"resourceType":"Observation","status":"not-a-status","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}
		]}`
		issues := e.do("POST", "/fhir", bad).outcome(t, http.StatusBadRequest)
		if !strings.Contains(fmt.Sprint(issues), "Bundle.entry[2]") {
			t.Errorf("failing entry not named: %v", issues)
		}
		if after := countOf(t, e, "Patient"); after != before {
			t.Errorf("patients %v -> %v: transaction not atomic", before, after)
		}
		e.do("GET", "/fhir/Patient/atom-2", "").outcome(t, http.StatusNotFound)
	})
	t.Run("atomic: failing read rolls back", func(t *testing.T) {
		before := countOf(t, e, "Patient")
		bad := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
		  {"request":{"method":"GET","url":"Patient/does-not-exist"}}
		]}`
		e.do("POST", "/fhir", bad).outcome(t, http.StatusNotFound)
		if after := countOf(t, e, "Patient"); after != before {
			t.Errorf("patients %v -> %v", before, after)
		}
	})
	t.Run("a document Bundle stored by an entry keeps its own references", func(t *testing.T) {
		// Its urn:uuid references name its own entries (R4
		// bundle.html#references), one of them also a fullUrl of the
		// transaction: kept as they are, not refused nor rewritten.
		const docPat = "urn:uuid:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"fullUrl":"` + docPat + `","resource":{"resourceType":"Patient","name":[{"family":"Doc"}]},"request":{"method":"POST","url":"Patient"}},
		  {"resource":{"resourceType":"Bundle","type":"document","identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"},"timestamp":"2024-01-01T00:00:00Z",
		    "entry":[{"fullUrl":"urn:uuid:0f1e2d3c-4b5a-4697-8877-665544332211","resource":{"resourceType":"Composition","status":"final","type":{"text":"note"},"date":"2024-01-01","title":"t",
		               "author":[{"reference":"urn:uuid:2b3c4d5e-6f70-4a8b-9cad-1e2f3a4b5c6d"}],"subject":{"reference":"` + docPat + `"}}},
		             {"fullUrl":"` + docPat + `","resource":{"resourceType":"Patient","name":[{"family":"Doc"}]}},
		             {"fullUrl":"urn:uuid:2b3c4d5e-6f70-4a8b-9cad-1e2f3a4b5c6d","resource":{"resourceType":"Practitioner","name":[{"family":"Author"}]}}]},
		   "request":{"method":"POST","url":"Bundle"}}]}`
		es := entries(e.do("POST", "/fhir", tx).expect(t, http.StatusOK).json(t))
		doc := get(es[1], "resource").(map[string]any)
		if get(doc, "entry", 0, "resource", "subject", "reference") != docPat || get(doc, "entry", 1, "fullUrl") != docPat {
			t.Errorf("the document's references were rewritten: %v", doc["entry"])
		}
	})
	t.Run("duplicate resource 400", func(t *testing.T) {
		dup := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"resource":{"resourceType":"Patient","id":"d1"},"request":{"method":"PUT","url":"Patient/d1"}},
		  {"resource":{"resourceType":"Patient","id":"d1"},"request":{"method":"PUT","url":"Patient/d1"}}
		]}`
		e.do("POST", "/fhir", dup).outcome(t, http.StatusBadRequest)
		dupFull := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
		  {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}
		]}`
		e.do("POST", "/fhir", dupFull).outcome(t, http.StatusBadRequest)
		delPut := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"request":{"method":"DELETE","url":"Patient/d2"}},
		  {"resource":{"resourceType":"Patient","id":"d2"},"request":{"method":"PUT","url":"Patient/d2"}}
		]}`
		e.do("POST", "/fhir", delPut).outcome(t, http.StatusBadRequest)
	})
	t.Run("conditional create placeholder maps to existing", func(t *testing.T) {
		const u = "urn:uuid:22222222-2222-4222-8222-222222222222"
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"fullUrl":"` + u + `","resource":{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":"tx-1"}]},
		   "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://example.org/mrn|tx-1"}},
		  {"resource":{"resourceType":"Observation","status":"final","code":{"text":"y"},"subject":{"reference":"` + u + `"}},"request":{"method":"POST","url":"Observation"}}
		]}`
		b := e.do("POST", "/fhir", body).expect(t, http.StatusOK).json(t)
		es := entries(b)
		if get(es[0], "response", "status") != "200 OK" {
			t.Errorf("conditional create status %v", get(es[0], "response", "status"))
		}
		if get(es[1], "resource", "subject", "reference") != "Patient/"+pid {
			t.Errorf("placeholder not mapped to existing: %v", get(es[1], "resource", "subject"))
		}
	})
	t.Run("conditional references", func(t *testing.T) {
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"resource":{"resourceType":"Observation","status":"final","code":{"text":"z"},"subject":{"reference":"Patient?identifier=http://example.org/mrn|tx-1"}},"request":{"method":"POST","url":"Observation"}}
		]}`
		b := e.do("POST", "/fhir", body).expect(t, http.StatusOK).json(t)
		if get(entries(b)[0], "resource", "subject", "reference") != "Patient/"+pid {
			t.Errorf("conditional reference: %v", get(entries(b)[0], "resource", "subject"))
		}
		none := strings.Replace(body, "tx-1", "nobody", 1)
		e.do("POST", "/fhir", none).outcome(t, http.StatusPreconditionFailed)
	})
	t.Run("order, update, patch, delete, read", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient/ord-1", `{"resourceType":"Patient","id":"ord-1","active":true}`).expect(t, http.StatusCreated)
		e.do("PUT", "/fhir/Patient/ord-2", `{"resourceType":"Patient","id":"ord-2","active":true}`).expect(t, http.StatusCreated)
		patch := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/active","value":false}]`))
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"request":{"method":"GET","url":"Patient/ord-1"}},
		  {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + patch + `"},"request":{"method":"PATCH","url":"Patient/ord-1"}},
		  {"resource":{"resourceType":"Patient","id":"ord-3","active":true},"request":{"method":"PUT","url":"Patient/ord-3"}},
		  {"request":{"method":"DELETE","url":"Patient/ord-2"}},
		  {"request":{"method":"GET","url":"Patient?_id=ord-3"}},
		  {"request":{"method":"GET","url":"Patient/ord-1/_history"}}
		]}`
		b := e.do("POST", "/fhir", body).expect(t, http.StatusOK).json(t)
		es := entries(b)
		// GET runs after the writes: it sees the patched version.
		if get(es[0], "resource", "active") != false || get(es[0], "response", "etag") != `W/"2"` {
			t.Errorf("read entry: %v", es[0])
		}
		if get(es[1], "response", "status") != "200 OK" || get(es[2], "response", "status") != "201 Created" || get(es[3], "response", "status") != "204 No Content" {
			t.Errorf("statuses: %v %v %v", get(es[1], "response", "status"), get(es[2], "response", "status"), get(es[3], "response", "status"))
		}
		if get(es[4], "resource", "total") != float64(1) {
			t.Errorf("search entry: %v", es[4]["resource"])
		}
		if get(es[5], "resource", "total") != float64(2) {
			t.Errorf("history entry: %v", get(es[5], "resource", "total"))
		}
		e.do("GET", "/fhir/Patient/ord-2", "").outcome(t, http.StatusGone)
	})
	t.Run("If-Match in transaction 412", func(t *testing.T) {
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"resource":{"resourceType":"Patient","id":"ord-3","active":false},"request":{"method":"PUT","url":"Patient/ord-3","ifMatch":"W/\"9\""}}
		]}`
		e.do("POST", "/fhir", body).outcome(t, http.StatusPreconditionFailed)
	})
	t.Run("conditional update and delete in transaction", func(t *testing.T) {
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":"cu-tx"}]},"request":{"method":"PUT","url":"Patient?identifier=http://example.org/mrn|cu-tx"}},
		  {"resource":{"resourceType":"Observation","status":"final","code":{"text":"q"},"subject":{"reference":"urn:uuid:33333333-3333-4333-8333-333333333333"}},"request":{"method":"POST","url":"Observation"}},
		  {"request":{"method":"DELETE","url":"Patient?identifier=http://example.org/mrn|nobody-at-all"}}
		]}`
		b := e.do("POST", "/fhir", body).expect(t, http.StatusOK).json(t)
		es := entries(b)
		loc, _ := get(es[0], "response", "location").(string)
		if get(es[0], "response", "status") != "201 Created" || loc == "" {
			t.Fatalf("conditional update entry: %v", es[0])
		}
		if get(es[1], "resource", "subject", "reference") != strings.Join(strings.Split(loc, "/")[:2], "/") {
			t.Errorf("reference to conditional update placeholder: %v vs %s", get(es[1], "resource", "subject"), loc)
		}
		if get(es[2], "response", "status") != "204 No Content" {
			t.Errorf("conditional delete none: %v", get(es[2], "response", "status"))
		}
	})
	t.Run("Prefer minimal", func(t *testing.T) {
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
		  {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`
		b := e.do("POST", "/fhir", body, "Prefer: return=minimal").expect(t, http.StatusOK).json(t)
		if entries(b)[0]["resource"] != nil || get(entries(b)[0], "response", "location") == nil {
			t.Errorf("minimal entry: %v", entries(b)[0])
		}
	})
	t.Run("bad entries 400", func(t *testing.T) {
		for _, en := range []string{
			`{"request":{"method":"POST","url":"Patient"}}`,
			`{"resource":{"resourceType":"Patient"},"request":{"method":"FROB","url":"Patient"}}`,
			`{"resource":{"resourceType":"Patient"},"request":{"method":"POST"}}`,
			`{"resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Patient"}}`,
			`{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/b"}}`,
			`{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient"}}`,
			`{"resource":{"resourceType":"Patient"}}`,
			`"x"`,
		} {
			body := `{"resourceType":"Bundle","type":"transaction","entry":[` + en + `]}`
			e.do("POST", "/fhir", body).outcome(t, http.StatusBadRequest)
		}
	})
}

func TestBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(patient("b-1", "Batch"))
	body := `{"resourceType":"Bundle","type":"batch","entry":[
	  {"resource":{"resourceType":"Patient","name":[{"family":"B2"}]},"request":{"method":"POST","url":"Patient"}},
	  {"resource":{"resourceType":"Patient","birthDate":"bad"},"request":{"method":"POST","url":"Patient"}},
	  {"request":{"method":"GET","url":"Patient/` + id + `"}},
	  {"request":{"method":"GET","url":"Patient/missing"}},
	  {"request":{"method":"GET","url":"Patient?identifier=http://example.org/mrn|b-1"}},
	  {"request":{"method":"DELETE","url":"Patient/` + id + `"}},
	  {"request":{"method":"FROB","url":"Patient"}}
	]}`
	b := e.do("POST", "/fhir", body).expect(t, http.StatusOK).json(t)
	if b["type"] != "batch-response" {
		t.Fatalf("type %v", b["type"])
	}
	es := entries(b)
	want := []string{"201 Created", "400 Bad Request", "200 OK", "404 Not Found", "200 OK", "204 No Content", "400 Bad Request"}
	if len(es) != len(want) {
		t.Fatalf("%d entries", len(es))
	}
	for i, w := range want {
		if get(es[i], "response", "status") != w {
			t.Errorf("entry %d: %v, want %s", i, get(es[i], "response", "status"), w)
		}
		if strings.HasPrefix(w, "4") && get(es[i], "response", "outcome", "resourceType") != "OperationOutcome" {
			t.Errorf("entry %d: no outcome", i)
		}
	}
	// The good entry was written despite the bad one.
	loc := get(es[0], "response", "location").(string)
	e.do("GET", "/fhir/"+strings.TrimSuffix(loc, "/_history/1"), "").expect(t, http.StatusOK)
	e.do("GET", "/fhir/Patient/"+id, "").outcome(t, http.StatusGone)
}
