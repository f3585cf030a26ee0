package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/oauthtest"
)

// codeEnv is an env whose server has the authorization_code and
// refresh_token grants, with a clock the test can move forward.
type codeEnv struct {
	*env
	skew atomic.Int64 // nanoseconds added to time.Now
}

func (e *codeEnv) advance(d time.Duration) { e.skew.Add(int64(d)) }

// config is the configuration of a code-flow authorization server on db
// and km, whose clock runs ahead by what advance added.
func (ce *codeEnv) config(db *authdb.DB, km *keys.Manager) func(issuer string) oauth.Config {
	return func(issuer string) oauth.Config {
		return oauth.Config{Issuer: issuer, Clients: db, Assertions: db, Revocations: db, Keys: km,
			JWKS: jwksfetch.New(jwksfetch.Options{AllowPrivate: true}), Codes: oauth.NewCodeStore(db), Refresh: db,
			Logger: slog.New(slog.DiscardHandler),
			Now:    func() time.Time { return time.Now().Add(time.Duration(ce.skew.Load())) }}
	}
}

func newCodeEnv(t testing.TB, dialect string, setup ...func(*oauth.Server)) *codeEnv {
	t.Helper()
	db, km, dir := openStores(t, dialect)
	ce := &codeEnv{}
	srv, ts, issuer := oauthtest.Serve(t, "/fhir", ce.config(db, km), setup...)
	ce.env = &env{t: t, db: db, keys: km, srv: srv, ts: ts, issuer: issuer, token: issuer + oauth.PathToken, kek: filepath.Join(dir, keys.KEKFile)}
	return ce
}

// codeDialects runs f as a subtest (or sub-benchmark) on a codeEnv of
// each dialect.
func codeDialects[T dbtest.Runner[T]](t T, f func(t T, e *codeEnv)) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t T) { f(t, newCodeEnv(t, d)) })
	}
}

const (
	acRedirect = "https://app.example/cb"
	// acVerifier is shaped like Inferno's: two UUIDs joined by "-".
	acVerifier = "0b0c2f2e-6f0b-4f57-9d5e-0f3b5f7f4a11-7d6c1a2b-3e4f-4a5b-8c9d-0e1f2a3b4c5d"
)

var acStandaloneScopes = []string{"launch/patient", "openid", "fhirUser", "offline_access", "patient/Patient.rs", "patient/Observation.rs"}

// acGrant is what /authorize would store for a standalone patient launch.
func acGrant(clientID string) *oauth.Grant {
	return &oauth.Grant{
		ClientID: clientID, Subject: "user-7f3a", FHIRUser: "Patient/p-1", Scopes: slices.Clone(acStandaloneScopes),
		RedirectURI: acRedirect, CodeChallenge: oauth2.S256ChallengeFromVerifier(acVerifier), Nonce: "nonce-42",
		Patient: "p-1", NeedPatientBanner: true, AuthTime: time.Now().Add(-time.Minute).Truncate(time.Second),
	}
}

func (e *codeEnv) code(g *oauth.Grant) string {
	e.t.Helper()
	c, err := e.srv.IssueCode(context.Background(), g)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func acExchangeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {acRedirect}, "code_verifier": {acVerifier}}
}

// exchange redeems a code for g at the token endpoint as a public client
// (client_id in the form), failing the test unless that succeeds.
func (e *codeEnv) exchange(g *oauth.Grant) result {
	e.t.Helper()
	f := acExchangeForm(e.code(g))
	f.Set("client_id", g.ClientID)
	r := e.post(oauth.PathToken, f, nil)
	if r.Status != 200 {
		e.t.Fatalf("%d %s", r.Status, r.Raw)
	}
	return r
}

func acPublicClient(e *codeEnv) string {
	return e.register(oauth.Registration{Name: "Patient app", Type: authdb.Public, RedirectURIs: []string{acRedirect},
		Scopes: []string{"launch/patient openid fhirUser offline_access online_access patient/*.rs"}}).ClientID
}

func acConfidentialClient(e *codeEnv) *oauth.Registered {
	return e.register(oauth.Registration{Name: "EHR app", Type: authdb.Confidential, RedirectURIs: []string{acRedirect},
		Scopes: []string{"launch openid fhirUser offline_access user/*.rs patient/*.rs"}})
}

