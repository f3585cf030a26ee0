package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/httpcall"
)

// syncBuffer is a log sink the server and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAlertNamesInstance: an alert POSTed to --alert-webhook names the
// instance that raised it ("instance", as the README documents), the
// chain id its AuditEvents name in source.observer; it was left out.
func TestAlertNamesInstance(t *testing.T) {
	alerts := make(chan map[string]any, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		if err := json.NewDecoder(r.Body).Decode(&a); err == nil {
			alerts <- a
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	ln, root, cfg := listenConfig(t)
	cfg.Sandbox.Enabled = false
	cfg.Audit.AlertWebhook = hook.URL
	cfg.Audit.AlertAuthFailures = 1
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv, err := NewServer(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	serveBackground(t, srv, ln)
	for range 2 {
		req, _ := http.NewRequest("GET", root+"/fhir/Patient", nil)
		req.Header.Set("X-API-Key", "lapis_not-a-key")
		if r := httpcall.Do(t, req); r.Status != http.StatusUnauthorized {
			t.Fatalf("bad key: %d", r.Status)
		}
	}
	a := <-alerts
	var chain string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var l struct{ Msg, Chain string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "audit trail on" {
			chain = l.Chain
		}
	}
	if a["rule"] != "auth_failures" || chain == "" || a["instance"] != chain {
		t.Fatalf("alert %v, want instance %q", a, chain)
	}
}
