package app

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/bulk"
	"github.com/lapis-health/lapis/internal/config"
)

// openExport opens the Bulk Data export service on the configured
// database (its own job table) and output folder, and starts its workers.
func openExport(ctx context.Context, cfg config.Config, a *App, sink audit.Sink, log *slog.Logger) (*bulk.Service, error) {
	e := cfg.Export
	dir := e.Dir
	if dir == "" {
		dir = filepath.Join(cfg.Database.DataDir, "export")
	}
	return bulk.Open(ctx, bulk.Config{
		DB: a.DB, Dir: dir, BaseURL: cfg.FHIRBase(), Service: a.Service, Audit: sink, Logger: log,
		Workers: e.Workers, MaxJobsPerClient: e.MaxJobsPerClient, Expire: e.Expire, Lease: e.Lease, MaxFileBytes: e.MaxFileBytes, Rate: e.Rate,
	})
}
