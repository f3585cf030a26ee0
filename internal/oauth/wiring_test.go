package oauth_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhirapi"
	"github.com/lapis-health/lapis/internal/oauth"
)

// TestWiring mounts the authorization server next to the FHIR API on one
// mux, the way lapis serve is expected to, and checks that discovery,
// the CapabilityStatement and the token endpoint agree.
func TestWiring(t *testing.T) {
	ctx := context.Background()
	ts := httptest.NewUnstartedServer(nil)
	cfg := config.Defaults()
	cfg.Server.Addr = ts.Listener.Addr().String()
	cfg.Database.DataDir = t.TempDir()
	if err := cfg.Normalize(false); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	auth, err := oauth.Open(ctx, oauth.Options{Issuer: cfg.FHIRBase(), Database: a.DB, DataDir: cfg.Database.DataDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	api := fhirapi.New(fhirapi.Config{BaseURL: cfg.FHIRBase(), SoftwareName: "Lapis", SoftwareVersion: "test", Logger: log, CapabilityHook: auth.CapabilityHook}, a.Service, a.Registry)
	mux := http.NewServeMux()
	mux.Handle("/fhir", api)
	mux.Handle("/fhir/", api)
	auth.Mount(mux)
	ts.Config.Handler = mux
	ts.Start()
	defer ts.Close()

	get := func(path string) map[string]any {
		resp, err := http.Get(cfg.FHIRBase() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&m) != nil {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		return m
	}
	smart := get("/.well-known/smart-configuration")
	cs := get("/metadata")
	ext := cs["rest"].([]any)[0].(map[string]any)["security"].(map[string]any)["extension"].([]any)[0].(map[string]any)["extension"].([]any)
	uris := map[string]string{}
	for _, x := range ext {
		m := x.(map[string]any)
		uris[m["url"].(string)] = m["valueUri"].(string)
	}
	if uris["token"] != smart["token_endpoint"] || uris["authorize"] != smart["authorization_endpoint"] || smart["issuer"] != cfg.FHIRBase() {
		t.Fatalf("metadata %v vs smart-configuration %v", uris, smart)
	}
	resp, err := http.PostForm(smart["token_endpoint"].(string), url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("token endpoint through the shared mux: %d", resp.StatusCode)
	}
}

func TestTokenEndpointHTTP(t *testing.T) {
	e := newEnv(t, "sqlite")
	req, _ := http.NewRequest("OPTIONS", e.token, nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	if r := e.do(req); r.Status != 204 || r.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", r.Status, r.Header)
	}
	req, _ = http.NewRequest("GET", e.token, nil)
	if r := e.do(req); r.Status != 405 || r.Body["error"] != "invalid_request" {
		t.Fatalf("GET: %d %s", r.Status, r.Raw)
	}
	r := e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}}, func(r *http.Request) { r.Header.Set("Content-Type", "application/json") })
	if r.Status != 400 || r.Body["error"] != "invalid_request" {
		t.Fatalf("JSON body: %d %s", r.Status, r.Raw)
	}
}