func acWantError(t *testing.T, what string, r result, status int, code string) {
	t.Helper()
	if r.Status != status || r.Body["error"] != code {
		t.Fatalf("%s: got %d %s, want %d %s", what, r.Status, r.Raw, status, code)
	}
}

// TestAuthorizationCodeFlow drives a standalone patient launch's token
// side with golang.org/x/oauth2 (PKCE exchange, refresh through a
// TokenSource) and verifies the id_token with go-oidc through discovery
// and the JWKS.
func TestAuthorizationCodeFlow(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		ctx := context.Background()
		id := acPublicClient(e)
		cfg := &oauth2.Config{ClientID: id, RedirectURL: acRedirect,
			Endpoint: oauth2.Endpoint{TokenURL: e.token, AuthStyle: oauth2.AuthStyleInParams}}
		g := acGrant(id)
		tok, err := cfg.Exchange(ctx, e.code(g), oauth2.VerifierOption(acVerifier))
		if err != nil {
			t.Fatal(err)
		}
		if tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.RefreshToken == "" || len(tok.RefreshToken) != 43 {
			t.Fatalf("token: %+v", tok)
		}
		if d := time.Until(tok.Expiry); d < 59*time.Minute || d > 61*time.Minute {
			t.Fatalf("expires_in: %v", d)
		}
		if got := tok.Extra("scope"); got != strings.Join(acStandaloneScopes, " ") {
			t.Fatalf("scope %q", got)
		}
		if tok.Extra("patient") != "p-1" || tok.Extra("need_patient_banner") != true || tok.Extra("encounter") != nil || tok.Extra("fhirContext") != nil {
			t.Fatalf("context: patient=%v banner=%v", tok.Extra("patient"), tok.Extra("need_patient_banner"))
		}

		// The id_token, verified independently: discovery, JWKS, RS256,
		// issuer byte for byte, aud = client_id.
		provider, err := oidc.NewProvider(ctx, e.issuer)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := provider.Verifier(&oidc.Config{ClientID: id}).Verify(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		var idc struct {
			FHIRUser string `json:"fhirUser"`
			AuthTime int64  `json:"auth_time"`
			Aud      string `json:"aud"`
		}
		if err := idt.Claims(&idc); err != nil {
			t.Fatal(err)
		}
		if idt.Issuer != e.issuer || idt.Subject != g.Subject || idt.Nonce != "nonce-42" || idc.FHIRUser != e.issuer+"/Patient/p-1" ||
			idc.AuthTime != g.AuthTime.Unix() || idc.Aud != id {
			t.Fatalf("id_token: %+v %+v", idt, idc)
		}
		if hdr := acJwtHeader(t, raw); hdr["alg"] != "RS256" || hdr["kid"] == "" {
			t.Fatalf("id_token header %v", hdr)
		}

		// The access token carries the launch context; introspection shows
		// it (to a resource server registered with ScopeIntrospect), iss/sub
		// equal the id_token's.
		claims, err := e.srv.Verifier().Verify(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if claims.Patient != "p-1" || claims.ClientID != id || claims.Subject != g.Subject || claims.FHIRUser != e.issuer+"/Patient/p-1" || claims.Scope != tok.Extra("scope") {
			t.Fatalf("claims %+v", claims)
		}
		rs := e.register(oauth.Registration{Name: "resource server", Type: authdb.Confidential, Scopes: []string{oauth.ScopeIntrospect}})
		in := e.post(oauth.PathIntrospect, url.Values{"token": {tok.AccessToken}}, basic(rs.ClientID, rs.ClientSecret))
		if in.Status != 200 || in.Body["active"] != true || in.Body["patient"] != "p-1" || in.Body["client_id"] != id ||
			in.Body["iss"] != idt.Issuer || in.Body["sub"] != idt.Subject || in.Body["fhirUser"] != idc.FHIRUser || in.Body["scope"] != tok.Extra("scope") {
			t.Fatalf("introspection: %s", in.Raw)
		}
		in = e.post(oauth.PathIntrospect, url.Values{"token": {tok.RefreshToken}}, basic(rs.ClientID, rs.ClientSecret))
		if in.Body["active"] != true || in.Body["patient"] != "p-1" || in.Body["client_id"] != id || in.Body["scope"] != tok.Extra("scope") {
			t.Fatalf("refresh introspection: %s", in.Raw)
		}
		// Any other confidential client learns nothing about either token.
		nosy := acConfidentialClient(e)
		for _, tk := range []string{tok.AccessToken, tok.RefreshToken} {
			if in := e.post(oauth.PathIntrospect, url.Values{"token": {tk}}, basic(nosy.ClientID, nosy.ClientSecret)); in.Status != 200 || in.Raw != "{\"active\":false}\n" {
				t.Fatalf("another client's token introspected: %d %s", in.Status, in.Raw)
			}
		}

		// Refresh through x/oauth2's TokenSource (an expired token forces it).
		old := *tok
		tok.Expiry = time.Now().Add(-time.Minute)
		nt, err := cfg.TokenSource(ctx, tok).Token()
		if err != nil {
			t.Fatal(err)
		}
		if nt.AccessToken == old.AccessToken || nt.RefreshToken == "" || nt.RefreshToken == old.RefreshToken ||
			nt.Extra("scope") != old.Extra("scope") || nt.Extra("patient") != "p-1" || nt.Extra("expires_in") == nil {
			t.Fatalf("refresh: %+v", nt)
		}
		if c, err := e.srv.Verifier().Verify(ctx, nt.AccessToken); err != nil || c.Patient != "p-1" || c.FHIRUser != claims.FHIRUser {
			t.Fatalf("refreshed claims %+v %v", c, err)
		}
		// The rotated token is no longer active.
		in = e.post(oauth.PathIntrospect, url.Values{"token": {old.RefreshToken}}, basic(rs.ClientID, rs.ClientSecret))
		if in.Raw != "{\"active\":false}\n" {
			t.Fatalf("rotated refresh token introspection: %s", in.Raw)
		}

		// g10's second refresh: scope = everything received last time, with
		// headers checked; then narrowing and widening.
		r := e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {nt.RefreshToken}, "client_id": {id},
			"scope": {nt.Extra("scope").(string)}}, nil)
		if r.Status != 200 || r.Body["scope"] != old.Extra("scope") || r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" {
			t.Fatalf("refresh with scope: %d %s %v", r.Status, r.Raw, r.Header)
		}
		if _, ok := r.Body["expires_in"].(float64); !ok {
			t.Fatalf("expires_in not a number: %s", r.Raw)
		}
		r = e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.Body["refresh_token"].(string)}, "client_id": {id},
			"scope": {"patient/Patient.rs offline_access"}}, nil)
		if r.Status != 200 || r.Body["scope"] != "patient/Patient.rs offline_access" {
			t.Fatalf("narrowing: %d %s", r.Status, r.Raw)
		}
		narrowed := r.Body["refresh_token"].(string)
		r = e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {narrowed}, "client_id": {id},
			"scope": {"patient/Patient.rs patient/Condition.rs"}}, nil)
		acWantError(t, "widening", r, 400, "invalid_scope")
		// Narrowing does not shrink the grant: the next refresh may ask for
		// everything originally granted.
		r = e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {narrowed}, "client_id": {id}}, nil)
		if r.Status != 200 || r.Body["scope"] != old.Extra("scope") {
			t.Fatalf("after narrowing: %d %s", r.Status, r.Raw)
		}
	})
}

func acJwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	_ = json.Unmarshal(b, &h)
	return h
}

// TestEHRLaunchTokenResponse checks the raw token response of an EHR
// launch with a confidential client (client_secret_basic, no client_id in
// the body, as Inferno sends it): headers, types, encounter context in
// SMART 2.2 fhirContext form, banner and style URL.
func TestEHRLaunchTokenResponse(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		c := acConfidentialClient(e)
		g := acGrant(c.ClientID)
		g.Scopes = []string{"launch", "openid", "fhirUser", "offline_access", "user/Patient.rs", "user/Encounter.rs"}
		g.FHIRUser, g.Encounter, g.NeedPatientBanner, g.SMARTStyleURL = "Practitioner/dr-1", "enc-9", false, "https://lapis.example/smart-style.json"
		r := e.post(oauth.PathToken, acExchangeForm(e.code(g)), basic(c.ClientID, c.ClientSecret))
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
		if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" || r.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("headers %v", r.Header)
		}
		for _, k := range []string{"access_token", "token_type", "scope", "refresh_token", "id_token", "patient", "encounter", "smart_style_url"} {
			if s, ok := r.Body[k].(string); !ok || s == "" {
				t.Fatalf("%s missing or not a string: %s", k, r.Raw)
			}
		}
		if r.Body["token_type"] != "Bearer" || r.Body["expires_in"] != float64(3600) || r.Body["need_patient_banner"] != false ||
			r.Body["scope"] != strings.Join(g.Scopes, " ") || r.Body["encounter"] != "enc-9" {
			t.Fatalf("body %s", r.Raw)
		}
		fc, _ := json.Marshal(r.Body["fhirContext"])
		if string(fc) != `[{"reference":"Encounter/enc-9"}]` {
			t.Fatalf("fhirContext %s", fc)
		}
		var idc map[string]any
		b, _ := base64.RawURLEncoding.DecodeString(strings.Split(r.Body["id_token"].(string), ".")[1])
		_ = json.Unmarshal(b, &idc)
		if idc["fhirUser"] != e.issuer+"/Practitioner/dr-1" || idc["aud"] != c.ClientID || idc["iss"] != e.issuer {
			t.Fatalf("id_token %v", idc)
		}
		// Refresh keeps the context; the confidential client must
		// re-authenticate.
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.Body["refresh_token"].(string)}}
		acWantError(t, "refresh without client auth", e.post(oauth.PathToken, form, nil), 401, "invalid_client")
		form.Set("client_id", c.ClientID)
		acWantError(t, "refresh with client_id only", e.post(oauth.PathToken, form, nil), 400, "invalid_client")
		form.Del("client_id")
		acWantError(t, "refresh with a wrong secret", e.post(oauth.PathToken, form, basic(c.ClientID, "wrong")), 401, "invalid_client")
		rr := e.post(oauth.PathToken, form, basic(c.ClientID, c.ClientSecret))
		fc, _ = json.Marshal(rr.Body["fhirContext"])
		if rr.Status != 200 || rr.Body["encounter"] != "enc-9" || rr.Body["patient"] != "p-1" || string(fc) != `[{"reference":"Encounter/enc-9"}]` {
			t.Fatalf("refresh: %d %s", rr.Status, rr.Raw)
		}
	})
}

