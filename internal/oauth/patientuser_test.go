package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// wideScopes returns the user/ and system/ scopes among scopes.
func wideScopes(scopes []string) []string {
	var out []string
	for _, s := range scopes {
		if strings.HasPrefix(s, "user/") || strings.HasPrefix(s, "system/") {
			out = append(out, s)
		}
	}
	return out
}

// TestConsentPatientUserScopes: a patient who goes through /authorize for
// a client registered with user/ scopes (public or confidential) is
// offered, granted and issued the patient/ scopes of their own record,
// never user/ ones, whatever the consent form sends; a practitioner keeps
// user/ scopes.
func TestConsentPatientUserScopes(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			e := newAuthEnv(t, d, oauth.LoginPolicy{})
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
				if w := wideScopes(g.Scopes); w != nil || !slices.Contains(g.Scopes, "patient/*.rs") || g.Patient != "p1" {
					t.Fatalf("patient grant: scopes %q patient %q", g.Scopes, g.Patient)
				}
				scopes := strings.Fields(tok["scope"].(string))
				if w := wideScopes(scopes); w != nil || !slices.Contains(scopes, "patient/*.rs") || !slices.Contains(scopes, "patient/"+lab) || tok["patient"] != "p1" {
					t.Fatalf("patient token: scope %q patient %v", scopes, tok["patient"])
				}
				claims, err := e.srv.Verifier().Verify(context.Background(), tok["access_token"].(string))
				if err != nil || wideScopes(claims.Scopes()) != nil || claims.Patient != "p1" {
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
}

// TestTokenPatientUserBound: the token endpoint bounds every token by its
// user, whatever the stored grant or refresh token says (one mis-issued
// before the bound, say): a patient user's user/ and system/ scopes become
// patient/ ones on their own record, through the authorization code and
// through refresh; a grant with another patient in context is refused.
func TestTokenPatientUserBound(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		ctx := context.Background()
		pub := e.register(oauth.Registration{Name: "Portal", Type: authdb.Public, RedirectURIs: []string{acRedirect},
			Scopes: []string{"openid fhirUser offline_access user/*.rs"}}).ClientID
		exchange := func(g *oauth.Grant) result {
			f := acExchangeForm(e.code(g))
			f.Set("client_id", pub)
			return e.post(oauth.PathToken, f, nil)
		}
		refresh := func(rt string, scope string) result {
			f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pub}}
			if scope != "" {
				f.Set("scope", scope)
			}
			return e.post(oauth.PathToken, f, nil)
		}
		check := func(what string, r result, want []string) {
			t.Helper()
			if r.status != 200 {
				t.Fatalf("%s: %d %s", what, r.status, r.raw)
			}
			got := strings.Fields(r.body["scope"].(string))
			if !sameSet(got, want) || r.body["patient"] != "p-1" {
				t.Fatalf("%s: scope %q patient %v, want %q p-1", what, got, r.body["patient"], want)
			}
			c, err := e.srv.Verifier().Verify(ctx, r.body["access_token"].(string))
			if err != nil || !sameSet(c.Scopes(), want) || c.Patient != "p-1" {
				t.Fatalf("%s: claims %+v %v", what, c, err)
			}
		}

		// A grant carrying user/ and system/ scopes, without a patient.
		g := acGrant(pub)
		g.Scopes = []string{"openid", "fhirUser", "offline_access", "user/*.rs", "user/Observation.rs", "system/*.rs", "system/lapis.admin"}
		g.Patient = ""
		want := []string{"openid", "fhirUser", "offline_access", "patient/*.rs", "patient/Observation.rs"}
		r := exchange(g)
		check("code exchange", r, want)
		r = refresh(r.body["refresh_token"].(string), "")
		check("refresh", r, want)
		acWantError(t, "refresh asking user/", refresh(r.body["refresh_token"].(string), "user/*.rs"), 400, "invalid_scope")
		check("refresh narrowing", refresh(r.body["refresh_token"].(string), "patient/Observation.rs offline_access"), []string{"patient/Observation.rs", "offline_access"})

		// Another patient in context than the user: refused.
		g = acGrant(pub)
		g.Patient = "p-2"
		acWantError(t, "patient mismatch", exchange(g), 400, "invalid_grant")

		// A user who is neither a patient nor staff gets no user/ scope.
		g = acGrant(pub)
		g.FHIRUser, g.Patient, g.Scopes = "RelatedPerson/rp-1", "", []string{"openid", "offline_access", "user/*.rs"}
		if r := exchange(g); r.status != 200 || r.body["scope"] != "openid offline_access" {
			t.Fatalf("related person: %d %s", r.status, r.raw)
		}

		// A refresh token stored before the bound, carrying user/*.rs for
		// a patient: refreshing narrows it, and it stays narrowed.
		tok := "legacy-refresh-token-0123456789abcdef0123456789"
		h := sha256.Sum256([]byte(tok))
		now := time.Now()
		if err := e.db.StartFamily(ctx, &authdb.Family{ID: "legacy-family", ClientID: pub, Subject: "user-7f3a", CreatedAt: now}, "legacy-jti", now.Add(time.Hour),
			&authdb.RefreshToken{Hash: h[:], ClientID: pub, Subject: "user-7f3a", Scope: "openid fhirUser offline_access user/*.rs",
				Session: []byte(`{"fhirUser":"Patient/p-1","patient":"p-1"}`), IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		acWantError(t, "legacy refresh asking user/", refresh(tok, "user/*.rs"), 400, "invalid_scope")
		r = refresh(tok, "")
		check("legacy refresh", r, []string{"openid", "fhirUser", "offline_access", "patient/*.rs"})
		check("legacy refresh, again", refresh(r.body["refresh_token"].(string), ""), []string{"openid", "fhirUser", "offline_access", "patient/*.rs"})
	})
}
