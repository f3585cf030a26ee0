package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	adminclient "github.com/lapis-health/lapis/client/admin"

	"github.com/lapis-health/lapis/internal/access"
	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
)

// TestCreateChecksFHIRRecords: user create --fhir-user and apikey create
// --patient refuse a Patient or Practitioner that does not exist (or was
// deleted) with one line and a non-zero exit, unless --force.
func TestCreateChecksFHIRRecords(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, dbArgs []string, dbURL string) {
		ctx := context.Background()
		// The store as lapis serve opens it (access policy on), with a
		// patient, a deleted patient and a practitioner.
		cfg := config.Defaults()
		cfg.Database.DataDir, cfg.Database.URL = dir, dbURL
		if err := cfg.Normalize(false); err != nil {
			t.Fatal(err)
		}
		ap, err := app.OpenWith(ctx, cfg, slog.New(slog.DiscardHandler),
			app.Options{Access: func(reg *definitions.Registry) resource.Access { return access.NewPolicy(reg) }})
		if err != nil {
			t.Fatal(err)
		}
		admin := principal.NewContext(ctx, &principal.Principal{Method: "test", ClientID: "t", Scopes: []string{"system/*.cruds"}})
		create := func(body string) string {
			r, err := ap.Service.Create(admin, strings.SplitN(strings.SplitN(body, `"resourceType":"`, 2)[1], `"`, 2)[0], []byte(body), "")
			if err != nil {
				t.Fatal(err)
			}
			return r.Resource.ID
		}
		pat := create(`{"resourceType":"Patient","name":[{"family":"Here"}]}`)
		gone := create(`{"resourceType":"Patient","name":[{"family":"Gone"}]}`)
		pr := create(`{"resourceType":"Practitioner","name":[{"family":"Doc"}]}`)
		if _, err := ap.Service.Delete(admin, "Patient", gone, ""); err != nil {
			t.Fatal(err)
		}
		// RecordExists under the server's policy (its own principal).
		fp := app.Patients{Service: ap.Service}
		for _, c := range []struct {
			typ, id string
			want    bool
		}{{"Patient", pat, true}, {"Practitioner", pr, true}, {"Patient", gone, false}, {"Patient", "nope", false},
			{"Practitioner", "nope", false}, {"Practitioner", pat, false}, {"Patient", "a/b", false}} {
			if got, err := fp.RecordExists(ctx, c.typ, c.id); err != nil || got != c.want {
				t.Errorf("RecordExists(%s, %s) = %v, %v", c.typ, c.id, got, err)
			}
		}
		ap.Close()

		refused := func(stdin, want string, args ...string) {
			t.Helper()
			code, out, errs := runIn(stdin, append(args, dbArgs...)...)
			if code == 0 || out != "" || strings.Count(strings.TrimRight(errs, "\n"), "\n") != 0 || !strings.HasPrefix(errs, "lapis: ") ||
				!strings.Contains(errs, want+" does not exist") || !strings.Contains(errs, "--force") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
			}
		}
		ok := func(stdin string, args ...string) {
			t.Helper()
			if code, _, errs := runIn(stdin, append(args, dbArgs...)...); code != 0 {
				t.Errorf("%v: exit %d, stderr %q", args, code, errs)
			}
		}
		user := func(name, fhirUser string, extra ...string) []string {
			return append([]string{"user", "create", "--username", name, "--password-stdin", "--fhir-user", fhirUser, "--json"}, extra...)
		}
		const pw = "long enough password\n"
		refused(pw, "Patient/123", user("u1", "Patient/123")...)
		refused(pw, "Patient/"+gone, user("u1", "Patient/"+gone)...)
		refused(pw, "Practitioner/nope", user("u1", "Practitioner/nope")...)
		ok(pw, user("u1", "Patient/"+pat)...)
		ok(pw, user("u2", "Practitioner/"+pr)...)
		ok(pw, user("u3", "Patient/123", "--force")...)
		// Validation errors come first (no store lookup for them).
		if _, _, errs := runIn("short\n", append(user("u4", "Patient/123"), dbArgs...)...); !strings.Contains(errs, "password") {
			t.Errorf("short password: %q", errs)
		}

		key := func(patient string, extra ...string) []string {
			return append([]string{"apikey", "create", "--name", "k", "--scope", "patient/*.rs", "--patient", patient, "--json"}, extra...)
		}
		refused("", "Patient/123", key("123")...)
		refused("", "Patient/"+gone, key(gone)...)
		ok("", key(pat)...)
		ok("", key("123", "--force")...)
		ok("", "apikey", "create", "--name", "sys", "--scope", "system/*.rs", "--json")
	})
}

func TestFHIRPatientsIsARecordChecker(t *testing.T) {
	t.Parallel()
	var _ oauth.RecordChecker = app.Patients{}
	// The remote commands send force to the admin API.
	for _, v := range []any{adminclient.APIKeyRequest{Name: "k", Force: true}, adminclient.UserRequest{Username: "u", Force: true}} {
		if b, _ := json.Marshal(v); !strings.Contains(string(b), `"force":true`) {
			t.Fatalf("force not sent: %s", b)
		}
	}
	if b, _ := json.Marshal(adminclient.APIKeyRequest{Name: "k"}); strings.Contains(string(b), "force") {
		t.Fatalf("force sent: %s", b)
	}
}
