package authdb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

func TestRefreshFamilies(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		fam := &authdb.Family{ID: "fam-1", ClientID: "c", Subject: "u", CreatedAt: now}
		rt := &authdb.RefreshToken{Hash: hash("r0"), ClientID: "c", Subject: "u", Scope: "offline_access patient/*.rs",
			Session: []byte(`{"patient":"p"}`), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := db.StartFamily(ctx, fam, "jti-0", now.Add(time.Hour), rt); err != nil {
			t.Fatal(err)
		}
		if err := db.StartFamily(ctx, fam, "jti-x", now.Add(time.Hour), nil); !errors.Is(err, authdb.ErrRevoked) {
			t.Fatalf("duplicate family: %v", err)
		}
		got, err := db.RefreshToken(ctx, hash("r0"))
		if err != nil || got.FamilyID != "fam-1" || got.Scope != rt.Scope || string(got.Session) != `{"patient":"p"}` || !got.ExpiresAt.Equal(rt.ExpiresAt) || !got.RotatedAt.IsZero() {
			t.Fatalf("%+v %v", got, err)
		}
		next := func(name string) *authdb.RefreshToken {
			return &authdb.RefreshToken{Hash: hash(name), ClientID: "c", Subject: "u", Scope: rt.Scope, Session: rt.Session, IssuedAt: now, ExpiresAt: now.Add(2 * time.Hour)}
		}
		grace := 30 * time.Second
		if err := db.RotateRefreshToken(ctx, hash("r0"), now, now.Add(-grace), next("r1"), "jti-1", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.RefreshToken(ctx, hash("r0")); got.RotatedAt.IsZero() {
			t.Fatal("r0 not marked rotated")
		}
		// Within grace: r0 again supersedes r1.
		t1 := now.Add(10 * time.Second)
		if err := db.RotateRefreshToken(ctx, hash("r0"), t1, t1.Add(-grace), next("r2"), "jti-2", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.RefreshToken(ctx, hash("r1")); got.RotatedAt.IsZero() {
			t.Fatal("r1 still current after the grace retry")
		}
		// Unknown and expired tokens.
		if err := db.RotateRefreshToken(ctx, hash("nope"), t1, t1.Add(-grace), next("x"), "j", now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		late := now.Add(3 * time.Hour)
		if err := db.RotateRefreshToken(ctx, hash("r2"), late, late.Add(-grace), next("x"), "j", now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal("expired token rotated", err)
		}
		// After grace: reuse revokes the family and its access tokens.
		t2 := now.Add(time.Minute)
		if err := db.RotateRefreshToken(ctx, hash("r0"), t2, t2.Add(-grace), next("r3"), "jti-3", now.Add(time.Hour)); !errors.Is(err, authdb.ErrRefreshReused) {
			t.Fatalf("reuse: %v", err)
		}
		for _, h := range []string{"r0", "r1", "r2", "r3"} {
			if _, err := db.RefreshToken(ctx, hash(h)); !errors.Is(err, authdb.ErrNotFound) {
				t.Fatalf("%s after family revocation: %v", h, err)
			}
		}
		for _, j := range []string{"jti-0", "jti-1", "jti-2"} {
			if r, err := db.Revoked(ctx, j); err != nil || !r {
				t.Fatalf("%s not revoked: %v", j, err)
			}
		}
		// A family revoked before it is recorded cannot be started.
		if err := db.RevokeFamily(ctx, "fam-2", now); err != nil {
			t.Fatal(err)
		}
		if err := db.StartFamily(ctx, &authdb.Family{ID: "fam-2", ClientID: "c", Subject: "u", CreatedAt: now}, "jti-9", now.Add(time.Hour), nil); !errors.Is(err, authdb.ErrRevoked) {
			t.Fatalf("start after revocation: %v", err)
		}
		// A user withdraws the app: every family of client and subject.
		for _, id := range []string{"fam-3", "fam-4"} {
			if err := db.StartFamily(ctx, &authdb.Family{ID: id, ClientID: "c", Subject: "u2", CreatedAt: now}, "jti-"+id, now.Add(time.Hour),
				&authdb.RefreshToken{Hash: hash(id), ClientID: "c", Subject: "u2", Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := db.RevokeClientGrants(ctx, "c", "u2", now); err != nil || n != 2 {
			t.Fatal(n, err)
		}
		if _, err := db.RefreshToken(ctx, hash("fam-3")); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		if r, _ := db.Revoked(ctx, "jti-fam-4"); !r {
			t.Fatal("access token of a withdrawn grant not revoked")
		}
	})
}
