package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// sqlitePragmas are the pragmas of every Lapis connection to a SQLite
// file, set here once: a 10 s busy timeout (another process writing),
// WAL, synchronous NORMAL, foreign keys, a 32 MB page cache, no memory
// map, temporary tables in memory.
//
// No memory map: a connection whose read transaction finds the database
// changed since its last one (in a serving process, nearly always: the
// audit trail writes on every request) drops its page cache and, when
// the file is mapped, unmaps it whole, to map it again and fault in every
// page the transaction touches. Reading those pages into the page cache
// costs less: 20-30 % less CPU per search with writes in between
// (plantest BenchmarkShapes with a write before each search), the same
// without.
var sqlitePragmas = []string{
	"busy_timeout(10000)",
	"journal_mode(WAL)",
	"synchronous(NORMAL)",
	"foreign_keys(1)",
	"cache_size(-32000)",
	"mmap_size(0)",
	"temp_store(MEMORY)",
}

// OpenSQLite opens the SQLite file at path (creating it, mode 0600):
// one writer connection whose transactions begin IMMEDIATE and which
// never checkpoints the WAL on its commit path (wal_autocheckpoint 0; the
// FHIR store's background checkpointer does, and closing the last
// connection does), and readers query_only connections (0: max(4,
// GOMAXPROCS)).
func OpenSQLite(ctx context.Context, path string, readers int) (*DB, error) {
	if readers <= 0 {
		readers = defaultReaders()
	}
	w, err := sql.Open("sqlite", SQLiteDSN(path, "_txlock", "immediate", "_pragma", "analysis_limit(1000)", "_pragma", "wal_autocheckpoint(0)"))
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	d := &DB{Dialect: SQLite, Writer: w, Path: path}
	// Connect now: the file (and its WAL) exist from here on.
	if err := pingSQLite(ctx, w); err != nil {
		d.Close()
		return nil, fmt.Errorf("database: open %s: %w", path, err)
	}
	// The database holds patient data: readable by its owner only.
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(f, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.Close()
			return nil, fmt.Errorf("database: %w", err)
		}
	}
	r, err := sql.Open("sqlite", d.SQLiteReaderDSN())
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	d.Reader = r
	return d, nil
}

// pingSQLite makes the first connection. Processes that open a new file
// at the same moment (a server and an admin command, instances starting
// together) race to switch it to WAL, and SQLite answers that switch
// SQLITE_BUSY without waiting on the busy timeout: the first connection
// is retried for up to the busy timeout's 10 s.
func pingSQLite(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(10 * time.Second)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// SQLiteReaders is the size of the SQLite reader pool (0 on PostgreSQL).
func (d *DB) SQLiteReaders() int {
	if d.Dialect != SQLite {
		return 0
	}
	return d.Reader.Stats().MaxOpenConnections
}

// SQLiteReaderDSN is the data source name of a reader connection to the
// SQLite file (for connections opened outside the pools, e.g. through the
// driver directly).
func (d *DB) SQLiteReaderDSN() string { return SQLiteDSN(d.Path, "_pragma", "query_only(1)") }

// SQLiteConnDSN is the data source name of a connection to the SQLite
// file with the common pragmas and then the extra query parameters (name,
// value pairs). It is for a package's own side connections (the FHIR
// store's snapshot writer), not for another writer pool.
func (d *DB) SQLiteConnDSN(extra ...string) string { return SQLiteDSN(d.Path, extra...) }

// SQLiteDSN is the modernc.org/sqlite data source name of the file at path
// with the pragmas every Lapis connection uses and then the extra query
// parameters (name, value pairs, e.g. "_pragma", "query_only(1)").
func SQLiteDSN(path string, extra ...string) string {
	q := url.Values{}
	for _, p := range sqlitePragmas {
		q.Add("_pragma", p)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Add(extra[i], extra[i+1])
	}
	return "file:" + path + "?" + q.Encode()
}
