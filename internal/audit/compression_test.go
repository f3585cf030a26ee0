package audit

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestPostgresBodyLZ4: on a PostgreSQL with lz4, the chain's records are
// compressed with lz4 (not pglz, several times dearer per record), read
// back byte for byte and verify.
func TestPostgresBodyLZ4(t *testing.T) {
	e := open(t, pgtest.New(t), nil)
	ctx := context.Background()
	var lz4 bool
	if err := e.db.SQL().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'audit_record'::regclass AND attname = 'body' AND attcompression = 'l')").Scan(&lz4); err != nil {
		t.Fatal(err)
	}
	if !lz4 {
		// The server lacks lz4 when a column cannot have it: then pglz
		// stays, as the migration intends.
		if _, err := e.db.SQL().ExecContext(ctx, "CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)"); err == nil {
			t.Fatal("audit_record.body is not lz4-compressed although the server supports lz4")
		}
		t.Skip("this PostgreSQL has no lz4")
	}
	write(t, e, 5)
	var methods []string
	rows, err := e.db.SQL().QueryContext(ctx, "SELECT DISTINCT COALESCE(pg_column_compression(body), 'none') FROM audit_record")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		methods = append(methods, m)
	}
	rows.Close()
	if len(methods) != 1 || methods[0] != "lz4" {
		t.Fatalf("records compressed with %v, want lz4", methods)
	}
	if rep := verify(t, e); !rep.OK || rep.Records != 5 {
		t.Fatalf("report = %+v", rep)
	}
}

// TestPostgresBodyLZ4MigrationFailsLoudly: the lz4 migration skips only a
// server without lz4; any other failure (here the table lock not obtained
// within the session's lock_timeout) fails it instead of recording it as
// applied with the column unchanged.
func TestPostgresBodyLZ4MigrationFailsLoudly(t *testing.T) {
	b, err := migrations.ReadFile("migrations/postgres/00005_body_lz4.sql")
	if err != nil {
		t.Fatal(err)
	}
	url := pgtest.New(t)
	open(t, url, nil) // migrated
	pgtest.UpFailsWhileLocked(t, url, b, "audit_record")
}
