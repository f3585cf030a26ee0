package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlite"
	"github.com/lapis-health/lapis/internal/store/storetest"
)

func open(t *testing.T) store.Store { return openStore(t) }

// openStore opens a store in a fresh file, closed when tb ends.
func openStore(tb testing.TB) *sqlite.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "lapis.db"))
	return storetest.Opened(tb, s, err)
}

func TestStore(t *testing.T) {
	storetest.Run(t, open)
}

// TestSnapshotsStored checks that paging snapshots, stored in batches
// after a delay, are in the database once the store is closed.
func TestSnapshotsStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lapis.db")
	storetest.SnapshotsStored(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestSearchOneReader runs searches of shapes the statement cache has not
// seen on a store with a single reader connection: a search must not need
// a second connection (to prepare its statement) while its read
// transaction holds the only one. Before, each such search waited for a
// connection it held itself until its context ended.
func TestSearchOneReader(t *testing.T) {
	ctx := context.Background()
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "lapis.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := sqlite.New(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.PutPatient(t, s, "p1", "female")
	for _, codes := range [][]string{{"female"}, {"female", "male"}, {"female", "male", "other"}} {
		var any []store.Predicate
		for _, c := range codes {
			any = append(any, store.Predicate{Param: "gender", Token: &store.TokenMatch{Code: c}})
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := s.Search(ctx, &store.Query{Type: "Patient", Count: 10, Where: []store.Clause{{Any: any}}})
		cancel()
		if err != nil {
			t.Fatalf("search %v: %v", codes, err)
		}
		if len(res.Matches) != 1 {
			t.Fatalf("search %v: %d matches", codes, len(res.Matches))
		}
	}
}
