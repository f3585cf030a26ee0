package authorize_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/testutil/httpcall"
)

// appsPost posts a form without cookies and decodes a JSON answer.
func appsPost(t *testing.T, u string, form url.Values, user, pass string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	r := httpcall.Do(t, req)
	return r.Status, r.Body, r.Raw
}

// appsTokens runs an authorization code exchange for a public client and
// returns the access and refresh tokens.
func appsTokens(t *testing.T, srv *oauth.Server, issuer, clientID string, acct *authdb.Account) (string, string) {
	t.Helper()
	code, err := srv.IssueCode(context.Background(), &oauth.Grant{ClientID: clientID, Subject: acct.Subject, FHIRUser: acct.FHIRUser,
		Scopes: []string{"launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"}, RedirectURI: appCB,
		CodeChallenge: challenge(pkceVerifier), Patient: strings.TrimPrefix(acct.FHIRUser, "Patient/"), AuthTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	st, m, raw := appsPost(t, issuer+oauth.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {appCB}, "code_verifier": {pkceVerifier}, "client_id": {clientID}}, "", "")
	at, _ := m["access_token"].(string)
	rt, _ := m["refresh_token"].(string)
	if st != 200 || at == "" || rt == "" {
		t.Fatalf("token: %d %s", st, raw)
	}
	return at, rt
}

// appsActive introspects tok.
func appsActive(t *testing.T, issuer string, intro *oauth.Registered, tok string) bool {
	t.Helper()
	st, m, raw := appsPost(t, issuer+oauth.PathIntrospect, url.Values{"token": {tok}}, intro.ClientID, intro.ClientSecret)
	if st != 200 {
		t.Fatalf("introspect: %d %s", st, raw)
	}
	return m["active"] == true
}

var revokeFormRE = regexp.MustCompile(`name="client_id" value="([^"]+)"`)

// TestAppsPage: a signed-in user sees the apps holding live grants for
// them and revokes one; its access token then introspects as inactive
// (and fails the Verifier), its refresh token fails, and the other apps
// and users keep their access.
func TestAppsPage(t *testing.T) {
	authDialects(t, oauth.LoginPolicy{}, func(t *testing.T, e *authEnv) {
		ctx := context.Background()
		alice := e.account("alice", "alice-password-1", "Patient/p1")
		bob := e.account("bob", "bob-password-1", "Patient/p2")
		reg := func(name string) string {
			return e.client(oauth.Registration{Name: name, Type: authdb.Public, RedirectURIs: []string{appCB},
				Scopes: []string{"launch/patient openid fhirUser offline_access patient/*.rs"}})
		}
		pub, other := reg("Patient app"), reg("Other app")
		intro, err := oauth.RegisterClient(ctx, e.db, oauth.Registration{Name: "rs", Type: authdb.Confidential, Scopes: []string{oauth.ScopeIntrospect}})
		if err != nil {
			t.Fatal(err)
		}
		at1, rt1 := appsTokens(t, e.srv, e.issuer, pub, alice)
		_, rt1b := appsTokens(t, e.srv, e.issuer, pub, alice) // a second authorization of the same app
		at2, _ := appsTokens(t, e.srv, e.issuer, other, alice)
		atBob, _ := appsTokens(t, e.srv, e.issuer, pub, bob)

		b := newBrowser(t)
		appsURL := e.issuer + oauth.PathApps
		p := b.get(appsURL)
		checkPageHeaders(t, p)
		if p.status != 200 || !strings.Contains(p.body, `value="login"`) || p.field("csrf") == "" {
			t.Fatalf("anonymous apps page: %d %s", p.status, p.body)
		}
		csrf := p.field("csrf")
		// Revoking before signing in is refused.
		if p = b.post(appsURL, url.Values{"csrf": {csrf}, "action": {"revoke"}, "client_id": {pub}}); p.status != 403 {
			t.Fatalf("revoke while signed out: %d", p.status)
		}
		if p = b.post(appsURL, url.Values{"csrf": {csrf}, "action": {"login"}, "username": {"alice"}, "password": {"wrong-password"}}); p.status != 401 || !strings.Contains(p.body, "Invalid username or password") {
			t.Fatalf("bad login: %d", p.status)
		}
		if p = b.post(appsURL, url.Values{"action": {"login"}, "username": {"alice"}, "password": {"alice-password-1"}}); p.status != 403 {
			t.Fatalf("login without CSRF: %d", p.status)
		}
		p = b.post(appsURL, url.Values{"csrf": {csrf}, "action": {"login"}, "username": {"Alice"}, "password": {"alice-password-1"}})
		if p.status != 303 || p.location(t).Path != "/fhir"+oauth.PathApps {
			t.Fatalf("login: %d %v", p.status, p.hdr)
		}
		p = b.get(appsURL)
		checkPageHeaders(t, p)
		ids := revokeFormRE.FindAllStringSubmatch(p.body, -1)
		if p.status != 200 || len(ids) != 2 || !strings.Contains(p.body, "Patient app") || !strings.Contains(p.body, "Other app") ||
			!strings.Contains(p.body, "patient/*.rs") || !strings.Contains(p.body, "last used") || !strings.Contains(p.body, "Signed in as alice") {
			t.Fatalf("apps page: %d %s", p.status, p.body)
		}
		csrf = p.field("csrf") // rotated at login
		// CSRF and cross-origin protection on the revoke form.
		if p = b.post(appsURL, url.Values{"csrf": {"forged"}, "action": {"revoke"}, "client_id": {pub}}); p.status != 403 {
			t.Fatalf("forged CSRF: %d", p.status)
		}
		if p = b.post(appsURL, url.Values{"csrf": {csrf}, "action": {"revoke"}, "client_id": {pub}}, func(r *http.Request) {
			r.Header.Set("Origin", "https://evil.example")
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}); p.status != 403 {
			t.Fatalf("cross-origin revoke: %d", p.status)
		}
		if !appsActive(t, e.issuer, intro, at1) {
			t.Fatal("token inactive before revocation")
		}
		// Warm the Verifier's cache: revocation must still win.
		if _, err := e.srv.Verifier().Verify(ctx, at1); err != nil {
			t.Fatal(err)
		}
		p = b.post(appsURL, url.Values{"csrf": {csrf}, "action": {"revoke"}, "client_id": {pub}})
		checkPageHeaders(t, p)
		if p.status != 200 || !strings.Contains(p.body, "Access for Patient app was revoked") || strings.Contains(p.body, `value="`+pub+`"`) || !strings.Contains(p.body, `value="`+other+`"`) {
			t.Fatalf("revoke: %d %s", p.status, p.body)
		}
		if appsActive(t, e.issuer, intro, at1) {
			t.Fatal("revoked access token still introspects as active")
		}
		if _, err := e.srv.Verifier().Verify(ctx, at1); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Fatalf("revoked access token verifies: %v", err)
		}
		for _, rt := range []string{rt1, rt1b} {
			if appsActive(t, e.issuer, intro, rt) {
				t.Fatal("revoked refresh token introspects as active")
			}
			st, m, raw := appsPost(t, e.issuer+oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pub}}, "", "")
			if st != 400 || m["error"] != "invalid_grant" {
				t.Fatalf("refresh after revocation: %d %s", st, raw)
			}
		}
		if !appsActive(t, e.issuer, intro, at2) || !appsActive(t, e.issuer, intro, atBob) {
			t.Fatal("revocation reached another app or another user")
		}
		p = b.get(appsURL)
		if ids := revokeFormRE.FindAllStringSubmatch(p.body, -1); len(ids) != 1 || ids[0][1] != other {
			t.Fatalf("after revocation: %v", ids)
		}
		if p = b.post(appsURL, url.Values{"csrf": {csrf}, "action": {"revoke"}, "client_id": {"no-such-app"}}); p.status != 404 {
			t.Fatalf("revoke unknown app: %d", p.status)
		}
		if p = b.post(appsURL, url.Values{"csrf": {csrf}, "action": {"explode"}}); p.status != 400 {
			t.Fatalf("bad action: %d", p.status)
		}
		req, _ := http.NewRequest("PUT", appsURL, nil)
		if p = b.do(req); p.status != 405 {
			t.Fatalf("PUT: %d", p.status)
		}
	})
}
