package database_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

func TestRebind(t *testing.T) {
	const q = "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
	if got := database.Rebind(false, q); got != q {
		t.Errorf("SQLite: %q", got)
	}
	if got, want := database.Rebind(true, q), "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"; got != want {
		t.Errorf("PostgreSQL: %q, want %q", got, want)
	}
}

// TestOpenPools checks the pools on both dialects: the writer writes, the
// readers read what it wrote and, on SQLite, cannot write; the SQLite
// file is in WAL mode with the writer's extra pragma applied.
func TestOpenPools(t *testing.T) {
	ctx := context.Background()
	for name, url := range map[string]string{"sqlite": "", "postgres": pgtest.New(t)} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := database.OpenPools(url, dir, database.PoolOptions{
				PostgresConns: 2, SQLiteReaders: 2, SQLiteWriterPragmas: []string{"wal_autocheckpoint(0)"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Postgres != (name == "postgres") {
				t.Fatalf("Postgres = %v", p.Postgres)
			}
			if _, err := p.W.ExecContext(ctx, "CREATE TABLE pools_t (v INTEGER)"); err != nil {
				t.Fatal(err)
			}
			if _, err := p.W.ExecContext(ctx, database.Rebind(p.Postgres, "INSERT INTO pools_t (v) VALUES (?)"), 7); err != nil {
				t.Fatal(err)
			}
			var v int
			if err := p.R.QueryRowContext(ctx, "SELECT v FROM pools_t").Scan(&v); err != nil || v != 7 {
				t.Fatalf("reader: %d %v", v, err)
			}
			if p.Postgres {
				return
			}
			if _, err := p.R.ExecContext(ctx, "INSERT INTO pools_t (v) VALUES (8)"); err == nil {
				t.Error("a reader wrote")
			}
			var mode string
			if err := p.R.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode %q %v", mode, err)
			}
			var ac int
			if err := p.W.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&ac); err != nil || ac != 0 {
				t.Errorf("writer wal_autocheckpoint %d %v", ac, err)
			}
			if _, err := os.Stat(filepath.Join(dir, database.SQLiteFile)); err != nil {
				t.Errorf("the SQLite file is not in the data directory: %v", err)
			}
		})
	}
}
