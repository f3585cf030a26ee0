package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// bulkServer is a stand-in Bulk Data server: one kick-off, one
// in-progress poll, then a manifest of two files; file b fails while
// failB is set.
type bulkServer struct {
	*httptest.Server
	mu       sync.Mutex
	kickoffs int
	polls    int
	gets     map[string]int
	failB    bool
	query    string
}

func newBulkServer(t *testing.T) *bulkServer {
	b := &bulkServer{gets: map[string]int{}, failB: true}
	mux := http.NewServeMux()
	auth := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer test-key" {
			w.WriteHeader(401)
			return false
		}
		return true
	}
	mux.HandleFunc("GET /fhir/{export}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("export") != "$export" || !auth(w, r) {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Prefer") != "respond-async" {
			w.WriteHeader(400)
			return
		}
		b.mu.Lock()
		b.kickoffs++
		b.query = r.URL.RawQuery
		b.mu.Unlock()
		w.Header().Set("Content-Location", b.URL+"/fhir/status/1")
		w.WriteHeader(202)
	})
	mux.HandleFunc("GET /fhir/status/1", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		b.mu.Lock()
		b.polls++
		n := b.polls
		b.mu.Unlock()
		if n == 1 {
			w.Header().Set("X-Progress", "50%")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(202)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"transactionTime": "2026-01-02T03:04:05Z", "request": b.URL + "/fhir/$export", "requiresAccessToken": true,
			"output": []map[string]any{{"type": "Patient", "url": b.URL + "/fhir/files/a", "count": 2}, {"type": "Observation", "url": b.URL + "/fhir/files/b", "count": 1}},
			"error":  []any{},
		})
	})
	mux.HandleFunc("GET /fhir/files/{f}", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		f := r.PathValue("f")
		b.mu.Lock()
		b.gets[f]++
		fail := b.failB && f == "b"
		b.mu.Unlock()
		if fail {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		if f == "a" {
			w.Write([]byte("{\"resourceType\":\"Patient\",\"id\":\"1\"}\n{\"resourceType\":\"Patient\",\"id\":\"2\"}\n"))
		} else {
			w.Write([]byte("{\"resourceType\":\"Observation\",\"id\":\"o\"}\n"))
		}
	})
	b.Server = httptest.NewServer(mux)
	t.Cleanup(b.Close)
	return b
}

func TestExportResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a Retry-After second")
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("BULK_KEY", "test-key")
	srv := newBulkServer(t)
	out := filepath.Join(t.TempDir(), "export")
	args := []string{"export", "--server", srv.URL + "/fhir", "--api-key-env", "BULK_KEY", "--out", out, "--type", "Patient,Observation", "--since", "2025-01-01"}

	// First run: file a arrives, file b fails.
	_, errOut, code := runCLI(t, "", args...)
	if code != exitError || !strings.Contains(errOut, "500") {
		t.Fatalf("first run: exit %d %q", code, errOut)
	}
	if srv.query != "_since=2025-01-01T00%3A00%3A00Z&_type=Patient%2CObservation" {
		t.Errorf("kick-off query %s", srv.query)
	}
	st, err := loadExportState(filepath.Join(out, exportStateFile))
	if err != nil || st == nil || st.Manifest == nil || st.StatusURL != srv.URL+"/fhir/status/1" || st.Done {
		t.Fatalf("state after the first run: %+v %v", st, err)
	}
	if fi, err := os.Stat(filepath.Join(out, exportStateFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v %v", fi.Mode(), err)
	}

	// A different export into the same directory is refused.
	other := append(append([]string{}, args[:len(args)-4]...), "--type", "Patient")
	if _, errOut, code := runCLI(t, "", other...); code != exitUsage || !strings.Contains(errOut, "different export") {
		t.Errorf("different export: exit %d %q", code, errOut)
	}

	// Second run resumes: no new kick-off or poll, file a not fetched again.
	srv.mu.Lock()
	srv.failB = false
	srv.mu.Unlock()
	stdout, errOut, code := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("second run: exit %d %q", code, errOut)
	}
	if srv.kickoffs != 1 || srv.polls != 2 || srv.gets["a"] != 1 || srv.gets["b"] != 2 {
		t.Errorf("kick-offs %d, polls %d, gets %v", srv.kickoffs, srv.polls, srv.gets)
	}
	var sum exportSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || len(sum.Files) != 2 || sum.Files[0].Count != 2 {
		t.Fatalf("summary %q: %v", stdout, err)
	}
	for _, f := range sum.Files {
		b, err := os.ReadFile(filepath.Join(out, f.File))
		if err != nil || !strings.Contains(string(b), `"resourceType":"`+f.Type+`"`) {
			t.Errorf("%s: %q %v", f.File, b, err)
		}
	}
	// Third run: done already; nothing is fetched.
	if _, errOut, code := runCLI(t, "", args...); code != 0 {
		t.Fatalf("third run: %d %s", code, errOut)
	}
	if srv.kickoffs != 1 || srv.gets["a"] != 1 || srv.gets["b"] != 2 {
		t.Errorf("third run fetched again: %d %v", srv.kickoffs, srv.gets)
	}
}
