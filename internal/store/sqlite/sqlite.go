// Package sqlite is the embedded store.Store on SQLite (modernc.org/sqlite,
// pure Go). It uses WAL with one writer connection, on which every Update is
// a BEGIN IMMEDIATE transaction, and a pool of read-only connections for
// searches and history. Read and VRead, the hottest queries, use a second,
// small set of read-only connections opened through the driver directly,
// outside database/sql (rawread.go). Search SQL is shared with the
// PostgreSQL store through package sqlgen.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store; the zero value is the production configuration.
type Options struct {
	// SnapshotCap overrides sqlgen.SnapshotCap when positive (tests).
	SnapshotCap int
	// Readers is the size of the read connection pool of the handle
	// Open and OpenWith open (default max(4, GOMAXPROCS)).
	Readers int
}

// Store is a store.Store on one SQLite database file.
type Store struct {
	stopCheckpoints func()     // stops the background WAL checkpointer
	stmts           *stmtCache // prepared read statements by SQL text
	stopSnapshots   func()     // stops the background paging-snapshot writer
	w, r            *sql.DB
	// sw stores paging snapshots (in the scratch file, scratch.go) and
	// checkpoints: its own connection, so a Store.Search made while an
	// Update holds w does not deadlock on the pool (and, w having the
	// scratch file attached read-only, does not wait on its lock).
	sw  *sql.DB
	eng *sqlgen.Engine

	raw *rawPool // Read and VRead (rawread.go)
	ws  *writeStmts

	readers int // size of the pool r

	stats sqlgen.StatsSchedule // when planner statistics are refreshed

	ins map[insKey]*sql.Stmt // multi-row index INSERTs on w, prepared at Open

	database.Owned // the handle Open opened (none: New's caller owns it)
}

var _ store.Store = (*Store)(nil)

// snapshotDelay is how long the paging snapshots of searches are gathered
// before they are stored in one commit. Every commit costs each reader
// connection its page cache at its next read transaction; a search whose
// result takes more than one page saves a snapshot, which, written alone,
// made a commit of nearly every such search. Until it is stored, this
// process serves it from memory (another would re-run the search at the
// page's offset, as for any lost snapshot). The audit trail's group delay
// is the same.
const snapshotDelay = 100 * time.Millisecond

// Open opens (creating if needed) the SQLite database at path and migrates
// its schema; the Store owns that database handle and closes it.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, opts Options) (*Store, error) {
	return database.Build(ctx, database.Options{SQLiteFile: path, SQLiteReaders: opts.Readers}, func(ctx context.Context, h *database.DB) (*Store, error) { return New(ctx, h, opts) })
}

// New builds the store on the process's database handle db (a SQLite
// one): its writer and readers, plus the store's own side connections
// (the raw readers of Read and VRead, the snapshot writer and WAL
// checkpointer), and migrates the store's schema. Close leaves db open;
// opts.Readers is ignored (the handle sizes the readers).
func New(ctx context.Context, db *database.DB, opts Options) (*Store, error) {
	if db.Dialect != database.SQLite {
		return nil, errors.New("sqlite: not a SQLite database")
	}
	w, r := db.Writer, db.Reader
	if err := migrateSchema(ctx, w); err != nil {
		return nil, fmt.Errorf("sqlite: migrate %s: %w", db.Path, err)
	}
	n := db.SQLiteReaders()
	raw, err := openRawPool(r.Driver(), db.SQLiteReaderDSN(), n)
	if err != nil {
		return nil, err
	}
	sw := db.OpenSQLiteConn()
	sw.SetMaxOpenConns(1)
	sw.SetConnMaxIdleTime(0)
	sw.SetConnMaxLifetime(0)
	if err := migrateScratch(ctx, sw); err != nil {
		sw.Close()
		raw.close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", database.SQLiteScratchPath(db.Path), err)
	}
	s := &Store{w: w, r: r, raw: raw, readers: n, sw: sw, eng: &sqlgen.Engine{D: sqlgen.SQLite, Cap: opts.SnapshotCap, SnapshotDelay: snapshotDelay, SnapshotTable: snapshotTable}, ins: make(map[insKey]*sql.Stmt)}
	// Paging snapshots are stored a batch at a time, one commit each
	// (see snapshotDelay).
	s.stopSnapshots = s.eng.StartSnapshotWriter(querier{sw})
	s.stmts = newStmtCache(r, 512)
	s.stopCheckpoints = s.startCheckpointer(sw)
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	// Refresh planner statistics that are missing or stale (cheap with
	// analysis_limit); repeated as the data grows (Update).
	if err := s.refreshStats(ctx, "PRAGMA main.optimize=0x10002"); err != nil {
		s.Close()
		return nil, err
	}
	var rows int64
	if err := w.QueryRowContext(ctx, "SELECT COALESCE(MAX(rid), 0) FROM resources").Scan(&rows); err != nil {
		s.Close()
		return nil, err
	}
	s.stats.Reset(rows)
	return s, nil
}

