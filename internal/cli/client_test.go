package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestClientCommands(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, db []string, _ string) {
		code, out, errs := run(append([]string{"client", "create", "--name", "svc", "--type", "confidential", "--scope", "system/*.rs system/Patient.read", "--json"}, db...)...)
		if code != 0 {
			t.Fatalf("create: %d %s", code, errs)
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("create output is not exactly one JSON object: %q", out)
		}
		id, _ := m["client_id"].(string)
		secret, _ := m["client_secret"].(string)
		if len(m) != 2 || id == "" || len(secret) < 43 {
			t.Fatalf("create output %v", m)
		}

		jwks := filepath.Join(dir, "jwks.json")
		ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ek.Public(), KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
		if err := os.WriteFile(jwks, set, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errs = run(append([]string{"client", "create", "--name", "bulk", "--type", "backend", "--scope", "system/*.read", "--jwks-file", jwks, "--json"}, db...)...)
		if code != 0 {
			t.Fatalf("create backend: %d %s", code, errs)
		}
		m = nil
		if err := json.Unmarshal([]byte(out), &m); err != nil || len(m) != 1 || m["client_id"] == "" {
			t.Fatalf("backend output %q", out)
		}
		code, out, errs = run(append([]string{"client", "create", "--name", "app", "--type", "public", "--redirect-uri", "https://app.example/cb", "--scope", "launch/patient patient/*.rs openid fhirUser", "--json"}, db...)...)
		if code != 0 || !strings.Contains(out, "client_id") || strings.Contains(out, "client_secret") {
			t.Fatalf("create public: %d %q %s", code, out, errs)
		}

		// Errors: non-zero exit, one line on stderr.
		for _, bad := range [][]string{
			{"client", "create", "--name", "x", "--type", "backend", "--scope", "system/*.read", "--json"},
			{"client", "create", "--name", "x", "--type", "public", "--scope", "system/*.read", "--redirect-uri", "https://a/cb", "--json"},
			{"client", "create", "--name", "x", "--type", "nonsense", "--scope", "system/*.read", "--json"},
			{"client", "delete", "no-such-client"},
		} {
			code, out, errs := run(append(bad, db...)...)
			if code == 0 || out != "" || strings.Count(strings.TrimRight(errs, "\n"), "\n") != 0 || !strings.HasPrefix(errs, "lapis: ") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", bad, code, out, errs)
			}
		}

		code, out, _ = run(append([]string{"client", "list", "--json"}, db...)...)
		var list []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 {
			t.Fatalf("list: %d %q", code, out)
		}
		if strings.Contains(out, secret) || strings.Contains(out, "secret") {
			t.Fatal("list shows a secret")
		}
		if code, _, errs = run(append([]string{"client", "delete", id}, db...)...); code != 0 {
			t.Fatalf("delete: %s", errs)
		}
		if code, _, errs = run(append([]string{"keys", "rotate"}, db...)...); code != 0 {
			t.Fatalf("keys rotate: %s", errs)
		}
		if st, err := os.Stat(filepath.Join(dir, "auth-kek")); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("kek file: %v %v", st, err)
		}
	})
}
