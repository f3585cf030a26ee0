package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlite"
)

// TestSinceAfterEarlierMigration4: a database migrated by a build whose
// migration 4 created history_last_updated (main at 81fe7da..3bb10b6) has
// version 4 recorded; a later build must still answer a _since poll,
// whatever index its own migration 4 creates (a migration that has run
// somewhere is never rewritten: the change is a new migration).
func TestSinceAfterEarlierMigration4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lapis.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The schema the earlier migration 4 left: its index, not this one's.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DROP INDEX IF EXISTS history_type_last_updated", "CREATE INDEX history_last_updated ON history (last_updated, type, seq)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Write{Type: "Patient", ID: "p", Version: 1, LastUpdated: t0, Method: "POST", Body: []byte(`{"resourceType":"Patient","id":"p"}`)})
	}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"", "Patient"} {
		p, err := s.History(ctx, store.HistoryQuery{Type: typ, Since: t0, Count: 10, TotalLimit: 10000})
		if err != nil {
			t.Fatalf("%q _history?_since: %v", typ, err)
		}
		if len(p.Versions) != 1 {
			t.Errorf("%q _history?_since: %d versions", typ, len(p.Versions))
		}
	}
}
