package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// Tests of what real third-party clients (openid-client, fhirclient,
// x/oauth2, go-oidc) send by default.

const labScope = "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

// TestClientCredentialsNarrowerScope: a client_credentials request may ask
// for any subset of the registration (RFC 6749 §3.3) — a wildcard narrowed
// to a type, fewer permissions, the v1 form, a granular restriction — and
// is granted exactly that; only what exceeds the registration is refused,
// with a description naming the scope. Secret (x/oauth2 clientcredentials)
// and private_key_jwt alike.
func TestClientCredentialsNarrowerScope(t *testing.T) {
	bk := newBackendKeys(t)
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		conf := e.register(oauth.Registration{Name: "svc", Type: authdb.Confidential, Scopes: []string{"system/*.rs system/lapis.introspect"}})
		cc := func(scopes ...string) (*oauth2.Token, error) {
			return (&clientcredentials.Config{ClientID: conf.ClientID, ClientSecret: conf.ClientSecret, TokenURL: e.token, Scopes: scopes}).Token(ctx)
		}
		for _, want := range [][]string{
			{"system/Patient.rs"},
			{"system/Patient.r"},
			{"system/Patient.s"},
			{"system/Patient.read"},
			{"system/*.r"},
			{"system/*.rs"},
			{labScope},
			{"system/Patient.rs", "system/Observation.s", "system/lapis.introspect"},
		} {
			tok, err := cc(want...)
			if err != nil {
				t.Fatalf("%q: %v", want, err)
			}
			if tok.Extra("scope") != strings.Join(want, " ") {
				t.Fatalf("%q: granted %q", want, tok.Extra("scope"))
			}
			claims, err := e.srv.Verifier().Verify(ctx, tok.AccessToken)
			if err != nil || claims.Scope != strings.Join(want, " ") {
				t.Fatalf("%q: claims %+v %v", want, claims, err)
			}
		}
		// A repeated scope is granted once.
		if tok, err := cc("system/Patient.r", "system/Patient.r"); err != nil || tok.Extra("scope") != "system/Patient.r" {
			t.Fatalf("repeated scope: %v %v", tok, err)
		}
		for _, bad := range []string{
			"system/Patient.cruds", "system/Patient.c", "system/Patient.write", "system/*.*", "system/lapis.admin",
			"patient/Patient.rs", "user/*.rs", "openid",
			"system/Patient.sr",            // letters out of order
			"system/Patient.read?gender=x", // granular on v1
			"system/patient.rs",
		} {
			_, err := cc("system/Patient.rs", bad)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != 400 || re.ErrorCode != "invalid_scope" || !strings.Contains(re.ErrorDescription, "scope "+bad+" ") {
				t.Errorf("%s: %v", bad, err)
			}
		}
		// The description shows only RFC 6749 §5.2 characters.
		r := e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {`system/"Pat\ient".rs`}}, basic(conf.ClientID, conf.ClientSecret))
		if d, _ := r.Body["error_description"].(string); r.Status != 400 || !strings.Contains(d, "system/?Pat?ient?.rs") {
			t.Errorf("quoted scope: %d %s", r.Status, r.Raw)
		}

		// A granular registration allows only itself (or fewer permissions).
		gran := e.register(oauth.Registration{Name: "labs", Type: authdb.Confidential, Scopes: []string{labScope}})
		gcc := func(scope string) (*oauth2.Token, error) {
			return (&clientcredentials.Config{ClientID: gran.ClientID, ClientSecret: gran.ClientSecret, TokenURL: e.token, Scopes: []string{scope}}).Token(ctx)
		}
		if _, err := gcc(strings.Replace(labScope, ".rs?", ".r?", 1)); err != nil {
			t.Fatalf("granular narrowed: %v", err)
		}
		for _, bad := range []string{"system/Observation.rs", "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"} {
			if _, err := gcc(bad); err == nil {
				t.Errorf("%s granted to a granular registration", bad)
			}
		}

		// Backend Services (private_key_jwt), registered with v1 system/*.read.
		be := e.register(oauth.Registration{Name: "bulk", Type: authdb.Backend, JWKS: bk.public, Scopes: []string{"system/*.read"}})
		backend := func(scope string) result {
			a := sign(t, bk.ec, jose.ES384, "4b49a739d1eb115b3225f4cf9beb6d1b",
				map[string]any{"iss": be.ClientID, "sub": be.ClientID, "aud": e.token, "exp": time.Now().Add(time.Minute).Unix(), "jti": jti()}, nil)
			return e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
				"client_assertion_type": {oauth.AssertionType}, "client_assertion": {a}}, nil)
		}
		for _, sc := range []string{"system/Patient.rs", "system/Patient.r", "system/Patient.read", "system/*.s", labScope} {
			if r := backend(sc); r.Status != 200 || r.Body["scope"] != sc {
				t.Errorf("backend %s: %d %s", sc, r.Status, r.Raw)
			}
		}
		if r := backend("system/Patient.cud"); r.Status != 400 || r.Body["error"] != "invalid_scope" || !strings.Contains(r.Body["error_description"].(string), "system/Patient.cud") {
			t.Errorf("backend beyond registration: %d %s", r.Status, r.Raw)
		}
	})
}

