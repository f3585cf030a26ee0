// Package backend opens the configured store: PostgreSQL for a
// postgres:// URL, otherwise the embedded SQLite database. Opening runs the
// embedded schema migrations, which is safe while other processes (a
// running server, admin commands) open the same database.
package backend

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/store/sqlite"
)

// Open opens the store named by databaseURL:
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
	case databaseURL == "":
		if dataDir == "" {
			return nil, fmt.Errorf("database: no database URL and no data directory")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		return sqlite.Open(ctx, filepath.Join(dataDir, database.SQLiteFile))
	case strings.HasPrefix(databaseURL, "sqlite:"), strings.HasPrefix(databaseURL, "file:"):
		path, err := database.SQLitePath(databaseURL)
		if err != nil {
			return nil, err
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("database: %w", err)
			}
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
