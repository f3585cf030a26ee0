package profile

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/client"
)

// fakeServer is a FHIR server with a token endpoint: client_credentials
// with client c1 and the secret in *secret, and refresh tokens that rotate.
type fakeServer struct {
	*httptest.Server
	mu        sync.Mutex
	secret    string
	refresh   string
	tokens    atomic.Int32
	lastAuthz atomic.Value
}

func newFakeServer(t *testing.T, secret string) *fakeServer {
	f := &fakeServer{secret: secret, refresh: "rt-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token_endpoint": f.URL + "/fhir/auth/token"})
	})
	mux.HandleFunc("POST /fhir/auth/token", func(w http.ResponseWriter, r *http.Request) {
		f.tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		r.ParseForm()
		f.mu.Lock()
		defer f.mu.Unlock()
		n := f.tokens.Load()
		switch r.Form.Get("grant_type") {
		case "client_credentials":
			id, sec, _ := r.BasicAuth()
			if id != "c1" || sec != f.secret {
				w.WriteHeader(401)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
				return
			}
		case "refresh_token":
			if r.Form.Get("refresh_token") != f.refresh {
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
				return
			}
			f.refresh = "rt-" + string(rune('1'+n))
		default:
			w.WriteHeader(400)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + string(rune('0'+n)), "token_type": "Bearer", "expires_in": 3600,
			"refresh_token": f.refresh, "scope": r.Form.Get("scope")})
	})
	mux.HandleFunc("GET /fhir/Patient/1", func(w http.ResponseWriter, r *http.Request) {
		f.lastAuthz.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write([]byte(`{"resourceType":"Patient","id":"1"}`))
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func TestProfileClientCredentials(t *testing.T) {
	srv := newFakeServer(t, "secret-1")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("secret-1\n"), 0o600)
	path := filepath.Join(dir, "profiles.json")
	writeFile(t, path, `{"profiles":{"cc":{"base_url":"`+srv.URL+`/fhir","auth":{"method":"client_credentials","client_id":"c1","client_secret":"file:secret","scopes":["system/Patient.rs"]}}}}`)
	w, err := NewWatcher(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	c1, err := w.Client(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c1.Read(ctx, "Patient", "1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.tokens.Load(); n != 1 {
		t.Errorf("%d token requests for 3 reads, want 1", n)
	}
	if got := srv.lastAuthz.Load(); got != "Bearer at-1" {
		t.Errorf("authorization %v", got)
	}
	// Same profile and secret: the same client (and its token) is reused.
	if c2, _ := w.Client(ctx, "cc"); c2 != c1 {
		t.Error("client not reused")
	}
	// A rotated secret file gives a new client, without touching profiles.json.
	srv.mu.Lock()
	srv.secret = "secret-2"
	srv.mu.Unlock()
	os.WriteFile(secretFile, []byte("secret-2\n"), 0o600)
	c3, err := w.Client(ctx, "cc")
	if err != nil || c3 == c1 {
		t.Fatalf("rotated secret: same client or %v", err)
	}
	if _, err := c3.Read(ctx, "Patient", "1"); err != nil {
		t.Fatal(err)
	}
	// A wrong secret is an authentication error, with no secret in it.
	os.WriteFile(secretFile, []byte("wrong-secret\n"), 0o600)
	c4, _ := w.Client(ctx, "cc")
	_, err = c4.Read(ctx, "Patient", "1")
	if err == nil || !strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("wrong secret: %v", err)
	}
	// An unset variable fails when the client is built, naming the variable.
	writeFile(t, path, `{"profiles":{"cc":{"base_url":"`+srv.URL+`/fhir","auth":{"method":"apikey","api_key":"env:PROFILE_TEST_NOT_SET"}}}}`)
	w.Check()
	if _, err := w.Client(ctx, "cc"); err == nil || !strings.Contains(err.Error(), "PROFILE_TEST_NOT_SET") {
		t.Errorf("unset env: %v", err)
	}
	t.Setenv("PROFILE_TEST_KEY", "key-123")
	writeFile(t, path, `{"profiles":{"cc":{"base_url":"`+srv.URL+`/fhir","auth":{"method":"apikey","api_key":"env:PROFILE_TEST_KEY"}}}}`)
	w.Check()
	c5, err := w.Client(ctx, "cc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c5.Read(ctx, "Patient", "1"); err != nil || srv.lastAuthz.Load() != "Bearer key-123" {
		t.Errorf("api key: %v %v", err, srv.lastAuthz.Load())
	}
}

func TestLoginAuthRefreshesAndSaves(t *testing.T) {
	srv := newFakeServer(t, "unused")
	cache := &TokenCache{Dir: t.TempDir()}
	base := srv.URL + "/fhir"
	// An expired access token with a refresh token.
	st := &StoredToken{AccessToken: "old-at", RefreshToken: "rt-1", ExpiresAt: time.Now().Add(-time.Minute), FHIRBase: base, ClientID: "app"}
	if err := cache.Save("p", st); err != nil {
		t.Fatal(err)
	}
	o, err := LoginAuth(cache, "p", "", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := o.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "old-at" {
		t.Fatal("expired token not refreshed")
	}
	saved, err := cache.Load("p")
	if err != nil || saved.AccessToken != tok.AccessToken || saved.RefreshToken == "rt-1" || saved.ClientID != "app" {
		t.Fatalf("rotated token not saved: %+v %v", saved, err)
	}
	// A valid stored token is used without a token request.
	before := srv.tokens.Load()
	o2, err := LoginAuth(cache, "p", "", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := o2.Token(context.Background())
	if err != nil || tok2.AccessToken != saved.AccessToken || srv.tokens.Load() != before {
		t.Errorf("stored token not reused: %v", err)
	}
	// No stored token: a clear error.
	if _, err := LoginAuth(cache, "other", "", time.Minute, nil); err == nil || !strings.Contains(err.Error(), "lapis login") {
		t.Errorf("missing login: %v", err)
	}
	// Expired without a refresh token: log in again.
	cache.Save("norefresh", &StoredToken{AccessToken: "x", ExpiresAt: time.Now().Add(-time.Minute), FHIRBase: base, ClientID: "app"})
	if _, err := LoginAuth(cache, "norefresh", "", time.Minute, nil); err == nil {
		t.Error("expired token without refresh accepted")
	}
	var _ client.TokenSource = o
}

func TestTokenCacheAcrossClients(t *testing.T) {
	srv := newFakeServer(t, "secret-1")
	t.Setenv("PROFILE_TEST_CC_SECRET", "secret-1")
	cache := &TokenCache{Dir: t.TempDir()}
	cfg, err := Parse([]byte(`{"profiles":{"cc":{"base_url":"` + srv.URL + `/fhir","auth":{"method":"client_credentials","client_id":"c1","client_secret":"env:PROFILE_TEST_CC_SECRET"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := cfg.Get("cc")
	p.TokenCache = cache
	ctx := context.Background()
	// Two clients, as two CLI runs: one token request.
	for range 2 {
		c, err := p.Client(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(ctx, "Patient", "1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.tokens.Load(); n != 1 {
		t.Errorf("%d token requests for two clients sharing the cache, want 1", n)
	}
	files, _ := filepath.Glob(filepath.Join(cache.Dir, "oauth-*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files %v", files)
	}
	raw, _ := os.ReadFile(files[0])
	if strings.Contains(string(raw), "secret-1") || strings.Contains(string(raw), "refresh_token") {
		t.Errorf("cache file holds more than the access token: %s", raw)
	}
	// A refused (revoked) token is dropped: the next client fetches anew.
	srv.mu.Lock()
	srv.secret = "secret-1"
	srv.mu.Unlock()
	a, _ := p.Authenticator(ctx)
	ts := a.(client.TokenSource)
	tok, _ := ts.Token(ctx)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	a.Invalidate(req)
	tok2, err := ts.Token(ctx)
	if err != nil || tok2.AccessToken == tok.AccessToken || srv.tokens.Load() != 2 {
		t.Errorf("after Invalidate: %v, %d token requests", err, srv.tokens.Load())
	}
}