// TestAssertionAudience: a client assertion's aud may be the token
// endpoint URL (SMART) or the issuer identifier (RFC 7523bis; openid-client
// sends it), as a string or in an array; anything else is refused, and
// every refusal says which claim failed without showing a key.
func TestAssertionAudience(t *testing.T) {
	bk := newBackendKeys(t)
	dialects(t, func(t *testing.T, e *env) {
		be := e.register(oauth.Registration{Name: "bulk", Type: authdb.Backend, JWKS: bk.public, Scopes: []string{"system/*.rs"}})
		claims := func(k string, v any) map[string]any {
			c := map[string]any{"iss": be.ClientID, "sub": be.ClientID, "aud": e.token, "exp": time.Now().Add(time.Minute).Unix(), "jti": jti()}
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
			return c
		}
		post := func(assertion string) result {
			return e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"},
				"client_assertion_type": {oauth.AssertionType}, "client_assertion": {assertion}}, nil)
		}
		rs := func(c map[string]any) string {
			return sign(t, bk.rsa, jose.RS384, "b41528b6f37a9500edb8a905a595bdd7", c, nil)
		}
		for name, aud := range map[string]any{
			"token URL":            e.token,
			"issuer":               e.issuer,
			"array with issuer":    []string{"https://elsewhere.example", e.issuer},
			"array with token URL": []string{e.token},
		} {
			if r := post(rs(claims("aud", aud))); r.Status != 200 || r.Body["access_token"] == nil {
				t.Errorf("aud %s: %d %s", name, r.Status, r.Raw)
			}
		}
		replayed := rs(claims("aud", e.issuer))
		post(replayed)
		other := newBackendKeys(t)
		for _, c := range []struct {
			name, assertion, desc string
		}{
			{"aud elsewhere", rs(claims("aud", "https://elsewhere.example/token")), "aud"},
			{"aud issuer with a slash", rs(claims("aud", e.issuer+"/")), "aud"},
			{"aud array without us", rs(claims("aud", []string{"https://a.example", e.issuer + "/auth"})), "aud"},
			{"aud missing", rs(claims("aud", nil)), "aud"},
			{"expired", rs(claims("exp", time.Now().Add(-time.Minute).Unix())), "exp"},
			{"exp too far", rs(claims("exp", time.Now().Add(time.Hour).Unix())), "exp"},
			{"no jti", rs(claims("jti", nil)), "jti"},
			{"replayed", replayed, "jti"},
			{"iss != sub", rs(claims("sub", "someone")), "sub"},
			{"unknown kid", sign(t, bk.rsa, jose.RS384, "nope", claims("", nil), nil), "kid"},
			{"wrong key", sign(t, other.rsa, jose.RS384, "b41528b6f37a9500edb8a905a595bdd7", claims("", nil), nil), "signature"},
			{"HS256", "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo", "RS384"},
		} {
			r := post(c.assertion)
			d, _ := r.Body["error_description"].(string)
			if r.Status != 400 || r.Body["error"] != "invalid_client" || !strings.HasPrefix(d, "client assertion: ") || !strings.Contains(d, c.desc) {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Raw)
			}
			if strings.Contains(r.Raw, "b41528b6f37a9500edb8a905a595bdd7") || strings.Contains(r.Raw, `"n"`) || strings.Contains(r.Raw, "BEGIN") {
				t.Errorf("%s: key material in %s", c.name, r.Raw)
			}
		}
	})
}

