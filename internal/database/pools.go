package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// IsPostgresURL reports whether databaseURL names a PostgreSQL database
// (a postgres:// or postgresql:// URL).
func IsPostgresURL(databaseURL string) bool {
	return strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://")
}

// Pools are the connection pools of one database: the writer and the
// readers. On PostgreSQL both are the same pool.
type Pools struct {
	// W is the writer: one connection on SQLite, whose transactions
	// begin IMMEDIATE.
	W *sql.DB
	// R are the readers: read-only connections on SQLite.
	R *sql.DB
	// Postgres reports a PostgreSQL database.
	Postgres bool
}

// PoolOptions size the pools of OpenPools.
type PoolOptions struct {
	// PostgresConns is the size of the PostgreSQL pool.
	PostgresConns int
	// SQLiteReaders is the size of the SQLite reader pool.
	SQLiteReaders int
	// SQLiteWriterPragmas are extra pragmas of the SQLite writer, e.g.
	// "wal_autocheckpoint(0)".
	SQLiteWriterPragmas []string
}

// OpenPools opens the pools of the database of a configuration, by the
// rules of SQLiteFilePath: PostgreSQL for a postgres:// URL, else the
// SQLite file (WAL mode, synchronous NORMAL, a 10 s busy timeout) with a
// single writer connection and a pool of query_only readers.
func OpenPools(databaseURL, dataDir string, o PoolOptions) (Pools, error) {
	if IsPostgresURL(databaseURL) {
		db, err := sql.Open("pgx", databaseURL)
		if err != nil {
			return Pools{}, fmt.Errorf("database: %w", err)
		}
		db.SetMaxOpenConns(o.PostgresConns)
		db.SetMaxIdleConns(o.PostgresConns)
		return Pools{W: db, R: db, Postgres: true}, nil
	}
	path, err := SQLiteFilePath(databaseURL, dataDir)
	if err != nil {
		return Pools{}, err
	}
	wx := []string{"_txlock", "immediate"}
	for _, p := range o.SQLiteWriterPragmas {
		wx = append(wx, "_pragma", p)
	}
	w, err := sql.Open("sqlite", SQLiteDSN(path, wx...))
	if err != nil {
		return Pools{}, fmt.Errorf("database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", SQLiteDSN(path, "_pragma", "query_only(1)"))
	if err != nil {
		w.Close()
		return Pools{}, fmt.Errorf("database: %w", err)
	}
	r.SetMaxOpenConns(o.SQLiteReaders)
	r.SetMaxIdleConns(o.SQLiteReaders)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	return Pools{W: w, R: r}, nil
}

// Close closes the pools.
func (p Pools) Close() error {
	var err error
	if p.W != nil {
		err = p.W.Close()
	}
	if p.R != nil && p.R != p.W {
		err = errors.Join(err, p.R.Close())
	}
	return err
}

// SQLiteDSN is the modernc.org/sqlite data source name of the file at path
// with the pragmas every Lapis connection uses (a 10 s busy timeout, WAL,
// synchronous NORMAL) and then the extra query parameters (name, value
// pairs, e.g. "_pragma", "query_only(1)").
func SQLiteDSN(path string, extra ...string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	for i := 0; i+1 < len(extra); i += 2 {
		q.Add(extra[i], extra[i+1])
	}
	return "file:" + path + "?" + q.Encode()
}

// Ping checks that every pool answers (a readiness check of a store with
// a writer and readers; the same pool may be given twice).
func Ping(ctx context.Context, pools ...*sql.DB) error {
	for _, p := range pools {
		if err := p.PingContext(ctx); err != nil {
			return err
		}
	}
	return nil
}
