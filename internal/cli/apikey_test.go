package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/apikey"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/store/backend"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// databaseFlags makes a fresh database for a command test on dialect: it
// returns the data directory, the flags that name the database
// (--data-dir, and --database for PostgreSQL) and the database URL ("" for
// SQLite). A SQLite database is a copy of one migrated once per test
// process (migratedDir).
func databaseFlags(t *testing.T, dialect string) (dir string, flags []string, url string) {
	t.Helper()
	if dialect == "postgres" {
		dir = t.TempDir()
		url = pgtest.New(t)
		return dir, []string{"--data-dir", dir, "--database", url}, url
	}
	dir = migratedDir(t)
	return dir, []string{"--data-dir", dir}, ""
}

// migratedDir returns a new temporary data directory of t whose SQLite
// database has, and holds nothing but, the schemas nearly every command
// migrates (the FHIR store's, the authorization store's and the audit
// chain's): a copy of one migrated once per test process
// (dbtest.Template). The commands still apply their migrations, finding
// these done.
func migratedDir(t *testing.T) string {
	t.Helper()
	return dbtest.Template(t, "cli.migratedDir", func(dir string) error {
		ctx := context.Background()
		st, err := backend.Open(ctx, "", dir)
		if err != nil {
			return err
		}
		if err := st.Close(); err != nil {
			return err
		}
		adb, err := authdb.Open(ctx, "", dir)
		if err != nil {
			return err
		}
		if err := adb.Close(); err != nil {
			return err
		}
		ad, err := audit.OpenDB(ctx, "", dir)
		if err != nil {
			return err
		}
		return ad.Close()
	})
}

// databases runs f as a subtest on a fresh database of each dialect (see
// databaseFlags).
func databases(t *testing.T, f func(t *testing.T, dir string, flags []string, url string)) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			dir, flags, url := databaseFlags(t, dialect)
			f(t, dir, flags, url)
		})
	}
}

// oneObject decodes out as exactly one JSON object.
func oneObject(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Fatalf("output is not exactly one JSON object: %q", out)
	}
	return m
}

