// Package apptest opens applications (internal/app, without access
// control) on fresh databases for tests.
package apptest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// Open opens an application on a fresh database of dialect ("sqlite", or
// "postgres" for a fresh pgtest database), closed when tb ends, with the
// configuration Config(tb, dialect, edit) returns, except that on SQLite
// the data directory is dbtest.StoreDir's (the FHIR store's schema is there
// already). Its logs are discarded. The normalized configuration is the
// App's Config.
func Open(tb testing.TB, dialect string, edit func(*config.Config)) *app.App {
	tb.Helper()
	dir := ""
	if dialect != "postgres" {
		dir = dbtest.StoreDir(tb)
	}
	a, err := app.Open(context.Background(), configIn(tb, dialect, dir, edit), slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

// Config is the normalized configuration of an application on a fresh
// database of dialect ("sqlite", or "postgres" for a fresh pgtest
// database): config.Defaults with the data in a temporary directory of
// tb; edit, when not nil, changes it before it is normalized.
func Config(tb testing.TB, dialect string, edit func(*config.Config)) config.Config {
	tb.Helper()
	return configIn(tb, dialect, "", edit)
}

// configIn is Config with the data directory dir ("": a new temporary
// directory).
func configIn(tb testing.TB, dialect, dir string, edit func(*config.Config)) config.Config {
	tb.Helper()
	cfg := config.Defaults()
	if dir == "" {
		dir = tb.TempDir()
	}
	cfg.Database.DataDir = dir
	if dialect == "postgres" {
		cfg.Database.URL = pgtest.New(tb)
	}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Normalize(false); err != nil {
		tb.Fatal(err)
	}
	return cfg
}
