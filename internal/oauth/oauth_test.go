package oauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/oauth/token"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/httpcall"
	"github.com/lapis-health/lapis/internal/testutil/oauthtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// env is an authorization server over real HTTP on one database.
type env struct {
	t      testing.TB
	db     *authdb.DB
	keys   *keys.Manager
	srv    *oauth.Server
	ts     *httptest.Server
	issuer string
	token  string
	kek    string
}

func newEnv(t testing.TB, dialect string) *env {
	t.Helper()
	db, km, dir := openStores(t, dialect)
	srv, ts, issuer := oauthtest.Serve(t, "/fhir", func(issuer string) oauth.Config {
		return oauth.Config{Issuer: issuer, Clients: db, Assertions: db, Revocations: db, Keys: km,
			JWKS: jwksfetch.New(jwksfetch.Options{AllowPrivate: true})}
	})
	return &env{t: t, db: db, keys: km, srv: srv, ts: ts, issuer: issuer, token: issuer + oauth.PathToken, kek: filepath.Join(dir, keys.KEKFile)}
}

// dialects runs f as a subtest (or sub-benchmark) on an env of each
// dialect.
func dialects[T dbtest.Runner[T]](t T, f func(t T, e *env)) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t T) { f(t, newEnv(t, d)) })
	}
}

func (e *env) register(reg oauth.Registration) *oauth.Registered {
	e.t.Helper()
	return oauthtest.Register(e.t, e.db, reg)
}

// result is an answer of the server read whole.
type result = httpcall.Result

func (e *env) post(path string, form url.Values, mod func(*http.Request)) result {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if mod != nil {
		mod(req)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) result {
	e.t.Helper()
	return httpcall.Do(e.t, req)
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	}
}

