package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/metrics"
)

// auditRuntime is what startAudit built; close stops it (after the server).
type auditRuntime struct {
	sink  audit.Sink
	stage func(http.Handler) http.Handler
	db    *audit.DB // nil with the trail off
	// activity is the per-client activity (nil with the trail off).
	activity *activity.Recorder
	close    func()
}

// startAudit opens the chain table, starts the recorder and the alerter,
// and returns the Sink and the FHIR stage; stdout receives the stream
// "stdout". With the audit trail off it returns the Discard sink and no
// stage.
func startAudit(ctx context.Context, a *App, cfg config.Config, stdout io.Writer, mets *metrics.Metrics, log *slog.Logger) (*auditRuntime, error) {
	f := cfg.Audit
	if !f.Enabled {
		log.Warn("AUDIT DISABLED: --no-audit records no AuditEvents")
		return &auditRuntime{sink: audit.Discard{}, close: func() {}}, nil
	}
	var stream io.Writer
	var streamFile *os.File
	switch f.Stream {
	case "":
	case "stdout", "-":
		stream = stdout
	default:
		fh, err := os.OpenFile(f.Stream, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--audit-stream: %w", err)
		}
		stream, streamFile = fh, fh
	}
	closeStream := func() {
		if streamFile != nil {
			streamFile.Close()
		}
	}
	ex, err := extract.New(a.Registry, cfg.FHIRBase())
	if err != nil {
		closeStream()
		return nil, err
	}
	db, err := audit.NewDB(ctx, a.DB)
	if err != nil {
		closeStream()
		return nil, err
	}
	windows, closeWindows, err := alertWindows(cfg, db)
	if err != nil {
		db.Close()
		closeStream()
		return nil, err
	}
	al, err := audit.NewAlerter(audit.AlertConfig{
		Webhook:     f.AlertWebhook,
		VolumeLimit: f.AlertVolume, VolumeWindow: f.AlertVolumeWindow,
		AuthFailureLimit: f.AlertAuthFailures, AuthFailureWindow: f.AlertAuthWindow,
		Refusals: f.AlertRefusals, Environment: cfg.EnvName(),
		Metrics: mets, Logger: log,
		Windows: windows,
	})
	if err != nil {
		closeWindows()
		db.Close()
		closeStream()
		return nil, fmt.Errorf("--alert-webhook: %w", err)
	}
	rec, err := audit.Start(ctx, audit.Config{
		DB: db, Store: a.Store, Indexer: ex, Site: cfg.FHIRBase(),
		Stream: stream, Observer: al, Metrics: mets.ForEnv(cfg.Env), Logger: log, QueueSize: f.Queue, CopyDuty: f.CopyDuty,
		CopyLag: f.CopyLag,
	})
	if err != nil {
		al.Close()
		closeWindows()
		db.Close()
		closeStream()
		return nil, err
	}
	al.SetInstance(rec.Chain())
	log.Info("audit trail on", "chain", rec.Chain())
	// Every client's requests also feed its activity (the developer
	// portal's "what your app does"); closed, flushed, before the
	// recorder it passes events to.
	act, err := activity.NewRecorder(ctx, a.DB, rec, activity.Options{Logger: log})
	if err != nil {
		rec.Close()
		al.Close()
		closeWindows()
		db.Close()
		closeStream()
		return nil, err
	}
	return &auditRuntime{sink: act, stage: act.Stage(), db: db, activity: act, close: func() {
		act.Close()
		rec.Close()
		al.Close()
		closeWindows()
		db.Close()
		closeStream()
	}}, nil
}

// alertWindows is where the alert rules count: in Redis when the rate
// limits share one (--redis-url), else in the database on PostgreSQL (the
// database instances share), else (SQLite: one instance) in the process.
func alertWindows(cfg config.Config, db *audit.DB) (audit.WindowStore, func(), error) {
	switch {
	case cfg.RateLimit.RedisURL != "":
		// Each environment counts apart: production keeps the plain
		// keys, others add their name.
		var prefix string
		if cfg.EnvName() != config.EnvProduction {
			prefix = cfg.EnvName() + ":"
		}
		r, err := audit.NewRedisWindowsPrefix(cfg.RateLimit.RedisURL, prefix)
		if err != nil {
			return nil, nil, fmt.Errorf("--redis-url: %w", err)
		}
		return r, func() { _ = r.Close() }, nil
	case db.Postgres():
		return db, func() {}, nil
	}
	return nil, func() {}, nil
}
