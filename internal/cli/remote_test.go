package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/client"
	"github.com/lapis-health/lapis/client/profile"
)

// TestAdminCommandsRemote checks that every admin command (client, user,
// grants, apikey) takes both the local and the remote flags, so that it
// has one implementation for both modes, except the ones the admin API has
// no endpoint for: a new subcommand is not silently local-only.
func TestAdminCommandsRemote(t *testing.T) {
	t.Parallel()
	localOnly := map[string]bool{"clientBasicCmd": true}
	for _, group := range []any{clientCmd{}, userCmd{}, apikeyCmd{}, grantsCmd{}} {
		gt := reflect.TypeOf(group)
		for i := range gt.NumField() {
			f := gt.Field(i)
			if localOnly[f.Type.Name()] {
				continue
			}
			if emb, ok := f.Type.FieldByName("adminFlags"); !ok || !emb.Anonymous {
				t.Errorf("%s.%s (%s) does not embed adminFlags", gt.Name(), f.Name, f.Type.Name())
			}
		}
	}
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	good := map[string]ref{
		"Patient/123":                        {typ: "Patient", id: "123"},
		"Observation/a-b.c":                  {typ: "Observation", id: "a-b.c"},
		"Patient/123/_history/2":             {typ: "Patient", id: "123", vid: "2"},
		"Patient/" + strings.Repeat("x", 64): {typ: "Patient", id: strings.Repeat("x", 64)},
	}
	for in, want := range good {
		got, err := parseRef(in, true)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "Patient", "Patient/", "/123", "patient/1", "Patient/1/2", "Patient/1/_history", "Patient/1/_history/",
		"Patient/a b", "Patient/" + strings.Repeat("x", 65), "Patient/../x", "Patient/1/_history/2/3", "Pat!ent/1"} {
		if _, err := parseRef(in, true); err == nil {
			t.Errorf("%q accepted", in)
		} else if exitCode(err) != exitUsage {
			t.Errorf("%q: exit code %d", in, exitCode(err))
		}
	}
	if _, err := parseRef("Patient/1/_history/2", false); err == nil {
		t.Error("history reference accepted by a write command")
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want int
	}{
		{errors.New("x"), exitError},
		{usagef("bad"), exitUsage},
		{fmt.Errorf("wrapped: %w", usagef("bad")), exitUsage},
		{client.ErrUnauthorized, exitAuth},
		{&client.Error{StatusCode: http.StatusUnauthorized}, exitAuth},
		{&client.Error{StatusCode: http.StatusForbidden}, exitAuth},
		{&client.OAuthError{StatusCode: 400, Code: "invalid_client"}, exitAuth},
		{fmt.Errorf("x: %w", profile.ErrNoToken), exitAuth},
		{&client.Error{StatusCode: http.StatusNotFound}, exitNotFound},
		{&client.Error{StatusCode: http.StatusGone}, exitNotFound},
		{&client.Error{StatusCode: http.StatusPreconditionFailed}, exitError},
		{&client.Error{StatusCode: http.StatusInternalServerError}, exitError},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%v: %d, want %d", c.err, got, c.want)
		}
	}
}

// run runs the CLI in-process.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestConnFlags(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("LAPIS_PROFILE", "")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"get", "Patient/1"}, "no server"},
		{[]string{"get", "Patient/1", "--api-key-env", "K"}, "need --server"},
		{[]string{"get", "Patient/1", "--server", "http://127.0.0.1:1/fhir", "--api-key-env", "K", "--basic-user", "u"}, "one of"},
		{[]string{"get", "Patient/1", "--server", "http://127.0.0.1:1/fhir", "--basic-user", "u"}, "--basic-password-env"},
		{[]string{"get", "Patient/1", "--server", "http://127.0.0.1:1/fhir", "--client-secret-env", "S"}, "needs --client-id"},
		{[]string{"get", "Patient/1", "--server", "http://127.0.0.1:1/fhir", "--api-key-env", "lapis_sk_secretvalue!"}, "name of an environment variable"},
		{[]string{"get", "Patient/1", "--server", "http://fhir.example.org/fhir", "--api-key-env", "K"}, "plain http"},
		{[]string{"get", "Patient/1", "--server", "ftp://x/fhir"}, "http(s)"},
		{[]string{"get", "Patient/1", "--server", "https://h/fhir", "--ca-file", "x", "--insecure-skip-verify-dangerous"}, "not both"},
		{[]string{"token", "--server", "https://h/fhir"}, "no OAuth token"},
		{[]string{"login", "--server", "https://h/fhir"}, "needs --client-id"},
		{[]string{"export", "--server", "https://h/fhir", "--out", t.TempDir(), "--level", "group"}, "--group"},
		{[]string{"export", "--server", "https://h/fhir", "--out", t.TempDir(), "--since", "yesterday"}, "--since"},
		{[]string{"export", "--server", "https://h/fhir", "--out", t.TempDir(), "--type", "patient"}, "not a resource type"},
		{[]string{"apikey", "list", "--server", "https://h/fhir"}, "client_credentials"},
		{[]string{"apikey", "list", "--server", "https://h/fhir", "--client-id", "c", "--client-secret-env", "S", "--data-dir", "/tmp/x"}, "not both"},
	}
	for _, c := range cases {
		_, errOut, code := runCLI(t, "", c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q (want 2 and %q)", c.args, code, errOut, c.want)
		}
		if strings.Contains(errOut, "secretvalue") {
			t.Errorf("%v: error echoes the value: %s", c.args, errOut)
		}
	}
}