func TestDiscovery(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		get := func(path string) result {
			req, _ := http.NewRequest("GET", e.issuer+path, nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Origin", "https://inferno.example")
			return e.do(req)
		}
		smart := get(oauth.PathSMARTConfiguration)
		oidc := get(oauth.PathOpenIDConfiguration)
		for _, r := range []result{smart, oidc} {
			if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || r.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("discovery: %d %v", r.Status, r.Header)
			}
			if r.Body["issuer"] != e.issuer || r.Body["token_endpoint"] != e.token || r.Body["jwks_uri"] != e.issuer+oauth.PathJWKS {
				t.Fatalf("discovery endpoints: %v", r.Body)
			}
		}
		for _, k := range []string{"authorization_endpoint", "token_endpoint", "capabilities", "grant_types_supported", "code_challenge_methods_supported",
			"introspection_endpoint", "revocation_endpoint", "scopes_supported", "token_endpoint_auth_methods_supported", "token_endpoint_auth_signing_alg_values_supported"} {
			if smart.Body[k] == nil {
				t.Errorf("smart-configuration lacks %s", k)
			}
		}
		strs := func(v any) []string {
			var out []string
			for _, x := range v.([]any) {
				out = append(out, x.(string))
			}
			return out
		}
		caps := strs(smart.Body["capabilities"])
		for _, c := range strings.Split("launch-standalone launch-ehr client-public client-confidential-symmetric client-confidential-asymmetric sso-openid-connect context-standalone-patient context-ehr-patient context-ehr-encounter context-banner context-style permission-offline permission-patient permission-user authorize-post permission-v2 permission-v1", " ") {
			if !slices.Contains(caps, c) {
				t.Errorf("capability %s missing", c)
			}
		}
		if ccm := strs(smart.Body["code_challenge_methods_supported"]); !slices.Contains(ccm, "S256") || slices.Contains(ccm, "plain") {
			t.Errorf("code challenge methods %v", ccm)
		}
		if !slices.Contains(strs(smart.Body["grant_types_supported"]), "authorization_code") || !slices.Contains(strs(smart.Body["token_endpoint_auth_methods_supported"]), "private_key_jwt") {
			t.Error("grant types / auth methods")
		}
		if algs := strs(smart.Body["token_endpoint_auth_signing_alg_values_supported"]); !slices.Contains(algs, "RS384") || !slices.Contains(algs, "ES384") {
			t.Error("assertion algs")
		}
		if !slices.Contains(strs(oidc.Body["id_token_signing_alg_values_supported"]), "RS256") {
			t.Error("id token alg")
		}
		jwks := get(oauth.PathJWKS)
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(jwks.Raw), &set); err != nil || len(set.Keys) != 2 {
			t.Fatalf("jwks: %v %s", err, jwks.Raw)
		}
		algs := map[string]bool{}
		for _, k := range set.Keys {
			if k.KeyID == "" || !k.IsPublic() {
				t.Errorf("jwks key %+v", k)
			}
			algs[k.Algorithm] = true
		}
		if !algs["ES256"] || !algs["RS256"] {
			t.Errorf("jwks algs %v", algs)
		}
		// The CapabilityStatement carries the same endpoints.
		cs := map[string]any{"rest": []any{map[string]any{"mode": "server"}}}
		e.srv.CapabilityHook(cs)
		sec := cs["rest"].([]any)[0].(map[string]any)["security"].(map[string]any)
		if sec["service"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] != "SMART-on-FHIR" {
			t.Error("no SMART-on-FHIR coding")
		}
		ext := sec["extension"].([]any)[0].(map[string]any)
		if ext["url"] != oauth.OAuthURIsExtension {
			t.Fatal("no oauth-uris")
		}
		want := map[string]string{"authorize": "authorization_endpoint", "token": "token_endpoint", "introspect": "introspection_endpoint",
			"revoke": "revocation_endpoint", "manage": "management_endpoint", "register": "registration_endpoint"}
		got := map[string]string{}
		for _, x := range ext["extension"].([]any) {
			m := x.(map[string]any)
			got[m["url"].(string)] = m["valueUri"].(string)
		}
		for k, wk := range want {
			wv, _ := smart.Body[wk].(string)
			if got[k] != wv {
				t.Errorf("oauth-uris %s = %q, smart-configuration %s = %q", k, got[k], wk, wv)
			}
		}
	})
}

