package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
)

// TestLocalAdminAudit: every local admin change (not only API keys)
// appends exactly one chained audit record, of the admin service's shape,
// before the command succeeds; reads append none; deleting a client
// revokes its users' grants as the admin API does; --owner is stored and
// filters the listings.
func TestLocalAdminAudit(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, flags []string, dbURL string) {
		ctx := context.Background()
		lapis := func(stdin string, args ...string) string {
			t.Helper()
			code, out, errs := runIn(stdin, append(args, flags...)...)
			if code != 0 {
				t.Fatalf("%v: %d %s", args, code, errs)
			}
			return out
		}
		// records returns the bodies of every audit record, by chain.
		records := func() [][]byte {
			t.Helper()
			adb, err := audit.OpenDB(ctx, dbURL, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer adb.Close()
			chains, err := adb.Chains(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for _, ch := range chains {
				rows, err := adb.Page(ctx, ch, 0, 100)
				if err != nil {
					t.Fatal(err)
				}
				prev := audit.Genesis
				for _, r := range rows {
					if r.PrevHash != prev || audit.Hash(r.Chain, r.Seq, r.PrevHash, r.Body) != r.Hash {
						t.Fatalf("chain %s seq %d does not verify", ch, r.Seq)
					}
					prev = r.Hash
					out = append(out, r.Body)
				}
			}
			return out
		}
		seen := 0
		wantRecord := func(what, desc string) {
			t.Helper()
			all := records()
			if len(all) != seen+1 {
				t.Fatalf("%s: %d new audit records, want 1", what, len(all)-seen)
			}
			seen = len(all)
			for _, body := range all {
				if bytes.Contains(body, []byte(`"outcomeDesc":"`+desc+`"`)) {
					if !bytes.Contains(body, []byte(`"value":"lapis-cli"`)) || !bytes.Contains(body, []byte(`"address":"local"`)) {
						t.Fatalf("%s: record %s", what, body)
					}
					return
				}
			}
			t.Fatalf("%s: no record %q", what, desc)
		}

		var cl struct {
			ClientID string `json:"client_id"`
		}
		json.Unmarshal([]byte(lapis("", "client", "create", "--name", "app", "--type", "public", "--redirect-uri", "https://app.example/cb",
			"--scope", "openid offline_access patient/*.rs", "--owner", "dev:7", "--json")), &cl)
		wantRecord("client create", "admin create_client "+cl.ClientID)
		lapis("", "client", "create", "--name", "other", "--type", "confidential", "--scope", "system/*.rs")
		seen++
		lapis("", "client", "list")
		lapis("", "client", "list", "--json")
		lapis("", "apikey", "list")
		if n := len(records()); n != seen {
			t.Fatalf("reads recorded: %d records, want %d", n, seen)
		}
		var owned []map[string]any
		if err := json.Unmarshal([]byte(lapis("", "client", "list", "--owner", "dev:7", "--json")), &owned); err != nil || len(owned) != 1 ||
			owned[0]["client_id"] != cl.ClientID || owned[0]["owner"] != "dev:7" {
			t.Fatalf("client list --owner: %v %v", owned, err)
		}

		var u struct{ Subject string }
		json.Unmarshal([]byte(lapis("a long password\n", "user", "create", "--username", "alice", "--password-stdin", "--fhir-user", "Patient/1", "--force", "--json")), &u)
		wantRecord("user create", "admin create_user "+u.Subject)

		// A grant alice gave the app dies with the app.
		db, err := authdb.Open(ctx, dbURL, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		now := time.Now()
		h := sha256.Sum256([]byte("rt"))
		if err := db.StartFamily(ctx, &authdb.Family{ID: "fam", ClientID: cl.ClientID, Subject: u.Subject, CreatedAt: now}, "jti-1", now.Add(time.Hour),
			&authdb.RefreshToken{Hash: h[:], ClientID: cl.ClientID, Subject: u.Subject, Scope: "openid", Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if out := lapis("", "client", "delete", cl.ClientID); out != "deleted client "+cl.ClientID+"\n" {
			t.Fatalf("client delete: %q", out)
		}
		wantRecord("client delete", "admin delete_client "+cl.ClientID)
		if ok, err := db.Revoked(ctx, "jti-1"); err != nil || !ok {
			t.Fatalf("the deleted client's grant is still live: %v", err)
		}

		var key struct{ ID, Owner string }
		json.Unmarshal([]byte(lapis("", "apikey", "create", "--name", "k", "--scope", "system/*.rs", "--owner", "admin", "--json")), &key)
		if key.Owner != "admin" {
			t.Fatalf("key owner %q", key.Owner)
		}
		wantRecord("apikey create", "admin create_apikey "+key.ID)
		lapis("", "apikey", "revoke", key.ID)
		wantRecord("apikey revoke", "admin revoke_apikey "+key.ID)
		if out := lapis("", "apikey", "list", "--owner", "nobody", "--json"); strings.TrimSpace(out) != "[]" {
			t.Fatalf("apikey list --owner nobody: %q", out)
		}
		lapis("", "user", "delete", "alice")
		wantRecord("user delete", "admin delete_user "+u.Subject)

		// A refused change appends nothing.
		if code, _, _ := runIn("", append([]string{"apikey", "create", "--name", "k", "--scope", "user/*.rs"}, flags...)...); code == 0 {
			t.Fatal("user/ scope accepted")
		}
		if n := len(records()); n != seen {
			t.Fatalf("a refusal recorded: %d records, want %d", n, seen)
		}
	})
}
