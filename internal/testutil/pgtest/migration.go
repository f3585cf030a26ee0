package pgtest

import (
	"context"
	"strings"
	"testing"
)

// UpFailsWhileLocked runs the Up statement of a goose migration (the text
// between its first StatementBegin and StatementEnd markers) on a
// connection of its own to url, while another holds table in ACCESS SHARE
// mode and with a lock_timeout of 10 ms, and fails t unless the statement
// fails on the lock: for migrations that must not record themselves as
// applied when they could not do their work.
func UpFailsWhileLocked(t testing.TB, url string, migration []byte, table string) {
	t.Helper()
	_, up, _ := strings.Cut(string(migration), "-- +goose StatementBegin")
	up, _, _ = strings.Cut(up, "-- +goose StatementEnd")
	ctx := context.Background()
	holder, err := connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	c, err := connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "SET lock_timeout = '10ms'"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, up); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("migration with %s locked: %v, want the lock failure", table, err)
	}
}
