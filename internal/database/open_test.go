package database_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestOpen checks the handle on both dialects: the writer writes, the
// readers read what it wrote and, on SQLite, cannot write; the SQLite
// file is in the data directory, owner-only, in WAL mode, its one writer
// begins IMMEDIATE and does not checkpoint on commit.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	for name, url := range map[string]string{"sqlite": "", "postgres": pgtest.New(t)} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			h, err := database.Open(ctx, database.Options{URL: url, DataDir: dir, SQLiteReaders: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if h.Postgres() != (name == "postgres") || (h.Pool != nil) != h.Postgres() {
				t.Fatalf("dialect %q, pool %v", h.Dialect, h.Pool != nil)
			}
			if _, err := h.Writer.ExecContext(ctx, "CREATE TABLE pools_t (v INTEGER)"); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Writer.ExecContext(ctx, h.Rebind("INSERT INTO pools_t (v) VALUES (?)"), 7); err != nil {
				t.Fatal(err)
			}
			var v int
			if err := h.Reader.QueryRowContext(ctx, "SELECT v FROM pools_t").Scan(&v); err != nil || v != 7 {
				t.Fatalf("reader: %d %v", v, err)
			}
			if h.Postgres() {
				if err := h.Pool.QueryRow(ctx, "SELECT v FROM pools_t").Scan(&v); err != nil || v != 7 {
					t.Fatalf("pool: %d %v", v, err)
				}
				var mode string
				if err := h.Pool.QueryRow(ctx, "SHOW plan_cache_mode").Scan(&mode); err != nil || mode != "auto" {
					t.Errorf("plan_cache_mode %q %v", mode, err)
				}
				// A statement estimated far past jit_above_cost (a
				// billion rows, a thousand in fact) runs without JIT.
				var plan string
				if err := h.Pool.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM generate_series(1, (SELECT 10)) a, generate_series(1, (SELECT 10)) b, generate_series(1, (SELECT 10)) c").Scan(&plan); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(plan, `"JIT"`) {
					t.Errorf("a statement of the pool was JIT-compiled:\n%s", plan)
				}
				return
			}
			if n := h.Writer.Stats().MaxOpenConnections; n != 1 {
				t.Errorf("%d writer connections", n)
			}
			if n := h.SQLiteReaders(); n != 2 {
				t.Errorf("%d readers", n)
			}
			if _, err := h.Reader.ExecContext(ctx, "INSERT INTO pools_t (v) VALUES (8)"); err == nil {
				t.Error("a reader wrote")
			}
			var mode string
			if err := h.Reader.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode %q %v", mode, err)
			}
			var ac int
			if err := h.Writer.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&ac); err != nil || ac != 0 {
				t.Errorf("writer wal_autocheckpoint %d %v", ac, err)
			}
			var limit int64
			if err := h.Writer.QueryRowContext(ctx, "PRAGMA journal_size_limit").Scan(&limit); err != nil || limit != 64<<20 {
				t.Errorf("writer journal_size_limit %d %v", limit, err)
			}
			fi, err := os.Stat(filepath.Join(dir, database.SQLiteFile))
			if err != nil {
				t.Fatalf("the SQLite file is not in the data directory: %v", err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", fi.Mode().Perm())
			}
			// The scratch file: beside it, owner-only, WAL, attached to
			// every connection, written through side connections only.
			if fi, err := os.Stat(database.SQLiteScratchPath(filepath.Join(dir, database.SQLiteFile))); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("scratch file: %v", err)
			}
			side := h.OpenSQLiteConn()
			defer side.Close()
			if _, err := side.ExecContext(ctx, "CREATE TABLE "+database.SQLiteScratch+".t (v INTEGER); INSERT INTO "+database.SQLiteScratch+".t VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Writer.ExecContext(ctx, "INSERT INTO "+database.SQLiteScratch+".t VALUES (2)"); err == nil {
				t.Error("the writer wrote the scratch file")
			}
			var n int
			if err := h.Reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+database.SQLiteScratch+".t").Scan(&n); err != nil || n != 1 {
				t.Errorf("scratch rows seen by a reader: %d %v", n, err)
			}
			if err := h.Reader.QueryRowContext(ctx, "PRAGMA "+database.SQLiteScratch+".journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("scratch journal_mode %q %v", mode, err)
			}
		})
	}
	if _, err := database.Open(ctx, database.Options{URL: "mysql://x"}); !errors.Is(err, database.ErrUnsupportedURL) {
		t.Errorf("mysql: %v", err)
	}
	if _, err := database.Open(ctx, database.Options{URL: "postgres://127.0.0.1/x?pool_max_conns=1"}); err == nil {
		t.Error("a pool of one connection accepted")
	}
}

