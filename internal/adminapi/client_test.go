package adminapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/client"
	api "github.com/lapis-health/lapis/client/admin"
)

// TestTypedClient drives every endpoint through package client/admin:
// the answers decode into its types, owners filter, and errors match
// ErrNotFound, ErrConflict and the 403 of a token without the scope.
func TestTypedClient(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		adm := e.admin("system/Patient.rs")
		a := e.adminClient(adm)

		reg, err := a.CreateClient(ctx, api.ClientRequest{Name: "Web", Type: "public", RedirectURIs: []string{"https://app.example/cb"},
			Scopes: []string{"openid patient/*.rs"}, AllowIPs: []string{"192.0.2.0/24"}, Owner: "dev:1"})
		if err != nil || reg.ClientID == "" || reg.ClientSecret != "" {
			t.Fatalf("create client: %+v %v", reg, err)
		}
		if cs, err := a.Clients(ctx, api.ClientFilter{Owner: "dev:1"}); err != nil || len(cs) != 1 || cs[0].ID != reg.ClientID || cs[0].Owner != "dev:1" ||
			len(cs[0].Scopes) != 2 || cs[0].CreatedAt.IsZero() {
			t.Fatalf("clients of dev:1: %+v %v", cs, err)
		}
		if cs, err := a.Clients(ctx, api.ClientFilter{}); err != nil || len(cs) != 2 {
			t.Fatalf("clients: %+v %v", cs, err)
		}
		if cl, err := a.OAuthClient(ctx, reg.ClientID); err != nil || cl.Name != "Web" {
			t.Fatalf("client: %+v %v", cl, err)
		}
		if n, err := a.ClientNetwork(ctx, reg.ClientID); err != nil || len(n.AllowIPs) != 1 || len(n.CORSOrigins) != 0 {
			t.Fatalf("network: %+v %v", n, err)
		}
		if n, err := a.SetClientNetwork(ctx, reg.ClientID, api.NetworkRequest{CORSOrigins: []string{"https://app.example"}}); err != nil ||
			len(n.AllowIPs) != 0 || n.CORSOrigins[0] != "https://app.example" || n.ClientID != reg.ClientID {
			t.Fatalf("set network: %+v %v", n, err)
		}

		u, err := a.CreateUser(ctx, api.UserRequest{Username: "Alice", Password: "alice-password", FHIRUser: "Patient/1"})
		if err != nil || u.Username != "alice" || u.Subject == "" {
			t.Fatalf("create user: %+v %v", u, err)
		}
		if _, err := a.CreateUser(ctx, api.UserRequest{Username: "alice", Password: "alice-password", FHIRUser: "Patient/1"}); !errors.Is(err, api.ErrConflict) {
			t.Fatalf("duplicate user: %v", err)
		}
		if us, err := a.Users(ctx); err != nil || len(us) != 1 {
			t.Fatalf("users: %+v %v", us, err)
		}
		if got, err := a.User(ctx, "ALICE"); err != nil || got.Subject != u.Subject {
			t.Fatalf("user: %+v %v", got, err)
		}
		if gs, err := a.Grants(ctx, api.GrantFilter{Username: "alice"}); err != nil || len(gs) != 0 {
			t.Fatalf("grants: %+v %v", gs, err)
		}
		if _, err := a.Grants(ctx, api.GrantFilter{Username: "nobody"}); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("grants of nobody: %v", err)
		}
		if r, err := a.RevokeGrants(ctx, api.RevokeRequest{ClientID: reg.ClientID}); err != nil || r.Revoked != 0 {
			t.Fatalf("revoke grants: %+v %v", r, err)
		}

		exp := api.Duration(time.Hour)
		k, err := a.CreateAPIKey(ctx, api.APIKeyRequest{Name: "etl", Scopes: []string{"system/*.rs"}, ExpiresIn: &exp, Owner: "dev:1"})
		if err != nil || k.Key == "" || k.Owner != "dev:1" || k.ExpiresAt.IsZero() {
			t.Fatalf("create key: %+v %v", k, err)
		}
		var ae *api.Error
		if _, err := a.CreateAPIKey(ctx, api.APIKeyRequest{Name: "x", Scopes: []string{"user/*.rs"}}); !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != api.CodeInvalidRequest {
			t.Fatalf("bad key: %v", err)
		}
		grace := api.Duration(0)
		k2, err := a.RotateAPIKey(ctx, k.ID, api.RotateRequest{Grace: &grace})
		if err != nil || k2.Replaces != k.ID || k2.Owner != "dev:1" {
			t.Fatalf("rotate: %+v %v", k2, err)
		}
		if _, err := a.RotateAPIKey(ctx, k.ID, api.RotateRequest{}); !errors.Is(err, api.ErrConflict) {
			t.Fatalf("rotate twice: %v", err)
		}
		ks, err := a.APIKeys(ctx, api.APIKeyFilter{Owner: "dev:1"})
		status := map[string]string{}
		for _, k := range ks {
			status[k.ID] = k.Status
		}
		if err != nil || len(ks) != 2 || status[k.ID] != api.StatusExpired || status[k2.ID] != api.StatusActive {
			t.Fatalf("keys: %+v %v", ks, err)
		}
		if err := a.RevokeAPIKey(ctx, k2.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := a.APIKey(ctx, k2.ID); err != nil || got.Status != api.StatusRevoked || got.RevokedAt.IsZero() {
			t.Fatalf("revoked key: %+v %v", got, err)
		}
		if err := a.RevokeAPIKey(ctx, "ak_nope"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("revoke unknown: %v", err)
		}
		if err := a.DeleteUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteClient(ctx, reg.ClientID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.OAuthClient(ctx, reg.ClientID); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("deleted client: %v", err)
		}

		// A token without the admin scope: 403, as an *Error.
		c2, err := client.New(e.issuer, client.WithAuth(client.BearerToken(e.ccToken(adm, "system/Patient.rs"))))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := api.New(c2).Users(ctx); !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Code != api.CodeInsufficientScope {
			t.Fatalf("wrong scope: %v", err)
		}
	})
}

// TestAuditFailureIsAnError: a change whose audit record cannot be
// written is not answered as a success (nor with its secret), and the
// answer reveals nothing internal.
func TestAuditFailureIsAnError(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		adm := e.admin()
		tok := e.ccToken(adm)
		e.events.FailWith(errors.New("disk on fire at /var/lib/lapis"))
		r := e.call("POST", "apikeys", tok, `{"name":"k","scopes":["system/*.rs"]}`)
		wantAdmin(t, "create with a failing audit", r, 500, api.CodeServerError)
		if _, has := r.Body["key"]; has || strings.Contains(r.Raw, "disk") || !strings.Contains(r.Raw, "audit record") {
			t.Fatalf("answer: %s", r.Raw)
		}
		r = e.call("POST", "clients", tok, `{"name":"x","type":"confidential","scopes":["system/*.rs"],"owner":"bad owner"}`)
		wantAdmin(t, "bad owner", r, 400, api.CodeInvalidRequest)
		if !strings.Contains(r.Raw, "owner") {
			t.Fatalf("bad owner: %s", r.Raw)
		}
	})
}
