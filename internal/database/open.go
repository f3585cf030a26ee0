package database

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Dialect is the SQL dialect of a database.
type Dialect string

// The dialects Lapis runs on.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// ErrUnsupportedURL is returned for a database URL of another scheme.
var ErrUnsupportedURL = errors.New("database: unsupported database URL scheme")

// Options select and size the database of Open.
type Options struct {
	// URL is a postgres:// URL, a sqlite:PATH or file:PATH URL, or empty
	// for the SQLite file SQLiteFile in DataDir.
	URL string
	// DataDir is the data directory (created 0700 when missing).
	DataDir string
	// SQLiteFile, when set, is the SQLite file to open (URL and DataDir
	// are then ignored).
	SQLiteFile string
	// Schema, for PostgreSQL, is the schema every table lives in: created
	// when missing and made the connections' search_path (a plain
	// identifier: lower-case letters, digits and '_'). Ignored on SQLite.
	Schema string
	// SQLiteReaders is the size of the SQLite reader pool (0: max(4,
	// GOMAXPROCS)).
	SQLiteReaders int
}

// DB is the one handle of a process on its database, shared by every
// package that keeps tables there (the FHIR store, the authorization
// database, the audit chain); each applies its own migrations to it.
//
// On SQLite it is one file with one writer connection (Writer: every
// transaction BEGIN IMMEDIATE, no automatic WAL checkpoint — the FHIR
// store checkpoints in the background) and a pool of query_only readers
// (Reader), every connection with the same pragmas. On PostgreSQL it is
// two pgxpools, the requests' (Pool) and background work's
// (BackgroundPool: see Background), and a database/sql view of them
// (Writer and Reader are the same *sql.DB) that takes each call's
// connection from the pool of its context (PoolFor).
type DB struct {
	// Dialect is the database's SQL dialect.
	Dialect Dialect
	// Writer writes: one connection on SQLite.
	Writer *sql.DB
	// Reader reads: query_only connections on SQLite; Writer on
	// PostgreSQL.
	Reader *sql.DB
	// Pool is the PostgreSQL connection pool of requests (nil on
	// SQLite).
	Pool *pgxpool.Pool
	// BackgroundPool is the PostgreSQL connection pool of background work
	// (Background): 1 or 2 connections of pool_max_conns; Pool itself
	// when pool_max_conns is below 4 (nil on SQLite).
	BackgroundPool *pgxpool.Pool
	// Path is the SQLite file (empty on PostgreSQL).
	Path string
}

// Open opens the database named by o: PostgreSQL for a postgres:// URL,
// else the SQLite file of SQLiteFilePath. The caller closes it once,
// after every package using it has stopped.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.SQLiteFile != "" {
		return OpenSQLite(ctx, o.SQLiteFile, o.SQLiteReaders)
	}
	if IsPostgresURL(o.URL) {
		return openPostgres(ctx, o.URL, o.Schema)
	}
	if o.URL != "" && !strings.HasPrefix(o.URL, "sqlite:") && !strings.HasPrefix(o.URL, "file:") {
		return nil, ErrUnsupportedURL
	}
	path, err := SQLiteFilePath(o.URL, o.DataDir)
	if err != nil {
		return nil, err
	}
	return OpenSQLite(ctx, path, o.SQLiteReaders)
}

// Postgres reports whether the database is PostgreSQL.
func (d *DB) Postgres() bool { return d.Dialect == Postgres }

// Rebind returns query with its ? placeholders in the dialect's form
// (Rebind).
func (d *DB) Rebind(query string) string { return Rebind(d.Postgres(), query) }

// Close closes the pools.
func (d *DB) Close() error {
	var err error
	if d.Writer != nil {
		err = d.Writer.Close()
	}
	if d.Reader != nil && d.Reader != d.Writer {
		err = errors.Join(err, d.Reader.Close())
	}
	if d.BackgroundPool != nil && d.BackgroundPool != d.Pool {
		d.BackgroundPool.Close()
	}
	if d.Pool != nil {
		d.Pool.Close()
	}
	return err
}

// backgroundKey marks the context of background work (Background).
type backgroundKey struct{}

// Background returns ctx marked as the context of background work: work
// that no request waits for (the audit trail's copy into AuditEvents and
// its recovery, the statistics refresh, paging snapshots, export jobs,
// polls and bookkeeping). On PostgreSQL its statements run on the
// connections of BackgroundPool, so that however much of it there is, it
// never holds a connection a request is waiting for, and never gets more
// than its share of pool_max_conns. On SQLite it changes nothing.
func Background(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// isBackground reports whether ctx is (derived from) a context of
// Background.
func isBackground(ctx context.Context) bool {
	b, _ := ctx.Value(backgroundKey{}).(bool)
	return b
}

// PoolFor returns the PostgreSQL pool that serves ctx: BackgroundPool
// for background work (Background), else Pool.
func (d *DB) PoolFor(ctx context.Context) *pgxpool.Pool {
	if isBackground(ctx) {
		return d.BackgroundPool
	}
	return d.Pool
}

// defaultReaders is the default size of the SQLite reader pool.
func defaultReaders() int { return max(4, runtime.GOMAXPROCS(0)) }

// defaultPostgresConns is the size of the requests' PostgreSQL pool when
// the URL does not set pool_max_conns: room for the FHIR store's searches
// and writes, the authorization database and the audit chain's writer
// together (background work has maxBackgroundConns more). With 8 clients
// at once on 2 cores (lapis-bench -mode real), the 8 are all taken only
// when 7 searches and the audit chain's writer run: requests then wait
// for each other, on a database whose cores are busy, not for background
// work.
func defaultPostgresConns() int32 { return int32(max(8, 2*runtime.GOMAXPROCS(0))) }

// Owned is embedded by the parts that can be built on a handle of their
// own (Build) as well as on the process's shared one: it remembers the
// handle Build opened for them, which their Close closes
// (CloseOwnedDB).
type Owned struct{ h *DB }

// OwnDB makes h the handle CloseOwnedDB closes.
func (o *Owned) OwnDB(h *DB) { o.h = h }

// CloseOwnedDB closes the handle of OwnDB, if any.
func (o *Owned) CloseOwnedDB() error {
	if o.h == nil {
		return nil
	}
	return o.h.Close()
}

// Build opens the database named by o and builds one user of it on that
// handle (build is e.g. authdb.New), which then owns it (OwnDB): for
// tools and tests that use one part of the database alone. On an error
// the handle is closed.
func Build[T interface{ OwnDB(*DB) }](ctx context.Context, o Options, build func(context.Context, *DB) (T, error)) (T, error) {
	var zero T
	h, err := Open(ctx, o)
	if err != nil {
		return zero, err
	}
	v, err := build(ctx, h)
	if err != nil {
		h.Close()
		return zero, err
	}
	v.OwnDB(h)
	return v, nil
}

// Ping checks that the handle's writer and readers answer (readiness).
func (d *DB) Ping(ctx context.Context) error { return Ping(ctx, d.Writer, d.Reader) }

// Ping checks that every pool answers (a readiness check of a part with a
// writer and readers; the same pool may be given twice).
func Ping(ctx context.Context, pools ...*sql.DB) error {
	for _, p := range pools {
		if err := p.PingContext(ctx); err != nil {
			return err
		}
	}
	return nil
}