// TestPublicRefreshWithoutClientID: fhirclient's client.refresh() sends
// only grant_type and refresh_token. A public client is identified by its
// refresh token (RFC 6749 §6); rotation, the one grace retry and reuse
// detection work as with client_id; a client_id that is sent must match;
// a confidential client still has to authenticate.
func TestPublicRefreshWithoutClientID(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		ctx := context.Background()
		pub := acPublicClient(e)
		otherPub := acPublicClient(e)
		conf := acConfidentialClient(e)
		issue := func(clientID string, auth func(*http.Request)) result {
			f := acExchangeForm(e.code(acGrant(clientID)))
			if auth == nil {
				f.Set("client_id", clientID)
			}
			r := e.post(oauth.PathToken, f, auth)
			if r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
			return r
		}
		bare := func(rt string) result {
			return e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, nil)
		}

		// x/oauth2 without a client id sends what fhirclient sends.
		r0 := issue(pub, nil)
		rt0 := r0.Body["refresh_token"].(string)
		cfg := &oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: e.token, AuthStyle: oauth2.AuthStyleInParams}}
		nt, err := cfg.TokenSource(ctx, &oauth2.Token{AccessToken: "expired", RefreshToken: rt0, Expiry: time.Now().Add(-time.Minute)}).Token()
		if err != nil {
			t.Fatalf("refresh without client_id: %v", err)
		}
		if nt.RefreshToken == "" || nt.RefreshToken == rt0 || nt.Extra("patient") != "p-1" {
			t.Fatalf("refreshed: %+v", nt)
		}
		if c, err := e.srv.Verifier().Verify(ctx, nt.AccessToken); err != nil || c.ClientID != pub {
			t.Fatalf("refreshed access token: %+v %v", c, err)
		}
		// The one retry of rt0 within the grace period, still without
		// client_id; a second one is reuse: the family is revoked.
		e.advance(5 * time.Second)
		retry := bare(rt0)
		if retry.Status != 200 {
			t.Fatalf("grace retry: %d %s", retry.Status, retry.Raw)
		}
		acWantError(t, "second retry without client_id", bare(rt0), 400, "invalid_grant")
		acWantError(t, "family after reuse", bare(retry.Body["refresh_token"].(string)), 400, "invalid_grant")
		for _, at := range []string{r0.Body["access_token"].(string), nt.AccessToken, retry.Body["access_token"].(string)} {
			if _, err := e.srv.Verifier().Verify(ctx, at); err == nil {
				t.Fatal("access token of a reused family still valid")
			}
		}

		// Reuse after the grace period, presented without client_id,
		// revokes the family too.
		r1 := issue(pub, nil)
		rt1 := r1.Body["refresh_token"].(string)
		next := bare(rt1)
		if next.Status != 200 {
			t.Fatalf("%d %s", next.Status, next.Raw)
		}
		e.advance(time.Minute)
		acWantError(t, "reuse after grace without client_id", bare(rt1), 400, "invalid_grant")
		acWantError(t, "successor after reuse", bare(next.Body["refresh_token"].(string)), 400, "invalid_grant")
		if _, err := e.srv.Verifier().Verify(ctx, next.Body["access_token"].(string)); err == nil {
			t.Fatal("successor's access token survives reuse")
		}

		// A client_id that is sent must be the token's; the refusal does
		// not burn the token.
		rt2 := issue(pub, nil).Body["refresh_token"].(string)
		acWantError(t, "another public client's id", e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "client_id": {otherPub}}, nil), 400, "invalid_grant")
		if r := bare(rt2); r.Status != 200 {
			t.Fatalf("token after a mismatched client_id: %d %s", r.Status, r.Raw)
		}

		// Unknown, missing: invalid_grant, invalid_request.
		acWantError(t, "unknown token", bare("3f1e8c2a-9b7d-4e6f-8a5c-1d2e3f4a5b6c"), 400, "invalid_grant")
		acWantError(t, "no token", e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}}, nil), 400, "invalid_request")

		// A confidential client's token needs its credentials.
		crt := issue(conf.ClientID, basic(conf.ClientID, conf.ClientSecret)).Body["refresh_token"].(string)
		r := bare(crt)
		acWantError(t, "confidential client without credentials", r, 401, "invalid_client")
		if r.Header.Get("WWW-Authenticate") == "" {
			t.Error("no WWW-Authenticate")
		}
		if r := e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {crt}}, basic(conf.ClientID, conf.ClientSecret)); r.Status != 200 {
			t.Fatalf("confidential refresh: %d %s", r.Status, r.Raw)
		}
	})
}

