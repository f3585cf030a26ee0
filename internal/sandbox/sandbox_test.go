package sandbox_test

import (
	"context"
	"log/slog"
	"testing"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/sandbox"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// TestLoadReset loads the US Core bundles with two logins into a sandbox
// database (SQLite, and a PostgreSQL schema), loads again (the logins
// exist: counted, not failed), then resets: resources, clients, logins
// and signing keys are gone, new signing keys are there, a bad Bundle
// stops the load with an error.
func TestLoadReset(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			cfg := apptest.Config(t, dialect, nil).SandboxConfig()
			ctx := admin.WithActor(context.Background(), admin.CommandActor())
			h, err := app.OpenDB(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			a, err := app.OpenWith(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{DB: h})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			adb, err := authdb.New(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			defer adb.Close()
			adm := admin.New(admin.Config{Store: adb, Logger: slog.New(slog.DiscardHandler), Records: app.Patients{Service: a.Service}})

			var ds sandbox.Dataset
			for _, b := range shareddata.USCoreBundles(t) {
				ds.Bundles = append(ds.Bundles, b.Body)
			}
			ds.Logins = []sandbox.Login{{Username: "amy", Password: "sandbox-pass-1", FHIRUser: "Patient/85"}, {Username: "ben", Password: "sandbox-pass-2", FHIRUser: "Patient/355"}}
			sum, err := sandbox.Load(ctx, a.Service, adm, ds)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Bundles != 3 || sum.Entries == 0 || sum.Logins != 2 || sum.Existing != 0 {
				t.Errorf("first load %+v", sum)
			}
			users, err := adm.Users(ctx)
			if err != nil || len(users) != 2 || users[0].FHIRUser != "Patient/85" {
				t.Errorf("users %+v %v", users, err)
			}
			if sum, err = sandbox.Load(ctx, a.Service, adm, sandbox.Dataset{Logins: ds.Logins}); err != nil || sum.Existing != 2 || sum.Logins != 0 {
				t.Errorf("second load %+v %v", sum, err)
			}
			// The test app is registered once, then found by its owner.
			first, err := sandbox.Load(ctx, a.Service, adm, sandbox.Dataset{App: sandbox.TestApp()})
			if err != nil || first.AppClientID == "" {
				t.Fatalf("test app: %+v %v", first, err)
			}
			again, err := sandbox.Load(ctx, a.Service, adm, sandbox.Dataset{App: sandbox.TestApp()})
			if err != nil || again.AppClientID != first.AppClientID {
				t.Errorf("test app registered twice: %q then %q (%v)", first.AppClientID, again.AppClientID, err)
			}
			if cs, err := adm.Clients(ctx, api.ClientFilter{Owner: sandbox.TestAppOwner}); err != nil || len(cs) != 1 || cs[0].Type != "public" {
				t.Errorf("test app clients %+v %v", cs, err)
			}
			if err := adm.DeleteClient(ctx, first.AppClientID); err != nil {
				t.Fatal(err)
			}
			if _, err := sandbox.Load(ctx, a.Service, adm, sandbox.Dataset{Bundles: [][]byte{[]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","birthDate":"not a date"},"request":{"method":"POST","url":"Patient"}}]}`)}}); err == nil {
				t.Error("a bad Bundle loaded")
			}
			if _, err := sandbox.Load(ctx, a.Service, adm, sandbox.Dataset{Logins: []sandbox.Login{{Username: "cy", Password: "sandbox-pass-3", FHIRUser: "Patient/none"}}}); err == nil {
				t.Error("a login of a missing patient was created")
			}
			if _, err := adm.CreateClient(ctx, api.ClientRequest{Name: "app", Type: "confidential", Scopes: []string{"system/*.rs"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := keys.Open(ctx, adb, keys.Options{KEKFile: cfg.Auth.KEKFile}); err != nil {
				t.Fatal(err)
			}
			before, err := adb.SigningKeys(ctx)
			if err != nil || len(before) == 0 {
				t.Fatalf("signing keys %v", err)
			}

			if err := sandbox.Reset(ctx, h, sandbox.ResetOptions{KEKFile: cfg.Auth.KEKFile}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Store.Read(ctx, "Patient", "85"); err == nil {
				t.Error("Patient/85 survived the reset")
			}
			if users, _ := adm.Users(ctx); len(users) != 0 {
				t.Errorf("users after reset: %+v", users)
			}
			if cs, _ := adm.Clients(ctx, api.ClientFilter{}); len(cs) != 0 {
				t.Errorf("clients after reset: %+v", cs)
			}
			after, err := adb.SigningKeys(ctx)
			if err != nil || len(after) != len(before) || after[0].KID == before[0].KID {
				t.Errorf("signing keys after reset: %d (before %d) %v", len(after), len(before), err)
			}
			// Loadable again.
			if _, err := sandbox.Load(ctx, a.Service, adm, ds); err != nil {
				t.Fatal(err)
			}
		})
	}
}
