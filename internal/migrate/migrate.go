// Package migrate applies a package's embedded goose migrations to its
// own version table, on SQLite or PostgreSQL, safely when several
// processes start at once.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Up applies the migrations in migrations/sqlite or migrations/postgres
// of fsys to db, recording them in table. On PostgreSQL an advisory lock
// (lockID) serialises concurrent starts; on SQLite processes migrating at
// once serialise on the write lock, and a loser retries and finds nothing
// pending.
func Up(ctx context.Context, db *sql.DB, fsys fs.FS, postgres bool, table string, lockID int64) error {
	dir := "migrations/sqlite"
	if postgres {
		dir = "migrations/postgres"
	}
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return err
	}
	return UpDir(ctx, db, sub, postgres, table, lockID)
}

// UpDir is Up with the migrations at the root of fsys; an empty table is
// goose's default version table (goose_db_version).
func UpDir(ctx context.Context, db *sql.DB, fsys fs.FS, postgres bool, table string, lockID int64) error {
	dialect := goose.DialectSQLite3
	if postgres {
		dialect = goose.DialectPostgres
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if table != "" {
		opts = append(opts, goose.WithTableName(table))
	}
	if postgres {
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID))
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	var last error
	for attempt := range 5 {
		p, err := goose.NewProvider(dialect, db, fsys, opts...)
		if err != nil {
			return err
		}
		if _, err = p.Up(ctx); err == nil {
			return nil
		}
		last = err
		if pending, perr := p.HasPending(ctx); perr == nil && !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
	return last
}

// Applied returns nil when every migration in migrations/sqlite or
// migrations/postgres of fsys is recorded in table (the readiness check
// of a package's schema: a database restored from an old backup, or one
// whose version table was lost, is not ready).
func Applied(ctx context.Context, db *sql.DB, fsys fs.FS, postgres bool, table string) error {
	dir := "migrations/sqlite"
	dialect := goose.DialectSQLite3
	if postgres {
		dir, dialect = "migrations/postgres", goose.DialectPostgres
	}
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(dialect, db, sub, goose.WithDisableGlobalRegistry(true), goose.WithTableName(table))
	if err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return err
	}
	if pending {
		return errors.New("migrate: migrations pending")
	}
	return nil
}
