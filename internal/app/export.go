package app

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/authn"
	"github.com/lapis-health/lapis/internal/bulk"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/principal"
)

// openExport opens the Bulk Data export service on the configured
// database (its own job table) and output folder, and starts its workers.
func openExport(ctx context.Context, cfg config.Config, a *App, auth *oauth.Server, sink audit.Sink, log *slog.Logger) (*bulk.Service, error) {
	e := cfg.Export
	dir := e.Dir
	if dir == "" {
		dir = filepath.Join(cfg.Database.DataDir, "export")
	}
	var s3 *bulk.S3
	if e.S3URL != "" {
		s3 = &bulk.S3{URL: e.S3URL, AccessKey: e.S3AccessKey, SecretKey: e.S3SecretKey}
	}
	return bulk.Open(ctx, bulk.Config{S3: s3,
		DB: a.DB, Dir: dir, BaseURL: cfg.FHIRBase(), Service: a.Service, Audit: sink, Logger: log,
		Workers: e.Workers, MaxJobsPerClient: e.MaxJobsPerClient, Expire: e.Expire, Lease: e.Lease, MaxFileBytes: e.MaxFileBytes, Rate: e.Rate,
		Active: func(ctx context.Context, p *principal.Principal) (bool, error) { return credentialActive(ctx, auth, p) },
	})
}

// credentialActive reports whether the credential p authenticated with
// still stands, as the authentication middleware would judge it for a
// new request, except that an access token's expiry does not count (a
// client polls with fresh tokens): an access token not revoked, an API
// key neither revoked, expired nor deleted, a client still allowed Basic.
func credentialActive(ctx context.Context, auth *oauth.Server, p *principal.Principal) (bool, error) {
	switch p.Method {
	case authn.MethodBearer:
		revoked, err := auth.Verifier().Revoked(ctx, p.TokenID)
		return !revoked, err
	case authn.MethodAPIKey:
		k, err := auth.DB().APIKey(ctx, p.TokenID)
		if errors.Is(err, authdb.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return k.Valid(time.Now()), nil
	case authn.MethodBasic:
		_, err := auth.DB().Client(ctx, p.ClientID)
		if errors.Is(err, authdb.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return auth.DB().BasicEnabled(ctx, p.ClientID)
	}
	return true, nil
}
