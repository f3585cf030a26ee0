package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/authdb"
)

// TestRateLimitCommands: --rate-limit on client and apikey create, the
// update commands, the listings, and the refusals, on both dialects.
func TestRateLimitCommands(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, dir string, db []string, url string) {
		must := func(args ...string) string {
			t.Helper()
			code, out, errs := run(append(args, db...)...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errs)
			}
			return out
		}
		k := oneObject(t, must("apikey", "create", "--name", "load", "--scope", "system/*.*", "--rate-limit", "500/s", "--rate-limit-burst", "2000", "--json"))
		id, _ := k["id"].(string)
		if k["rate_limit"] != "500/s" || k["rate_limit_burst"] != float64(2000) {
			t.Fatalf("create output %v", k)
		}
		c := oneObject(t, must("client", "create", "--name", "etl", "--type", "confidential", "--scope", "system/*.rs", "--rate-limit", "none", "--json"))
		cid, _ := c["client_id"].(string)

		adb, err := authdb.Open(context.Background(), url, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer adb.Close()
		stored := func(kind, id string) authdb.RateLimit {
			t.Helper()
			r, err := adb.CredentialRateLimit(context.Background(), kind, id)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := stored(authdb.CredentialAPIKey, id); r != (authdb.RateLimit{Limit: "500/s", Burst: 2000}) {
			t.Fatalf("stored key limit %+v", r)
		}
		if r := stored(authdb.CredentialClient, cid); r != (authdb.RateLimit{Limit: "none"}) {
			t.Fatalf("stored client limit %+v", r)
		}
		if out := must("client", "list"); !strings.Contains(out, "RATE_LIMIT") || !strings.Contains(out, "none") {
			t.Fatalf("client list: %s", out)
		}
		if out := must("apikey", "list"); !strings.Contains(out, "500/s burst 2000") {
			t.Fatalf("apikey list: %s", out)
		}

		// Update: a limit, unlimited, back to the default.
		if out := must("apikey", "update", id, "--rate-limit", "6000/m", "--rate-limit-burst", "100"); !strings.Contains(out, "6000/m burst 100") {
			t.Fatalf("apikey update: %s", out)
		}
		if r := stored(authdb.CredentialAPIKey, id); r != (authdb.RateLimit{Limit: "6000/m", Burst: 100}) {
			t.Fatalf("updated key limit %+v", r)
		}
		if m := oneObject(t, must("client", "update", cid, "--rate-limit", "0", "--json")); m["id"] != cid || m["rate_limit"] != "none" {
			t.Fatalf("client update --json: %v", m)
		}
		must("client", "update", cid, "--rate-limit", "default")
		if r := stored(authdb.CredentialClient, cid); !r.IsZero() {
			t.Fatalf("client limit after default %+v", r)
		}
		must("apikey", "update", id, "--rate-limit", "300/s")
		if r := stored(authdb.CredentialAPIKey, id); r != (authdb.RateLimit{Limit: "300/s", Burst: 300}) {
			t.Fatalf("burst defaults to N: %+v", r)
		}

		// Refusals: bad limits, a burst without a limit, unknown ids.
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"apikey", "update", id, "--rate-limit", "lots"}, "--rate-limit is not valid"},
			{[]string{"apikey", "update", id, "--rate-limit", "none", "--rate-limit-burst", "5"}, "--rate-limit is not valid"},
			{[]string{"client", "update", cid, "--rate-limit", "5/fortnight"}, "--rate-limit is not valid"},
			{[]string{"apikey", "create", "--name", "x", "--scope", "system/*.rs", "--rate-limit=-1/s"}, "--rate-limit is not valid"},
			{[]string{"apikey", "update", "ak_nope", "--rate-limit", "5/s"}, `no api key "ak_nope"`},
			{[]string{"client", "update", "nope", "--rate-limit", "5/s"}, `no client "nope"`},
			{[]string{"client", "update", cid}, "--rate-limit"},
		} {
			code, _, errs := run(append(tc.args, db...)...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errs, tc.want)
			}
		}
		if r := stored(authdb.CredentialAPIKey, id); r != (authdb.RateLimit{Limit: "300/s", Burst: 300}) {
			t.Fatalf("a refused update changed the limit: %+v", r)
		}
	})
}
