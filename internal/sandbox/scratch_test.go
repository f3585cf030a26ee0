package sandbox_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/sandbox"
	"github.com/lapis-health/lapis/internal/store/sqlite"
)

// TestResetWipesScratch checks that a reset of a SQLite sandbox empties
// the paging snapshots in the scratch file too: their rids are given out
// again once the resources are gone.
func TestResetWipesScratch(t *testing.T) {
	ctx := context.Background()
	h, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "lapis.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, err := sqlite.New(ctx, h, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	side := h.OpenSQLiteConn()
	defer side.Close()
	if _, err := side.ExecContext(ctx, "INSERT INTO "+database.SQLiteScratch+".search_snapshot (id, created, total, truncated, rids) VALUES ('s1', 0, 2, 0, x'0102')"); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.Reset(ctx, h, sandbox.ResetOptions{KEK: strings.Repeat("ab", 32)}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := h.Reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+database.SQLiteScratch+".search_snapshot").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d paging snapshots after the reset (%v), want 0", n, err)
	}
}
