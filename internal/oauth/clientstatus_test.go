package oauth_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
	"github.com/lapis-health/lapis/internal/testutil/oauthtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// adminOn is the admin service on the env's database, acting as a
// command, with the env's clock.
func adminOn(e *codeEnv) (*admin.Service, context.Context) {
	s := admin.New(admin.Config{Store: e.db, Logger: slog.New(slog.DiscardHandler), Now: e.srv.Now})
	return s, admin.WithActor(context.Background(), admin.CommandActor())
}

func clientCredentials(e *codeEnv, id, secret string) result {
	e.t.Helper()
	return e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}}, basic(id, secret))
}

// TestClientSecretRotationOverlap: after a rotation both secrets work
// until the overlap ends, then only the new one; a rotation with no
// overlap retires the old secret at once; only confidential clients
// rotate.
func TestClientSecretRotationOverlap(t *testing.T) {
	codeDialects(t, func(t *testing.T, e *codeEnv) {
		s, ctx := adminOn(e)
		reg, err := s.CreateClient(ctx, api.ClientRequest{Name: "svc", Type: "confidential", Scopes: []string{"system/*.rs"}})
		if err != nil {
			t.Fatal(err)
		}
		if r := clientCredentials(e, reg.ClientID, reg.ClientSecret); r.Status != 200 {
			t.Fatalf("first secret: %d %s", r.Status, r.Raw)
		}
		rot, err := s.RotateClientSecret(ctx, reg.ClientID, time.Hour)
		if err != nil || rot.ClientSecret == "" || rot.ClientSecret == reg.ClientSecret {
			t.Fatalf("rotate: %+v %v", rot, err)
		}
		for name, secret := range map[string]string{"old": reg.ClientSecret, "new": rot.ClientSecret} {
			if r := clientCredentials(e, reg.ClientID, secret); r.Status != 200 {
				t.Fatalf("%s secret during the overlap: %d %s", name, r.Status, r.Raw)
			}
		}
		// client_secret_post too.
		if r := e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "client_id": {reg.ClientID}, "client_secret": {reg.ClientSecret}}, nil); r.Status != 200 {
			t.Fatalf("old secret (post) during the overlap: %d %s", r.Status, r.Raw)
		}
		if c, _ := s.OAuthClient(ctx, reg.ClientID); c.PrevSecretUntil.IsZero() {
			t.Fatal("the client does not show the overlap")
		}
		e.advance(time.Hour + time.Second)
		acWantError(t, "old secret after the overlap", clientCredentials(e, reg.ClientID, reg.ClientSecret), 401, "invalid_client")
		if r := clientCredentials(e, reg.ClientID, rot.ClientSecret); r.Status != 200 {
			t.Fatalf("new secret after the overlap: %d %s", r.Status, r.Raw)
		}
		acWantError(t, "wrong secret", clientCredentials(e, reg.ClientID, "not-the-secret"), 401, "invalid_client")

		// No overlap: the old secret stops at once.
		rot2, err := s.RotateClientSecret(ctx, reg.ClientID, 0)
		if err != nil {
			t.Fatal(err)
		}
		acWantError(t, "old secret, no overlap", clientCredentials(e, reg.ClientID, rot.ClientSecret), 401, "invalid_client")
		if r := clientCredentials(e, reg.ClientID, rot2.ClientSecret); r.Status != 200 {
			t.Fatalf("newest secret: %d %s", r.Status, r.Raw)
		}

		// Refusals.
		pub := acPublicClient(e)
		if _, err := s.RotateClientSecret(ctx, pub, time.Hour); !errors.Is(err, api.ErrConflict) {
			t.Fatalf("public client rotated: %v", err)
		}
		if _, err := s.RotateClientSecret(ctx, "nobody", time.Hour); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("unknown client: %v", err)
		}
		var ie *admin.InvalidError
		if _, err := s.RotateClientSecret(ctx, reg.ClientID, -time.Second); !errors.As(err, &ie) {
			t.Fatalf("negative overlap: %v", err)
		}
	})
}

// TestSuspendedClient: a suspended client gets invalid_client (401) at the
// token endpoint, its access tokens stop verifying at once here and,
// through the revocation log, on another instance, and its refresh
// tokens are refused; resuming restores it.
func TestSuspendedClient(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) { testSuspendedClient(t, newStatusEnv(t, d)) })
	}
}

// statusEnv is a codeEnv with its database's URL and directory.
type statusEnv struct {
	*codeEnv
	url, dir string
}

