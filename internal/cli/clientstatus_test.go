package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestClientStatusCommands: rotate-secret --overlap --json, suspend
// --reason and resume on the local database, and their refusals.
func TestClientStatusCommands(t *testing.T) {
	t.Parallel()
	db := []string{"--data-dir", t.TempDir()}
	code, out, errs := run(append([]string{"client", "create", "--name", "svc", "--type", "confidential", "--scope", "system/*.rs", "--json"}, db...)...)
	if code != 0 {
		t.Fatalf("create: %d %s", code, errs)
	}
	var created map[string]string
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	id := created["client_id"]
	code, out, errs = run(append([]string{"client", "rotate-secret", id, "--overlap", "24h", "--json"}, db...)...)
	if code != 0 {
		t.Fatalf("rotate-secret: %d %s", code, errs)
	}
	var rot struct {
		ClientID      string    `json:"client_id"`
		ClientSecret  string    `json:"client_secret"`
		OldValidUntil time.Time `json:"old_valid_until"`
	}
	if err := json.Unmarshal([]byte(out), &rot); err != nil || rot.ClientID != id || len(rot.ClientSecret) < 43 ||
		rot.ClientSecret == created["client_secret"] || rot.OldValidUntil.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("rotate-secret output %q %v", out, err)
	}
	if code, _, errs = run(append([]string{"client", "rotate-secret", "nobody"}, db...)...); code == 0 || !strings.Contains(errs, "nobody") {
		t.Fatalf("unknown client: %d %s", code, errs)
	}
	if code, _, errs = run(append([]string{"client", "suspend", id}, db...)...); code == 0 || !strings.Contains(errs, "--reason") {
		t.Fatalf("suspend without --reason: %d %s", code, errs)
	}
	code, out, errs = run(append([]string{"client", "suspend", id, "--reason", "abuse", "--json"}, db...)...)
	var cl map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &cl) != nil || cl["suspend_reason"] != "abuse" || cl["suspended_at"] == nil {
		t.Fatalf("suspend: %d %q %s", code, out, errs)
	}
	if code, out, errs = run(append([]string{"client", "resume", id}, db...)...); code != 0 || !strings.Contains(out, "resumed client "+id) {
		t.Fatalf("resume: %d %q %s", code, out, errs)
	}
	code, out, errs = run(append([]string{"apikey", "create", "--name", "etl", "--scope", "system/*.rs", "--json"}, db...)...)
	var k map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("apikey create: %d %q %s", code, out, errs)
	}
	kid := k["id"].(string)
	if code, out, errs = run(append([]string{"apikey", "suspend", kid, "--reason", "leak", "--json"}, db...)...); code != 0 || !strings.Contains(out, `"status":"suspended"`) {
		t.Fatalf("apikey suspend: %d %q %s", code, out, errs)
	}
	if code, out, errs = run(append([]string{"apikey", "resume", kid}, db...)...); code != 0 || !strings.Contains(out, "resumed api key") {
		t.Fatalf("apikey resume: %d %q %s", code, out, errs)
	}
}