// TestAsymmetricClientExchange exchanges a code with private_key_jwt.
func TestAsymmetricClientExchange(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		bk := newBackendKeys(t)
		c := e.register(oauth.Registration{Name: "asym", Type: authdb.Backend, JWKS: bk.public, RedirectURIs: []string{acRedirect},
			Scopes: []string{"launch/patient openid fhirUser offline_access patient/*.rs"}})
		assertion := func() url.Values {
			a := sign(t, bk.rsa, jose.RS384, "b41528b6f37a9500edb8a905a595bdd7",
				map[string]any{"iss": c.ClientID, "sub": c.ClientID, "aud": e.token, "exp": time.Now().Add(4 * time.Minute).Unix(), "jti": jti()}, nil)
			return url.Values{"client_assertion_type": {oauth.AssertionType}, "client_assertion": {a}}
		}
		form := acExchangeForm(e.code(acGrant(c.ClientID)))
		for k, v := range assertion() {
			form[k] = v
		}
		r := e.post(oauth.PathToken, form, nil)
		if r.Status != 200 || r.Body["id_token"] == nil || r.Body["refresh_token"] == nil {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
		// The same client without its assertion is refused.
		form = acExchangeForm(e.code(acGrant(c.ClientID)))
		form.Set("client_id", c.ClientID)
		acWantError(t, "asymmetric client without assertion", e.post(oauth.PathToken, form, nil), 400, "invalid_client")
		rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.Body["refresh_token"].(string)}}
		for k, v := range assertion() {
			rf[k] = v
		}
		if rr := e.post(oauth.PathToken, rf, nil); rr.Status != 200 {
			t.Fatalf("refresh: %d %s", rr.Status, rr.Raw)
		}
	})
}

