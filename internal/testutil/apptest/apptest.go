// Package apptest opens applications (internal/app, without access
// control) on fresh databases for tests.
package apptest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// Open opens an application on a fresh database of dialect ("sqlite", or
// "postgres" for a fresh pgtest database), closed when tb ends, with the
// configuration Config(tb, dialect, edit) returns. Its logs are
// discarded. The normalized configuration is the App's Config.
func Open(tb testing.TB, dialect string, edit func(*config.Config)) *app.App {
	tb.Helper()
	a, err := app.Open(context.Background(), Config(tb, dialect, edit), slog.New(slog.DiscardHandler))
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
	cfg := config.Defaults()
	cfg.Database.DataDir = tb.TempDir()
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
