package fhirapi

import (
	"net/http"
	"strings"
	"testing"
)

// A deleted resource PUT again with the content it had before its delete
// is recreated (201, a new version), in a request and a transaction
// entry: the unchanged-content shortcut applies only to a current
// version. If-Match: * on an id that does not exist is a 412.
func TestUnchangedAfterDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"resourceType":"Patient","active":true}`
	id := e.create(body)
	withID := strings.Replace(body, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1)
	e.do("DELETE", "/fhir/Patient/"+id, "")
	r := e.do("PUT", "/fhir/Patient/"+id, withID).expect(t, http.StatusCreated)
	if r.hdr.Get("ETag") != `W/"3"` {
		t.Errorf("PUT after delete: ETag %s, want W/\"3\"", r.hdr.Get("ETag"))
	}
	e.do("GET", "/fhir/Patient/"+id, "").expect(t, http.StatusOK)
	e.do("DELETE", "/fhir/Patient/"+id, "")
	tx := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/`+id+`"},"resource":`+withID+`}]}`).expect(t, http.StatusOK)
	if st, _ := get(tx.json(t), "entry", 0, "response", "status").(string); !strings.HasPrefix(st, "201") {
		t.Errorf("transaction PUT after delete: status %q, want 201", st)
	}
	if r := e.do("GET", "/fhir/Patient/"+id, "").expect(t, http.StatusOK); r.hdr.Get("ETag") != `W/"5"` {
		t.Errorf("after the transaction: ETag %s, want W/\"5\"", r.hdr.Get("ETag"))
	}
	e.do("PUT", "/fhir/Patient/new1", `{"resourceType":"Patient","id":"new1"}`, "If-Match: *").outcome(t, http.StatusPreconditionFailed)
	e.do("PUT", "/fhir/Patient/"+id, withID, `If-Match: W/"9", *`).outcome(t, http.StatusBadRequest)
	e.do("PUT", "/fhir/Patient/"+id, withID, `If-Match: W/"1", W/"5"`).expect(t, http.StatusOK)
}
