// Package postgres is the store.Store on PostgreSQL (pgx v5, pgxpool). Each
// Put is one round trip (a data-modifying WITH statement that upserts the
// current row, appends the history row and drops the old index rows); the
// new index rows are buffered and sent with unnest arrays, one statement per
// index table, before the next search in the transaction or at commit.
// Search SQL is shared with the SQLite store through package sqlgen. The
// search statements whose SQL fixes their plan run with generic plans
// (search.go); the others are planned with their values at every
// execution (unnamed statements, see querier); Read and VRead keep a
// generic plan (read.go). Everything runs on the pool of the process's
// database handle that serves its context (database.DB.PoolFor): the
// requests' pool, or background work's for the audit trail's copy, the
// statistics refresh and the paging-snapshot writer.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3/lock"

	lapismigrate "github.com/lapis-health/lapis/internal/migrate"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store; the zero value is the production configuration.
type Options struct {
	// SnapshotCap overrides sqlgen.SnapshotCap when positive (tests).
	SnapshotCap int
}

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	stopSnapshots  func() // stops the background paging-snapshot writer
	db             *database.DB
	eng            *sqlgen.Engine
	stats          sqlgen.StatsSchedule // when Update runs ANALYZE
	database.Owned                      // the handle Open opened (none: New's caller owns it)
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (postgres://...) and migrates its
// schema; the Store owns that database handle and closes it.
func Open(ctx context.Context, url string) (*Store, error) {
	return database.Build(ctx, database.Options{URL: url}, func(ctx context.Context, h *database.DB) (*Store, error) { return New(ctx, h, Options{}) })
}

// New builds the store on the process's database handle db (a PostgreSQL
// one), on its pools, and migrates the store's schema. Close leaves db
// open.
func New(ctx context.Context, db *database.DB, opts Options) (*Store, error) {
	if db.Dialect != database.Postgres {
		return nil, errors.New("postgres: not a PostgreSQL database")
	}
	if err := migrate(ctx, db.Writer); err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	st := &Store{db: db, eng: &sqlgen.Engine{D: sqlgen.Postgres, Cap: opts.SnapshotCap}}
	// Growth is measured from the data present now; autovacuum (tuned per
	// table by the migrations) covers slow change, so no time-based
	// refresh.
	st.stats.Every = -1
	var rows int64
	if err := db.Pool.QueryRow(ctx, "SELECT COALESCE(MAX(rid), 0) FROM resources").Scan(&rows); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	st.stats.Reset(rows)
	st.stopSnapshots = st.eng.StartSnapshotWriter(querier{db.BackgroundPool})
	return st, nil
}

// migrate applies the embedded goose migrations (goose's own version
// table) under a PostgreSQL advisory lock, so processes opening the
// database together take turns (migrate.UpDir).
func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return lapismigrate.UpDir(ctx, db, fsys, true, "", lock.DefaultLockID)
}

// Close stops the store (and closes the database handle when Open opened
// it).
func (s *Store) Close() error {
	s.stats.Wait()
	if s.stopSnapshots != nil {
		s.stopSnapshots()
	}
	return s.CloseOwnedDB()
}

// Pool returns the requests' connection pool (for tests and
// diagnostics).
func (s *Store) Pool() *pgxpool.Pool { return s.db.Pool }

// pool returns the connection pool that serves ctx
// (database.DB.PoolFor).
func (s *Store) pool(ctx context.Context) *pgxpool.Pool { return s.db.PoolFor(ctx) }

// Engine returns the shared SQL engine (for tests and diagnostics).
func (s *Store) Engine() *sqlgen.Engine { return s.eng }

// SearchConns implements store.SearchConns: the connections of the
// requests' pool, which serves searches, history, reads and writes.
func (s *Store) SearchConns() int { return int(s.db.Pool.Config().MaxConns) }

// Read returns the current version of a resource.
func (s *Store) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	return s.rawRead(ctx, typ, id)
}

// VRead returns one version of a resource.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	return s.rawVRead(ctx, typ, id, version)
}

