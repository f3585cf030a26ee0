package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// sqlitePragmas are the pragmas of every Lapis connection to a SQLite
// file, set here once: a 10 s busy timeout (another process writing),
// WAL, synchronous NORMAL, foreign keys, a 32 MB page cache, no memory
// map, temporary tables in memory.
//
// A WAL file that a burst of writes grew is cut back to 64 MiB when a
// checkpoint lets the next writer start it again (journal_size_limit):
// without it the file keeps its largest size on disk for good.
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
	"journal_size_limit(67108864)",
	"mmap_size(0)",
	"temp_store(MEMORY)",
}

// SQLiteScratch is the schema name under which every pooled connection
// to a SQLite file has the file's scratch database attached: a second
// file beside it (SQLiteScratchPath) for data that is a cache, not
// data, written often during reads (the FHIR store's paging snapshots).
//
// A read transaction that finds a database file changed since its
// connection's previous one drops that file's page cache and reads back
// every page it touches. Commits to the scratch file leave the main
// file's cache alone: searches that save a paging snapshot no longer cost
// every reader its cache of the FHIR data.
const SQLiteScratch = "scratch"

// SQLiteScratchPath is the scratch database file of the SQLite file at
// path (see SQLiteScratch).
func SQLiteScratchPath(path string) string { return path + "-scratch" }

// OpenSQLite opens the SQLite file at path (creating it, mode 0600):
// one writer connection whose transactions begin IMMEDIATE and which
// never checkpoints the WAL on its commit path (wal_autocheckpoint 0; the
// FHIR store's background checkpointer does, and closing the last
// connection does), and readers query_only connections (0: max(4,
// GOMAXPROCS)). Every connection has the scratch file attached
// (SQLiteScratch, created here when missing): read-only on the writer,
// whose BEGIN IMMEDIATE would otherwise take the scratch file's write
// lock too (only side connections, OpenSQLiteConn, write it).
func OpenSQLite(ctx context.Context, path string, readers int) (*DB, error) {
	ensureSQLitePageCache()
	if readers <= 0 {
		readers = defaultReaders()
	}
	if err := createSQLiteScratch(ctx, path); err != nil {
		return nil, err
	}
	if err := createSQLite(ctx, path); err != nil {
		return nil, err
	}
	w := sql.OpenDB(sqliteConnector{dsn: SQLiteDSN(path, "_txlock", "immediate", "_pragma", "analysis_limit(1000)", "_pragma", "wal_autocheckpoint(0)"), scratch: SQLiteScratchPath(path)})
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
	r := sql.OpenDB(sqliteConnector{dsn: d.SQLiteReaderDSN(), scratch: SQLiteScratchPath(path)})
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	d.Reader = r
	return d, nil
}

// SQLitePageSize is the page size of the SQLite files Lapis creates:
// 16 KiB instead of SQLite's 4 KiB. A WAL commit writes every page it
// changed, each frame with two system calls (its header, then the page),
// and every table row holds a whole body: with 4 KiB pages a 2.4 KB
// AuditEvent, or a resource of that size, has a page to itself in the
// resources, the history and the audit chain, so the copy of a read's
// AuditEvent wrote about five pages a record and the checkpointer wrote
// them again. With 16 KiB pages six such rows share a page, the B-trees
// are a level shallower, and fewer pages are read per lookup once a
// commit has emptied a reader's page cache: BenchmarkServeRead/sqlite
// spends 22 % less CPU on a read and the copy of its record (cpu-all-ns/op
// 554 to 432 µs, means of three runs). A file created by an earlier
// release keeps its page size (SQLite changes it only in a VACUUM outside
// WAL mode), and an earlier release opens a file of this one as any
// other.
const SQLitePageSize = 16384

