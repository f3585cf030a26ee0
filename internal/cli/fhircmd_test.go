package cli

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fhirStub answers Patient/1, a two-page Patient search and a create, and
// records the Authorization header.
func fhirStub(t *testing.T, tlsServer bool) (*httptest.Server, *string) {
	var authz string
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("GET /fhir/Patient/1", func(w http.ResponseWriter, r *http.Request) {
		authz = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write([]byte(`{"resourceType":"Patient","id":"1","meta":{"versionId":"3"}}`))
	})
	mux.HandleFunc("GET /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.URL.Query().Get("page") == "2" {
			w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"3"},"search":{"mode":"match"}}]}`))
			return
		}
		if r.URL.Query().Get("name") != "smith" {
			w.WriteHeader(400)
			w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"want name=smith"}]}`))
			return
		}
		w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"` + srv.URL + `/fhir/Patient?page=2"}],
		  "entry":[{"resource":{"resourceType":"Patient","id":"1"},"search":{"mode":"match"}},
		           {"resource":{"resourceType":"Patient",
		             "id":"2"},"search":{"mode":"match"}},
		           {"resource":{"resourceType":"Organization","id":"o"},"search":{"mode":"include"}}]}`))
	})
	mux.HandleFunc("POST /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", srv.URL+"/fhir/Patient/9/_history/1")
		w.Header().Set("ETag", `W/"1"`)
		w.WriteHeader(201) // no body: as Prefer: return=minimal
	})
	if tlsServer {
		srv = httptest.NewTLSServer(mux)
	} else {
		srv = httptest.NewServer(mux)
	}
	t.Cleanup(srv.Close)
	return srv, &authz
}

// stubConnection starts fhirStub over plain HTTP for a CLI with no
// profile: the stub, the Authorization header it last saw, and the flags
// that reach it with an API key.
func stubConnection(t *testing.T) (*httptest.Server, *string, []string) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("LAPIS_PROFILE", "")
	t.Setenv("STUB_KEY", "k-123")
	srv, authz := fhirStub(t, false)
	return srv, authz, []string{"--server", srv.URL + "/fhir", "--api-key-env", "STUB_KEY"}
}

func TestFHIRCommands(t *testing.T) {
	srv, authz, conn := stubConnection(t)

	out, errOut, code := runCLI(t, "", append([]string{"get", "Patient/1"}, conn...)...)
	if code != 0 || out != `{"resourceType":"Patient","id":"1","meta":{"versionId":"3"}}`+"\n" || *authz != "Bearer k-123" {
		t.Fatalf("get: %d %q %q %q", code, out, errOut, *authz)
	}
	// --all follows next links and keeps only matches.
	out, _, code = runCLI(t, "", append([]string{"search", "Patient", "name=smith", "--all", "--ndjson"}, conn...)...)
	if code != 0 || out != `{"resourceType":"Patient","id":"1"}`+"\n"+`{"resourceType":"Patient","id":"2"}`+"\n"+`{"resourceType":"Patient","id":"3"}`+"\n" {
		t.Fatalf("search --all --ndjson: %d %q", code, out)
	}
	out, _, code = runCLI(t, "", append([]string{"search", "Patient", "name=smith", "--all", "--max", "2"}, conn...)...)
	var b struct {
		ResourceType, Type string
		Total              int
		Entry              []struct {
			FullURL  string
			Resource map[string]any
		}
	}
	if err := json.Unmarshal([]byte(out), &b); err != nil || code != 0 || b.Total != 2 || len(b.Entry) != 2 || b.Entry[1].FullURL != srv.URL+"/fhir/Patient/2" {
		t.Fatalf("search --all --max 2: %d %q %v", code, out, err)
	}
	// The server's OperationOutcome is in the one-line error.
	_, errOut, code = runCLI(t, "", append([]string{"search", "Patient", "name=jones"}, conn...)...)
	if code != 1 || !strings.Contains(errOut, "want name=smith") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("search error: %d %q", code, errOut)
	}
	// A create answered without a body prints type, id and version.
	out, _, code = runCLI(t, `{"resourceType":"Patient"}`, append([]string{"create", "-"}, conn...)...)
	if code != 0 || out != `{"id":"9","meta":{"versionId":"1"},"resourceType":"Patient"}`+"\n" {
		t.Errorf("create: %d %q", code, out)
	}
}

// TestSearchMaxNeedsAll: --max without --all is a usage error instead of
// being ignored (the first page printed whole, however long).
func TestSearchMaxNeedsAll(t *testing.T) {
	_, _, conn := stubConnection(t)
	out, errOut, code := runCLI(t, "", append([]string{"search", "Patient", "name=smith", "--ndjson", "--max", "1"}, conn...)...)
	if code != 2 || out != "" || !strings.Contains(errOut, "--all") {
		t.Fatalf("search --max without --all: %d %q %q", code, out, errOut)
	}
}

func TestTLSChoices(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("LAPIS_PROFILE", "")
	srv, _ := fhirStub(t, true)
	base := srv.URL + "/fhir"
	// System roots: the test CA is unknown.
	if _, errOut, code := runCLI(t, "", "get", "Patient/1", "--server", base); code == 0 || !strings.Contains(errOut, "certificate") {
		t.Errorf("system roots: %d %q", code, errOut)
	}
	// A custom CA bundle (relative to the working directory).
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	t.Chdir(dir)
	if out, errOut, code := runCLI(t, "", "get", "Patient/1", "--server", base, "--ca-file", "ca.pem"); code != 0 || !strings.Contains(out, `"id":"1"`) {
		t.Errorf("ca file: %d %q", code, errOut)
	}
	// Skipping verification works and warns.
	if _, errOut, code := runCLI(t, "", "get", "Patient/1", "--server", base, "--insecure-skip-verify-dangerous"); code != 0 || !strings.Contains(strings.ToLower(errOut), "verif") {
		t.Errorf("insecure: %d %q", code, errOut)
	}
}

// TestRevokedLoginSaysLogInAgain: when the refresh token that "lapis
// login" stored is refused (invalid_grant: revoked, expired), the error
// says to run "lapis login" again, and the exit code is 3.
func TestRevokedLoginSaysLogInAgain(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("LAPIS_PROFILE", "")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token is invalid, expired or revoked"}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dir := filepath.Join(cfg, "lapis")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	profiles := `{"profiles":{"me":{"base_url":"` + srv.URL + `/fhir","auth":{"method":"login","client_id":"app","token_url":"` + srv.URL + `/token"}}}}`
	stored := `{"access_token":"old","refresh_token":"r1","expires_at":"2020-01-01T00:00:00Z","fhir_base":"` + srv.URL + `/fhir","token_url":"` + srv.URL + `/token","client_id":"app"}`
	if err := os.WriteFile(filepath.Join(dir, "profiles.json"), []byte(profiles), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens", "me.json"), []byte(stored), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI(t, "", "get", "Patient/1", "--profile", "me")
	if code != 3 || !strings.Contains(errOut, "invalid_grant") || !strings.Contains(errOut, `run "lapis login" again`) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("refused refresh: %d %q", code, errOut)
	}
}
