package dbtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store/backend"
)

func TestTemplate(t *testing.T) {
	builds := 0
	build := func(dir string) error {
		builds++
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("template"), 0o644)
	}
	a := Template(t, t.Name(), build)
	b := Template(t, t.Name(), build)
	if builds != 1 {
		t.Errorf("%d builds, want 1", builds)
	}
	if a == b {
		t.Fatalf("one directory %s for two copies", a)
	}
	if err := os.WriteFile(filepath.Join(a, "sub", "f"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(b, "sub", "f"))
	if err != nil || string(got) != "template" {
		t.Errorf("copy: %q, %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(b, "sub", "f"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode: %v, %v", fi, err)
	}
}

// TestStoreDir: a copy of the template is the FHIR store's migrated,
// empty database, which the store opens.
func TestStoreDir(t *testing.T) {
	ctx := context.Background()
	dir := StoreDir(t)
	st, err := backend.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := database.Open(ctx, database.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var n int
	if err := h.Reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM resources").Scan(&n); err != nil || n != 0 {
		t.Errorf("resources: %d, %v", n, err)
	}
}
