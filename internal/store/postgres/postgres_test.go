package postgres_test

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/store/storetest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

func open(t *testing.T) store.Store { return openStore(t) }

// openStore opens a store on a fresh database, closed when tb ends.
func openStore(tb testing.TB) *postgres.Store {
	s, err := postgres.Open(context.Background(), pgtest.New(tb))
	return storetest.Opened(tb, s, err)
}

func TestStore(t *testing.T) {
	storetest.Run(t, open)
}

// TestSnapshotsStored checks that paging snapshots, stored in batches,
// are in the database once the store is closed.
func TestSnapshotsStored(t *testing.T) {
	url := pgtest.New(t)
	storetest.SnapshotsStored(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// putBatches stores ws, 500 writes to a transaction.
func putBatches(tb testing.TB, s *postgres.Store, ws []*store.Write) {
	tb.Helper()
	ctx := context.Background()
	for len(ws) > 0 {
		batch := ws[:min(len(ws), 500)]
		ws = ws[len(batch):]
		if err := s.Update(ctx, func(tx store.Tx) error {
			for _, w := range batch {
				if err := tx.Put(ctx, w); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
}
