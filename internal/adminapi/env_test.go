package adminapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/lapis-health/lapis/client"
	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/adminapi"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/testutil/auditrec"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
	"github.com/lapis-health/lapis/internal/testutil/httpcall"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
	"github.com/lapis-health/lapis/internal/testutil/oauthtest"
)

// env is an authorization server with the admin API over real HTTP on
// one database, with a clock the test can move forward, the admin
// service's log and its audit events captured.
type env struct {
	t      testing.TB
	db     *authdb.DB
	srv    *oauth.Server
	issuer string
	token  string
	skew   atomic.Int64 // nanoseconds added to time.Now
	logs   *logbuf.Buffer
	events *auditrec.Recorder
}

func newEnv(t testing.TB, dialect string) *env {
	t.Helper()
	db, km, _ := authtest.Stores(t, dialect)
	e := &env{t: t, db: db, logs: &logbuf.Buffer{}, events: &auditrec.Recorder{}}
	now := func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }
	ts := httptest.NewUnstartedServer(nil)
	e.issuer = "http://" + ts.Listener.Addr().String() + "/fhir"
	e.token = e.issuer + oauth.PathToken
	quiet := slog.New(slog.DiscardHandler)
	var err error
	e.srv, err = oauth.New(oauth.Config{Issuer: e.issuer, Clients: db, Assertions: db, Revocations: db, Keys: km,
		JWKS: jwksfetch.New(jwksfetch.Options{AllowPrivate: true}), Codes: oauth.NewCodeStore(db), Refresh: db, Logger: quiet, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	svc := admin.New(admin.Config{Store: db, Audit: e.events, Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Now: now})
	a, err := adminapi.New(adminapi.Config{Issuer: e.issuer, Service: svc, Verifier: e.srv.Verifier(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.srv.Mount(mux)
	a.Mount(mux)
	ts.Config.Handler = mux
	ts.Start()
	t.Cleanup(ts.Close)
	return e
}

func dialects(t *testing.T, f func(t *testing.T, e *env)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) { f(t, newEnv(t, d)) })
	}
}

func (e *env) advance(d time.Duration) { e.skew.Add(int64(d)) }

func (e *env) register(reg oauth.Registration) *oauth.Registered {
	e.t.Helper()
	return oauthtest.Register(e.t, e.db, reg)
}

func (e *env) ccToken(reg *oauth.Registered, scope ...string) string {
	e.t.Helper()
	tok, err := (&clientcredentials.Config{ClientID: reg.ClientID, ClientSecret: reg.ClientSecret, TokenURL: e.token, Scopes: scope}).Token(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok.AccessToken
}

// result is an answer of the server read whole.
type result = httpcall.Result

func (e *env) do(req *http.Request) result {
	e.t.Helper()
	return httpcall.Do(e.t, req)
}

// post sends a form to an endpoint of the authorization server.
func (e *env) post(path string, form url.Values, user, pass string) result {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return e.do(req)
}

// call sends an admin API request with a bearer token (none when empty)
// and a JSON body (none when empty).
func (e *env) call(method, path, token, body string, mod ...func(*http.Request)) result {
	e.t.Helper()
	var req *http.Request
	if body != "" {
		req, _ = http.NewRequest(method, e.issuer+adminapi.Path+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, _ = http.NewRequest(method, e.issuer+adminapi.Path+path, nil)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, m := range mod {
		m(req)
	}
	r := e.do(req)
	if r.Header.Get("Cache-Control") != "no-store" {
		e.t.Fatalf("%s %s: Cache-Control %q", method, path, r.Header.Get("Cache-Control"))
	}
	return r
}

func wantAdmin(t *testing.T, what string, r result, status int, code string) {
	t.Helper()
	if r.Status != status || (code != "" && r.Body["error"] != code) {
		t.Fatalf("%s: got %d %s, want %d %s", what, r.Status, r.Raw, status, code)
	}
	if code != "" {
		if _, ok := r.Body["error_description"].(string); !ok || len(r.Body) != 2 {
			t.Fatalf("%s: error body %s", what, r.Raw)
		}
	}
}

const (
	appCB        = "https://app.example/cb"
	pkceVerifier = "0f4e3c1a-4b7e-4c5a-9d1e-1c2b3a4d5e6f-7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
)

// userTokens runs an authorization code exchange for a public client and
// returns the access and refresh tokens.
func (e *env) userTokens(clientID string, acct *authdb.Account) (string, string) {
	e.t.Helper()
	code, err := e.srv.IssueCode(context.Background(), &oauth.Grant{ClientID: clientID, Subject: acct.Subject, FHIRUser: acct.FHIRUser,
		Scopes: []string{"launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"}, RedirectURI: appCB,
		CodeChallenge: oauth2.S256ChallengeFromVerifier(pkceVerifier), Patient: strings.TrimPrefix(acct.FHIRUser, "Patient/"), AuthTime: time.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	r := e.post(oauth.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {appCB}, "code_verifier": {pkceVerifier}, "client_id": {clientID}}, "", "")
	at, _ := r.Body["access_token"].(string)
	rt, _ := r.Body["refresh_token"].(string)
	if r.Status != 200 || at == "" || rt == "" {
		e.t.Fatalf("token: %d %s", r.Status, r.Raw)
	}
	return at, rt
}

// active introspects tok.
func (e *env) active(intro *oauth.Registered, tok string) bool {
	e.t.Helper()
	r := e.post(oauth.PathIntrospect, url.Values{"token": {tok}}, intro.ClientID, intro.ClientSecret)
	if r.Status != 200 {
		e.t.Fatalf("introspect: %d %s", r.Status, r.Raw)
	}
	return r.Body["active"] == true
}

// publicJWKS is a backend client's key set.
func publicJWKS(t *testing.T) string {
	ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ek.Public(), KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	return string(b)
}

// take returns the JSON log records written to l since the last call.
func take(t *testing.T, l *logbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.Take()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func bodyKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func wantKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := bodyKeys(m); !slices.Equal(got, want) {
		t.Fatalf("%s: fields %v, want %v", what, got, want)
	}
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("time %v: %v", v, err)
	}
	return tm
}

// admin registers a confidential client with the admin scope and the
// extra scopes.
func (e *env) admin(extra ...string) *oauth.Registered {
	e.t.Helper()
	return e.register(oauth.Registration{Name: "admin", Type: authdb.Confidential, Scopes: append([]string{oauth.ScopeAdmin}, extra...)})
}

// adminClient is the typed admin client signed in as adm with the client
// credentials grant (admin scope only).
func (e *env) adminClient(adm *oauth.Registered) *api.Client {
	e.t.Helper()
	c, err := client.New(e.issuer, client.WithAuth(client.ClientCredentials(client.ClientCredentialsConfig{
		TokenURL: e.token, ClientID: adm.ClientID, ClientSecret: adm.ClientSecret, Scopes: []string{api.Scope}})))
	if err != nil {
		e.t.Fatal(err)
	}
	return api.New(c)
}
