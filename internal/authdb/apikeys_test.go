package authdb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

func TestAPIKeys(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		k := &authdb.APIKey{ID: "ak_1", Name: "etl", Hash: hash("k1"), Prefix: "lapis_abc", Scopes: []string{"patient/Observation.rs"},
			Patient: "p1", AllowIPs: []string{"10.0.0.0/8", "::1/128"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := db.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAPIKey(ctx, &authdb.APIKey{ID: "ak_dup", Name: "x", Hash: hash("k1"), Prefix: "p", Scopes: []string{"system/*.rs"}}); err == nil {
			t.Fatal("duplicate hash accepted")
		}
		got, err := db.APIKeyByHash(ctx, hash("k1"))
		if err != nil || got.ID != "ak_1" || got.Patient != "p1" || len(got.AllowIPs) != 2 || got.Scopes[0] != "patient/Observation.rs" ||
			!got.ExpiresAt.Equal(now.Add(time.Hour)) || !got.RevokedAt.IsZero() || !got.LastUsedAt.IsZero() || !got.Valid(now) {
			t.Fatalf("%+v %v", got, err)
		}
		if got.Valid(now.Add(time.Hour)) {
			t.Fatal("valid at expiry")
		}
		if _, err := db.APIKeyByHash(ctx, hash("nope")); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		// Touch: at most once per interval.
		if err := db.TouchAPIKey(ctx, "ak_1", now, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := db.TouchAPIKey(ctx, "ak_1", now.Add(30*time.Second), time.Minute); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.APIKey(ctx, "ak_1"); !got.LastUsedAt.Equal(now) {
			t.Fatalf("last used %v", got.LastUsedAt)
		}
		if err := db.TouchAPIKey(ctx, "ak_1", now.Add(61*time.Second), time.Minute); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.APIKey(ctx, "ak_1"); !got.LastUsedAt.Equal(now.Add(61 * time.Second)) {
			t.Fatalf("last used %v", got.LastUsedAt)
		}
		// Rotation: the new key inherits everything, the old one ends at
		// the grace period (or its own expiry, if earlier).
		next := &authdb.APIKey{ID: "ak_2", Hash: hash("k2"), Prefix: "lapis_def"}
		if err := db.RotateAPIKey(ctx, "ak_1", next, now.Add(2*time.Hour), now); err != nil {
			t.Fatal(err)
		}
		old, _ := db.APIKey(ctx, "ak_1")
		nk, _ := db.APIKeyByHash(ctx, hash("k2"))
		if old.ReplacedBy != "ak_2" || !old.ExpiresAt.Equal(now.Add(time.Hour)) || nk.Name != "etl" || nk.Patient != "p1" || len(nk.AllowIPs) != 2 {
			t.Fatalf("old %+v new %+v", old, nk)
		}
		if err := db.RotateAPIKey(ctx, "ak_1", &authdb.APIKey{ID: "ak_3", Hash: hash("k3"), Prefix: "x"}, now, now); !errors.Is(err, authdb.ErrAPIKeyRotated) {
			t.Fatalf("second rotation: %v", err)
		}
		if err := db.RotateAPIKey(ctx, "ak_nope", &authdb.APIKey{ID: "ak_3", Hash: hash("k3"), Prefix: "x"}, now, now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
		if err := db.RotateAPIKey(ctx, "ak_2", &authdb.APIKey{ID: "ak_3", Hash: hash("k3"), Prefix: "x"}, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
		if k2, _ := db.APIKey(ctx, "ak_2"); !k2.ExpiresAt.Equal(now.Add(time.Minute)) {
			t.Fatalf("grace %v", k2.ExpiresAt)
		}
		// Revocation is idempotent; unknown ids are ErrNotFound.
		for range 2 {
			if err := db.RevokeAPIKey(ctx, "ak_3", now); err != nil {
				t.Fatal(err)
			}
		}
		if k3, _ := db.APIKey(ctx, "ak_3"); k3.RevokedAt.IsZero() || k3.Valid(now) {
			t.Fatal("not revoked")
		}
		if err := db.RevokeAPIKey(ctx, "ak_nope", now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		if err := db.RotateAPIKey(ctx, "ak_3", &authdb.APIKey{ID: "ak_4", Hash: hash("k4"), Prefix: "x"}, now, now); !errors.Is(err, authdb.ErrAPIKeyRotated) {
			t.Fatalf("rotate revoked: %v", err)
		}
		list, err := db.APIKeys(ctx)
		if err != nil || len(list) != 3 {
			t.Fatalf("%d %v", len(list), err)
		}
	})
}

func TestBasicSetting(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		if on, err := db.AnyBasicEnabled(ctx); err != nil || on {
			t.Fatal(on, err)
		}
		if err := db.EnableBasic(ctx, "nope", time.Now()); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		if err := db.CreateClient(ctx, &authdb.Client{ID: "c", Name: "c", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}}); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := db.EnableBasic(ctx, "c", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if on, _ := db.BasicEnabled(ctx, "c"); !on {
			t.Fatal("not enabled")
		}
		if on, _ := db.AnyBasicEnabled(ctx); !on {
			t.Fatal("not enabled anywhere")
		}
		if err := db.DisableBasic(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		if on, _ := db.BasicEnabled(ctx, "c"); on {
			t.Fatal("still enabled")
		}
	})
}