func newStatusEnv(t *testing.T, dialect string) *statusEnv {
	db, km, dir, dbURL := authtest.StoresURL(t, dialect)
	ce := &codeEnv{}
	srv, ts, issuer := oauthtest.Serve(t, "/fhir", ce.config(db, km))
	ce.env = &env{t: t, db: db, keys: km, srv: srv, ts: ts, issuer: issuer, token: issuer + oauth.PathToken}
	return &statusEnv{codeEnv: ce, url: dbURL, dir: dir}
}

func testSuspendedClient(t *testing.T, se *statusEnv) {
	e := se.codeEnv
	{
		s, ctx := adminOn(e)
		reg, err := s.CreateClient(ctx, api.ClientRequest{Name: "svc", Type: "confidential", Scopes: []string{"system/*.rs"}})
		if err != nil {
			t.Fatal(err)
		}
		r := clientCredentials(e, reg.ClientID, reg.ClientSecret)
		if r.Status != 200 {
			t.Fatalf("token: %d %s", r.Status, r.Raw)
		}
		tok := r.Body["access_token"].(string)
		// A second instance on the same database: its own *authdb.DB
		// (revocation-log watcher) and Verifier.
		db2, err := authdb.Open(ctx, se.url, se.dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		v2 := oauth.NewVerifier(oauth.VerifierConfig{Issuer: e.issuer, Audience: e.issuer, Keys: e.keys, Revocations: db2, Now: e.srv.Now})
		for name, v := range map[string]*oauth.Verifier{"this instance": e.srv.Verifier(), "other instance": v2} {
			if _, err := v.Verify(ctx, tok); err != nil { // now cached
				t.Fatalf("%s: %v", name, err)
			}
		}
		// A public client with a refresh token.
		pub := acPublicClient(e)
		tr := e.exchange(acGrant(pub))
		if tr.Body["refresh_token"] == nil {
			t.Fatalf("code exchange: no refresh token: %s", tr.Raw)
		}

		var ie *admin.InvalidError
		if _, err := s.SuspendClient(ctx, reg.ClientID, "  "); !errors.As(err, &ie) || ie.Field != "reason" {
			t.Fatalf("suspension without a reason: %v", err)
		}
		if _, err := s.SuspendClient(ctx, "nobody", "abuse"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("unknown client: %v", err)
		}
		c, err := s.SuspendClient(ctx, reg.ClientID, "abuse reported")
		if err != nil || c.SuspendedAt.IsZero() || c.SuspendReason != "abuse reported" {
			t.Fatalf("suspend: %+v %v", c, err)
		}
		if _, err := e.srv.Verifier().Verify(ctx, tok); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Fatalf("this instance still accepts the suspended client's token: %v", err)
		}
		poll.Until(t, 10*time.Second, "the other instance refuses the suspended client's token", func() bool {
			_, err := v2.Verify(ctx, tok)
			return errors.Is(err, oauth.ErrInvalidToken)
		})
		r = clientCredentials(e, reg.ClientID, reg.ClientSecret)
		acWantError(t, "suspended client at the token endpoint", r, 401, "invalid_client")
		r = e.post(oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "client_id": {reg.ClientID}, "client_secret": {reg.ClientSecret}}, nil)
		acWantError(t, "suspended client (post)", r, 401, "invalid_client")
		// Introspection by anyone shows the token inactive.
		other, err := s.CreateClient(ctx, api.ClientRequest{Name: "rs", Type: "confidential", Scopes: []string{"system/*.rs"}})
		if err != nil {
			t.Fatal(err)
		}
		if in := e.post(oauth.PathIntrospect, url.Values{"token": {tok}}, basic(other.ClientID, other.ClientSecret)); in.Raw != "{\"active\":false}\n" {
			t.Fatalf("introspection of a suspended client's token: %s", in.Raw)
		}

		// The public client's refresh token.
		if _, err := s.SuspendClient(ctx, pub, "policy"); err != nil {
			t.Fatal(err)
		}
		rr := e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.Body["refresh_token"].(string)}, "client_id": {pub}}, nil)
		acWantError(t, "suspended client's refresh token", rr, 401, "invalid_client")
		if _, err := e.srv.Verifier().Verify(ctx, tr.Body["access_token"].(string)); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Fatalf("suspended public client's access token: %v", err)
		}

		// Resume.
		if c, err := s.ResumeClient(ctx, reg.ClientID); err != nil || !c.SuspendedAt.IsZero() || c.SuspendReason != "" {
			t.Fatalf("resume: %+v %v", c, err)
		}
		if _, err := e.srv.Verifier().Verify(ctx, tok); err != nil {
			t.Fatalf("resumed client's token: %v", err)
		}
		if r := clientCredentials(e, reg.ClientID, reg.ClientSecret); r.Status != 200 {
			t.Fatalf("resumed client: %d %s", r.Status, r.Raw)
		}
	}
}
