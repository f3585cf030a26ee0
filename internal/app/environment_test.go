package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/testutil/httpcall"
)

// TestEnvironments builds a server with its sandbox: Environments lists
// production then the sandbox with their FHIR bases, Environment finds
// them by name; each environment's rate limits count apart and the
// sandbox's own limit (--sandbox-rate-limit) holds there only; a handler
// mounted with WithMount is served (no-store); /readyz names a failing
// sandbox check "sandbox/...".
func TestEnvironments(t *testing.T) {
	ln, root, cfg := listenConfig(t)
	cfg.Audit.Enabled = false
	cfg.Sandbox.RateLimit, cfg.Sandbox.RateLimitBurst = "1/h", 2
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	portal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "portal") })
	var seen []*Environment
	srv, err := NewServer(ctx, cfg, slog.New(slog.DiscardHandler), io.Discard, WithMount("/portal/", portal),
		WithMountFunc("/devs/", func(envs []*Environment) (http.Handler, error) { seen = envs; return portal, nil }))
	if err != nil {
		t.Fatal(err)
	}
	serveBackground(t, srv, ln)

	envs := srv.Environments()
	if len(envs) != 2 || envs[0].Name != "production" || envs[1].Name != "sandbox" ||
		envs[0].FHIRBase != root+"/fhir" || envs[1].FHIRBase != root+"/sandbox/fhir" {
		t.Fatalf("environments %+v", envs)
	}
	if len(seen) != 2 || seen[1] != envs[1] {
		t.Fatalf("WithMountFunc saw %v", seen)
	}
	if srv.Environment("sandbox") != envs[1] || srv.Environment("production") != envs[0] || srv.Environment("staging") != nil {
		t.Fatal("Environment by name")
	}
	if envs[0].DB == envs[1].DB || envs[0].Service == nil || envs[1].Admin == nil || envs[1].Auth == nil || envs[1].Audit == nil {
		t.Fatal("environments share a database or miss parts")
	}

	get := func(u, key string) httpcall.Result {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		return httpcall.Do(t, req)
	}
	actx := admin.WithActor(ctx, admin.CommandActor())
	keys := map[string]string{}
	for _, e := range envs {
		k, err := e.Admin.CreateAPIKey(actx, api.APIKeyRequest{Name: "k", Scopes: []string{"system/Patient.rs"}})
		if err != nil {
			t.Fatal(err)
		}
		keys[e.Name] = k.Key
	}
	// Sandbox: a burst of 2 cost units, one search costs 2.
	if r := get(root+"/sandbox/fhir/Patient", keys["sandbox"]); r.Status != 200 {
		t.Fatalf("sandbox search: %d", r.Status)
	}
	if r := get(root+"/sandbox/fhir/Patient", keys["sandbox"]); r.Status != 429 {
		t.Errorf("sandbox search over its limit: %d, want 429", r.Status)
	}
	for range 3 {
		if r := get(root+"/fhir/Patient", keys["production"]); r.Status != 200 {
			t.Fatalf("production search: %d", r.Status)
		}
	}

	r := get(root+"/portal/x", "")
	if r.Status != 200 || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("mounted portal: %d %q", r.Status, r.Header.Get("Cache-Control"))
	}

	if r := get(root+"/devs/", ""); r.Status != 200 {
		t.Errorf("WithMountFunc handler: %d", r.Status)
	}

	// A sandbox database that fails is named in /readyz.
	envs[1].DB.Close()
	resp, err := http.Get(root + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "sandbox/authorization-database") || strings.Contains(string(body), " authorization-database") {
		t.Errorf("/readyz %d %s", resp.StatusCode, body)
	}
}

// TestSandboxConfig derives the sandbox's configuration: its own
// database (SQLite in DATA-DIR/sandbox, or the lapis_sandbox schema of a
// PostgreSQL production, or --sandbox-database), FHIR base, export folder
// and limits, and production's key-encryption key.
func TestSandboxConfig(t *testing.T) {
	cfg := config.ServeDefaults()
	cfg.Sandbox.Load = false // the built-in dataset is not read here
	cfg.Database.DataDir = "/data"
	cfg.Sandbox.RateLimit = "5/s"
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	s := cfg.SandboxConfig()
	if s.FHIRBase() != cfg.Server.BaseURL+"/sandbox/fhir" || s.FHIRPath() != "/sandbox/fhir" || s.EnvName() != "sandbox" || cfg.EnvName() != "production" {
		t.Errorf("sandbox base %s path %s", s.FHIRBase(), s.FHIRPath())
	}
	if s.Database.DataDir != "/data/sandbox" || s.Database.URL != "" || s.Auth.KEKFile != "/data/auth-kek" || s.Export.Dir != "/data/export/sandbox" {
		t.Errorf("sandbox database %+v kek %s export %s", s.Database, s.Auth.KEKFile, s.Export.Dir)
	}
	if s.RateLimit.Client != "5/s" || s.RateLimit.System != "5/s" || cfg.RateLimit.Client == "5/s" {
		t.Errorf("sandbox limits %+v", s.RateLimit)
	}
	cfg.Database.URL = "postgres://u@h/db"
	if s := cfg.SandboxConfig(); s.Database.URL != cfg.Database.URL || s.Database.Schema != config.SandboxSchema {
		t.Errorf("postgres sandbox %+v", s.Database)
	}
	cfg.Sandbox.DatabaseURL = "sqlite:/x/sb.db"
	if s := cfg.SandboxConfig(); s.Database.URL != "sqlite:/x/sb.db" || s.Database.Schema != "" {
		t.Errorf("explicit sandbox database %+v", s.Database)
	}
}
