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
	dir := t.TempDir()
	db, err := authdb.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kek := filepath.Join(dir, keys.KEKFile)
	m, err := keys.Open(ctx, db, keys.Options{KEKFile: kek})
	if err != nil {
		t.Fatal(err)
	}
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
	// A wrong KEK cannot decrypt them.
	other := filepath.Join(t.TempDir(), "kek")
	m2, err := keys.Open(ctx, db, keys.Options{KEKFile: other})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Sign(ctx, keys.AccessTokenAlg, "at+jwt", []byte(`{}`)); err == nil {
		t.Fatal("signed with a wrong KEK")
	}
	// A KEK readable by others is refused.
	if err := os.Chmod(kek, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Open(ctx, db, keys.Options{KEKFile: kek}); err == nil {
		t.Fatal("world-readable KEK accepted")
	}
}
