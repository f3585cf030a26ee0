// Package sandbox fills and empties the sandbox environment: Load stores
// a dataset (transaction Bundles, then the logins of its patients and
// practitioners) through the environment's resource and admin services;
// Reset wipes the environment's database — FHIR data, clients, API keys,
// logins, tokens, signing keys, export jobs — and tells every running
// instance to drop what it cached, so a server keeps serving correctly
// while it happens. The audit trail is kept: it is the record of what
// was done, the reset included.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/resource"
)

// Login is one sandbox user login: a username and password for the
// authorization server's login page, bound to a FHIR user.
type Login struct{ Username, Password, FHIRUser string }

// Dataset is what Load stores: FHIR transaction (or batch) Bundles as
// JSON, in load order, and the logins to create once they are stored.
type Dataset struct {
	Bundles [][]byte
	Logins  []Login
	// App, when set, is a test app Load registers once (owner TestAppOwner).
	App *api.ClientRequest
}

// TestAppOwner is the owner of the test app a sandbox load registers:
// a later load finds it by this owner and does not register another.
const TestAppOwner = "lapis-sandbox"

// TestApp is the sandbox's registered test app: a public SMART client
// (PKCE) with redirect and launch URIs of a local and the hosted ONC
// Inferno test kit, allowed every patient, user and launch scope a
// certification run asks for.
func TestApp() *api.ClientRequest {
	return &api.ClientRequest{
		Name: "Sandbox test app (public, PKCE)",
		Type: "public",
		RedirectURIs: []string{
			"http://localhost:4567/custom/smart/redirect",
			"https://inferno.healthit.gov/suites/custom/smart/redirect",
			"http://localhost:8000/callback",
		},
		LaunchURI: "http://localhost:4567/custom/smart/launch",
		Scopes: []string{"openid fhirUser profile launch launch/patient offline_access online_access",
			"patient/*.rs user/*.rs patient/*.read user/*.read"},
		Owner: TestAppOwner,
	}
}

// Summary is what Load did.
type Summary struct {
	// Bundles and Entries are the Bundles stored and their entries.
	Bundles, Entries int
	// Logins are the logins created; Existing those already there
	// (a load over a loaded sandbox).
	Logins, Existing int
	// AppClientID is the test app's client_id (registered now or by an
	// earlier load); empty when the dataset has no App.
	AppClientID string
}

// Load stores ds: each Bundle through svc (one transaction each, in
// order; svc acts without access control or ctx carries a principal
// allowed to write), then each login through adm (ctx carries the admin
// actor, admin.WithActor; a username already taken is counted as
// Existing), then refreshes the planner statistics. It stops at the
// first Bundle that fails.
func Load(ctx context.Context, svc *resource.Service, adm *admin.Service, ds Dataset) (Summary, error) {
	var sum Summary
	for i, b := range ds.Bundles {
		res, err := svc.Bundle(ctx, b, resource.ReturnMinimal)
		if err != nil {
			return sum, fmt.Errorf("sandbox: bundle %d: %w", i+1, err)
		}
		n, err := entries(res)
		if err != nil {
			return sum, fmt.Errorf("sandbox: bundle %d: %w", i+1, err)
		}
		sum.Bundles++
		sum.Entries += n
	}
	for _, l := range ds.Logins {
		_, err := adm.CreateUser(ctx, api.UserRequest{Username: l.Username, Password: l.Password, FHIRUser: l.FHIRUser})
		var ce *admin.ConflictError
		switch {
		case errors.As(err, &ce):
			sum.Existing++
		case err != nil:
			return sum, fmt.Errorf("sandbox: login %s: %w", l.Username, err)
		default:
			sum.Logins++
		}
	}
	if ds.App != nil {
		id, err := registerApp(ctx, adm, *ds.App)
		if err != nil {
			return sum, fmt.Errorf("sandbox: test app: %w", err)
		}
		sum.AppClientID = id
	}
	if err := svc.Analyze(ctx); err != nil {
		return sum, fmt.Errorf("sandbox: refreshing planner statistics: %w", err)
	}
	return sum, nil
}

// entries counts the entries of a Bundle response and fails on the
// first entry of a batch that failed.
func entries(res *resource.Result) (int, error) {
	if res == nil || len(res.Body) == 0 {
		return 0, nil
	}
	var b struct {
		Entry []struct {
			Response struct {
				Status string `json:"status"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(res.Body, &b); err != nil {
		return 0, err
	}
	for i, e := range b.Entry {
		if !strings.HasPrefix(e.Response.Status, "2") {
			return 0, fmt.Errorf("entry %d: %s", i+1, e.Response.Status)
		}
	}
	return len(b.Entry), nil
}

// registerApp registers app unless a client of its owner exists, and
// returns the client_id.
func registerApp(ctx context.Context, adm *admin.Service, app api.ClientRequest) (string, error) {
	have, err := adm.Clients(ctx, api.ClientFilter{Owner: app.Owner})
	if err != nil {
		return "", err
	}
	if len(have) > 0 {
		return have[0].ID, nil
	}
	reg, err := adm.CreateClient(ctx, app)
	if err != nil {
		return "", err
	}
	return reg.ClientID, nil
}
