package postgres

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestBodyLZ4MigrationFailsLoudly: the lz4 migration skips only a server
// without lz4; any other failure (here the table lock not obtained within
// the session's lock_timeout) fails the migration instead of recording it
// as applied with the columns unchanged.
func TestBodyLZ4MigrationFailsLoudly(t *testing.T) {
	b, err := migrations.ReadFile("migrations/00006_body_lz4.sql")
	if err != nil {
		t.Fatal(err)
	}
	url := pgtest.New(t)
	st, err := Open(context.Background(), url) // migrated
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pgtest.UpFailsWhileLocked(t, url, b, "history")
}
