package authdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// TestOwners: clients and API keys store an owner, list by it, and a
// rotated key's successor keeps its owner.
func TestOwners(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		for i, owner := range []string{"admin", "dev:42", "", "dev:42"} {
			c := &authdb.Client{ID: "c-" + string(rune('a'+i)), Name: "c", Type: authdb.Public, Scopes: []string{"openid"}, Owner: owner,
				CreatedAt: now.Add(time.Duration(i) * time.Second)}
			if err := db.CreateClient(ctx, c); err != nil {
				t.Fatal(err)
			}
			k := &authdb.APIKey{ID: "ak_" + string(rune('a'+i)), Name: "k", Hash: hash("key" + string(rune('a'+i))), Prefix: "p", Scopes: []string{"system/*.rs"},
				Owner: owner, CreatedAt: now.Add(time.Duration(i) * time.Second)}
			if err := db.CreateAPIKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		ids := func(cs []authdb.Client) (out []string) {
			for _, c := range cs {
				out = append(out, c.ID+"="+c.Owner)
			}
			return out
		}
		if cs, err := db.ClientsBy(ctx, authdb.ClientFilter{Owner: "dev:42"}); err != nil || len(cs) != 2 || cs[0].ID != "c-b" || cs[1].ID != "c-d" {
			t.Fatalf("clients of dev:42: %v %v", ids(cs), err)
		}
		if cs, err := db.Clients(ctx); err != nil || len(cs) != 4 || cs[0].Owner != "admin" || cs[2].Owner != "" {
			t.Fatalf("all clients: %v %v", ids(cs), err)
		}
		if c, err := db.Client(ctx, "c-a"); err != nil || c.Owner != "admin" {
			t.Fatalf("client: %+v %v", c, err)
		}
		if cs, err := db.ClientsBy(ctx, authdb.ClientFilter{Owner: "nobody"}); err != nil || len(cs) != 0 {
			t.Fatalf("clients of nobody: %v %v", ids(cs), err)
		}

		if ks, err := db.APIKeysBy(ctx, authdb.APIKeyFilter{Owner: "admin"}); err != nil || len(ks) != 1 || ks[0].ID != "ak_a" || ks[0].Owner != "admin" {
			t.Fatalf("keys of admin: %+v %v", ks, err)
		}
		if ks, err := db.APIKeys(ctx); err != nil || len(ks) != 4 {
			t.Fatalf("all keys: %+v %v", ks, err)
		}
		next := &authdb.APIKey{ID: "ak_next", Hash: hash("next"), Prefix: "p"}
		if err := db.RotateAPIKey(ctx, "ak_b", next, now.Add(time.Hour), now); err != nil {
			t.Fatal(err)
		}
		if k, err := db.APIKey(ctx, "ak_next"); err != nil || k.Owner != "dev:42" {
			t.Fatalf("successor: %+v %v", k, err)
		}
		if ks, err := db.APIKeysBy(ctx, authdb.APIKeyFilter{Owner: "dev:42"}); err != nil || len(ks) != 3 {
			t.Fatalf("keys of dev:42 after rotation: %+v %v", ks, err)
		}
	})
}
