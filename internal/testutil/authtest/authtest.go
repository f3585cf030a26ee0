// Package authtest opens the authorization database and signing keys for
// the tests of the packages built on them (authdb, oauth, authorize,
// authn, adminapi, netpolicy, app), on SQLite or a fresh PostgreSQL
// database.
package authtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// Stores opens a fresh authorization database — SQLite in a temporary
// directory, or a fresh PostgreSQL database when dialect is "postgres" —
// and its signing keys (key-encryption key in that directory); it returns
// them with the directory. The database is closed when t ends.
func Stores(t testing.TB, dialect string) (*authdb.DB, *keys.Manager, string) {
	t.Helper()
	db, km, dir, _ := StoresURL(t, dialect)
	return db, km, dir
}

// StoresURL is Stores that also returns the database URL ("" for SQLite
// in the directory), so a test can open a second instance on the same
// database.
func StoresURL(t testing.TB, dialect string) (*authdb.DB, *keys.Manager, string, string) {
	t.Helper()
	dir, dbURL := dirFor(t, dialect)
	db := openURL(t, dbURL, dir)
	km, err := keys.Open(context.Background(), db, keys.Options{KEKFile: filepath.Join(dir, keys.KEKFile)})
	if err != nil {
		t.Fatal(err)
	}
	return db, km, dir, dbURL
}

// DB opens a fresh authorization database (SQLite in a temporary
// directory, or a fresh PostgreSQL database when dialect is "postgres"),
// closed when t ends.
func DB(t testing.TB, dialect string) *authdb.DB {
	t.Helper()
	dir, dbURL := dirFor(t, dialect)
	return openURL(t, dbURL, dir)
}

// Both runs f as a subtest on a fresh SQLite and a fresh PostgreSQL
// authorization database (see DB).
func Both(t *testing.T, f func(t *testing.T, db *authdb.DB)) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) { f(t, DB(t, dialect)) })
	}
}

// dirFor returns a new temporary directory of t and the URL of a fresh
// database of dialect: "" on SQLite, whose database in the directory is
// a copy of one the authorization store's migrations were applied to
// once per test process (Dir), or a fresh pgtest database.
func dirFor(t testing.TB, dialect string) (dir, dbURL string) {
	t.Helper()
	if dialect == "postgres" {
		return t.TempDir(), pgtest.New(t)
	}
	return Dir(t), ""
}

// Dir returns a new temporary data directory of t holding a SQLite
// database (the default file of a data directory) with the
// authorization store's schema and no data: a copy of one migrated once
// per test process (dbtest.Template).
func Dir(t testing.TB) string {
	t.Helper()
	return dbtest.Template(t, "authtest.Dir", func(dir string) error {
		db, err := authdb.Open(context.Background(), "", dir)
		if err != nil {
			return err
		}
		return db.Close()
	})
}

func openURL(t testing.TB, dbURL, dir string) *authdb.DB {
	t.Helper()
	db, err := authdb.Open(context.Background(), dbURL, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// WideScopes returns the user/ and system/ scopes among scopes (what a
// patient's token must never carry).
func WideScopes(scopes []string) []string {
	var out []string
	for _, s := range scopes {
		if strings.HasPrefix(s, "user/") || strings.HasPrefix(s, "system/") {
			out = append(out, s)
		}
	}
	return out
}
