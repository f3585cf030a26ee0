package sqlite_test

import (
	"context"
	"fmt"
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

// threeFemalePatients opens a store on a new SQLite file (both closed when
// the test ends) holding three female Patients: a search of them with
// _count=1 takes three pages, so it stores a paging snapshot.
func threeFemalePatients(t *testing.T) (*database.DB, *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "lapis.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlite.New(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range 3 {
		storetest.PutPatient(t, s, fmt.Sprintf("p%d", i), "female")
	}
	return db, s
}

// TestSnapshotsLeaveMainFile checks that storing paging snapshots commits
// to the scratch file only: the main file's data_version, as a reader
// connection sees it, is unchanged, so the readers keep their page cache
// of the FHIR data.
func TestSnapshotsLeaveMainFile(t *testing.T) {
	ctx := context.Background()
	db, s := threeFemalePatients(t)
	s.WaitStats()
	s.StopSnapshotWriter() // each search stores its snapshot before it returns
	c, err := db.Reader.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	version := func() int64 {
		var v int64
		if err := c.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := version()
	for range 3 {
		r, err := s.Search(ctx, &store.Query{Type: "Patient", Count: 1, Where: []store.Clause{{Any: []store.Predicate{{Param: "gender", Token: &store.TokenMatch{Code: "female"}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Snapshot == "" {
			t.Fatal("first page without a snapshot")
		}
	}
	if after := version(); after != before {
		t.Errorf("main file data_version %d -> %d: storing snapshots committed to it", before, after)
	}
	var n int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+database.SQLiteScratch+".search_snapshot").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d snapshots in the scratch file, want 3", n)
	}
}

// TestTxSearchStoresSnapshot checks that a search inside an Update whose
// result takes more than one page stores its paging snapshot (in the
// scratch file, which the writer has attached read-only) when no
// background snapshot writer takes it, as while the store closes.
func TestTxSearchStoresSnapshot(t *testing.T) {
	ctx := context.Background()
	db, s := threeFemalePatients(t)
	s.StopSnapshotWriter()
	var snap string
	err := s.Update(ctx, func(tx store.Tx) error {
		r, err := tx.Search(ctx, &store.Query{Type: "Patient", Count: 1, Where: []store.Clause{{Any: []store.Predicate{{Param: "gender", Token: &store.TokenMatch{Code: "female"}}}}}})
		if err != nil {
			return err
		}
		snap = r.Snapshot
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+database.SQLiteScratch+".search_snapshot WHERE id = ?", snap).Scan(&n); err != nil || n != 1 {
		t.Errorf("snapshot %q stored %d times: %v", snap, n, err)
	}
}
