package authdb_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/store/backend"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

func TestAuthDB(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			dir, url := t.TempDir(), ""
			if dialect == "postgres" {
				url = pgtest.New(t)
			}
			// The FHIR store and the auth store share the database; their
			// migrations (opened concurrently) must not collide.
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i := range 3 {
				wg.Go(func() {
					if i == 0 {
						st, err := backend.Open(ctx, url, dir)
						if err == nil {
							st.Close()
						}
						errs[i] = err
						return
					}
					db, err := authdb.Open(ctx, url, dir)
					if err == nil {
						db.Close()
					}
					errs[i] = err
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			db, err := authdb.Open(ctx, url, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()

			c := &authdb.Client{ID: "c-1", Name: "one", Type: authdb.Confidential, SecretHash: []byte{1, 2, 3}, RedirectURIs: []string{"https://a/cb"}, Scopes: []string{"system/*.rs", "system/Patient.read"}}
			if err := db.CreateClient(ctx, c); err != nil {
				t.Fatal(err)
			}
			if err := db.CreateClient(ctx, c); !errors.Is(err, authdb.ErrExists) {
				t.Fatalf("duplicate: %v", err)
			}
			got, err := db.Client(ctx, "c-1")
			if err != nil || got.Name != "one" || string(got.SecretHash) != "\x01\x02\x03" || len(got.Scopes) != 2 || got.RedirectURIs[0] != "https://a/cb" {
				t.Fatalf("read: %+v %v", got, err)
			}
			if _, err := db.Client(ctx, "nope"); !errors.Is(err, authdb.ErrNotFound) {
				t.Fatal(err)
			}
			exp := time.Now().Add(time.Minute)
			if fresh, err := db.UseAssertionID(ctx, "c-1", "j", exp); err != nil || !fresh {
				t.Fatal(fresh, err)
			}
			if fresh, err := db.UseAssertionID(ctx, "c-1", "j", exp); err != nil || fresh {
				t.Fatal("replay accepted", err)
			}
			if fresh, _ := db.UseAssertionID(ctx, "c-2", "j", exp); !fresh {
				t.Fatal("jti scoped per client")
			}
			if r, _ := db.Revoked(ctx, "t"); r {
				t.Fatal("revoked before revocation")
			}
			if err := db.RevokeToken(ctx, "t", exp); err != nil {
				t.Fatal(err)
			}
			if err := db.RevokeToken(ctx, "t", exp); err != nil {
				t.Fatal(err)
			}
			if r, _ := db.Revoked(ctx, "t"); !r {
				t.Fatal("not revoked")
			}
			if err := db.DeleteClient(ctx, "c-1"); err != nil {
				t.Fatal(err)
			}
			if err := db.DeleteClient(ctx, "c-1"); !errors.Is(err, authdb.ErrNotFound) {
				t.Fatal(err)
			}
		})
	}
}
