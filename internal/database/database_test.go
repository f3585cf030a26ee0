package database_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

func roundTrip(t *testing.T, s store.Store, id string) {
	t.Helper()
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Write{Type: "Patient", ID: id, Version: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(`{}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "Patient", id); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "sub")
	s, err := database.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roundTrip(t, s, "a")
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, database.SQLiteFile)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenSQLiteURLs(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"sqlite:" + filepath.Join(dir, "a.db"), "sqlite://" + filepath.Join(dir, "b.db"), "file:" + filepath.Join(dir, "c.db") + "?mode=rwc"} {
		s, err := database.Open(context.Background(), u, "")
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		roundTrip(t, s, "a")
		s.Close()
	}
	for _, name := range []string{"a.db", "b.db", "c.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	if _, err := database.Open(context.Background(), "mysql://x", ""); err == nil {
		t.Error("mysql accepted")
	}
}

func TestSQLitePath(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:lapis.db":                   "lapis.db",
		"sqlite:/var/lib/lapis.db":          "/var/lib/lapis.db",
		"sqlite:///var/lib/lapis.db":        "/var/lib/lapis.db",
		"file:/tmp/x.db?_pragma=foo":        "/tmp/x.db",
		"file://localhost/tmp/x%20y.db":     "/tmp/x y.db",
		"sqlite:relative/dir/lapis.db#frag": "relative/dir/lapis.db",
	} {
		got, err := database.SQLitePath(in)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := database.SQLitePath("file://otherhost/x.db"); err == nil {
		t.Error("remote host accepted")
	}
}

// openConcurrently opens the same database from several goroutines at
// once (as a server and admin commands do) and checks every open works.
func openConcurrently(t *testing.T, url, dir string) {
	var wg sync.WaitGroup
	stores := make([]store.Store, 4)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = database.Open(context.Background(), url, dir)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	for i, s := range stores {
		roundTrip(t, s, string(rune('a'+i)))
	}
}

func TestConcurrentMigrationsSQLite(t *testing.T) {
	openConcurrently(t, "", t.TempDir())
}

func TestOpenPostgres(t *testing.T) {
	openConcurrently(t, pgtest.New(t), "")
}

// TestLocation: the database location logged at start names the file or
// the PostgreSQL host and database, never a credential.
func TestLocation(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ url, dir, want string }{
		{"", "/var/lib/lapis", "/var/lib/lapis/lapis.db"},
		{"", "data", filepath.Join(wd, "data", "lapis.db")},
		{"sqlite:/srv/x.db?_pragma=foo", "", "/srv/x.db"},
		{"sqlite:///srv/y.db", "", "/srv/y.db"},
		{"file:rel.db", "", filepath.Join(wd, "rel.db")},
		{"postgres://lapis:s3cret@db.example:5432/lapis?sslmode=require&password=other", "", "postgres://db.example:5432/lapis"},
		{"postgresql://user@/lapis?host=/run/postgresql", "", "postgres:///run/postgresql/lapis"},
		{"postgres://u:p@h/?dbname=d", "", "postgres://h/d"},
		{"mysql://u:p@h/d", "", "(unsupported database URL)"},
	} {
		got := database.Location(c.url, c.dir)
		if got != c.want {
			t.Errorf("Location(%q, %q) = %q, want %q", c.url, c.dir, got, c.want)
		}
		for _, secret := range []string{"s3cret", "other", ":p@"} {
			if strings.Contains(got, secret) {
				t.Errorf("Location(%q) = %q shows a credential", c.url, got)
			}
		}
	}
}
