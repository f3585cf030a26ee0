package database_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
)

// TestAppendRows: the rows in order after dst, dst itself for no rows,
// and nil with the first error of a scan or of the query.
func TestAppendRows(t *testing.T) {
	ctx := context.Background()
	h, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "rows.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Writer.ExecContext(ctx, "CREATE TABLE r (v INTEGER); INSERT INTO r VALUES (1), (2), (3)"); err != nil {
		t.Fatal(err)
	}
	scan := func(rows *sql.Rows) (int, error) {
		var v int
		err := rows.Scan(&v)
		return v * 10, err
	}
	got, err := database.AppendRows(ctx, []int{0}, h.Reader, scan, "SELECT v FROM r WHERE v > ? ORDER BY v", 1)
	if err != nil || !slices.Equal(got, []int{0, 20, 30}) {
		t.Fatalf("rows %v %v", got, err)
	}
	if got, err := database.AppendRows(ctx, []int{}, h.Reader, scan, "SELECT v FROM r WHERE v > 3"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no rows %#v %v", got, err)
	}
	boom := errors.New("boom")
	got, err = database.AppendRows(ctx, nil, h.Reader, func(rows *sql.Rows) (int, error) { return 0, boom }, "SELECT v FROM r")
	if !errors.Is(err, boom) || got != nil {
		t.Fatalf("scan error %v %v", got, err)
	}
	if _, err := database.AppendRows(ctx, nil, h.Reader, scan, "SELECT nope FROM r"); err == nil {
		t.Fatal("query error lost")
	}
}