// TestScratchReplaced checks that a scratch file SQLite does not take for
// a database (it holds only a cache) is replaced at open instead of
// stopping the server, and that the main file is left alone.
func TestScratchReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lapis.db")
	if err := os.WriteFile(database.SQLiteScratchPath(path), []byte("not a database, not even close to one; padding to pass the header size of a SQLite file......"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := database.OpenSQLite(context.Background(), path, 2)
	if err != nil {
		t.Fatalf("open with a damaged scratch file: %v", err)
	}
	defer d.Close()
	var n int
	if err := d.Reader.QueryRow("SELECT count(*) FROM " + database.SQLiteScratch + ".sqlite_schema").Scan(&n); err != nil {
		t.Fatalf("scratch file after replacement: %v", err)
	}
}

// TestScratchOwner checks that a scratch file created by root beside a
// main file of another owner (an admin command run with sudo after an
// upgrade) gets the main file's owner, so the server can open it.
func TestScratchOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files another owner")
	}
	path := filepath.Join(t.TempDir(), "lapis.db")
	d, err := database.OpenSQLite(context.Background(), path, 2)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	for _, f := range []string{database.SQLiteScratchPath(path), database.SQLiteScratchPath(path) + "-wal", database.SQLiteScratchPath(path) + "-shm"} {
		os.Remove(f)
	}
	const uid, gid = 65534, 65534
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	d, err = database.OpenSQLite(context.Background(), path, 2)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	fi, err := os.Stat(database.SQLiteScratchPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
		t.Fatalf("scratch file owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
}

// TestSQLitePageSize checks that a new SQLite file gets SQLitePageSize
// pages, in WAL mode, and that a file created with another page size (by
// an earlier release) keeps it and opens as before.
func TestSQLitePageSize(t *testing.T) {
	ctx := context.Background()
	pageSize := func(path string) (int, string) {
		t.Helper()
		d, err := database.OpenSQLite(ctx, path, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.Writer.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS t (x)"); err != nil {
			t.Fatal(err)
		}
		var n int
		var mode string
		if err := d.Reader.QueryRowContext(ctx, "PRAGMA page_size").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := d.Reader.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		return n, mode
	}
	dir := t.TempDir()
	fresh := filepath.Join(dir, "new.db")
	if n, mode := pageSize(fresh); n != database.SQLitePageSize || mode != "wal" {
		t.Fatalf("new file: page size %d, journal mode %s", n, mode)
	}
	if n, _ := pageSize(fresh); n != database.SQLitePageSize {
		t.Fatalf("reopened: page size %d", n)
	}
	// An empty file (created but never written) is new too.
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if n, _ := pageSize(empty); n != database.SQLitePageSize {
		t.Fatalf("empty file: page size %d", n)
	}
	// A file of an earlier release: 4096-byte pages, WAL.
	old := filepath.Join(dir, "old.db")
	c, err := sql.Open("sqlite", "file:"+old)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"PRAGMA journal_mode=WAL", "CREATE TABLE t (x)"} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if n, _ := pageSize(old); n != 4096 {
		t.Fatalf("file of an earlier release: page size %d, want 4096 kept", n)
	}
}
