package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/testutil/httpcall"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
)

// nextAlert waits for the next alert the webhook received (failing after
// a minute without one, rather than hanging until the test binary's
// timeout).
func nextAlert(t *testing.T, alerts <-chan map[string]any) map[string]any {
	t.Helper()
	select {
	case a := <-alerts:
		return a
	case <-time.After(time.Minute):
		t.Fatal("no alert was posted")
		return nil
	}
}

// alertServer starts a server whose alerts (auth failures past
// authFailures; 0 disables that rule) are POSTed to a webhook receiver of
// the test, logging to log: its root URL, the server, and the alerts
// received, decoded.
func alertServer(t *testing.T, authFailures int, log *slog.Logger) (string, *Server, <-chan map[string]any) {
	t.Helper()
	alerts := make(chan map[string]any, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		if err := json.NewDecoder(r.Body).Decode(&a); err == nil {
			alerts <- a
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	ln, root, cfg := listenConfig(t)
	cfg.Sandbox.Enabled = false
	cfg.Audit.AlertWebhook = hook.URL
	cfg.Audit.AlertAuthFailures = authFailures
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(context.Background(), cfg, log, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	serveBackground(t, srv, ln)
	return root, srv, alerts
}

// TestAlertNamesInstance: an alert POSTed to --alert-webhook names the
// instance that raised it ("instance", as the README documents), the
// chain id its AuditEvents name in source.observer, and the environment
// of the trail ("environment"); both were left out.
func TestAlertNamesInstance(t *testing.T) {
	var logs logbuf.Buffer
	root, _, alerts := alertServer(t, 1, slog.New(slog.NewJSONHandler(&logs, nil)))
	for range 2 {
		req, _ := http.NewRequest("GET", root+"/fhir/Patient", nil)
		req.Header.Set("X-API-Key", "lapis_not-a-key")
		if r := httpcall.Do(t, req); r.Status != http.StatusUnauthorized {
			t.Fatalf("bad key: %d", r.Status)
		}
	}
	a := nextAlert(t, alerts)
	var chain string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var l struct{ Msg, Chain string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "audit trail on" {
			chain = l.Chain
		}
	}
	if a["rule"] != "auth_failures" || chain == "" || a["instance"] != chain || a["environment"] != "production" {
		t.Fatalf("alert %v, want instance %q of production", a, chain)
	}
}

// TestAPIKeyAllowListRefusalAlerts: an API key used from outside its own
// allow-list is refused (401, as any refused credential: the answer never
// says which rule matched) and is recorded as the allow-list refusal it
// is, so the "refused" alert fires for the key, as for an OAuth client's
// allow-list; it was recorded as an authentication failure only.
func TestAPIKeyAllowListRefusalAlerts(t *testing.T) {
	root, srv, alerts := alertServer(t, 0, slog.New(slog.DiscardHandler))
	k, err := srv.Environment("production").Admin.CreateAPIKey(admin.WithActor(context.Background(), admin.CommandActor()),
		api.APIKeyRequest{Name: "dc", Scopes: []string{"system/Patient.rs"}, AllowIPs: []string{"10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", root+"/fhir/Patient", nil)
	req.Header.Set("X-API-Key", k.Key)
	if r := httpcall.Do(t, req); r.Status != http.StatusUnauthorized {
		t.Fatalf("key from outside its allow-list: %d", r.Status)
	}
	if a := nextAlert(t, alerts); a["rule"] != "refused" || a["client_id"] != k.ID || a["address"] != "127.0.0.1" {
		t.Fatalf("alert %v, want refused for %s", a, k.ID)
	}
}
