// Package dbtest opens fresh databases (internal/database) of each
// dialect for tests: SQLite in a temporary directory, PostgreSQL through
// pgtest. Template gives a test a copy of a SQLite data directory
// migrated once per test process instead of migrating a new one.
package dbtest

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// Dialects are the database dialects Both runs a test on.
var Dialects = []string{"sqlite", "postgres"}

// Open opens a fresh database of dialect ("sqlite" or "postgres"),
// closed when t ends.
func Open(t testing.TB, dialect string) *database.DB {
	t.Helper()
	o := database.Options{DataDir: t.TempDir()}
	if dialect == "postgres" {
		o.URL = pgtest.New(t)
	}
	h, err := database.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Runner is a test or benchmark that runs subtests (*testing.T,
// *testing.B).
type Runner[T any] interface {
	testing.TB
	Run(name string, f func(T)) bool
}

// Both runs f as a subtest (or sub-benchmark) on a fresh database of each
// dialect.
func Both[T Runner[T]](t T, f func(t T, h *database.DB)) {
	for _, d := range Dialects {
		t.Run(d, func(t T) { f(t, Open(t, d)) })
	}
}
