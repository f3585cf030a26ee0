package database

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestPostgresSchema: Options.Schema creates the schema when missing and
// makes it the search_path, so unqualified tables land there; a name
// that is not a plain identifier is refused before anything connects.
func TestPostgresSchema(t *testing.T) {
	u := pgtest.New(t)
	ctx := context.Background()
	for range 2 { // the second open finds the schema there
		db, err := Open(ctx, Options{URL: u, Schema: "lapis_sbx"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS t (x int)"); err != nil {
			t.Fatal(err)
		}
		var schema string
		if err := db.Reader.QueryRowContext(ctx, "SELECT schemaname FROM pg_tables WHERE tablename = 't'").Scan(&schema); err != nil || schema != "lapis_sbx" {
			t.Errorf("table t in schema %q: %v", schema, err)
		}
		db.Close()
	}
	for _, bad := range []string{"Sandbox", "a;b", "1x", `x"y`, "with space"} {
		if _, err := Open(ctx, Options{URL: u, Schema: bad}); err == nil {
			t.Errorf("schema %q accepted", bad)
		}
	}
}