// TestAuthorizationCodeNegatives covers the token-endpoint rejections of
// conformance.md §2.5 and the spec-only ones, with exact statuses.
func TestAuthorizationCodeNegatives(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		ctx := context.Background()
		pub := acPublicClient(e)
		conf := acConfidentialClient(e)
		other := acConfidentialClient(e)
		withPub := func(f url.Values) url.Values { f.Set("client_id", pub); return f }
		authConf := basic(conf.ClientID, conf.ClientSecret)

		// Invalid code (Inferno: 400 exactly).
		acWantError(t, "BAD_CODE", e.post(oauth.PathToken, acExchangeForm("BAD_CODE"), authConf), 400, "invalid_grant")
		acWantError(t, "no code", e.post(oauth.PathToken, url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {acRedirect}, "code_verifier": {acVerifier}}, authConf), 400, "invalid_request")

		// Invalid client id with a real secret, in Basic or the body.
		code := e.code(acGrant(conf.ClientID))
		acWantError(t, "BAD_CLIENT_ID basic", e.post(oauth.PathToken, acExchangeForm(code), basic("BAD_CLIENT_ID", conf.ClientSecret)), 401, "invalid_client")
		f := acExchangeForm(code)
		f.Set("client_id", "BAD_CLIENT_ID")
		acWantError(t, "BAD_CLIENT_ID body", e.post(oauth.PathToken, f, nil), 400, "invalid_client")
		acWantError(t, "wrong secret", e.post(oauth.PathToken, acExchangeForm(code), basic(conf.ClientID, "not-the-secret")), 401, "invalid_client")
		f = acExchangeForm(code)
		f.Set("client_id", conf.ClientID)
		f.Set("client_secret", "not-the-secret")
		acWantError(t, "wrong secret (post)", e.post(oauth.PathToken, f, nil), 400, "invalid_client")
		// Failed client authentication does not consume the code.
		if r := e.post(oauth.PathToken, acExchangeForm(code), authConf); r.Status != 200 {
			t.Fatalf("code after failed client auth: %d %s", r.Status, r.Raw)
		}

		// A public client sending a secret, and a confidential client
		// sending only its id.
		f = withPub(acExchangeForm(e.code(acGrant(pub))))
		f.Set("client_secret", "anything")
		acWantError(t, "public client with a secret", e.post(oauth.PathToken, f, nil), 400, "invalid_client")
		acWantError(t, "public client via Basic", e.post(oauth.PathToken, acExchangeForm(e.code(acGrant(pub))), basic(pub, "x")), 401, "invalid_client")
		f = acExchangeForm(e.code(acGrant(conf.ClientID)))
		f.Set("client_id", conf.ClientID)
		acWantError(t, "confidential client without a secret", e.post(oauth.PathToken, f, nil), 400, "invalid_client")

		// A code issued to another client (and its verifier).
		acWantError(t, "code of another client", e.post(oauth.PathToken, acExchangeForm(e.code(acGrant(conf.ClientID))), basic(other.ClientID, other.ClientSecret)), 400, "invalid_grant")
		acWantError(t, "public client presenting a confidential client's code", e.post(oauth.PathToken, withPub(acExchangeForm(e.code(acGrant(conf.ClientID)))), nil), 400, "invalid_grant")

		// redirect_uri mismatch, missing.
		f = withPub(acExchangeForm(e.code(acGrant(pub))))
		f.Set("redirect_uri", acRedirect+"/other")
		acWantError(t, "redirect_uri mismatch", e.post(oauth.PathToken, f, nil), 400, "invalid_grant")
		f = withPub(acExchangeForm(e.code(acGrant(pub))))
		f.Del("redirect_uri")
		acWantError(t, "redirect_uri missing", e.post(oauth.PathToken, f, nil), 400, "invalid_grant")

		// PKCE: missing, empty, wrong, the challenge itself (plain), and a
		// code whose failed attempt cannot be retried.
		challenge := oauth2.S256ChallengeFromVerifier(acVerifier)
		for name, v := range map[string]*string{"missing": nil, "empty": new(""), "wrong": new(strings.Repeat("a", 64)), "challenge as verifier": &challenge,
			"too short": new("abc"), "bad characters": new(strings.Repeat("é", 30))} {
			code := e.code(acGrant(pub))
			f := withPub(acExchangeForm(code))
			if v == nil {
				f.Del("code_verifier")
			} else {
				f.Set("code_verifier", *v)
			}
			acWantError(t, "PKCE "+name, e.post(oauth.PathToken, f, nil), 400, "invalid_grant")
			acWantError(t, "PKCE retry after "+name, e.post(oauth.PathToken, withPub(acExchangeForm(code)), nil), 400, "invalid_grant")
		}

		// Expired code: 60 s lifetime.
		code = e.code(acGrant(pub))
		e.advance(61 * time.Second)
		acWantError(t, "expired code", e.post(oauth.PathToken, withPub(acExchangeForm(code)), nil), 400, "invalid_grant")
		e.advance(-61 * time.Second)

		// Reused code: invalid_grant, and everything the first exchange
		// issued is revoked (access token, refresh family).
		code = e.code(acGrant(pub))
		first := e.post(oauth.PathToken, withPub(acExchangeForm(code)), nil)
		if first.Status != 200 {
			t.Fatalf("first use: %d %s", first.Status, first.Raw)
		}
		at, rt := first.Body["access_token"].(string), first.Body["refresh_token"].(string)
		if _, err := e.srv.Verifier().Verify(ctx, at); err != nil {
			t.Fatal(err)
		}
		acWantError(t, "reused code", e.post(oauth.PathToken, withPub(acExchangeForm(code)), nil), 400, "invalid_grant")
		if _, err := e.srv.Verifier().Verify(ctx, at); err == nil {
			t.Fatal("access token of a replayed code still valid")
		}
		acWantError(t, "refresh of a replayed code's family", e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pub}}, nil), 400, "invalid_grant")

		// Unsupported grant type.
		acWantError(t, "unknown grant", e.post(oauth.PathToken, url.Values{"grant_type": {"password"}, "client_id": {pub}}, nil), 400, "unsupported_grant_type")

		// Without offline_access/online_access: no refresh token; without
		// openid: no id_token.
		g := acGrant(pub)
		g.Scopes = []string{"launch/patient", "patient/Patient.rs"}
		r := e.post(oauth.PathToken, withPub(acExchangeForm(e.code(g))), nil)
		if r.Status != 200 || r.Body["refresh_token"] != nil || r.Body["id_token"] != nil || r.Body["scope"] != "launch/patient patient/Patient.rs" {
			t.Fatalf("minimal acGrant: %d %s", r.Status, r.Raw)
		}
	})
}