func TestClientCredentialsSecret(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		c := e.register(oauth.Registration{Name: "svc", Type: authdb.Confidential, Scopes: []string{"system/Patient.rs system/Observation.rs"}})
		if !strings.Contains(c.ClientID, "-") || len(c.ClientSecret) < 43 {
			t.Fatalf("registration %+v", c)
		}
		for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
			cc := clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: e.token, Scopes: []string{"system/Patient.rs"}, AuthStyle: style}
			tok, err := cc.Token(ctx)
			if err != nil {
				t.Fatalf("style %d: %v", style, err)
			}
			if tok.TokenType != "Bearer" || tok.RefreshToken != "" || tok.Extra("scope") != "system/Patient.rs" {
				t.Fatalf("token %+v scope %v", tok, tok.Extra("scope"))
			}
			if ein, ok := tok.Extra("expires_in").(float64); !ok || ein <= 0 || ein > 300 {
				t.Fatalf("expires_in %v", tok.Extra("expires_in"))
			}
			claims, err := e.srv.Verifier().Verify(ctx, tok.AccessToken)
			if err != nil || claims.ClientID != c.ClientID || claims.Subject != c.ClientID || claims.Issuer != e.issuer || claims.Audience != e.issuer || claims.Scope != "system/Patient.rs" {
				t.Fatalf("claims %+v %v", claims, err)
			}
		}
		// Default scope = all registered system scopes.
		r := e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}}, basic(c.ClientID, c.ClientSecret))
		if r.Status != 200 || r.Body["scope"] != "system/Patient.rs system/Observation.rs" || r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" {
			t.Fatalf("default scope: %d %v %v", r.Status, r.Body, r.Header)
		}
		if _, ok := r.Body["refresh_token"]; ok {
			t.Fatal("refresh token issued")
		}
		// openid-client style: "-" encoded as %2D inside Basic.
		enc := strings.ReplaceAll(url.QueryEscape(c.ClientID), "-", "%2D")
		sec := strings.ReplaceAll(url.QueryEscape(c.ClientSecret), "-", "%2D")
		r = e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}}, func(req *http.Request) {
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(enc+":"+sec)))
		})
		if r.Status != 200 {
			t.Fatalf("%%2D Basic: %d %s", r.Status, r.Raw)
		}
		cases := []struct {
			name   string
			form   url.Values
			mod    func(*http.Request)
			status int
			code   string
		}{
			{"wrong secret basic", url.Values{"grant_type": {"client_credentials"}}, basic(c.ClientID, "nope"), 401, "invalid_client"},
			{"unknown client basic", url.Values{"grant_type": {"client_credentials"}}, basic("nobody", c.ClientSecret), 401, "invalid_client"},
			{"wrong secret post", url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {"nope"}}, nil, 400, "invalid_client"},
			{"no credentials", url.Values{"grant_type": {"client_credentials"}}, nil, 401, "invalid_client"},
			{"bad basic", url.Values{"grant_type": {"client_credentials"}}, func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }, 401, "invalid_client"},
			{"two methods", url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {c.ClientSecret}}, basic(c.ClientID, c.ClientSecret), 400, "invalid_request"},
			{"unsupported grant", url.Values{"grant_type": {"not_a_grant_type"}}, basic(c.ClientID, c.ClientSecret), 400, "unsupported_grant_type"},
			{"missing grant", url.Values{}, basic(c.ClientID, c.ClientSecret), 400, "invalid_request"},
			{"unregistered scope", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Condition.rs"}}, basic(c.ClientID, c.ClientSecret), 400, "invalid_scope"},
			{"non-system scope", url.Values{"grant_type": {"client_credentials"}, "scope": {"patient/Patient.rs"}}, basic(c.ClientID, c.ClientSecret), 400, "invalid_scope"},
			{"repeated parameter", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, basic(c.ClientID, c.ClientSecret), 400, "invalid_request"},
		}
		for _, tc := range cases {
			r := e.post(oauth.PathToken, tc.form, tc.mod)
			if r.Status != tc.status || r.Body["error"] != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, r.Status, r.Raw, tc.status, tc.code)
			}
			if tc.status == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: no WWW-Authenticate", tc.name)
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: no Cache-Control", tc.name)
			}
		}
		// A public client may not use client_credentials.
		pub := e.register(oauth.Registration{Name: "app", Type: authdb.Public, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"patient/*.rs"}})
		r = e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "client_id": {pub.ClientID}}, nil)
		if r.Status != 400 || r.Body["error"] != "unauthorized_client" {
			t.Errorf("public client: %d %s", r.Status, r.Raw)
		}
		// A deleted client is refused at once.
		if err := e.db.DeleteClient(ctx, c.ClientID); err != nil {
			t.Fatal(err)
		}
		r = e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}}, basic(c.ClientID, c.ClientSecret))
		if r.Status != 401 {
			t.Errorf("deleted client: %d", r.Status)
		}
	})
}

// backendKeys are a client's RS384 and ES384 keys.
type backendKeys struct {
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	public []byte // JWKS
}

func newBackendKeys(t testing.TB) *backendKeys {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: rk.Public(), KeyID: "b41528b6f37a9500edb8a905a595bdd7", Algorithm: "RS384", Use: "sig"},
		{Key: ek.Public(), KeyID: "4b49a739d1eb115b3225f4cf9beb6d1b", Algorithm: "ES384", Use: "sig"},
	}}
	b, _ := json.Marshal(set)
	return &backendKeys{rsa: rk, ec: ek, public: b}
}

