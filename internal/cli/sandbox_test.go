package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// TestEnvFlag: --env sandbox acts on the sandbox's database (SQLite in
// DATA-DIR/sandbox, or the lapis_sandbox schema of a PostgreSQL
// database), --env production (the default) on production's; what one
// holds the other does not. lapis sandbox load and reset fill and empty
// the sandbox only. Bad uses are refused.
func TestEnvFlag(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, db []string, url string) {
		with := func(args ...string) []string { return append(args, db...) }
		if code, _, errs := run(with("client", "create", "--env", "sandbox", "--name", "sbx-app", "--type", "confidential", "--scope", "system/*.rs")...); code != 0 {
			t.Fatalf("create in sandbox: %d %s", code, errs)
		}
		if code, _, errs := run(with("client", "create", "--name", "prod-app", "--type", "confidential", "--scope", "system/*.rs")...); code != 0 {
			t.Fatalf("create in production: %d %s", code, errs)
		}
		_, sbList, _ := run(with("client", "list", "--env", "sandbox")...)
		_, prodList, _ := run(with("client", "list")...)
		if !strings.Contains(sbList, "sbx-app") || strings.Contains(sbList, "prod-app") {
			t.Errorf("sandbox clients: %s", sbList)
		}
		if !strings.Contains(prodList, "prod-app") || strings.Contains(prodList, "sbx-app") {
			t.Errorf("production clients: %s", prodList)
		}
		if url == "" { // SQLite
			if _, err := os.Stat(filepath.Join(dir, "sandbox", "lapis.db")); err != nil {
				t.Errorf("sandbox database: %v", err)
			}
		}

		// load, then reset: the sandbox's data and clients go, production's stay.
		bundle := filepath.Join(t.TempDir(), "b.json")
		if err := os.WriteFile(bundle, shareddata.USCoreBundles(t)[0].Body, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errs := run(with("sandbox", "load", bundle)...)
		if code != 0 || !strings.Contains(out, "sandbox loaded: 1 bundles") {
			t.Fatalf("sandbox load: %d %q %s", code, out, errs)
		}
		if code, _, errs := run(with("sandbox", "reset")...); code != 0 {
			t.Fatalf("sandbox reset: %d %s", code, errs)
		}
		_, sbList, _ = run(with("client", "list", "--env", "sandbox")...)
		_, prodList, _ = run(with("client", "list")...)
		if strings.Contains(sbList, "sbx-app") || !strings.Contains(prodList, "prod-app") {
			t.Errorf("after reset: sandbox %q production %q", sbList, prodList)
		}

		// Refusals.
		if code, _, errs := run(with("client", "list", "--env", "staging")...); code == 0 || !strings.Contains(errs, "--env") {
			t.Errorf("--env staging: %d %s", code, errs)
		}
		if code, _, errs := run("client", "list", "--env", "sandbox", "--server", "https://example.org/fhir", "--client-id", "x"); code == 0 || !strings.Contains(errs, "sandbox") {
			t.Errorf("remote with --env sandbox: %d %s", code, errs)
		}
		if code, _, errs := run(with("sandbox", "load", filepath.Join(dir, "missing.json"))...); code == 0 || errs == "" {
			t.Errorf("load of a missing file: %d %s", code, errs)
		}
		if code, out, errs := run(with("sandbox", "load")...); code != 0 || !strings.Contains(out, "5 logins") {
			t.Errorf("load of the built-in dataset: %d %s %s", code, out, errs)
		}
	})
}

// TestServeEnvFlag: lapis serve serves both environments and refuses
// --env; bad sandbox flags are refused before anything opens.
func TestServeEnvFlag(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "--env", "sandbox"},
		{"serve", "--sandbox-rate-limit", "fast"},
		{"serve", "--sandbox-database", "mysql://x"},
		{"serve", "--sandbox-rate-burst", "-1"},
	} {
		code, _, errs := run(append(args, "--data-dir", t.TempDir())...)
		if code == 0 || !strings.Contains(errs, strings.TrimPrefix(args[1], "--")) {
			t.Errorf("%v: %d %s", args, code, errs)
		}
	}
}
