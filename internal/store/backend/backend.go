// Package backend builds the configured store on the process's database
// handle: PostgreSQL or the embedded SQLite database. Building it runs the
// store's embedded schema migrations, which is safe while other processes
// (a running server, admin commands) open the same database.
package backend

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/store/sqlite"
)

// New builds the FHIR store of db's dialect on db; closing the store
// leaves db open.
func New(ctx context.Context, db *database.DB) (store.Store, error) {
	if db.Postgres() {
		return postgres.New(ctx, db, postgres.Options{})
	}
	return sqlite.New(ctx, db, sqlite.Options{})
}

// Open opens the database named by databaseURL and builds the store on
// it; closing the store closes that handle. For tests and tools that use
// the FHIR store alone:
//
//   - "postgres://..." or "postgresql://...": PostgreSQL;
//   - "": SQLite at <dataDir>/lapis.db (dataDir is created with mode 0700);
//   - "sqlite:PATH", "sqlite://PATH" or "file:PATH": SQLite at PATH (a
//     relative PATH is relative to the working directory; URL query
//     parameters are ignored).
func Open(ctx context.Context, databaseURL, dataDir string) (store.Store, error) {
	switch {
	case database.IsPostgresURL(databaseURL):
		return postgres.Open(ctx, databaseURL)
	case databaseURL == "", strings.HasPrefix(databaseURL, "sqlite:"), strings.HasPrefix(databaseURL, "file:"):
		path, err := database.SQLiteFilePath(databaseURL, dataDir)
		if err != nil {
			return nil, err
		}
		return sqlite.Open(ctx, path)
	}
	return nil, fmt.Errorf("database: unsupported database URL scheme in %q", redact(databaseURL))
}

// redact hides the password of a URL for error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