// TestCodeSingleUseConcurrent races eight exchanges of one code: at most
// one gets tokens (the store consumes a code once), and since the code was
// replayed, whatever was issued is revoked; if the replays won the race
// against the first exchange's bookkeeping, the first exchange fails too.
func TestCodeSingleUseConcurrent(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		pub := acPublicClient(e)
		code := e.code(acGrant(pub))
		var wg sync.WaitGroup
		var ok atomic.Int32
		var at atomic.Value
		for range 8 {
			wg.Go(func() {
				f := acExchangeForm(code)
				f.Set("client_id", pub)
				if r := e.post(oauth.PathToken, f, nil); r.Status == 200 {
					ok.Add(1)
					at.Store(r.Body["access_token"].(string))
				} else if r.Status != 400 || r.Body["error"] != "invalid_grant" {
					t.Errorf("%d %s", r.Status, r.Raw)
				}
			})
		}
		wg.Wait()
		if ok.Load() > 1 {
			t.Fatalf("%d exchanges succeeded", ok.Load())
		}
		if tok, _ := at.Load().(string); tok != "" {
			if _, err := e.srv.Verifier().Verify(context.Background(), tok); err == nil {
				t.Fatal("tokens of a replayed code survive")
			}
		}
	})
}

// TestRefreshRotation covers rotation, the grace window, reuse after it
// (the whole family revoked), invalid, foreign, expired and revoked
// refresh tokens, and online_access lifetimes.
func TestRefreshRotation(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		ctx := context.Background()
		pub := acPublicClient(e)
		conf := acConfidentialClient(e)
		refresh := func(tok string, mod func(*http.Request), extra ...string) result {
			f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}}
			if mod == nil {
				f.Set("client_id", pub)
			}
			for i := 0; i+1 < len(extra); i += 2 {
				f.Set(extra[i], extra[i+1])
			}
			return e.post(oauth.PathToken, f, mod)
		}

		// Invalid refresh tokens (Inferno: 400 or 401).
		acWantError(t, "random refresh token", refresh("3f1e8c2a-9b7d-4e6f-8a5c-1d2e3f4a5b6c", nil), 400, "invalid_grant")
		acWantError(t, "no refresh token", refresh("", nil), 400, "invalid_request")
		acWantError(t, "JWT as refresh token", refresh(e.exchange(acGrant(pub)).Body["access_token"].(string), nil), 400, "invalid_grant")

		r0 := e.exchange(acGrant(pub))
		rt0 := r0.Body["refresh_token"].(string)
		// Another client cannot use it, and does not burn it.
		acWantError(t, "foreign refresh token", refresh(rt0, basic(conf.ClientID, conf.ClientSecret)), 400, "invalid_grant")

		r1 := refresh(rt0, nil)
		if r1.Status != 200 {
			t.Fatalf("%d %s", r1.Status, r1.Raw)
		}
		rt1 := r1.Body["refresh_token"].(string)
		// Within the grace window the old token still works (a lost
		// response retried) and supersedes rt1.
		e.advance(10 * time.Second)
		r2 := refresh(rt0, nil)
		if r2.Status != 200 {
			t.Fatalf("grace retry: %d %s", r2.Status, r2.Raw)
		}
		rt2, at2 := r2.Body["refresh_token"].(string), r2.Body["access_token"].(string)
		// After the grace window, reusing rt0 revokes the whole family.
		e.advance(25 * time.Second)
		acWantError(t, "reuse after grace", refresh(rt0, nil), 400, "invalid_grant")
		acWantError(t, "family member after reuse", refresh(rt2, nil), 400, "invalid_grant")
		acWantError(t, "sibling after reuse", refresh(rt1, nil), 400, "invalid_grant")
		if _, err := e.srv.Verifier().Verify(ctx, at2); err == nil {
			t.Fatal("access token of a revoked family still valid")
		}
		if _, err := e.srv.Verifier().Verify(ctx, r0.Body["access_token"].(string)); err == nil {
			t.Fatal("first access token of a revoked family still valid")
		}

		// RFC 7009: revoking a refresh token revokes its family; another
		// client's attempt is answered 200 (nothing disclosed) and changes
		// nothing.
		r := e.exchange(acGrant(pub))
		rt, at := r.Body["refresh_token"].(string), r.Body["access_token"].(string)
		if rv := e.post(oauth.PathRevoke, url.Values{"token": {rt}}, basic(conf.ClientID, conf.ClientSecret)); rv.Status != 200 || strings.TrimSpace(rv.Raw) != "{}" {
			t.Fatalf("revoke a foreign refresh token: %d %s", rv.Status, rv.Raw)
		}
		if _, err := e.srv.Verifier().Verify(ctx, at); err != nil {
			t.Fatalf("a foreign revocation revoked the family: %v", err)
		}
		if rt2, _ := e.db.RefreshToken(ctx, sha256Sum(rt)); rt2 == nil {
			t.Fatal("a foreign revocation deleted the refresh token")
		}
		if rv := e.post(oauth.PathRevoke, url.Values{"token": {rt}, "client_id": {pub}}, nil); rv.Status != 200 {
			t.Fatalf("revoke: %d %s", rv.Status, rv.Raw)
		}
		acWantError(t, "revoked refresh token", refresh(rt, nil), 400, "invalid_grant")
		if _, err := e.srv.Verifier().Verify(ctx, at); err == nil {
			t.Fatal("access token survives revocation of its refresh token")
		}
		if rv := e.post(oauth.PathRevoke, url.Values{"token": {"unknown-opaque-token"}, "client_id": {pub}}, nil); rv.Status != 200 {
			t.Fatalf("revoke unknown: %d %s", rv.Status, rv.Raw)
		}

		// Offline tokens live 90 days, sliding.
		r = e.exchange(acGrant(pub))
		rt = r.Body["refresh_token"].(string)
		e.advance(89 * 24 * time.Hour)
		r = refresh(rt, nil)
		if r.Status != 200 {
			t.Fatalf("refresh at 89 days: %d %s", r.Status, r.Raw)
		}
		e.advance(89 * 24 * time.Hour)
		r = refresh(r.Body["refresh_token"].(string), nil)
		if r.Status != 200 {
			t.Fatalf("refresh at 178 days (sliding): %d %s", r.Status, r.Raw)
		}
		e.advance(91 * 24 * time.Hour)
		acWantError(t, "expired offline refresh token", refresh(r.Body["refresh_token"].(string), nil), 400, "invalid_grant")

		// online_access: 12 hours from the authorization, not extended.
		g := acGrant(pub)
		g.Scopes = []string{"launch/patient", "openid", "fhirUser", "online_access", "patient/Patient.rs"}
		r = e.exchange(g)
		e.advance(11 * time.Hour)
		r = refresh(r.Body["refresh_token"].(string), nil)
		if r.Status != 200 {
			t.Fatalf("online refresh: %d %s", r.Status, r.Raw)
		}
		e.advance(2 * time.Hour)
		acWantError(t, "expired online refresh token", refresh(r.Body["refresh_token"].(string), nil), 400, "invalid_grant")
	})
}

