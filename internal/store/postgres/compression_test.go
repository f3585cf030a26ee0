package postgres_test

import (
	"context"
	"testing"
)

// TestBodyLZ4: on a PostgreSQL with lz4, resource bodies (current and
// history) are stored lz4-compressed, not with the dearer pglz.
func TestBodyLZ4(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	var n int
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_attribute WHERE attrelid IN ('resources'::regclass, 'history'::regclass) AND attname = 'body' AND attcompression = 'l'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 2 {
		return
	}
	// The server lacks lz4 when a column cannot have it: then pglz stays,
	// as the migration intends.
	if _, err := s.Pool().Exec(ctx, "CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)"); err == nil {
		t.Fatalf("%d of resources.body and history.body are lz4-compressed although the server supports lz4", n)
	}
	t.Skip("this PostgreSQL has no lz4")
}
