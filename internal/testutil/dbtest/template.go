package dbtest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/store/backend"
)

// templates are the SQLite data directories of Template, by key, built
// once per test process.
var templates sync.Map // key → *template

// template is a data directory held in memory: its regular files by
// path relative to it (written back mode 0600, as Lapis creates them).
type template struct {
	once  sync.Once
	files map[string][]byte
	err   error
}

// Template gives t a new temporary data directory holding a copy of the
// one build made, once per test process for key, in a directory of its
// own (given to it empty); build must leave no connection open on it.
//
// Migrating a SQLite database costs a test far more than copying one
// (goose's bookkeeping and every statement of every migration parsed by
// the pure-Go driver, slower still under the race detector): a test that
// needs a new, migrated database copies a template instead. The template
// is kept in memory, its directory removed once read; a build error fails
// every test that asks for key.
func Template(t testing.TB, key string, build func(dir string) error) string {
	t.Helper()
	v, _ := templates.LoadOrStore(key, &template{})
	tp := v.(*template)
	tp.once.Do(func() { tp.files, tp.err = buildTemplate(build) })
	if tp.err != nil {
		t.Fatalf("dbtest: template %s: %v", key, tp.err)
	}
	dir := t.TempDir()
	for name, b := range tp.files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildTemplate runs build in a new temporary directory and returns its
// regular files.
func buildTemplate(build func(dir string) error) (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "lapis-dbtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// StoreDir returns a new temporary data directory of t holding a SQLite
// database (the default file of a data directory) with the FHIR store's
// schema and no data: a copy of one migrated once per test process
// (Template).
func StoreDir(t testing.TB) string {
	t.Helper()
	return Template(t, "dbtest.StoreDir", func(dir string) error {
		st, err := backend.Open(context.Background(), "", dir)
		if err != nil {
			return err
		}
		return st.Close()
	})
}
