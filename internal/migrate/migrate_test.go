package migrate_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"
	"testing/fstest"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver

	"github.com/lapis-health/lapis/internal/migrate"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// templates is one package's migrations in the template layout.
var templates = fstest.MapFS{
	"migrations/00001_t.sql": {Data: []byte(`-- +goose Up
CREATE TABLE t (
    id {{int}} PRIMARY KEY,
    at {{int}} NOT NULL,
{{- if postgres}}
    tag TEXT COLLATE "C"
{{- else}}
    tag TEXT COLLATE BINARY
{{- end}}
);
CREATE TABLE k (
    a TEXT NOT NULL,
    b {{int}} NOT NULL,
    PRIMARY KEY (a, b)
){{withoutRowID}};

-- +goose Down
DROP TABLE k;
DROP TABLE t;
`)},
	"migrations/00002_u.sql": {Data: []byte(`-- +goose Up
CREATE INDEX t_at ON t (at);

-- +goose Down
DROP INDEX t_at;
`)},
}

// TestRender: each template renders for each dialect under its own name.
func TestRender(t *testing.T) {
	for _, tc := range []struct {
		postgres bool
		want     string
	}{
		{false, `-- +goose Up
CREATE TABLE t (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    tag TEXT COLLATE BINARY
);
CREATE TABLE k (
    a TEXT NOT NULL,
    b INTEGER NOT NULL,
    PRIMARY KEY (a, b)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE k;
DROP TABLE t;
`},
		{true, `-- +goose Up
CREATE TABLE t (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    tag TEXT COLLATE "C"
);
CREATE TABLE k (
    a TEXT NOT NULL,
    b BIGINT NOT NULL,
    PRIMARY KEY (a, b)
);

-- +goose Down
DROP TABLE k;
DROP TABLE t;
`},
	} {
		out, err := migrate.Render(templates, "migrations", tc.postgres)
		if err != nil {
			t.Fatal(err)
		}
		names, err := fs.Glob(out, "*.sql")
		if err != nil || len(names) != 2 || names[0] != "00001_t.sql" || names[1] != "00002_u.sql" {
			t.Fatalf("names %v %v", names, err)
		}
		got, err := fs.ReadFile(out, "00001_t.sql")
		if err != nil || string(got) != tc.want {
			t.Errorf("postgres=%v: got\n%s\nwant\n%s (%v)", tc.postgres, got, tc.want, err)
		}
	}
	if _, err := migrate.Render(fstest.MapFS{"migrations/1_x.sql": {Data: []byte("{{nope}}")}}, "migrations", false); err == nil {
		t.Error("an unknown function renders")
	}
}

// TestUpTemplates applies the templates to fresh databases of both
// dialects: the tables exist, Applied finds nothing pending, and a second
// Up is a no-op.
func TestUpTemplates(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		postgres bool
		open     func(t *testing.T) (*sql.DB, error)
	}{
		{"sqlite", false, func(t *testing.T) (*sql.DB, error) {
			return sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
		}},
		{"postgres", true, func(t *testing.T) (*sql.DB, error) { return sql.Open("pgx", pgtest.New(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := tc.open(t)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := migrate.Applied(ctx, db, templates, tc.postgres, "v"); err == nil {
				t.Error("Applied before Up")
			}
			for range 2 {
				if err := migrate.Up(ctx, db, templates, tc.postgres, "v", 42); err != nil {
					t.Fatal(err)
				}
			}
			if err := migrate.Applied(ctx, db, templates, tc.postgres, "v"); err != nil {
				t.Error(err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO k (a, b) VALUES ('x', 9007199254740993)"); err != nil {
				t.Error(err)
			}
			var at int64
			if _, err := db.ExecContext(ctx, "INSERT INTO t (id, at) VALUES (1, 9007199254740993)"); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRowContext(ctx, "SELECT at FROM t WHERE id = 1").Scan(&at); err != nil || at != 9007199254740993 {
				t.Errorf("at %d %v", at, err)
			}
		})
	}
}