// createSQLite gives the SQLite file at path SQLitePageSize pages when it
// is new (missing or empty): the page size must be set before the first
// page is written, which setting WAL mode does, and the connector runs
// the journal mode pragma before any page size pragma. Two processes that
// create the file at once both ask for the same page size.
func createSQLite(ctx context.Context, path string) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return nil
	}
	c, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return fmt.Errorf("database: create %s: %w", path, err)
	}
	defer c.Close()
	c.SetMaxOpenConns(1)
	for _, p := range []string{"busy_timeout=10000", "page_size=" + strconv.Itoa(SQLitePageSize), "journal_mode=WAL"} {
		if _, err := c.ExecContext(ctx, "PRAGMA "+p); err != nil {
			return fmt.Errorf("database: create %s: %w", path, err)
		}
	}
	return nil
}

// createSQLiteScratch creates the scratch file of the SQLite file at path
// when missing (a new data directory, or one of an earlier release), in
// WAL mode, readable by its owner only.
//
// It holds a cache: a file SQLite does not take for a database (damaged,
// or not one) is replaced by a new one. Created by root next to a main
// file of another owner (an admin command run with sudo after an
// upgrade), it is given the main file's owner, so that the server, which
// runs as that owner, can open it.
func createSQLiteScratch(ctx context.Context, path string) error {
	sp := SQLiteScratchPath(path)
	files := []string{sp, sp + "-wal", sp + "-shm"}
	err := pingScratch(ctx, sp)
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_NOTADB || se.Code()&0xff == sqlite3.SQLITE_CORRUPT) {
		for _, f := range files {
			if rerr := os.Remove(f); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return fmt.Errorf("database: replacing the damaged %s: %w", sp, rerr)
			}
		}
		err = pingScratch(ctx, sp)
	}
	if err != nil {
		return fmt.Errorf("database: open %s: %w", sp, err)
	}
	for _, f := range files {
		if err := os.Chmod(f, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("database: %w", err)
		}
		if err := matchOwner(f, path); err != nil {
			return fmt.Errorf("database: %w", err)
		}
	}
	return nil
}

// pingScratch opens the scratch file sp (creating it) and closes it.
func pingScratch(ctx context.Context, sp string) error {
	db, err := sql.Open("sqlite", SQLiteDSN(sp))
	if err != nil {
		return err
	}
	defer db.Close()
	return pingSQLite(ctx, db)
}

// sqliteConnector opens connections of dsn with the scratch file
// attached (read-only unless writable).
type sqliteConnector struct {
	dsn, scratch string
	writable     bool
}

// Connect implements driver.Connector.
func (c sqliteConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := (&sqlite.Driver{}).Open(c.dsn)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: c.scratch}).EscapedPath()}
	if !c.writable {
		u.RawQuery = "mode=ro"
	}
	stmts := []string{"ATTACH DATABASE ? AS " + SQLiteScratch}
	if c.writable {
		// journal_mode is the file's (WAL since createSQLiteScratch);
		// synchronous is per connection and schema.
		stmts = append(stmts, "PRAGMA "+SQLiteScratch+".synchronous=NORMAL")
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("database: the sqlite driver's connection cannot execute")
	}
	for i, s := range stmts {
		var args []driver.NamedValue
		if i == 0 {
			args = []driver.NamedValue{{Ordinal: 1, Value: u.String()}}
		}
		if _, err := ex.ExecContext(ctx, s, args); err != nil {
			conn.Close()
			return nil, fmt.Errorf("database: attaching %s: %w", c.scratch, err)
		}
	}
	return conn, nil
}

// Driver implements driver.Connector.
func (sqliteConnector) Driver() driver.Driver { return &sqlite.Driver{} }

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

// OpenSQLiteConn opens a pool of connections to the SQLite file with the
// common pragmas and then the extra query parameters (name, value
// pairs), and with the scratch file attached writable (SQLiteScratch). It
// is for a package's own side connections (the FHIR store's snapshot
// writer and checkpointer), not for another writer pool.
func (d *DB) OpenSQLiteConn(extra ...string) *sql.DB {
	return sql.OpenDB(sqliteConnector{dsn: SQLiteDSN(d.Path, extra...), scratch: SQLiteScratchPath(d.Path), writable: true})
}

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
