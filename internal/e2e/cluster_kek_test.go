package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestSharedKEK: a second instance on the same PostgreSQL database with its
// own data dir never generates a key-encryption key of its own (that used to
// start, report "serving" and answer 500 to every token request). Without
// the shared key it refuses to start with one line that says what to do;
// with --kek-file or LAPIS_KEK it issues tokens the first instance accepts.
func TestSharedKEK(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	bin := lapistest.Binary(t)
	first := start(t, db)
	kekFile := filepath.Join(first.dataDir, "auth-kek")
	kek, err := os.ReadFile(kekFile)
	if err != nil {
		t.Fatal(err)
	}

	// Without the key: refused at start, one line naming the way out.
	lone := t.TempDir()
	if _, err := lapistest.Launch(lapistest.Options{Bin: bin, DataDir: lone, Database: db}); err == nil {
		t.Fatal("an instance without the cluster's key-encryption key started")
	} else if !strings.Contains(err.Error(), "LAPIS_KEK") {
		t.Fatalf("start refusal does not say what to do: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lone, "auth-kek")); err == nil {
		t.Fatal("a key-encryption key was generated beside a database that holds keys")
	}
	// A wrong key: refused the same way.
	wrong := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(wrong, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := lapistest.Launch(lapistest.Options{Bin: bin, DataDir: t.TempDir(), Database: db, Args: []string{"--kek-file", wrong}}); err == nil || !strings.Contains(err.Error(), "same key") {
		t.Fatalf("an instance with a wrong key-encryption key: %v", err)
	}

	// The shared key, from a file and from the environment.
	var cc struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	decodeJSON(t, first.MustCLI(t, "", "client", "create", "--name", "cc", "--type", "confidential", "--scope", "system/*.rs", "--json"), &cc)
	for _, opts := range []lapistest.Options{
		{Database: db, Args: []string{"--kek-file", kekFile, "--base-url", first.Origin}},
		{Database: db, Args: []string{"--base-url", first.Origin}, Env: []string{"LAPIS_KEK=" + strings.TrimSpace(string(kek))}},
	} {
		// Instances of one cluster serve one base URL (the load balancer's).
		second := serve(t, opts)
		st, tok := form(t, nil, "http://"+second.Addr+"/fhir/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}, cc.ClientID, cc.ClientSecret)
		if st != 200 {
			t.Fatalf("token from the second instance: %d %v", st, tok)
		}
		// A token signed on one instance is accepted on the other.
		first.do("GET", "/Patient", nil, "X-API-Key", "", "Authorization", "Bearer "+str(tok, "access_token")).expect(t, 200)
		if err := second.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}