// History lists versions, newest first.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (*store.HistoryPage, error) {
	return s.eng.History(ctx, newSearchQuerier(s.pool(ctx)), q)
}

// Search runs a search.
func (s *Store) Search(ctx context.Context, q *store.Query) (*store.SearchResult, error) {
	return s.eng.Search(ctx, newSearchQuerier(s.pool(ctx)), querier{s.pool(ctx)}, q)
}

// Update runs fn in one READ COMMITTED transaction; Tx.Read and Put lock
// the rows they read.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	ptx, err := s.pool(ctx).Begin(ctx)
	if err != nil {
		return err
	}
	t := &tx{s: s, tx: ptx}
	if err := fn(t); err != nil {
		ptx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := t.flush(ctx); err != nil {
		ptx.Rollback(context.WithoutCancel(ctx))
		return mapErr(err)
	}
	if err := ptx.Commit(ctx); err != nil {
		return mapErr(err)
	}
	// When the data has grown by a factor since the last refresh, refresh
	// the statistics and visibility maps of the store's tables now rather
	// than when autovacuum comes round (up to a minute and a scale factor
	// later), so searches plan on the data as it is and read it through
	// their covering indexes; in the background, so that this commit's
	// response does not wait for it.
	s.stats.Background(t.puts, func() error { return s.vacuumTables(database.Background(context.WithoutCancel(ctx))) })
	return nil
}

// WaitStats implements store.StatsWaiter.
func (s *Store) WaitStats() { s.stats.Wait() }

// statsTables are the tables whose statistics searches plan with.
const statsTables = "resources, history, idx_string, idx_token, idx_reference, idx_date, idx_number, idx_quantity, idx_uri, history_token, history_reference"

// vacuumTables VACUUMs and ANALYZEs the store's tables. ANALYZE
// invalidates the cached plans that depend on them, on every connection.
// VACUUM marks the pages written since the last one all-visible: until
// then an index-only scan (the index tables' search and rid indexes
// cover the searches that read them) fetches every row it finds from the
// table as well, which after a load over HTTP, before autovacuum's first
// round, made the rows read per search several times more. Tables that
// autovacuum is working on are skipped (it does the same). It runs
// without parallel workers (PARALLEL 0): it comes after commits that
// grew the data by half, the audit trail's copy among them, so while the
// server answers searches, and the leader with its two index workers
// took every core of a small machine for seconds at a time. The statement
// has no arguments, so it runs in the simple protocol, outside a
// transaction block, as VACUUM must.
func (s *Store) vacuumTables(ctx context.Context) error {
	_, err := s.pool(ctx).Exec(ctx, "VACUUM (ANALYZE, SKIP_LOCKED, PARALLEL 0) "+statsTables)
	return err
}

// mapErr reports serialization failures, deadlocks and unique violations
// as store.ErrConflict.
func mapErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "23505":
			return fmt.Errorf("%w: %s", store.ErrConflict, pe.Message)
		}
	}
	return err
}

// querier adapts pgxpool.Pool and pgx.Tx to sqlgen.Querier. It runs the
// engine's SQL (searches, history, paging snapshots) as unnamed statements
// with the description pgx caches (pgx.QueryExecModeCacheDescribe): one
// round trip with binary values, as a cached prepared statement, but
// PostgreSQL plans each execution with its values, whatever the plan
// cache mode: a generic plan, blind to which patient or code is searched,
// is often orders of magnitude slower.
type querier struct {
	c interface {
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	}
}

func (q querier) Query(ctx context.Context, sql string, args ...any) (sqlgen.Rows, error) {
	r, err := q.c.Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
	if err != nil {
		return nil, mapErr(err)
	}
	return r, nil
}

func (q querier) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := q.c.Exec(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
	return mapErr(err)
}

// Analyze refreshes the planner statistics (ANALYZE) after a bulk load.
func (s *Store) Analyze(ctx context.Context) error {
	_, err := s.pool(ctx).Exec(ctx, "ANALYZE")
	return err
}
