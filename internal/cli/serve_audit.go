package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/netpolicy"
)

// auditFlags are serve's audit-trail and alert flags.
type auditFlags struct {
	Audit             bool          `name:"audit" env:"LAPIS_AUDIT" default:"true" negatable:"" help:"Record every FHIR interaction and security event as a hash-chained AuditEvent (--no-audit: benchmarks only)."`
	AuditStream       string        `name:"audit-stream" env:"LAPIS_AUDIT_STREAM" help:"Also write every audit record as a JSON line to stdout or to FILE (appended), for a SIEM." placeholder:"stdout|FILE"`
	AuditQueue        int           `name:"audit-queue" env:"LAPIS_AUDIT_QUEUE" default:"16384" help:"Audit records that may wait to be written; a full queue holds requests back (never drops silently)."`
	AuditCopyDuty     float64       `name:"audit-copy-duty" env:"LAPIS_AUDIT_COPY_DUTY" default:"0.25" help:"Share of one core (0.01-1) the copy of audit records into searchable AuditEvents may use while records keep coming."`
	AlertWebhook      string        `name:"alert-webhook" env:"LAPIS_ALERT_WEBHOOK" help:"POST each alert as JSON to URL (https, or http on loopback)." placeholder:"URL"`
	AlertVolume       int           `name:"alert-volume" env:"LAPIS_ALERT_VOLUME" default:"10000" help:"Alert when one client is returned more resources than this within --alert-volume-window (0 disables)."`
	AlertVolumeWindow time.Duration `name:"alert-volume-window" env:"LAPIS_ALERT_VOLUME_WINDOW" default:"1h" help:"Window of --alert-volume."`
	AlertAuthFailures int           `name:"alert-auth-failures" env:"LAPIS_ALERT_AUTH_FAILURES" default:"10" help:"Alert when one client or address fails authentication more often than this within --alert-auth-window (0 disables)."`
	AlertAuthWindow   time.Duration `name:"alert-auth-window" env:"LAPIS_ALERT_AUTH_WINDOW" default:"5m" help:"Window of --alert-auth-failures."`
	AlertRefusals     bool          `name:"alert-refusals" env:"LAPIS_ALERT_REFUSALS" default:"true" negatable:"" help:"Alert on requests refused by an allow-list."`
}

// auditRuntime is what startAudit built; close stops it (after the server).
type auditRuntime struct {
	sink  audit.Sink
	stage func(http.Handler) http.Handler
	close func()
}

// startAudit opens the chain table, starts the recorder and the alerter,
// and returns the Sink and the FHIR stage. With --no-audit it returns the
// Discard sink and no stage.
func (f auditFlags) startAudit(ctx context.Context, e *env, a *app.App, cfg config.Config, mets *metrics.Metrics, log *slog.Logger) (*auditRuntime, error) {
	if f.AuditCopyDuty < 0.01 || f.AuditCopyDuty > 1 {
		return nil, fmt.Errorf("--audit-copy-duty must be between 0.01 and 1")
	}
	if !f.Audit {
		log.Warn("AUDIT DISABLED: --no-audit records no AuditEvents")
		return &auditRuntime{sink: audit.Discard{}, close: func() {}}, nil
	}
	var stream io.Writer
	var streamFile *os.File
	switch f.AuditStream {
	case "":
	case "stdout", "-":
		stream = e.stdout
	default:
		fh, err := os.OpenFile(f.AuditStream, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--audit-stream: %w", err)
		}
		stream, streamFile = fh, fh
	}
	ex, err := extract.New(a.Registry, cfg.FHIRBase())
	if err != nil {
		return nil, err
	}
	db, err := audit.OpenDB(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	al, err := audit.NewAlerter(audit.AlertConfig{
		Webhook:     f.AlertWebhook,
		VolumeLimit: f.AlertVolume, VolumeWindow: f.AlertVolumeWindow,
		AuthFailureLimit: f.AlertAuthFailures, AuthFailureWindow: f.AlertAuthWindow,
		Refusals: f.AlertRefusals,
		Metrics:  mets, Logger: log,
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("--alert-webhook: %w", err)
	}
	rec, err := audit.Start(ctx, audit.Config{
		DB: db, Store: a.Store, Indexer: ex, Site: cfg.FHIRBase(),
		Stream: stream, Observer: al, Metrics: mets, Logger: log, QueueSize: f.AuditQueue, CopyDuty: f.AuditCopyDuty,
	})
	if err != nil {
		al.Close()
		db.Close()
		return nil, err
	}
	log.Info("audit trail on", "chain", rec.Chain())
	stage := audit.Stage(audit.StageConfig{
		Recorder: rec,
		BaseURL:  cfg.FHIRBase(),
		ClientIP: func(r *http.Request) string {
			if ip := netpolicy.ClientIP(r); ip.IsValid() {
				return ip.String()
			}
			return ""
		},
	})
	return &auditRuntime{sink: rec, stage: stage, close: func() {
		rec.Close()
		al.Close()
		db.Close()
		if streamFile != nil {
			streamFile.Close()
		}
	}}, nil
}
