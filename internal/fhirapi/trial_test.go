package fhirapi

import (
	"net/http"
	"strings"
	"testing"
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
