package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransactionCommand: the client CLI had no way to send a transaction
// or batch Bundle (a Synthea file) to a remote server: "lapis import"
// writes to a local database only, and "lapis create bundle.json" posted
// it to [base]/Bundle, where a server stores it as a Bundle resource
// without writing its entries. "lapis transaction FILE..." posts each
// Bundle to the base URL and prints a summary line per file; "lapis
// create" of such a Bundle is a usage error that names it.
func TestTransactionCommand(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("LAPIS_PROFILE", "")
	t.Setenv("STUB_KEY", "k-123")
	var posts []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fhir", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posts = append(posts, r.Header.Get("Authorization")+" "+string(b))
		w.Header().Set("Content-Type", "application/fhir+json")
		if strings.Contains(string(b), `"batch"`) {
			w.Write([]byte(`{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"201 Created"}},{"response":{"status":"400 Bad Request"}}]}`))
			return
		}
		if strings.Contains(string(b), `"fail"`) {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"entry 0 is bad"}]}`))
			return
		}
		w.Write([]byte(`{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}},{"response":{"status":"200 OK"}}]}`))
	})
	mux.HandleFunc("POST /fhir/Bundle", func(w http.ResponseWriter, r *http.Request) {
		t.Error("a transaction Bundle was posted to [base]/Bundle")
		w.WriteHeader(http.StatusCreated)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	conn := []string{"--server", srv.URL + "/fhir", "--api-key-env", "STUB_KEY"}

	dir := t.TempDir()
	tx := filepath.Join(dir, "tx.json")
	batch := filepath.Join(dir, "batch.json")
	fail := filepath.Join(dir, "fail.json")
	os.WriteFile(tx, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}},{"request":{"method":"PUT","url":"Patient/p"},"resource":{"resourceType":"Patient","id":"p"}}]}`), 0o600)
	os.WriteFile(batch, []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}},{"request":{"method":"GET","url":"Nope/1"}}]}`), 0o600)
	os.WriteFile(fail, []byte(`{"resourceType":"Bundle","type":"transaction","id":"fail","entry":[]}`), 0o600)

	out, errOut, code := runCLI(t, "", append([]string{"transaction", tx, batch}, conn...)...)
	want := `{"file":"` + tx + `","type":"transaction","entries":2,"failed":0}` + "\n" + `{"file":"` + batch + `","type":"batch","entries":2,"failed":1}` + "\n"
	if code != 0 || out != want || len(posts) != 2 || !strings.HasPrefix(posts[0], "Bearer k-123 ") {
		t.Fatalf("transaction: %d %q %q %q", code, out, errOut, posts)
	}
	// A refused transaction stops the run with the server's outcome.
	out, errOut, code = runCLI(t, "", append([]string{"transaction", fail, tx}, conn...)...)
	if code != 1 || out != "" || !strings.Contains(errOut, "entry 0 is bad") || !strings.Contains(errOut, fail) {
		t.Errorf("failed transaction: %d %q %q", code, out, errOut)
	}
	// Not a transaction or batch Bundle: a usage error, nothing sent.
	n := len(posts)
	_, errOut, code = runCLI(t, `{"resourceType":"Patient"}`, append([]string{"transaction", "-"}, conn...)...)
	if code != 2 || len(posts) != n || !strings.Contains(errOut, "transaction or batch") {
		t.Errorf("a Patient: %d %q", code, errOut)
	}
	// create refuses a transaction Bundle and names the command.
	_, errOut, code = runCLI(t, "", append([]string{"create", tx}, conn...)...)
	if code != 2 || !strings.Contains(errOut, "lapis transaction") {
		t.Errorf("create of a transaction Bundle: %d %q", code, errOut)
	}
}
