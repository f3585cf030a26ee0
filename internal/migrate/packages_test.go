package migrate_test

import (
	"context"
	"database/sql"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/migrate"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// templated are the packages whose migrations are templates.
var templated = []string{"activity", "authdb", "bulk", "developer", "portal", "review", "webhook"}

var (
	createRE = regexp.MustCompile(`(?i)CREATE (?:UNIQUE )?(TABLE|INDEX) (?:IF NOT EXISTS )?(\w+)`)
	dropRE   = regexp.MustCompile(`(?i)DROP (TABLE|INDEX) (?:IF EXISTS )?(\w+)`)
)

// schemaOf lists the tables and indexes the Up sections of the rendered
// migrations leave, as "table NAME" and "index NAME".
func schemaOf(t *testing.T, rendered fs.FS) []string {
	t.Helper()
	names, err := fs.Glob(rendered, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, n := range names {
		b, err := fs.ReadFile(rendered, n)
		if err != nil {
			t.Fatal(err)
		}
		up, _, _ := strings.Cut(string(b), "-- +goose Down")
		for _, line := range strings.Split(up, "\n") {
			if m := createRE.FindStringSubmatch(line); m != nil {
				left[strings.ToLower(m[1])+" "+m[2]] = true
			} else if m := dropRE.FindStringSubmatch(line); m != nil {
				delete(left, strings.ToLower(m[1])+" "+m[2])
			}
		}
	}
	var out []string
	for k := range left {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestPackageMigrations renders the migrations of every templated package
// for both dialects, applies them to fresh databases and finds the same
// tables and indexes on each, every one its migrations create.
func TestPackageMigrations(t *testing.T) {
	ctx := context.Background()
	for _, pkg := range templated {
		t.Run(pkg, func(t *testing.T) {
			fsys := os.DirFS(filepath.Join("..", pkg))
			var want [2][]string
			for i, postgres := range []bool{false, true} {
				r, err := migrate.Render(fsys, "migrations", postgres)
				if err != nil {
					t.Fatal(err)
				}
				want[i] = schemaOf(t, r)
			}
			if !slices.Equal(want[0], want[1]) || len(want[0]) == 0 {
				t.Fatalf("the dialects' migrations differ:\nsqlite   %v\npostgres %v", want[0], want[1])
			}
			sqliteDB, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer sqliteDB.Close()
			pgDB, err := sql.Open("pgx", pgtest.New(t))
			if err != nil {
				t.Fatal(err)
			}
			defer pgDB.Close()
			for _, d := range []struct {
				db       *sql.DB
				postgres bool
				list     string
			}{
				{sqliteDB, false, "SELECT type || ' ' || name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"},
				{pgDB, true, "SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = current_schema() " +
					"UNION ALL SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname = current_schema()"},
			} {
				if err := migrate.Up(ctx, d.db, fsys, d.postgres, "v", 1); err != nil {
					t.Fatal(err)
				}
				if err := migrate.Applied(ctx, d.db, fsys, d.postgres, "v"); err != nil {
					t.Fatal(err)
				}
				rows, err := d.db.QueryContext(ctx, d.list)
				if err != nil {
					t.Fatal(err)
				}
				have := map[string]bool{}
				for rows.Next() {
					var n string
					if err := rows.Scan(&n); err != nil {
						t.Fatal(err)
					}
					have[n] = true
				}
				rows.Close()
				for _, w := range want[0] {
					if !have[w] {
						t.Errorf("postgres=%v: %s missing", d.postgres, w)
					}
				}
			}
		})
	}
}