// TestRefreshGraceRetryOnce: inside the grace period a rotated refresh
// token may be retried once (a lost response); the next redemption is
// reuse and revokes the whole family, access tokens included, instead of
// minting another live branch (RFC 9700 §4.14.2).
func TestRefreshGraceRetryOnce(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		ctx := context.Background()
		pub := acPublicClient(e)
		r0 := e.exchange(acGrant(pub))
		refresh := func(tok string) result {
			return e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}, "client_id": {pub}}, nil)
		}
		rt0 := r0.Body["refresh_token"].(string)
		if r := refresh(rt0); r.Status != 200 {
			t.Fatalf("refresh: %d %s", r.Status, r.Raw)
		}
		e.advance(5 * time.Second)
		retry := refresh(rt0)
		if retry.Status != 200 {
			t.Fatalf("the one retry: %d %s", retry.Status, retry.Raw)
		}
		e.advance(5 * time.Second)
		acWantError(t, "second retry inside the grace period", refresh(rt0), 400, "invalid_grant")
		acWantError(t, "the retry's refresh token after the reuse", refresh(retry.Body["refresh_token"].(string)), 400, "invalid_grant")
		for _, at := range []string{r0.Body["access_token"].(string), retry.Body["access_token"].(string)} {
			if _, err := e.srv.Verifier().Verify(ctx, at); err == nil {
				t.Fatal("access token of a reused family still valid")
			}
		}
	})
}

// TestIssueCodeValidation refuses grants the token side could not honour.
func TestIssueCodeValidation(t *testing.T) {
	e := newCodeEnv(t, "sqlite")
	ctx := context.Background()
	for name, mod := range map[string]func(*oauth.Grant){
		"no challenge": func(g *oauth.Grant) { g.CodeChallenge = "" },
		"no redirect":  func(g *oauth.Grant) { g.RedirectURI = "" },
		"no subject":   func(g *oauth.Grant) { g.Subject = "" },
		"long subject": func(g *oauth.Grant) { g.Subject = strings.Repeat("s", 256) },
	} {
		g := acGrant("c")
		mod(g)
		if _, err := e.srv.IssueCode(ctx, g); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	code, err := e.srv.IssueCode(ctx, acGrant("c"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := base64.RawURLEncoding.DecodeString(code); len(b) != 32 {
		t.Fatalf("code is %d bytes", len(b))
	}
	// Only the hash is stored.
	h := sha256.Sum256([]byte(code))
	if _, err := e.db.ConsumeAuthCode(ctx, h[:], time.Now()); err != nil {
		t.Fatal(err)
	}
}

// sha256Sum is the stored form (hash) of a refresh token.
func sha256Sum(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}
