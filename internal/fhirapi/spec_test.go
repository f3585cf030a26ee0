package fhirapi

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPSpecDetails checks details of R4 http.html that are easy to get
// wrong.
func TestHTTPSpecDetails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	checkVersionHeaders := func(t *testing.T, r *resp, version string) {
		t.Helper()
		if r.hdr.Get("ETag") != `W/"`+version+`"` {
			t.Errorf("ETag %q, want W/%q", r.hdr.Get("ETag"), version)
		}
		lm := r.hdr.Get("Last-Modified")
		if _, err := time.Parse(http.TimeFormat, lm); err != nil || !strings.HasSuffix(lm, " GMT") {
			t.Errorf("Last-Modified %q is not an RFC 1123 GMT date", lm)
		}
	}

	t.Run("Prefer return=OperationOutcome on create", func(t *testing.T) {
		r := e.do("POST", "/fhir/Patient", pat, "Prefer: return=OperationOutcome")
		issues := r.outcome(t, http.StatusCreated)
		loc := r.hdr.Get("Location")
		if !strings.HasPrefix(loc, testBase+"/Patient/") || !strings.HasSuffix(loc, "/_history/1") {
			t.Errorf("Location %q is not the absolute version URL", loc)
		}
		checkVersionHeaders(t, r, "1")
		if get(issues[0], "severity") != "information" {
			t.Errorf("issues %v", issues)
		}
	})
	t.Run("Prefer return=OperationOutcome on update", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient/po", `{"resourceType":"Patient","id":"po"}`).expect(t, http.StatusCreated)
		r := e.do("PUT", "/fhir/Patient/po", `{"resourceType":"Patient","id":"po","active":true}`, "Prefer: return=OperationOutcome")
		r.outcome(t, http.StatusOK)
		checkVersionHeaders(t, r, "2")
		if cl := r.hdr.Get("Content-Location"); cl != testBase+"/Patient/po/_history/2" {
			t.Errorf("Content-Location %q", cl)
		}
	})
	t.Run("Prefer return=minimal", func(t *testing.T) {
		r := e.do("PUT", "/fhir/Patient/po", `{"resourceType":"Patient","id":"po","active":false}`, "Prefer: return=minimal").expect(t, http.StatusOK)
		if len(r.body) != 0 {
			t.Errorf("body %q", r.body)
		}
		checkVersionHeaders(t, r, "3")
	})
	t.Run("create and read headers", func(t *testing.T) {
		r := e.do("POST", "/fhir/Patient", pat).expect(t, http.StatusCreated)
		id := r.json(t)["id"].(string)
		if loc := r.hdr.Get("Location"); loc != testBase+"/Patient/"+id+"/_history/1" {
			t.Errorf("Location %q", loc)
		}
		checkVersionHeaders(t, r, "1")
		r = e.do("GET", "/fhir/Patient/"+id, "").expect(t, http.StatusOK)
		checkVersionHeaders(t, r, "1")
		r = e.do("GET", "/fhir/Patient/"+id+"/_history/1", "").expect(t, http.StatusOK)
		checkVersionHeaders(t, r, "1")
	})
	t.Run("HEAD read and search", func(t *testing.T) {
		get := e.do("GET", "/fhir/Patient/po", "").expect(t, http.StatusOK)
		r := e.do("HEAD", "/fhir/Patient/po", "").expect(t, http.StatusOK)
		if len(r.body) != 0 {
			t.Errorf("HEAD body %q", r.body)
		}
		if r.hdr.Get("ETag") != get.hdr.Get("ETag") || r.hdr.Get("Content-Type") != contentType || r.hdr.Get("Content-Length") != get.hdr.Get("Content-Length") {
			t.Errorf("HEAD headers %v differ from GET %v", r.hdr, get.hdr)
		}
		r = e.do("HEAD", "/fhir/Patient?_id=po", "").expect(t, http.StatusOK)
		if len(r.body) != 0 || r.hdr.Get("Content-Type") != contentType {
			t.Errorf("HEAD search: %v %q", r.hdr, r.body)
		}
		e.do("HEAD", "/fhir/Patient/nope", "").expect(t, http.StatusNotFound)
		e.do("HEAD", "/fhir/Patient/po/_history", "").expect(t, http.StatusOK)
		e.do("HEAD", "/fhir/metadata", "").expect(t, http.StatusOK)
	})
	t.Run("OPTIONS", func(t *testing.T) {
		e.do("OPTIONS", "/fhir/metadata", "").expect(t, http.StatusNoContent)
		r := e.do("OPTIONS", "/fhir/Patient/po", "")
		r.outcome(t, http.StatusMethodNotAllowed)
		if r.hdr.Get("Allow") == "" {
			t.Error("405 without Allow")
		}
	})
	t.Run("If-None-Exist with an unknown parameter", func(t *testing.T) {
		e.do("POST", "/fhir/Patient", pat, "If-None-Exist: bogus=1").outcome(t, http.StatusBadRequest)
	})
	t.Run("conditional update: no match, unknown body id creates it", func(t *testing.T) {
		r := e.do("PUT", "/fhir/Patient?identifier=http://h|cu", `{"resourceType":"Patient","id":"cu-new","identifier":[{"system":"http://h","value":"cu"}]}`).expect(t, http.StatusCreated)
		if r.json(t)["id"] != "cu-new" || r.hdr.Get("Location") != testBase+"/Patient/cu-new/_history/1" {
			t.Errorf("update as create: %s %v", r.body, r.hdr)
		}
	})
	t.Run("conditional update: no match, existing body id is 409", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient?identifier=http://h|other", `{"resourceType":"Patient","id":"cu-new"}`).outcome(t, http.StatusConflict)
		r := e.do("GET", "/fhir/Patient/cu-new", "").expect(t, http.StatusOK)
		if r.hdr.Get("ETag") != `W/"1"` {
			t.Errorf("the existing resource was changed: %s", r.body)
		}
	})
	t.Run("conditional update: no match, deleted body id is re-created", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient/cu-del", `{"resourceType":"Patient","id":"cu-del"}`).expect(t, http.StatusCreated)
		e.do("DELETE", "/fhir/Patient/cu-del", "").expect(t, http.StatusNoContent)
		e.do("PUT", "/fhir/Patient?identifier=http://h|cu-del", `{"resourceType":"Patient","id":"cu-del"}`).expect(t, http.StatusCreated)
	})
	t.Run("vread of a delete marker is 410", func(t *testing.T) {
		e.do("GET", "/fhir/Patient/cu-del/_history/2", "").outcome(t, http.StatusGone)
		e.do("GET", "/fhir/Patient/cu-del/_history/01", "").outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Patient/cu-del/_history/+1", "").outcome(t, http.StatusBadRequest)
	})
	t.Run("history entries", func(t *testing.T) {
		for _, path := range []string{"/fhir/Patient/cu-del/_history", "/fhir/Patient/_history", "/fhir/_history"} {
			b := e.do("GET", path, "").expect(t, http.StatusOK).json(t)
			if b["type"] != "history" {
				t.Fatalf("%s: type %v", path, b["type"])
			}
			for i, en := range entries(b) {
				method, _ := get(en, "request", "method").(string)
				if method == "" || get(en, "request", "url") == nil {
					t.Errorf("%s entry %d: no request: %v", path, i, en)
				}
				if get(en, "response", "status") == nil || get(en, "response", "etag") == nil || get(en, "response", "lastModified") == nil {
					t.Errorf("%s entry %d: incomplete response: %v", path, i, en["response"])
				}
				if method == "DELETE" && en["resource"] != nil {
					t.Errorf("%s entry %d: deleted entry has a resource", path, i)
				}
				if method != "DELETE" && en["resource"] == nil {
					t.Errorf("%s entry %d: no resource", path, i)
				}
			}
		}
		e.do("GET", "/fhir/Patient/_history?_since=yesterday", "").outcome(t, http.StatusBadRequest)
		e.do("GET", "/fhir/_history?_since=2020-01-01T00:00:00Q", "").outcome(t, http.StatusBadRequest)
	})
	t.Run("Content-Type parameters", func(t *testing.T) {
		for _, ct := range []string{"application/fhir+json; charset=utf-8", "application/fhir+json; fhirVersion=4.0", "application/fhir+json;fhirVersion=4.0;charset=UTF-8"} {
			e.do("POST", "/fhir/Patient", pat, "Content-Type: "+ct).expect(t, http.StatusCreated)
		}
		e.do("POST", "/fhir/Patient", pat, "Content-Type: application/fhir+json; fhirVersion=5.0").outcome(t, http.StatusUnsupportedMediaType)
		e.do("GET", "/fhir/Patient/po", "", "Accept: application/fhir+json; fhirVersion=5.0").outcome(t, http.StatusNotAcceptable)
		e.do("GET", "/fhir/Patient/po", "", "Accept: application/fhir+json; fhirVersion=5.0, application/fhir+json; fhirVersion=4.0").expect(t, http.StatusOK)
		e.do("GET", "/fhir/Patient/po?_format=application/fhir%2Bjson;fhirVersion=4.0", "").expect(t, http.StatusOK)
	})
	t.Run("nested transaction is neither executed nor stored", func(t *testing.T) {
		before := countOf(t, e, "Patient?family=Nested")
		inner := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Nested"}]},"request":{"method":"POST","url":"Patient"}}]}`
		e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":`+inner+`,"request":{"method":"POST","url":"Bundle"}}]}`).outcome(t, http.StatusBadRequest)
		if after := countOf(t, e, "Patient?family=Nested"); after != before {
			t.Errorf("the nested transaction was executed: %v Patients", after-before)
		}
	})
}