func jti() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sign builds a client assertion.
func sign(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range headers {
		opts = opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func TestBackendServices(t *testing.T) {
	bk := newBackendKeys(t)
	other := newBackendKeys(t)
	dialects(t, func(t *testing.T, e *env) {
		jwksHits := 0
		jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			jwksHits++
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "max-age=600")
			_, _ = w.Write(bk.public)
		}))
		defer jwksSrv.Close()
		inline := e.register(oauth.Registration{Name: "bulk", Type: authdb.Backend, JWKS: bk.public, Scopes: []string{"system/*.read system/Patient.rs"}})
		byURI := e.register(oauth.Registration{Name: "bulk2", Type: authdb.Backend, JWKSURI: jwksSrv.URL + "/jwks.json", Scopes: []string{"system/*.read"}})
		conf := e.register(oauth.Registration{Name: "conf", Type: authdb.Confidential, Scopes: []string{"system/*.read"}})

		now := time.Now()
		good := func(id string) map[string]any {
			return map[string]any{"iss": id, "sub": id, "aud": e.token, "exp": now.Add(300 * time.Second).Unix(), "jti": jti()}
		}
		with := func(id string, k string, v any) map[string]any {
			c := good(id)
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
			return c
		}
		rs := func(c map[string]any) string {
			return sign(t, bk.rsa, jose.RS384, "b41528b6f37a9500edb8a905a595bdd7", c, nil)
		}
		es := func(c map[string]any) string {
			return sign(t, bk.ec, jose.ES384, "4b49a739d1eb115b3225f4cf9beb6d1b", c, nil)
		}
		form := func(assertion string) url.Values {
			return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.read"},
				"client_assertion_type": {oauth.AssertionType}, "client_assertion": {assertion}}
		}
		replayed := rs(good(inline.ClientID))
		type tc struct {
			name   string
			form   url.Values
			status []int
			code   string
		}
		cases := []tc{
			{"success RS384 registered JWKS", form(replayed), []int{200}, ""},
			{"success ES384 registered JWKS", form(es(good(inline.ClientID))), []int{200}, ""},
			{"success RS384 jwks_uri", form(rs(good(byURI.ClientID))), []int{200}, ""},
			{"success ES384 jwks_uri", form(es(good(byURI.ClientID))), []int{200}, ""},
			{"jku equal to registered JWKS URL", form(sign(t, bk.ec, jose.ES384, "4b49a739d1eb115b3225f4cf9beb6d1b", good(byURI.ClientID), map[jose.HeaderKey]any{"jku": jwksSrv.URL + "/jwks.json"})), []int{200}, ""},
			{"invalid grant type", func() url.Values {
				f := form(rs(good(inline.ClientID)))
				f.Set("grant_type", "not_a_grant_type")
				return f
			}(), []int{400}, "unsupported_grant_type"},
			{"invalid assertion type", func() url.Values {
				f := form(rs(good(inline.ClientID)))
				f.Set("client_assertion_type", "not_an_assertion_type")
				return f
			}(), []int{400, 401}, "invalid_client"},
			{"iss not_a_valid_iss", form(rs(with(inline.ClientID, "iss", "not_a_valid_iss"))), []int{400, 401}, "invalid_client"},
			{"iss != sub", form(rs(with(inline.ClientID, "sub", byURI.ClientID))), []int{400, 401}, "invalid_client"},
			{"unknown client", form(rs(map[string]any{"iss": "nobody", "sub": "nobody", "aud": e.token, "exp": now.Add(time.Minute).Unix(), "jti": jti()})), []int{400, 401}, "invalid_client"},
			{"confidential client with assertion", form(rs(good(conf.ClientID))), []int{400, 401}, "invalid_client"},
			{"replayed jti", form(replayed), []int{400, 401}, "invalid_client"},
			{"exp more than 5 minutes ahead", form(rs(with(inline.ClientID, "exp", now.Add(10*time.Minute).Unix()))), []int{400, 401}, "invalid_client"},
			{"expired", form(rs(with(inline.ClientID, "exp", now.Add(-time.Minute).Unix()))), []int{400, 401}, "invalid_client"},
			{"no exp", form(rs(with(inline.ClientID, "exp", nil))), []int{400, 401}, "invalid_client"},
			{"no jti", form(rs(with(inline.ClientID, "jti", nil))), []int{400, 401}, "invalid_client"},
			{"aud neither the token URL nor the issuer", form(rs(with(inline.ClientID, "aud", e.issuer+"/"))), []int{400, 401}, "invalid_client"},
			{"bad signature (other key, same kid)", form(sign(t, other.rsa, jose.RS384, "b41528b6f37a9500edb8a905a595bdd7", good(inline.ClientID), nil)), []int{400, 401}, "invalid_client"},
			{"unknown kid", form(sign(t, bk.rsa, jose.RS384, "no-such-kid", good(inline.ClientID), nil)), []int{400, 401}, "invalid_client"},
			{"kid of the other key type", form(sign(t, bk.rsa, jose.RS384, "4b49a739d1eb115b3225f4cf9beb6d1b", good(inline.ClientID), nil)), []int{400, 401}, "invalid_client"},
			{"algorithm not allowed (RS256)", form(sign(t, bk.rsa, jose.RS256, "b41528b6f37a9500edb8a905a595bdd7", good(inline.ClientID), nil)), []int{400, 401}, "invalid_client"},
			{"jku not the registered URL", form(sign(t, bk.ec, jose.ES384, "4b49a739d1eb115b3225f4cf9beb6d1b", good(byURI.ClientID), map[jose.HeaderKey]any{"jku": "https://evil.example/jwks.json"})), []int{400, 401}, "invalid_client"},
			{"jku on a client with inline JWKS", form(sign(t, bk.ec, jose.ES384, "4b49a739d1eb115b3225f4cf9beb6d1b", good(inline.ClientID), map[jose.HeaderKey]any{"jku": jwksSrv.URL + "/jwks.json"})), []int{400, 401}, "invalid_client"},
			{"garbage assertion", form("not.a.jwt"), []int{400, 401}, "invalid_client"},
			{"client_id differs from iss", func() url.Values { f := form(rs(good(inline.ClientID))); f.Set("client_id", byURI.ClientID); return f }(), []int{400, 401}, "invalid_client"},
			{"scope not registered", func() url.Values { f := form(rs(good(byURI.ClientID))); f.Set("scope", "system/Patient.cud"); return f }(), []int{400}, "invalid_scope"},
			{"user scope", func() url.Values { f := form(rs(good(inline.ClientID))); f.Set("scope", "user/*.read"); return f }(), []int{400}, "invalid_scope"},
		}
		for _, c := range cases {
			r := e.post(oauth.PathToken, c.form, nil)
			if !slices.Contains(c.status, r.Status) || (c.code != "" && r.Body["error"] != c.code) {
				t.Errorf("%s: got %d %s, want %v %s", c.name, r.Status, r.Raw, c.status, c.code)
				continue
			}
			if c.code == "" {
				ein, ok := r.Body["expires_in"].(float64)
				if !ok || ein > 300 || ein <= 0 || !strings.EqualFold(r.Body["token_type"].(string), "bearer") || r.Body["access_token"] == "" || r.Body["scope"] != "system/*.read" {
					t.Errorf("%s: body %s", c.name, r.Raw)
				}
				if _, ok := r.Body["refresh_token"]; ok {
					t.Errorf("%s: refresh token issued", c.name)
				}
			}
		}
		if jwksHits != 1 {
			t.Errorf("jwks_uri fetched %d times, want 1 (cached per Cache-Control)", jwksHits)
		}
	})
}