func TestAPIKeyCommands(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, db []string, url string) {
		code, out, errs := run(append([]string{"apikey", "create", "--name", "etl", "--scope", "system/Patient.rs system/Observation.rs", "--expires", "720h",
			"--allow-ip", "10.0.0.0/8", "--allow-ip", "2001:db8::/32", "--json"}, db...)...)
		if code != 0 {
			t.Fatalf("create: %d %s", code, errs)
		}
		m := oneObject(t, out)
		key, _ := m["key"].(string)
		id, _ := m["id"].(string)
		prefix, _ := m["prefix"].(string)
		scopes, _ := m["scopes"].([]any)
		if !apikey.ValidFormat(key) || !strings.HasPrefix(id, "ak_") || !strings.HasPrefix(key, prefix) || len(prefix) >= len(key)/2 ||
			m["name"] != "etl" || len(scopes) != 2 || m["expires_at"] == nil {
			t.Fatalf("create output %v", m)
		}
		// Only the hash is stored.
		adb, err := authdb.Open(context.Background(), url, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer adb.Close()
		stored, err := adb.APIKeyByHash(context.Background(), apikey.Hash(key))
		if err != nil || stored.ID != id || len(stored.AllowIPs) != 2 || stored.ExpiresAt.Before(time.Now().Add(719*time.Hour)) {
			t.Fatalf("%+v %v", stored, err)
		}

		code, out, errs = run(append([]string{"apikey", "create", "--name", "app", "--scope", "patient/Observation.rs", "--patient", "p1", "--json", "--force"}, db...)...)
		if code != 0 || oneObject(t, out)["patient"] != "p1" {
			t.Fatalf("patient key: %d %s %s", code, out, errs)
		}
		for name, args := range map[string][]string{
			"patient scope without patient": {"--name", "x", "--scope", "patient/*.rs"},
			"patient without patient scope": {"--name", "x", "--scope", "system/*.rs", "--patient", "p1"},
			"user scope":                    {"--name", "x", "--scope", "user/*.rs"},
			"bad cidr":                      {"--name", "x", "--scope", "system/*.rs", "--allow-ip", "10.0.0.0/99"},
		} {
			if code, out, errs := run(append(append([]string{"apikey", "create"}, args...), db...)...); code == 0 || out != "" || !strings.HasPrefix(errs, "lapis: ") {
				t.Errorf("%s: %d %q %q", name, code, out, errs)
			}
		}

		code, out, errs = run(append([]string{"apikey", "rotate", id, "--grace", "1h", "--json"}, db...)...)
		if code != 0 {
			t.Fatalf("rotate: %d %s", code, errs)
		}
		r := oneObject(t, out)
		newKey, _ := r["key"].(string)
		newID, _ := r["id"].(string)
		until, _ := time.Parse(time.RFC3339, r["old_valid_until"].(string))
		if !apikey.ValidFormat(newKey) || newKey == key || newID == id || r["replaces"] != id || r["name"] != "etl" ||
			until.Before(time.Now().Add(59*time.Minute)) || until.After(time.Now().Add(61*time.Minute)) {
			t.Fatalf("rotate output %v", r)
		}
		if code, _, _ := run(append([]string{"apikey", "rotate", id}, db...)...); code == 0 {
			t.Fatal("rotated twice")
		}

		code, out, errs = run(append([]string{"apikey", "list", "--json"}, db...)...)
		var list []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 {
			t.Fatalf("list: %d %s %s", code, out, errs)
		}
		for _, k := range list {
			if _, ok := k["key"]; ok || k["prefix"] == "" || k["created_at"] == nil || k["scopes"] == nil {
				t.Fatalf("list entry %v", k)
			}
			if strings.Contains(out, key) || strings.Contains(out, newKey) {
				t.Fatal("list shows a key")
			}
		}
		if code, out, _ := run(append([]string{"apikey", "list"}, db...)...); code != 0 || !strings.Contains(out, "LAST_USED") || !strings.Contains(out, "rotated") {
			t.Fatalf("list text: %q", out)
		}

		code, out, errs = run(append([]string{"apikey", "revoke", newID, "--json"}, db...)...)
		if code != 0 || oneObject(t, out)["revoked"] != true {
			t.Fatalf("revoke: %d %s %s", code, out, errs)
		}
		if k, _ := adb.APIKey(context.Background(), newID); k.RevokedAt.IsZero() {
			t.Fatal("not revoked")
		}
		if code, _, errs := run(append([]string{"apikey", "revoke", "ak_nope"}, db...)...); code == 0 || !strings.Contains(errs, "no api key") {
			t.Fatalf("revoke unknown: %d %s", code, errs)
		}
	})
}

func TestClientBasicCommands(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, db []string, url string) {
		_, out, _ := run(append([]string{"client", "create", "--name", "legacy", "--type", "confidential", "--scope", "system/*.rs", "--json"}, db...)...)
		id, _ := oneObject(t, out)["client_id"].(string)
		_, out, _ = run(append([]string{"client", "create", "--name", "spa", "--type", "public", "--redirect-uri", "https://a/cb", "--scope", "patient/*.rs", "--json"}, db...)...)
		pub, _ := oneObject(t, out)["client_id"].(string)

		code, out, errs := run(append([]string{"client", "basic", "enable", id, "--json"}, db...)...)
		if m := oneObject(t, out); code != 0 || m["client_id"] != id || m["basic"] != true {
			t.Fatalf("enable: %d %s %s", code, out, errs)
		}
		adb, err := authdb.Open(context.Background(), url, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer adb.Close()
		if on, _ := adb.BasicEnabled(context.Background(), id); !on {
			t.Fatal("not enabled")
		}
		if code, _, errs := run(append([]string{"client", "basic", "enable", pub}, db...)...); code == 0 || !strings.Contains(errs, "confidential") {
			t.Fatalf("public client: %d %s", code, errs)
		}
		if code, _, _ := run(append([]string{"client", "basic", "enable", "nope"}, db...)...); code == 0 {
			t.Fatal("unknown client enabled")
		}
		code, out, _ = run(append([]string{"client", "basic", "disable", id, "--json"}, db...)...)
		if m := oneObject(t, out); code != 0 || m["basic"] != false {
			t.Fatalf("disable: %s", out)
		}
		if on, _ := adb.BasicEnabled(context.Background(), id); on {
			t.Fatal("still enabled")
		}
	})
}
