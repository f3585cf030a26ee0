package app

import (
	"context"
	"slices"
	"testing"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/netpolicy"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
)

// TestNetRules checks the adapter the gateway reads client network rules
// through: stored rules arrive unchanged, and a client that does not
// exist has no rules (not an error, which would refuse its requests).
func TestNetRules(t *testing.T) {
	authtest.Both(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		if err := db.CreateClient(ctx, &authdb.Client{ID: "a", Name: "a", Type: authdb.Public}); err != nil {
			t.Fatal(err)
		}
		want := netpolicy.Rules{ClientID: "a", AllowIPs: []string{"192.0.2.0/24"}, CORSOrigins: []string{"https://app.example"}}
		if err := db.SetClientNetRules(ctx, authdb.ClientNetRules(want)); err != nil {
			t.Fatal(err)
		}
		src := netRules{db}
		all, err := src.ClientNetRules(ctx)
		if err != nil || len(all) != 1 || all[0].ClientID != "a" || !slices.Equal(all[0].AllowIPs, want.AllowIPs) || !slices.Equal(all[0].CORSOrigins, want.CORSOrigins) {
			t.Fatalf("all rules: %+v %v", all, err)
		}
		got, err := src.ClientNetRulesFor(ctx, "a")
		if err != nil || !slices.Equal(got.AllowIPs, want.AllowIPs) || !slices.Equal(got.CORSOrigins, want.CORSOrigins) {
			t.Fatalf("rules of a: %+v %v", got, err)
		}
		got, err = src.ClientNetRulesFor(ctx, "nobody")
		if err != nil || got.ClientID != "nobody" || len(got.AllowIPs)+len(got.CORSOrigins) != 0 {
			t.Fatalf("rules of a missing client: %+v %v", got, err)
		}
	})
}
