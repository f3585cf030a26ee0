package keys_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/keys"
)

func TestKeysAtRest(t *testing.T) {
	ctx := context.Background()
	db, m, dir := openManager(t)
	kek := filepath.Join(dir, keys.KEKFile)
	if st, err := os.Stat(kek); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("KEK file mode: %v %v", st, err)
	}
	stored, err := db.SigningKeys(ctx)
	if err != nil || len(stored) != 2 {
		t.Fatalf("%d keys, %v", len(stored), err)
	}
	for _, k := range stored {
		if strings.Contains(string(k.PrivateEnc), "PRIVATE") || strings.Contains(k.PublicJWK, `"d"`) {
			t.Fatalf("key %s stored in the clear", k.KID)
		}
	}
	if _, err := m.Sign(ctx, keys.AccessTokenAlg, "at+jwt", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// A second start reuses the keys.
	if _, err := keys.Open(ctx, db, keys.Options{KEKFile: kek}); err != nil {
		t.Fatal(err)
	}
	if again, _ := db.SigningKeys(ctx); len(again) != 2 {
		t.Fatalf("keys regenerated: %d", len(again))
	}
	// A missing KEK beside a database that holds keys is never generated.
	other := filepath.Join(t.TempDir(), "kek")
	if _, err := keys.Open(ctx, db, keys.Options{KEKFile: other}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing KEK: %v", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Fatal("a KEK was generated beside a database that holds keys")
	}
	// A wrong KEK (file or LAPIS_KEK) is refused at open, saying what to do.
	if err := os.WriteFile(other, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range []keys.Options{{KEKFile: other}, {KEKFile: kek, KEK: strings.Repeat("cd", 32)}} {
		if _, err := keys.Open(ctx, db, o); err == nil || !strings.Contains(err.Error(), "same key") {
			t.Fatalf("wrong KEK %+v: %v", o.KEKFile, err)
		}
	}
	if _, err := keys.Open(ctx, db, keys.Options{KEK: "not-hex"}); err == nil || strings.Contains(err.Error(), "not-hex") {
		t.Fatalf("malformed LAPIS_KEK: %v", err)
	}
	// The right key from LAPIS_KEK opens them, whatever the file says.
	b, err := os.ReadFile(kek)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := keys.Open(ctx, db, keys.Options{KEKFile: other, KEK: string(b)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Sign(ctx, keys.AccessTokenAlg, "at+jwt", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// A KEK readable by others is refused.
	if err := os.Chmod(kek, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Open(ctx, db, keys.Options{KEKFile: kek}); err == nil {
		t.Fatal("world-readable KEK accepted")
	}
}

// openManager opens a key manager on a fresh SQLite auth database in a
// temporary directory, its KEK in the file keys.KEKFile there; the
// database is closed when t ends.
func openManager(t *testing.T) (*authdb.DB, *keys.Manager, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := authdb.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := keys.Open(context.Background(), db, keys.Options{KEKFile: filepath.Join(dir, keys.KEKFile)})
	if err != nil {
		t.Fatal(err)
	}
	return db, m, dir
}
