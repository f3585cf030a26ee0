package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/oauth"
)

func runIn(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUserCommands(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, dbArgs []string, dbURL string) {
		code, out, errs := runIn("s3cret passphrase\n", append([]string{"user", "create", "--username", "Alice", "--password-stdin", "--fhir-user", "Patient/p1", "--json", "--force"}, dbArgs...)...)
		if code != 0 {
			t.Fatalf("create: %d %s", code, errs)
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(&m); err != nil || dec.More() || len(m) != 3 || m["username"] != "alice" || m["fhir_user"] != "Patient/p1" || m["subject"] == "" {
			t.Fatalf("create output is not exactly one JSON object: %q", out)
		}
		// The password works.
		db, err := authdb.Open(context.Background(), dbURL, dir)
		if err != nil {
			t.Fatal(err)
		}
		a, err := db.AccountByUsername(context.Background(), "alice")
		db.Close()
		if err != nil || !oauth.VerifyPassword(a.PasswordHash, "s3cret passphrase") || strings.Contains(a.PasswordHash, "s3cret") {
			t.Fatalf("stored account: %v", err)
		}
		for _, bad := range []struct {
			stdin string
			args  []string
		}{
			{"another password\n", []string{"user", "create", "--username", "alice", "--password-stdin", "--fhir-user", "Patient/p2", "--json", "--force"}},
			{"short\n", []string{"user", "create", "--username", "bob", "--password-stdin", "--fhir-user", "Patient/p2", "--json", "--force"}},
			{"long enough pw\n", []string{"user", "create", "--username", "bob", "--password-stdin", "--fhir-user", "Organization/o1", "--json"}},
			{"", []string{"user", "create", "--username", "bob", "--password-stdin", "--fhir-user", "Patient/p2", "--json", "--force"}},
			{"long enough pw\n", []string{"user", "create", "--username", "bob", "--fhir-user", "Patient/p2", "--json", "--force"}},
			{"", []string{"user", "delete", "nobody"}},
		} {
			code, out, errs := runIn(bad.stdin, append(bad.args, dbArgs...)...)
			if code == 0 || out != "" || strings.Count(strings.TrimRight(errs, "\n"), "\n") != 0 || !strings.HasPrefix(errs, "lapis: ") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", bad.args, code, out, errs)
			}
		}
		code, out, _ = runIn("", append([]string{"user", "list", "--json"}, dbArgs...)...)
		var list []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || strings.Contains(out, "argon2") {
			t.Fatalf("list: %d %q", code, out)
		}
		if code, _, errs = runIn("", append([]string{"user", "delete", "ALICE"}, dbArgs...)...); code != 0 {
			t.Fatalf("delete: %s", errs)
		}

		// demo: a practitioner and logins for the first N patients.
		cfg := config.Defaults()
		cfg.Database.DataDir, cfg.Database.URL = dir, dbURL
		if err := cfg.Normalize(false); err != nil {
			t.Fatal(err)
		}
		ap, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		for _, body := range []string{`{"resourceType":"Patient","name":[{"family":"Koepp","given":["Abdul"]}]}`, `{"resourceType":"Patient","name":[{"text":"Jane Roe"}]}`} {
			if _, err := ap.Service.Create(context.Background(), "Patient", []byte(body), ""); err != nil {
				t.Fatal(err)
			}
		}
		ap.Close()
		code, out, errs = runIn("", append([]string{"demo", "--users", "1"}, dbArgs...)...)
		var demo struct {
			Practitioner map[string]string   `json:"practitioner"`
			Patients     []map[string]string `json:"patients"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &demo) != nil {
			t.Fatalf("demo: %d %q %s", code, out, errs)
		}
		if !strings.HasPrefix(demo.Practitioner["fhir_user"], "Practitioner/") || demo.Practitioner["password"] == "" || len(demo.Patients) != 1 ||
			!strings.HasPrefix(demo.Patients[0]["fhir_user"], "Patient/") || demo.Patients[0]["password"] == "" || demo.Patients[0]["username"] == "" {
			t.Fatalf("demo output %q", out)
		}
	})
}
