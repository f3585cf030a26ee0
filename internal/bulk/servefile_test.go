package bulk

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestOutcomeErrors: what http.ServeContent refuses goes out as an
// OperationOutcome that says why, also for a failed precondition, which
// net/http answers with no text at all.
func TestOutcomeErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.ndjson")
	if err := os.WriteFile(p, []byte("{}\n{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		header, value string
		status        int
	}{
		{"Range", "bytes=50-", http.StatusRequestedRangeNotSatisfiable},
		{"If-Match", `"other"`, http.StatusPreconditionFailed},
		{"If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT", http.StatusPreconditionFailed},
	} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/f.ndjson", nil)
		r.Header.Set(c.header, c.value)
		ow := &outcomeErrors{ResponseWriter: rec}
		http.ServeContent(ow, r, "", st.ModTime(), f)
		ow.finish()
		f.Close()
		var oo struct {
			ResourceType string
			Issue        []struct{ Code, Diagnostics string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || rec.Code != c.status || oo.ResourceType != "OperationOutcome" ||
			len(oo.Issue) != 1 || oo.Issue[0].Diagnostics == "" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %s: %d %v %s, want %d with an OperationOutcome that says why", c.header, c.value, rec.Code, rec.Header(), rec.Body, c.status)
		}
	}
}
