// Package migrate applies a package's embedded goose migrations to its
// own version table, on SQLite or PostgreSQL, safely when several
// processes start at once.
//
// A package keeps its migrations in one of two layouts: one file per
// migration in migrations/*.sql, a text/template rendered for the dialect
// (see Render), or a folder per dialect, migrations/sqlite and
// migrations/postgres, holding plain SQL.
package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"testing/fstest"
	"text/template"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Up applies the migrations of fsys (either layout of the package
// comment) to db, recording them in table. On PostgreSQL an advisory lock
// (lockID) serialises concurrent starts; on SQLite processes migrating at
// once serialise on the write lock, and a loser retries and finds nothing
// pending.
func Up(ctx context.Context, db *sql.DB, fsys fs.FS, postgres bool, table string, lockID int64) error {
	sub, err := dialectFS(fsys, postgres)
	if err != nil {
		return err
	}
	return UpDir(ctx, db, sub, postgres, table, lockID)
}

// dialectFS returns the migrations of fsys for one dialect at the root of
// a file system: the folder migrations/sqlite or migrations/postgres when
// fsys has it, else the templates in migrations rendered for the dialect.
func dialectFS(fsys fs.FS, postgres bool) (fs.FS, error) {
	dir := "migrations/sqlite"
	if postgres {
		dir = "migrations/postgres"
	}
	if fi, err := fs.Stat(fsys, dir); err == nil && fi.IsDir() {
		return fs.Sub(fsys, dir)
	}
	return Render(fsys, "migrations", postgres)
}

// Render renders each migration template dir/*.sql of fsys for one
// dialect and returns the results, under the same names (goose takes the
// version from the name), at the root of an in-memory file system. A
// template writes what is the same on both dialects once and uses:
//
//   - {{int}}: a 64-bit integer column type (INTEGER on SQLite, BIGINT on
//     PostgreSQL);
//   - {{withoutRowID}}: after the closing parenthesis of a CREATE TABLE,
//     " WITHOUT ROWID" on SQLite, nothing on PostgreSQL;
//   - {{if postgres}} … {{else}} … {{end}}: what differs otherwise
//     (written {{- if postgres}} on a line of its own, the lines between
//     are kept as they are).
func Render(fsys fs.FS, dir string, postgres bool) (fs.FS, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("migrate: no migrations in %s", dir)
	}
	funcs := template.FuncMap{
		"postgres": func() bool { return postgres },
		"int": func() string {
			if postgres {
				return "BIGINT"
			}
			return "INTEGER"
		},
		"withoutRowID": func() string {
			if postgres {
				return ""
			}
			return " WITHOUT ROWID"
		},
	}
	out := fstest.MapFS{}
	for _, name := range names {
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		t, err := template.New(path.Base(name)).Funcs(funcs).Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, nil); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		out[path.Base(name)] = &fstest.MapFile{Data: b.Bytes(), Mode: 0o444}
	}
	return out, nil
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
		// goose polls a held lock every 5 s by default: a process that
		// lost the race for it waited that long for migrations its
		// winner applied in milliseconds. Once a second, for 5 minutes.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(1, 300))
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
		// Nothing pending (every start after the first): no lock to
		// wait for. HasPending reads the version table without it.
		if pending, perr := p.HasPending(ctx); perr == nil && !pending {
			return nil
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

// Applied returns nil when every migration of fsys (either layout of the
// package comment) is recorded in table (the readiness check of a
// package's schema: a database restored from an old backup, or one whose
// version table was lost, is not ready).
func Applied(ctx context.Context, db *sql.DB, fsys fs.FS, postgres bool, table string) error {
	dialect := goose.DialectSQLite3
	if postgres {
		dialect = goose.DialectPostgres
	}
	sub, err := dialectFS(fsys, postgres)
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
