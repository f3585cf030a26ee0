package app

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/mail"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/portal"
)

// newPortal builds the developer portal on the production environment's
// database (developer accounts, organisations, terms) managing apps and
// keys in every environment; it returns the ServeMux pattern it serves
// and its handler.
func (s *Server) newPortal(cfg config.Config, log *slog.Logger) (string, http.Handler, error) {
	sender, dev, err := mail.New(cfg.Portal.SMTPURL, cfg.Portal.SMTPFrom, log)
	if err != nil {
		return "", nil, fmt.Errorf("portal mail: %w", err)
	}
	if dev {
		log.Warn("portal: no --smtp-url: DEVELOPMENT MODE, the portal's emails and their links are written to the log")
	}
	kekFile := cfg.Auth.KEKFile
	if kekFile == "" && cfg.Auth.KEK == "" {
		kekFile = filepath.Join(cfg.Database.DataDir, keys.KEKFile)
	}
	kek, err := keys.ResolveKEK(kekFile, cfg.Auth.KEK)
	if err != nil {
		return "", nil, err
	}
	prod := s.envs[0]
	var envs []portal.Env
	for _, e := range s.envs {
		pe := portal.Env{Name: e.Name, FHIRBase: e.FHIRBase, Admin: e.Admin, Activity: e.Activity, Auth: e.Auth}
		if e.RateLimits != nil {
			pe.Budget = e.RateLimits.Budget
		}
		envs = append(envs, pe)
	}
	p, err := portal.New(portal.Config{
		BaseURL:      cfg.Server.BaseURL,
		DB:           prod.DB,
		Mail:         sender,
		Logger:       log.With("part", "portal"),
		Audit:        prod.Audit,
		Environments: envs,
		KEK:          kek,
	})
	if err != nil {
		return "", nil, err
	}
	s.portal = p
	p.Webhooks().Start()
	s.closers = append(s.closers, func() { _ = p.Webhooks().Close() })
	return p.Path("/"), p.Handler(), nil
}
