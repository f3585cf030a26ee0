// Package database opens the one database handle of a Lapis process
// (Open → DB: its dialect, one writer and the readers; on PostgreSQL, the
// connections of requests apart from those of background work,
// Background) that the FHIR store, the authorization database and the
// audit chain share, each with its own migrations; it names the database
// of a configuration (the SQLite file of a "sqlite:"/"file:" URL or of a
// data directory, or a PostgreSQL URL) and numbers placeholders per
// dialect (Rebind). It sits below every package that uses the database
// and imports none of them.
package database

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// SQLiteFile is the name of the SQLite database inside the data directory.
const SQLiteFile = "lapis.db"

// SQLiteFilePath returns the SQLite file of a configuration: the "sqlite:"
// or "file:" URL's path, or, with no URL, SQLiteFile in dataDir. It creates
// the file's directory (0700) when missing.
func SQLiteFilePath(databaseURL, dataDir string) (string, error) {
	var p string
	switch {
	case databaseURL == "" && dataDir == "":
		return "", errors.New("database: no database URL and no data directory")
	case databaseURL == "":
		p = filepath.Join(dataDir, SQLiteFile)
	case !strings.HasPrefix(databaseURL, "sqlite:") && !strings.HasPrefix(databaseURL, "file:"):
		return "", errors.New("database: unsupported database URL scheme")
	default:
		var err error
		if p, err = SQLitePath(databaseURL); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	return p, nil
}

// SQLitePath returns the file path of a "sqlite:" or "file:" URL.
func SQLitePath(databaseURL string) (string, error) {
	rest, ok := strings.CutPrefix(databaseURL, "sqlite:")
	if !ok {
		rest, _ = strings.CutPrefix(databaseURL, "file:")
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	if strings.HasPrefix(rest, "//") {
		// sqlite:///abs/path or file://localhost/abs/path
		rest = strings.TrimPrefix(rest, "//")
		if i := strings.IndexByte(rest, '/'); i > 0 {
			host := rest[:i]
			if host != "localhost" {
				return "", fmt.Errorf("database: SQLite URL %q names a host", databaseURL)
			}
			rest = rest[i:]
		}
	}
	p, err := url.PathUnescape(rest)
	if err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	if p == "" {
		return "", fmt.Errorf("database: SQLite URL %q has no path", databaseURL)
	}
	return p, nil
}

// Location describes where the configured database is, for logs, without
// credentials: the absolute SQLite file path, or "postgres://HOST/DB" (no
// user, password or query parameters). It does not touch the file system.
func Location(databaseURL, dataDir string) string {
	switch {
	case IsPostgresURL(databaseURL):
		u, err := url.Parse(databaseURL)
		if err != nil {
			return "postgres (unparseable URL)"
		}
		host := u.Host
		if host == "" {
			host = u.Query().Get("host") // a Unix socket directory
		}
		db := strings.TrimPrefix(u.Path, "/")
		if db == "" {
			db = u.Query().Get("dbname")
		}
		return "postgres://" + host + "/" + db
	case databaseURL == "":
		return absPath(filepath.Join(dataDir, SQLiteFile))
	case strings.HasPrefix(databaseURL, "sqlite:"), strings.HasPrefix(databaseURL, "file:"):
		p, err := SQLitePath(databaseURL)
		if err != nil {
			return "sqlite (invalid URL)"
		}
		return absPath(p)
	}
	return "(unsupported database URL)"
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
