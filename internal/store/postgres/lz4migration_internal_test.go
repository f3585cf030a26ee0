package postgres

import (
	"context"
	"strings"
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
	_, up, _ := strings.Cut(string(b), "-- +goose StatementBegin")
	up, _, _ = strings.Cut(up, "-- +goose StatementEnd")
	ctx := context.Background()
	st, err := Open(ctx, pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	holder, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, "LOCK TABLE history IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	c, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "SET lock_timeout = '10ms'"); err != nil {
		t.Fatal(err)
	}
	defer c.Exec(ctx, "RESET lock_timeout")
	if _, err := c.Exec(ctx, up); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("migration with history locked: %v, want the lock failure", err)
	}
}
