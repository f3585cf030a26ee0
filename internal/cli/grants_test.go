package cli

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

func TestGrantsCommands(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, flags []string, dbURL string) {
		ctx := context.Background()
		// The "running server"'s view of the database.
		db, err := authdb.Open(ctx, dbURL, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		app, err := oauth.RegisterClient(ctx, db, oauth.Registration{Name: "Patient app", Type: authdb.Public,
			RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid offline_access patient/*.rs"}})
		if err != nil {
			t.Fatal(err)
		}
		alice, err := oauth.CreateAccount(ctx, db, "alice", "alice-password-1", "Patient/1")
		if err != nil {
			t.Fatal(err)
		}
		bob, err := oauth.CreateAccount(ctx, db, "bob", "bob-password-1", "Patient/2")
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		grant := func(fam, subject, jti string) []byte {
			h := sha256.Sum256([]byte("rt-" + fam))
			rt := &authdb.RefreshToken{Hash: h[:], ClientID: app.ClientID, Subject: subject, Scope: "openid offline_access patient/*.rs",
				Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := db.StartFamily(ctx, &authdb.Family{ID: fam, ClientID: app.ClientID, Subject: subject, CreatedAt: now}, jti, now.Add(time.Hour), rt); err != nil {
				t.Fatal(err)
			}
			return h[:]
		}
		rtA := grant("fa", alice.Subject, "ja")
		grant("fb", bob.Subject, "jb")

		one := func(out string, v any) {
			t.Helper()
			dec := json.NewDecoder(strings.NewReader(out))
			if err := dec.Decode(v); err != nil || dec.More() {
				t.Fatalf("not exactly one JSON value: %q", out)
			}
		}
		code, out, errs := run(append([]string{"grants", "list", "--json"}, flags...)...)
		var list []map[string]any
		if code != 0 {
			t.Fatalf("list: %d %s", code, errs)
		}
		one(out, &list)
		if len(list) != 2 {
			t.Fatalf("list: %s", out)
		}
		keys := []string{"client_id", "client_name", "created_at", "expires_at", "families", "last_used_at", "scopes", "subject", "username"}
		for _, g := range list {
			var got []string
			for k := range g {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, keys) || g["client_id"] != app.ClientID || g["client_name"] != "Patient app" || g["families"] != float64(1) {
				t.Fatalf("grant shape: %v", g)
			}
		}
		code, out, _ = run(append([]string{"grants", "list", "--user", "ALICE", "--client", app.ClientID, "--json"}, flags...)...)
		list = nil
		one(out, &list)
		if code != 0 || len(list) != 1 || list[0]["username"] != "alice" || list[0]["subject"] != alice.Subject {
			t.Fatalf("filtered list: %s", out)
		}
		code, out, _ = run(append([]string{"grants", "list", "--client", "nope", "--json"}, flags...)...)
		if code != 0 || strings.TrimSpace(out) != "[]" {
			t.Fatalf("empty list: %q", out)
		}
		if code, out, _ = run(append([]string{"grants", "list"}, flags...)...); code != 0 || !strings.Contains(out, "Patient app") {
			t.Fatalf("text list: %q", out)
		}

		// Revoke one user's grants: the running server sees it at once.
		code, out, errs = run(append([]string{"grants", "revoke", "--client", app.ClientID, "--user", "alice", "--json"}, flags...)...)
		var rev map[string]any
		one(out, &rev)
		if code != 0 || len(rev) != 3 || rev["client_id"] != app.ClientID || rev["username"] != "alice" || rev["revoked"] != float64(1) {
			t.Fatalf("revoke: %d %q %s", code, out, errs)
		}
		if ok, err := db.Revoked(ctx, "ja"); err != nil || !ok {
			t.Fatalf("alice's access token not revoked: %v", err)
		}
		if _, err := db.RefreshToken(ctx, rtA); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("alice's refresh token survives: %v", err)
		}
		if ok, _ := db.Revoked(ctx, "jb"); ok {
			t.Fatal("bob's token revoked too")
		}
		// Admin: every user.
		code, out, _ = run(append([]string{"grants", "revoke", "--client", app.ClientID, "--json"}, flags...)...)
		rev = nil
		one(out, &rev)
		if code != 0 || len(rev) != 2 || rev["revoked"] != float64(1) {
			t.Fatalf("revoke all: %q", out)
		}
		if ok, _ := db.Revoked(ctx, "jb"); !ok {
			t.Fatal("bob's token not revoked")
		}
		if code, out, _ = run(append([]string{"grants", "revoke", "--client", app.ClientID}, flags...)...); code != 0 || !strings.Contains(out, "revoked 0 grant(s)") {
			t.Fatalf("text revoke: %q", out)
		}

		// Errors: non-zero exit, nothing on stdout, one line on stderr.
		for _, bad := range [][]string{
			{"grants", "revoke", "--client", app.ClientID, "--user", "nobody", "--json"},
			{"grants", "list", "--user", "nobody", "--json"},
			{"grants", "revoke", "--client", " ", "--json"},
			{"grants", "revoke", "--json"},
		} {
			code, out, errs := run(append(bad, flags...)...)
			if code == 0 || out != "" || strings.Count(strings.TrimRight(errs, "\n"), "\n") != 0 || !strings.HasPrefix(errs, "lapis: ") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", bad, code, out, errs)
			}
		}
	})
}
