package authdb_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

func TestGrantsAndRevokeGrants(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		if err := db.CreateClient(ctx, &authdb.Client{ID: "c1", Name: "App One", Type: authdb.Public, Scopes: []string{"openid"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAccount(ctx, &authdb.Account{Subject: "u1", Username: "alice", PasswordHash: "x", FHIRUser: "Patient/1"}); err != nil {
			t.Fatal(err)
		}
		start := func(fam, client, subject, scope, jti string, created time.Time) {
			t.Helper()
			var rt *authdb.RefreshToken
			if scope != "" {
				rt = &authdb.RefreshToken{Hash: hash("rt-" + fam), ClientID: client, Subject: subject, Scope: scope, Session: []byte("{}"),
					IssuedAt: created, ExpiresAt: now.Add(time.Hour)}
			}
			if err := db.StartFamily(ctx, &authdb.Family{ID: fam, ClientID: client, Subject: subject, CreatedAt: created}, jti, now.Add(time.Hour), rt); err != nil {
				t.Fatal(err)
			}
		}
		start("f1", "c1", "u1", "openid patient/*.rs", "j1", now.Add(-2*time.Hour))
		start("f2", "c1", "u1", "openid offline_access", "j2", now.Add(-time.Hour))
		start("f3", "c1", "u2", "", "j3", now.Add(-time.Hour))    // access token only, unknown account
		start("f4", "c2", "u1", "", "j4", now)                    // deleted client
		if err := db.RevokeFamily(ctx, "tomb", now); err != nil { // a tombstone is never listed
			t.Fatal(err)
		}

		gs, err := db.Grants(ctx, authdb.GrantFilter{Subject: "u1"}, now)
		if err != nil || len(gs) != 2 {
			t.Fatalf("%+v %v", gs, err)
		}
		// Ordered by client name: the deleted client (no name) first.
		if gs[0].ClientID != "c2" || gs[0].ClientName != "" || len(gs[0].Scopes) != 0 || gs[0].Families != 1 {
			t.Fatalf("deleted client grant: %+v", gs[0])
		}
		g := gs[1]
		if g.ClientID != "c1" || g.ClientName != "App One" || g.Username != "alice" || g.Families != 2 ||
			!slices.Equal(g.Scopes, []string{"openid", "patient/*.rs", "offline_access"}) ||
			!g.CreatedAt.Equal(now.Add(-2*time.Hour)) || !g.LastUsedAt.Equal(now.Add(-time.Hour)) || !g.ExpiresAt.Equal(now.Add(time.Hour)) {
			t.Fatalf("grant: %+v", g)
		}
		if gs, _ := db.Grants(ctx, authdb.GrantFilter{ClientID: "c1"}, now); len(gs) != 2 {
			t.Fatalf("by client: %+v", gs)
		}
		if gs, _ := db.Grants(ctx, authdb.GrantFilter{}, now.Add(2*time.Hour)); len(gs) != 0 {
			t.Fatalf("expired grants listed: %+v", gs)
		}

		if _, err := db.RevokeGrants(ctx, authdb.GrantFilter{}, now); !errors.Is(err, authdb.ErrNoFilter) {
			t.Fatalf("empty filter: %v", err)
		}
		n, err := db.RevokeGrants(ctx, authdb.GrantFilter{ClientID: "c1", Subject: "u1"}, now)
		if err != nil || n != 2 {
			t.Fatalf("revoke one user: %d %v", n, err)
		}
		for jti, want := range map[string]bool{"j1": true, "j2": true, "j3": false, "j4": false} {
			if got, err := db.Revoked(ctx, jti); err != nil || got != want {
				t.Fatalf("%s revoked=%v (%v), want %v", jti, got, err, want)
			}
		}
		if _, err := db.RefreshToken(ctx, hash("rt-f1")); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("refresh token survives: %v", err)
		}
		// Every user of a client.
		if n, err := db.RevokeGrants(ctx, authdb.GrantFilter{ClientID: "c1"}, now); err != nil || n != 1 {
			t.Fatalf("revoke all users: %d %v", n, err)
		}
		if ok, _ := db.Revoked(ctx, "j3"); !ok {
			t.Fatal("j3 not revoked")
		}
		// Every client of a user.
		if n, err := db.RevokeGrants(ctx, authdb.GrantFilter{Subject: "u1"}, now); err != nil || n != 1 {
			t.Fatalf("revoke user: %d %v", n, err)
		}
		if gs, _ := db.Grants(ctx, authdb.GrantFilter{}, now); len(gs) != 0 {
			t.Fatalf("grants left: %+v", gs)
		}
	})
}
