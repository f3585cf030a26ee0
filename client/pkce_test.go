package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAS is a stand-in authorization server: discovery, /authorize that
// approves at once (redirecting with a code), and /token that checks the
// PKCE verifier against the S256 challenge.
type fakeAS struct {
	srv *httptest.Server
	mu  sync.Mutex
	// codes maps an issued code to its challenge and redirect URI.
	codes     map[string][2]string
	authQuery url.Values
	tokenForm url.Values
	exchanges int
}

func newFakeAS(t *testing.T) *fakeAS {
	as := &fakeAS{codes: map[string][2]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"authorization_endpoint":"http://%s/authorize","token_endpoint":"http://%s/token","code_challenge_methods_supported":["S256"]}`, r.Host, r.Host)
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		as.mu.Lock()
		as.authQuery = q
		code := fmt.Sprintf("code-%d", len(as.codes)+1)
		as.codes[code] = [2]string{q.Get("code_challenge"), q.Get("redirect_uri")}
		as.mu.Unlock()
		if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" {
			http.Error(w, "bad request", 400)
			return
		}
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		f := r.PostForm
		as.mu.Lock()
		as.tokenForm = f
		as.exchanges++
		want, ok := as.codes[f.Get("code")]
		delete(as.codes, f.Get("code"))
		as.mu.Unlock()
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		w.Header().Set("Content-Type", "application/json")
		if !ok || f.Get("grant_type") != "authorization_code" || base64.RawURLEncoding.EncodeToString(sum[:]) != want[0] || f.Get("redirect_uri") != want[1] {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"code, verifier or redirect_uri mismatch"}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "pkce-access", "token_type": "Bearer", "expires_in": 300,
			"refresh_token": "pkce-refresh", "scope": "launch/patient patient/*.rs offline_access", "patient": "pat-123", "id_token": "idt"})
	})
	as.srv = httptest.NewServer(mux)
	t.Cleanup(as.srv.Close)
	return as
}

// browser follows the authorization URL like a user agent would, but lets
// the test tamper with the final redirect to the loopback callback.
func browser(t *testing.T, tamper func(*url.URL)) func(string) error {
	return func(authURL string) error {
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		go func() {
			resp, err := noRedirect.Get(authURL)
			if err != nil {
				t.Errorf("authorize: %v", err)
				return
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || resp.StatusCode != http.StatusFound {
				t.Errorf("authorize answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
				return
			}
			if tamper != nil {
				tamper(loc)
			}
			cb, err := http.Get(loc.String())
			if err != nil {
				t.Errorf("callback: %v", err)
				return
			}
			io.Copy(io.Discard, cb.Body)
			cb.Body.Close()
		}()
		return nil
	}
}

func TestPKCELogin(t *testing.T) {
	as := newFakeAS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	login := &PKCELogin{FHIRBase: as.srv.URL + "/fhir", ClientID: "cli-app",
		Scopes: []string{"launch/patient", "patient/*.rs", "offline_access"}, OpenBrowser: browser(t, nil)}
	tok, err := login.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "pkce-access" || tok.RefreshToken != "pkce-refresh" || tok.Patient != "pat-123" || tok.IDToken != "idt" || tok.ExpiresAt.IsZero() {
		t.Fatalf("token = %v", tok)
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	q := as.authQuery
	if q.Get("client_id") != "cli-app" || q.Get("aud") != as.srv.URL+"/fhir" || q.Get("scope") != "launch/patient patient/*.rs offline_access" ||
		len(q.Get("state")) < 40 || !strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") || !strings.HasSuffix(q.Get("redirect_uri"), "/callback") {
		t.Fatalf("authorize query = %v", q)
	}
	if as.tokenForm.Get("client_id") != "cli-app" || len(as.tokenForm.Get("code_verifier")) < 43 {
		t.Fatalf("token form = %v", as.tokenForm)
	}
}

// tamperedLogin runs a login against as whose redirect to the loopback
// callback has its query changed by edit, and returns its error.
func tamperedLogin(t *testing.T, as *fakeAS, edit func(q url.Values)) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	login := &PKCELogin{FHIRBase: as.srv.URL + "/fhir", ClientID: "cli-app", OpenBrowser: browser(t, func(u *url.URL) {
		q := u.Query()
		edit(q)
		u.RawQuery = q.Encode()
	})}
	_, err := login.Run(ctx)
	return err
}

func TestPKCELoginRejectsStateMismatch(t *testing.T) {
	as := newFakeAS(t)
	err := tamperedLogin(t, as, func(q url.Values) { q.Set("state", "forged-by-attacker") })
	if err == nil || !strings.Contains(err.Error(), "state") {
		t.Fatalf("err = %v", err)
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.exchanges != 0 {
		t.Fatal("the code was exchanged despite the wrong state")
	}
}

func TestPKCELoginVerifierChecked(t *testing.T) {
	as := newFakeAS(t)
	// The code is swapped for one issued to another login (another
	// challenge): the stand-in server's S256 check refuses it.
	as.mu.Lock()
	as.codes["code-stolen"] = [2]string{"some-other-challenge", ""}
	as.mu.Unlock()
	err := tamperedLogin(t, as, func(q url.Values) { q.Set("code", "code-stolen") })
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "invalid_grant" || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
}

func TestPKCELoginAuthorizationErrorAndTimeout(t *testing.T) {
	as := newFakeAS(t)
	err := tamperedLogin(t, as, func(q url.Values) {
		q.Del("code")
		q.Set("error", "access_denied")
	})
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "access_denied" {
		t.Fatalf("err = %v", err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	idle := &PKCELogin{FHIRBase: as.srv.URL + "/fhir", ClientID: "cli-app", OpenBrowser: func(string) error { return nil }}
	if _, err := idle.Run(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	if _, err := (&PKCELogin{FHIRBase: as.srv.URL + "/fhir", ClientID: "x"}).Run(context.Background()); err == nil {
		t.Fatal("missing OpenBrowser accepted")
	}
}
