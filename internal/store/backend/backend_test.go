package backend_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/backend"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

func roundTrip(t *testing.T, s store.Store, id string) {
	t.Helper()
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Write{Type: "Patient", ID: id, Version: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(`{}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "Patient", id); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "sub")
	s, err := backend.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roundTrip(t, s, "a")
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, database.SQLiteFile)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenSQLiteURLs(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"sqlite:" + filepath.Join(dir, "a.db"), "sqlite://" + filepath.Join(dir, "b.db"), "file:" + filepath.Join(dir, "c.db") + "?mode=rwc"} {
		s, err := backend.Open(context.Background(), u, "")
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		roundTrip(t, s, "a")
		s.Close()
	}
	for _, name := range []string{"a.db", "b.db", "c.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	if _, err := backend.Open(context.Background(), "mysql://x", ""); err == nil {
		t.Error("mysql accepted")
	}
}

// openConcurrently opens the same database from several goroutines at
// once (as a server and admin commands do) and checks every open works.
func openConcurrently(t *testing.T, url, dir string) {
	var wg sync.WaitGroup
	stores := make([]store.Store, 4)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = backend.Open(context.Background(), url, dir)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	for i, s := range stores {
		roundTrip(t, s, string(rune('a'+i)))
	}
}

func TestConcurrentMigrationsSQLite(t *testing.T) {
	openConcurrently(t, "", t.TempDir())
}

func TestOpenPostgres(t *testing.T) {
	openConcurrently(t, pgtest.New(t), "")
}
