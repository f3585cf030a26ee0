package authdb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// TestCredentialRateLimits: a client's and an API key's own rate limit is
// stored at creation, changed and cleared later (each change logged as a
// RevRateLimit entry for the caches of every instance), kept by a rotated
// key's successor, and read back by CredentialRateLimit.
func TestCredentialRateLimits(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		rl := authdb.RateLimit{Limit: "500/s", Burst: 2000}
		if err := db.CreateClient(ctx, &authdb.Client{ID: "c-1", Name: "c", Type: authdb.Public, RateLimit: rl}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAPIKey(ctx, &authdb.APIKey{ID: "ak_1", Name: "k", Hash: []byte("ak_1"), Prefix: "x",
			Scopes: []string{"system/*.rs"}, RateLimit: authdb.RateLimit{Limit: "none"}}); err != nil {
			t.Fatal(err)
		}
		if c, err := db.Client(ctx, "c-1"); err != nil || c.RateLimit != rl {
			t.Fatalf("client rate limit %+v %v", c, err)
		}
		if r, err := db.CredentialRateLimit(ctx, authdb.CredentialAPIKey, "ak_1"); err != nil || r.Limit != "none" {
			t.Fatalf("api key rate limit %+v %v", r, err)
		}
		head, _ := db.RevocationHead(ctx)
		if err := db.SetClientRateLimit(ctx, "c-1", authdb.RateLimit{Limit: "10/m", Burst: 5}); err != nil {
			t.Fatal(err)
		}
		if r, err := db.CredentialRateLimit(ctx, authdb.CredentialClient, "c-1"); err != nil || r != (authdb.RateLimit{Limit: "10/m", Burst: 5}) {
			t.Fatalf("after update %+v %v", r, err)
		}
		if err := db.SetAPIKeyRateLimit(ctx, "ak_1", authdb.RateLimit{}); err != nil {
			t.Fatal(err)
		}
		if k, err := db.APIKey(ctx, "ak_1"); err != nil || !k.RateLimit.IsZero() {
			t.Fatalf("cleared %+v %v", k, err)
		}
		es, err := db.RevocationsSince(ctx, head, 10)
		if err != nil || len(es) != 2 || es[0].Kind != authdb.RevRateLimit || es[0].Subject != "client:c-1" || es[1].Subject != "apikey:ak_1" {
			t.Fatalf("log entries %+v %v", es, err)
		}
		for _, err := range []error{
			db.SetClientRateLimit(ctx, "nope", rl),
			db.SetAPIKeyRateLimit(ctx, "ak_nope", rl),
		} {
			if !errors.Is(err, authdb.ErrNotFound) {
				t.Fatalf("unknown credential: %v", err)
			}
		}
		if r, err := db.CredentialRateLimit(ctx, authdb.CredentialClient, "nope"); err != nil || !r.IsZero() {
			t.Fatalf("unknown client %+v %v", r, err)
		}
		// A rotated key's successor keeps its limit.
		if err := db.SetAPIKeyRateLimit(ctx, "ak_1", rl); err != nil {
			t.Fatal(err)
		}
		if err := db.RotateAPIKey(ctx, "ak_1", &authdb.APIKey{ID: "ak_2", Hash: []byte("ak_2"), Prefix: "x"}, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
		if k, err := db.APIKey(ctx, "ak_2"); err != nil || k.RateLimit != rl {
			t.Fatalf("successor %+v %v", k, err)
		}
	})
}