func TestPrivateJWKSRefused(t *testing.T) {
	f := jwksfetch.New(jwksfetch.Options{})
	for _, u := range []string{"http://127.0.0.1:1/jwks", "https://127.0.0.1:1/jwks", "https://10.0.0.1/jwks", "https://[::1]/jwks", "https://169.254.169.254/latest"} {
		if _, err := f.Get(context.Background(), u, false); err == nil || !strings.Contains(err.Error(), "not allowed") {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestIntrospectionRevocation(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.register(oauth.Registration{Name: "a", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
		b := e.register(oauth.Registration{Name: "b", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
		tok, err := (&clientcredentials.Config{ClientID: a.ClientID, ClientSecret: a.ClientSecret, TokenURL: e.token}).Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gw := e.register(oauth.Registration{Name: "gateway", Type: authdb.Confidential, Scopes: []string{oauth.ScopeIntrospect}})
		admin := e.register(oauth.Registration{Name: "admin", Type: authdb.Confidential, Scopes: []string{oauth.ScopeAdmin}})
		// The token's own client, a resource server (ScopeIntrospect) and
		// an admin client see it; any other client learns nothing (RFC
		// 7662 §4), exactly as for an unknown token.
		for _, c := range []*oauth.Registered{a, gw, admin} {
			r := e.post(oauth.PathIntrospect, url.Values{"token": {tok.AccessToken}}, basic(c.ClientID, c.ClientSecret))
			if r.Status != 200 || r.Body["active"] != true || r.Body["client_id"] != a.ClientID || r.Body["scope"] != "system/*.rs" ||
				r.Body["iss"] != e.issuer || r.Body["sub"] != a.ClientID || r.Body["token_type"] != "Bearer" {
				t.Fatalf("introspect: %d %s", r.Status, r.Raw)
			}
			if exp, ok := r.Body["exp"].(float64); !ok || int64(exp) < time.Now().Unix() {
				t.Fatalf("exp %v", r.Body["exp"])
			}
		}
		r := e.post(oauth.PathIntrospect, url.Values{"token": {tok.AccessToken}}, basic(b.ClientID, b.ClientSecret))
		if r.Status != 200 || strings.TrimSpace(r.Raw) != `{"active":false}` {
			t.Fatalf("another client introspected a's token: %d %s", r.Status, r.Raw)
		}
		r = e.post(oauth.PathIntrospect, url.Values{"token": {"invalid_token_value"}}, basic(a.ClientID, a.ClientSecret))
		if r.Status != 200 || strings.TrimSpace(r.Raw) != `{"active":false}` {
			t.Fatalf("invalid token: %d %s", r.Status, r.Raw)
		}
		if r = e.post(oauth.PathIntrospect, url.Values{"token": {tok.AccessToken}}, nil); r.Status != 401 || r.Body["error"] != "invalid_client" {
			t.Fatalf("unauthenticated introspection: %d %s", r.Status, r.Raw)
		}
		// Another client's revocation of a's token is answered like any
		// other (200, RFC 7009 §2.2) and has no effect.
		if r = e.post(oauth.PathRevoke, url.Values{"token": {tok.AccessToken}}, basic(b.ClientID, b.ClientSecret)); r.Status != 200 || strings.TrimSpace(r.Raw) != "{}" {
			t.Fatalf("foreign revoke: %d %s", r.Status, r.Raw)
		}
		if r = e.post(oauth.PathRevoke, url.Values{"token": {"garbage"}}, basic(a.ClientID, a.ClientSecret)); r.Status != 200 {
			t.Fatalf("revoke garbage: %d", r.Status)
		}
		if _, err := e.srv.Verifier().Verify(ctx, tok.AccessToken); err != nil {
			t.Fatal(err)
		}
		if r = e.post(oauth.PathRevoke, url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}, basic(a.ClientID, a.ClientSecret)); r.Status != 200 {
			t.Fatalf("revoke: %d %s", r.Status, r.Raw)
		}
		r = e.post(oauth.PathIntrospect, url.Values{"token": {tok.AccessToken}}, basic(gw.ClientID, gw.ClientSecret))
		if strings.TrimSpace(r.Raw) != `{"active":false}` {
			t.Fatalf("revoked token introspected as %s", r.Raw)
		}
		if _, err := e.srv.Verifier().Verify(ctx, tok.AccessToken); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Fatalf("revoked token verified: %v", err)
		}
	})
}

func TestVerifier(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	tok, _, err := e.srv.IssueAccessToken(ctx, oauth.AccessClaims{Subject: "s", ClientID: "c", Scope: "system/*.rs"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Minute)
	for name, v := range map[string]*oauth.Verifier{
		"later":        oauth.NewVerifier(oauth.VerifierConfig{Issuer: e.issuer, Audience: e.issuer, Keys: e.keys, Revocations: e.db, Now: func() time.Time { return future }}),
		"other issuer": oauth.NewVerifier(oauth.VerifierConfig{Issuer: e.issuer + "/", Audience: e.issuer, Keys: e.keys, Revocations: e.db}),
		"other aud":    oauth.NewVerifier(oauth.VerifierConfig{Issuer: e.issuer, Audience: "https://elsewhere/fhir", Keys: e.keys, Revocations: e.db}),
	} {
		if _, err := v.Verify(ctx, tok); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Cached entries expire with the token.
	clock := time.Now()
	v := oauth.NewVerifier(oauth.VerifierConfig{Issuer: e.issuer, Audience: e.issuer, Keys: e.keys, Revocations: e.db, Now: func() time.Time { return clock }})
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(61 * time.Second)
	_, err = v.Verify(ctx, tok)
	if !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("expired cached token: %v", err)
	}
	// A genuine expired token names its client (for its activity).
	var ref *token.Refused
	if !errors.As(err, &ref) || ref.ClientID == "" {
		t.Fatalf("expired token: %#v, want a token.Refused naming the client", err)
	}
	// Tampered token.
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), "system/*.rs", "system/*.cruds", 1))
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	if _, err := e.srv.Verifier().Verify(ctx, forged); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("forged: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		old, _, err := e.srv.IssueAccessToken(ctx, oauth.AccessClaims{Subject: "s", ClientID: "c", Scope: "system/*.rs"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		// Rotation by another process (the CLI) on the same database.
		other, err := keys.Open(ctx, e.db, keys.Options{KEKFile: e.kek})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		set, err := e.keys.JWKS(ctx)
		if err != nil || len(set.Keys) != 4 {
			t.Fatalf("JWKS after rotation: %d keys, %v", len(set.Keys), err)
		}
		kid := func(tok string) string {
			h, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			var m map[string]any
			_ = json.Unmarshal(h, &m)
			return m["kid"].(string)
		}
		// The active-key cache (one second) picks the rotation up.
		var fresh string
		poll.Until(t, time.Minute, "a token signed with the new key", func() bool {
			fresh, _, err = e.srv.IssueAccessToken(ctx, oauth.AccessClaims{Subject: "s", ClientID: "c", Scope: "system/*.rs"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return kid(fresh) != kid(old)
		})
		if kid(old) == kid(fresh) {
			t.Fatal("new token signed with the retired key")
		}
		for _, tok := range []string{old, fresh} {
			if _, err := e.srv.Verifier().Verify(ctx, tok); err != nil {
				t.Fatalf("verify after rotation: %v", err)
			}
		}
	})
}

// openStores opens a fresh authorization database (SQLite in a temporary
// directory, or a fresh PostgreSQL database) and its signing keys; it
// returns them with the data directory.
func openStores(t testing.TB, dialect string) (*authdb.DB, *keys.Manager, string) {
	t.Helper()
	return authtest.Stores(t, dialect)
}
