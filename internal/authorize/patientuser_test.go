package authorize_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
)

// TestConsentPatientUserScopes: a patient who goes through /authorize for
// a client registered with user/ scopes (public or confidential) is
// offered, granted and issued the patient/ scopes of their own record,
// never user/ ones, whatever the consent form sends; a practitioner keeps
// user/ scopes.
func TestConsentPatientUserScopes(t *testing.T) {
	authDialects(t, oauth.LoginPolicy{}, func(t *testing.T, e *authEnv) {
		e.account("pat", "patient password", "Patient/p1")
		e.account("doc", "practitioner pw", "Practitioner/dr1")
		reg := []string{"openid fhirUser offline_access user/*.rs user/Observation.rs"}
		pub := e.client(oauth.Registration{Name: "Portal", Type: authdb.Public, RedirectURIs: []string{appCB}, Scopes: reg})
		conf, err := oauth.RegisterClient(context.Background(), e.db, oauth.Registration{Name: "Portal (server)", Type: authdb.Confidential, RedirectURIs: []string{appCB}, Scopes: reg})
		if err != nil {
			t.Fatal(err)
		}
		lab := "Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

		// authorize logs user in (a fresh browser) and consents, ticking
		// ticked; it returns the consent page, the grant and the token
		// response.
		authorize := func(client, user, pw string, ticked ...string) (page, *oauth.Grant, map[string]any) {
			t.Helper()
			b := newBrowser(t)
			p := b.get(e.authorizeURL(e.authorizeParams(client, "openid fhirUser offline_access user/*.rs user/Observation.rs")))
			consent := e.login(b, p, user, pw)
			if consent.status != 200 || !strings.Contains(consent.body, `action="/fhir/auth/consent"`) {
				t.Fatalf("consent page: %d %s", consent.status, consent.body)
			}
			form := url.Values{"csrf": {consent.field("csrf")}, "req": {consent.field("req")}, "decision": {"approve"}, "scope": ticked}
			p = b.post(e.issuer+oauth.PathConsent, form)
			code := p.location(t).Query().Get("code")
			if code == "" {
				t.Fatalf("no code: %s", p.hdr.Get("Location"))
			}
			tf := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCB}, "code_verifier": {pkceVerifier}}
			var mod []func(*http.Request)
			if client == conf.ClientID {
				mod = append(mod, func(r *http.Request) { r.SetBasicAuth(conf.ClientID, conf.ClientSecret) })
			} else {
				tf.Set("client_id", client)
			}
			tr := b.post(e.issuer+oauth.PathToken, tf, mod...)
			var tok map[string]any
			if tr.status != 200 || json.Unmarshal([]byte(tr.body), &tok) != nil {
				t.Fatalf("token: %d %s", tr.status, tr.body)
			}
			return consent, e.lastGrant(), tok
		}

		for _, client := range []string{pub, conf.ClientID} {
			// The patient: user/ scopes are offered as the patient's own.
			consent, g, tok := authorize(client, "pat", "patient password",
				"user/*.rs", "patient/*.rs", "user/"+lab, "patient/"+lab, "offline_access")
			if strings.Contains(consent.body, `value="user/`) {
				t.Errorf("consent offers a patient user/ scopes")
			}
			for _, want := range []string{`value="patient/*.rs"`, `value="patient/` + lab + `"`} {
				if !strings.Contains(consent.body, want) {
					t.Errorf("consent page lacks %s", want)
				}
			}
			if w := authtest.WideScopes(g.Scopes); w != nil || !slices.Contains(g.Scopes, "patient/*.rs") || g.Patient != "p1" {
				t.Fatalf("patient grant: scopes %q patient %q", g.Scopes, g.Patient)
			}
			scopes := strings.Fields(tok["scope"].(string))
			if w := authtest.WideScopes(scopes); w != nil || !slices.Contains(scopes, "patient/*.rs") || !slices.Contains(scopes, "patient/"+lab) || tok["patient"] != "p1" {
				t.Fatalf("patient token: scope %q patient %v", scopes, tok["patient"])
			}
			claims, err := e.srv.Verifier().Verify(context.Background(), tok["access_token"].(string))
			if err != nil || authtest.WideScopes(claims.Scopes()) != nil || claims.Patient != "p1" {
				t.Fatalf("access token claims %+v %v", claims, err)
			}

			// A refresh cannot bring user/ back.
			rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "scope": {"user/*.rs"}}
			var mod []func(*http.Request)
			if client == conf.ClientID {
				mod = append(mod, basic(conf.ClientID, conf.ClientSecret))
			} else {
				rf.Set("client_id", client)
			}
			r := newBrowser(t).post(e.issuer+oauth.PathToken, rf, mod...)
			if r.status != 400 || !strings.Contains(r.body, `"invalid_scope"`) {
				t.Fatalf("refresh widening to user/: %d %s", r.status, r.body)
			}

			// The practitioner keeps user/ scopes.
			consent, g, tok = authorize(client, "doc", "practitioner pw", "user/*.rs")
			if !strings.Contains(consent.body, `value="user/*.rs"`) || !slices.Contains(g.Scopes, "user/*.rs") ||
				!slices.Contains(strings.Fields(tok["scope"].(string)), "user/*.rs") || g.Patient != "" {
				t.Fatalf("practitioner: scopes %q patient %q token %v", g.Scopes, g.Patient, tok["scope"])
			}
		}
	})
}

// basic sets HTTP Basic client authentication (RFC 6749 §2.3.1: id and
// secret form-urlencoded, then base64).
func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	}
}