// migrateSchema applies the embedded goose migrations (migrate.UpDir:
// processes migrating the same file at once serialise on the SQLite write
// lock, and one that loses the race finds nothing pending).
func migrateSchema(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return migrate.UpDir(ctx, db, fsys, false, "", 0)
}

// Close stops the store and closes its own connections (and the database
// handle when Open opened it).
func (s *Store) Close() error {
	s.stats.Wait()
	var errs []error
	if s.stopSnapshots != nil {
		s.stopSnapshots()
	}
	if s.stopCheckpoints != nil {
		s.stopCheckpoints()
	}
	if s.stmts != nil {
		errs = append(errs, s.stmts.close())
	}
	if s.raw != nil {
		errs = append(errs, s.raw.close())
	}
	if s.ws != nil {
		errs = append(errs, s.ws.close())
	}
	for _, st := range s.ins {
		errs = append(errs, st.Close())
	}
	if _, err := s.w.Exec("PRAGMA main.optimize"); err != nil {
		errs = append(errs, err)
	}
	if s.sw != nil {
		errs = append(errs, s.sw.Close())
	}
	errs = append(errs, s.CloseOwnedDB())
	return errors.Join(errs...)
}

// Engine returns the shared SQL engine (for tests and diagnostics).
func (s *Store) Engine() *sqlgen.Engine { return s.eng }

// SearchConns implements store.SearchConns: the read connections that
// serve searches and history.
func (s *Store) SearchConns() int { return s.readers }

// Read returns the current version of a resource.
func (s *Store) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	return s.raw.read(ctx, typ, id)
}

// VRead returns one version of a resource.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	return s.raw.vread(ctx, typ, id, version)
}

// History lists versions, newest first.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (*store.HistoryPage, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return s.eng.History(ctx, readQuerier{tx, s.stmts}, q)
}

// Search runs a search in one read transaction; paging snapshots are
// written to the scratch file through the snapshot connection.
func (s *Store) Search(ctx context.Context, q *store.Query) (*store.SearchResult, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return s.eng.Search(ctx, readQuerier{tx, s.stmts}, querier{s.sw}, q)
}

// Update runs fn in a BEGIN IMMEDIATE transaction on the writer connection.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	t := &tx{s: s, tx: sqlTx}
	if err := fn(t); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return err
	}
	// When the data has grown by a factor (or the statistics are old),
	// refresh them, so the next searches plan on data as it is: in the
	// background, so that this commit's response does not wait for it
	// (with analysis_limit it takes milliseconds, and growth-spaced
	// refreshes are rare).
	s.stats.Background(t.puts, func() error { return s.refreshStats(context.WithoutCancel(ctx), "ANALYZE main") })
	return nil
}

// WaitStats implements store.StatsWaiter.
func (s *Store) WaitStats() { s.stats.Wait() }

// refreshStats runs stmt (ANALYZE or PRAGMA optimize, of the main schema:
// the writer has the scratch file attached read-only) on the writer and
// makes every other connection load the new statistics.
//
// A connection reads sqlite_stat1 when it loads the schema and keeps it:
// ANALYZE on the writer does not change the schema cookie, so pooled read
// connections (and their prepared statements) would go on planning with
// the statistics they loaded first, such as those of the empty database
// they were opened on, until they are closed. Creating and dropping a
// table in the same transaction changes the cookie; each connection then
// reloads schema and statistics when its next statement starts, and
// prepared statements are re-prepared (sqlite3_prepare_v2) on the new
// ones.
func (s *Store) refreshStats(ctx context.Context, stmt string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{stmt, "CREATE TABLE lapis_stats_epoch (x INTEGER)", "DROP TABLE lapis_stats_epoch"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlite: refreshing planner statistics: %w", err)
		}
	}
	return tx.Commit()
}

// querier adapts database/sql to sqlgen.Querier.
type querier struct {
	c interface {
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	}
}

type rows struct{ *sql.Rows }

func (r rows) Close() { r.Rows.Close() }

func (q querier) Query(ctx context.Context, query string, args ...any) (sqlgen.Rows, error) {
	query, args = anonymous(query, args)
	r, err := q.c.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (q querier) Exec(ctx context.Context, query string, args ...any) error {
	query, args = anonymous(query, args)
	_, err := q.c.ExecContext(ctx, query, args...)
	return err
}

// Analyze refreshes the planner statistics (ANALYZE) after a bulk load;
// every connection plans with them from its next statement.
func (s *Store) Analyze(ctx context.Context) error {
	return s.refreshStats(ctx, "ANALYZE main")
}

// checkpointEvery is how often the background checkpointer copies the WAL
// back into the database file.
const checkpointEvery = 500 * time.Millisecond

// startCheckpointer checkpoints the WAL in the background (PASSIVE: it
// never blocks readers or the writer), so commits do not pay for it. On
// stop it makes a final TRUNCATE checkpoint.
func (s *Store) startCheckpointer(db *sql.DB) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				_, _ = db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
				return
			case <-t.C:
				_, _ = db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-stopped
		})
	}
}
