package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/sandbox"
)

// loadSandbox loads the built-in sandbox dataset into env when it holds
// no Patient yet (a new sandbox, or one reset by an admin before this
// start). Loading is idempotent (fixed ids, existing logins counted), so
// instances starting together on one database do no harm.
func loadSandbox(ctx context.Context, env *Environment, log *slog.Logger) error {
	ctx = admin.WithActor(ctx, admin.Actor{ClientID: "lapis-sandbox-loader", Method: "internal", Address: "local"})
	ctx = principal.NewContext(ctx, &principal.Principal{
		Method:   "internal",
		ClientID: "lapis-sandbox-loader",
		Scopes:   []string{"system/*.cruds"},
	})
	page, err := env.Service.Search(ctx, "Patient", url.Values{"_count": {"1"}, "_elements": {"id"}}, false)
	if err != nil {
		return fmt.Errorf("sandbox: checking for data: %w", err)
	}
	if len(page.Matches) > 0 {
		return nil
	}
	ds, err := sandbox.Builtin()
	if err != nil {
		return err
	}
	sum, err := sandbox.Load(ctx, env.Service, env.Admin, ds)
	if err != nil {
		return err
	}
	log.Info("sandbox: built-in dataset loaded", "bundles", sum.Bundles, "entries", sum.Entries, "logins", sum.Logins, "test_app_client_id", sum.AppClientID)
	return nil
}
