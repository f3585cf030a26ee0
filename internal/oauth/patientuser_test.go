package oauth_test

import (
	"context"
	"crypto/sha256"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

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
			if r.Status != 200 {
				t.Fatalf("%s: %d %s", what, r.Status, r.Raw)
			}
			got := strings.Fields(r.Body["scope"].(string))
			if !sameSet(got, want) || r.Body["patient"] != "p-1" {
				t.Fatalf("%s: scope %q patient %v, want %q p-1", what, got, r.Body["patient"], want)
			}
			c, err := e.srv.Verifier().Verify(ctx, r.Body["access_token"].(string))
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
		r = refresh(r.Body["refresh_token"].(string), "")
		check("refresh", r, want)
		acWantError(t, "refresh asking user/", refresh(r.Body["refresh_token"].(string), "user/*.rs"), 400, "invalid_scope")
		check("refresh narrowing", refresh(r.Body["refresh_token"].(string), "patient/Observation.rs offline_access"), []string{"patient/Observation.rs", "offline_access"})

		// Another patient in context than the user: refused.
		g = acGrant(pub)
		g.Patient = "p-2"
		acWantError(t, "patient mismatch", exchange(g), 400, "invalid_grant")

		// A user who is neither a patient nor staff gets no user/ scope.
		g = acGrant(pub)
		g.FHIRUser, g.Patient, g.Scopes = "RelatedPerson/rp-1", "", []string{"openid", "offline_access", "user/*.rs"}
		if r := exchange(g); r.Status != 200 || r.Body["scope"] != "openid offline_access" {
			t.Fatalf("related person: %d %s", r.Status, r.Raw)
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
		check("legacy refresh, again", refresh(r.Body["refresh_token"].(string), ""), []string{"openid", "fhirUser", "offline_access", "patient/*.rs"})
	})
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