// switchNetwork is a ClientNetwork that allows everything until denied.
type switchNetwork struct{ deny atomic.Bool }

func (n *switchNetwork) AllowsAddress(context.Context, string, netip.Addr) (bool, error) {
	return !n.deny.Load(), nil
}

// TestUserInfo drives the UserInfo endpoint with go-oidc (discovery, then
// Provider.UserInfo) and by hand: sub and fhirUser as in the id_token,
// RFC 6750 errors, revoked and expired tokens, tokens without openid,
// CORS, and the client's network allow-list.
func TestUserInfo(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			nw := &switchNetwork{}
			e := newCodeEnv(t, d, func(s *oauth.Server) { s.SetClientNetwork(nw) })
			pub := acPublicClient(e)
			g := acGrant(pub)
			tr := e.exchange(g)
			at := tr.Body["access_token"].(string)

			provider, err := oidc.NewProvider(ctx, e.issuer)
			if err != nil {
				t.Fatal(err)
			}
			if provider.UserInfoEndpoint() != e.issuer+oauth.PathUserInfo {
				t.Fatalf("userinfo_endpoint %q", provider.UserInfoEndpoint())
			}
			smart := e.do(mustRequest(t, "GET", e.issuer+oauth.PathSMARTConfiguration, ""))
			if smart.Body["userinfo_endpoint"] != e.issuer+oauth.PathUserInfo {
				t.Fatalf("smart-configuration userinfo_endpoint %v", smart.Body["userinfo_endpoint"])
			}
			ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at, TokenType: "Bearer"}))
			if err != nil {
				t.Fatal(err)
			}
			var uc struct {
				FHIRUser string `json:"fhirUser"`
			}
			if err := ui.Claims(&uc); err != nil {
				t.Fatal(err)
			}
			idt, err := provider.Verifier(&oidc.Config{ClientID: pub}).Verify(ctx, tr.Body["id_token"].(string))
			if err != nil {
				t.Fatal(err)
			}
			var ic struct {
				FHIRUser string `json:"fhirUser"`
			}
			_ = idt.Claims(&ic)
			if ui.Subject != g.Subject || ui.Subject != idt.Subject || uc.FHIRUser != e.issuer+"/Patient/p-1" || uc.FHIRUser != ic.FHIRUser {
				t.Fatalf("userinfo sub %q fhirUser %q; id_token sub %q fhirUser %q", ui.Subject, uc.FHIRUser, idt.Subject, ic.FHIRUser)
			}

			call := func(method, body string, mods ...func(*http.Request)) result {
				t.Helper()
				req := mustRequest(t, method, e.issuer+oauth.PathUserInfo, body)
				req.Header.Set("Origin", "https://app.example")
				for _, m := range mods {
					m(req)
				}
				return e.do(req)
			}
			bearer := func(tok string) func(*http.Request) {
				return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
			}
			r := call("POST", "", bearer(at))
			if r.Status != 200 || r.Body["sub"] != g.Subject || r.Header.Get("Access-Control-Allow-Origin") != "*" || r.Header.Get("Cache-Control") != "no-store" ||
				!strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
				t.Fatalf("POST: %d %s %v", r.Status, r.Raw, r.Header)
			}
			if r := call("POST", "access_token="+url.QueryEscape(at)); r.Status != 200 || r.Body["sub"] != g.Subject {
				t.Fatalf("form body token: %d %s", r.Status, r.Raw)
			}
			pre := call("OPTIONS", "", func(r *http.Request) { r.Header.Set("Access-Control-Request-Method", "GET") })
			if pre.Status != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Fatalf("preflight: %d %v", pre.Status, pre.Header)
			}

			// RFC 6750 errors.
			challenge := func(what string, r result, status int, code string) {
				t.Helper()
				ch := r.Header.Get("WWW-Authenticate")
				if r.Status != status || !strings.HasPrefix(ch, "Bearer ") || (code != "" && !strings.Contains(ch, `error="`+code+`"`)) ||
					(code == "" && strings.Contains(ch, "error=")) {
					t.Fatalf("%s: %d %s, WWW-Authenticate %q", what, r.Status, r.Raw, ch)
				}
			}
			challenge("no token", call("GET", ""), 401, "")
			challenge("Basic credentials", call("GET", "", func(r *http.Request) { r.SetBasicAuth("a", "b") }), 401, "")
			challenge("garbage token", call("GET", "", bearer("not-a-token")), 401, "invalid_token")
			challenge("two tokens", call("POST", "access_token="+url.QueryEscape(at), bearer(at)), 400, "invalid_request")
			if r := call("PUT", "", bearer(at)); r.Status != 405 {
				t.Fatalf("PUT: %d", r.Status)
			}
			// A token without openid (client_credentials, or a user grant
			// without it): 403 insufficient_scope.
			svc := e.register(oauth.Registration{Name: "svc", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
			sys, err := (&clientcredentials.Config{ClientID: svc.ClientID, ClientSecret: svc.ClientSecret, TokenURL: e.token}).Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r = call("GET", "", bearer(sys.AccessToken))
			challenge("client_credentials token", r, 403, "insufficient_scope")
			if !strings.Contains(r.Header.Get("WWW-Authenticate"), `scope="openid"`) {
				t.Fatalf("no scope in challenge: %q", r.Header.Get("WWW-Authenticate"))
			}
			ng := acGrant(pub)
			ng.Scopes = []string{"launch/patient", "patient/Patient.rs"}
			challenge("no openid", call("GET", "", bearer(e.exchange(ng).Body["access_token"].(string))), 403, "insufficient_scope")
			// Without fhirUser: sub only.
			og := acGrant(pub)
			og.Scopes = []string{"launch/patient", "openid", "patient/Patient.rs"}
			if r := call("GET", "", bearer(e.exchange(og).Body["access_token"].(string))); r.Status != 200 || r.Body["sub"] != og.Subject || r.Body["fhirUser"] != nil {
				t.Fatalf("openid without fhirUser: %d %s", r.Status, r.Raw)
			}

			// The client's network allow-list holds here too.
			nw.deny.Store(true)
			if r := call("GET", "", bearer(at)); r.Status != 403 || r.Body["error"] != "access_denied" {
				t.Fatalf("outside the allow-list: %d %s", r.Status, r.Raw)
			}
			nw.deny.Store(false)

			// Revoked: refused at once.
			if rv := e.post(oauth.PathRevoke, url.Values{"token": {at}, "client_id": {pub}}, nil); rv.Status != 200 {
				t.Fatalf("revoke: %d %s", rv.Status, rv.Raw)
			}
			challenge("revoked token", call("GET", "", bearer(at)), 401, "invalid_token")
			// Expired: refused.
			at2 := e.exchange(acGrant(pub)).Body["access_token"].(string)
			if r := call("GET", "", bearer(at2)); r.Status != 200 {
				t.Fatalf("fresh token: %d %s", r.Status, r.Raw)
			}
			e.advance(61 * time.Minute)
			challenge("expired token", call("GET", "", bearer(at2)), 401, "invalid_token")
		})
	}
}

func mustRequest(t *testing.T, method, u, form string) *http.Request {
	t.Helper()
	var req *http.Request
	var err error
	if form != "" {
		req, err = http.NewRequest(method, u, strings.NewReader(form))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequest(method, u, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	return req
}

// recordPatients is fakePatients that also answers RecordExists, as
// app.Patients does in lapis serve.
