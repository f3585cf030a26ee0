package app

import (
	"context"
	"errors"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/server"
)

// readyChecks are the dependencies /readyz checks: the FHIR database, the
// authorization database, the audit database (when the trail is on),
// Redis (when the rate limits fail closed without it: with the default
// fail-open policy an instance serves through a Redis outage, so Redis is
// no reason to take it out of a load balancer), the migrations of the
// authorization and audit schemas, and the signing keys.
func readyChecks(a *App, auth *oauth.Server, auditDB *audit.DB, redis func(context.Context) error) []server.Check {
	checks := []server.Check{
		{Name: "fhir-database", Check: a.Ping},
		{Name: "authorization-database", Check: auth.DB().Ping},
	}
	migrated := []func(context.Context) error{auth.DB().Migrated}
	if auditDB != nil {
		checks = append(checks, server.Check{Name: "audit-database", Check: auditDB.Ping})
		migrated = append(migrated, auditDB.Migrated)
	}
	if redis != nil {
		checks = append(checks, server.Check{Name: "redis", Check: redis})
	}
	return append(checks,
		server.Check{Name: "migrations", Check: func(ctx context.Context) error {
			var errs []error
			for _, m := range migrated {
				errs = append(errs, m(ctx))
			}
			return errors.Join(errs...)
		}},
		server.Check{Name: "signing-keys", Check: auth.KeysReady},
	)
}
