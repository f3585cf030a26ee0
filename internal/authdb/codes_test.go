package authdb_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
)

// openBoth runs f on a fresh SQLite and a fresh PostgreSQL store.
func openBoth(t *testing.T, f func(t *testing.T, db *authdb.DB)) { authtest.Both(t, f) }

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestAuthCodes(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now()
		if err := db.SaveAuthCode(ctx, hash("a"), "c", []byte(`{"x":1}`), now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, err := db.ConsumeAuthCode(ctx, hash("a"), now)
		if err != nil || string(got) != `{"x":1}` {
			t.Fatal(string(got), err)
		}
		if _, err := db.ConsumeAuthCode(ctx, hash("a"), now); !errors.Is(err, authdb.ErrCodeUsed) {
			t.Fatalf("second use: %v", err)
		}
		if _, err := db.ConsumeAuthCode(ctx, hash("unknown"), now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
		if err := db.SaveAuthCode(ctx, hash("old"), "c", []byte(`{}`), now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ConsumeAuthCode(ctx, hash("old"), now.Add(time.Minute)); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("expired: %v", err)
		}
		// Concurrent consumers: exactly one wins.
		if err := db.SaveAuthCode(ctx, hash("race"), "c", []byte(`{}`), now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		var wins, used atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				_, err := db.ConsumeAuthCode(ctx, hash("race"), now)
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, authdb.ErrCodeUsed):
					used.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || used.Load() != 15 {
			t.Fatalf("wins %d used %d", wins.Load(), used.Load())
		}
		// Pruning drops codes long past expiry, so they become unknown.
		db.PruneGrants(ctx, now.Add(time.Hour))
		if _, err := db.ConsumeAuthCode(ctx, hash("a"), now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("after prune: %v", err)
		}
	})
}
