// Package app is the composition root of Lapis: it assembles the parts
// from a config.Config and nothing else does. Open builds the core the
// admin commands share (the one database handle, the R4 definitions, the
// store, the validator, the search-index extractor, the search parser
// and the resource service);
// NewServer builds a whole server of such cores: one Environment each
// for production ([base-url]/fhir) and the sandbox
// ([base-url]/sandbox/fhir), each with its own database handle, audit
// trail, authorization server, gateway, rate limits, authentication and
// FHIR API, on one listener, so lapis serve and the tests run exactly the
// same code.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/fhir/profile"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/backend"
)

// App is an assembled Lapis instance without its HTTP listener.
type App struct {
	Config config.Config
	// DB is the process's one database handle: the store, the audit
	// chain and the authorization database all use it.
	DB       *database.DB
	Registry *definitions.Registry
	Store    store.Store
	Service  *resource.Service
	Logger   *slog.Logger
	// ownDB: Close closes DB (opened by OpenWith, not passed in Options).
	ownDB bool
}

// Options are optional parts of an App.
type Options struct {
	// Access, when set, builds the access-control policy the resource
	// service consults (nil: allow everything, for admin commands acting
	// on the database directly).
	Access func(reg *definitions.Registry) resource.Access
	// DB, when set, is an open database handle the App uses (and does
	// not close) instead of opening its own.
	DB *database.DB
}

// Open builds an App without access control (admin commands, tests). cfg
// must have been normalized. The caller must Close it.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*App, error) {
	return OpenWith(ctx, cfg, logger, Options{})
}

// OpenWith builds an App with options.
func OpenWith(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) (*App, error) {
	reg, err := definitions.Load()
	if err != nil {
		return nil, fmt.Errorf("loading R4 definitions: %w", err)
	}
	ex, err := extract.New(reg, cfg.FHIRBase())
	if err != nil {
		return nil, fmt.Errorf("compiling search parameters: %w", err)
	}
	db, ownDB := opts.DB, opts.DB == nil
	if ownDB {
		if db, err = OpenDB(ctx, cfg); err != nil {
			return nil, err
		}
	}
	closeDB := func() {
		if ownDB {
			db.Close()
		}
	}
	st, err := backend.New(ctx, db)
	if err != nil {
		closeDB()
		return nil, err
	}
	var acc resource.Access
	if opts.Access != nil {
		acc = opts.Access(reg)
	}
	val, err := newValidator(reg, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	svc, err := resource.New(resource.Config{
		Access:    acc,
		Store:     st,
		Registry:  reg,
		Validator: val,
		Indexer:   ex,
		Parser:    search.NewParser(reg, cfg.FHIRBase(), cfg.FHIR.MaxCount, cfg.FHIR.DefaultCount),
		BaseURL:   cfg.FHIRBase(),
		Logger:    logger,

		MaxBundleEntries: cfg.FHIR.MaxBundleEntries,
		MaxResponseBytes: cfg.FHIR.MaxResponseBytes,
	})
	if err != nil {
		st.Close()
		closeDB()
		return nil, err
	}
	return &App{Config: cfg, DB: db, Registry: reg, Store: st, Service: svc, Logger: logger, ownDB: ownDB}, nil
}

// OpenDB opens the database handle of cfg (for commands that need it
// without the FHIR store; OpenWith opens its own unless given one).
func OpenDB(ctx context.Context, cfg config.Config) (*database.DB, error) {
	return database.Open(ctx, database.Options{URL: cfg.Database.URL, DataDir: cfg.Database.DataDir, Schema: cfg.Database.Schema})
}

// Ping checks that the database answers (for /readyz).
func (a *App) Ping(ctx context.Context) error {
	_, err := a.Store.Read(ctx, "Patient", "readyz-probe")
	if err == nil || err == store.ErrNotFound {
		return nil
	}
	return err
}

// RefreshStatistics refreshes the query planner's statistics when the
// store can (after a bulk load or re-index, so searches get good plans at
// once).
func (a *App) RefreshStatistics(ctx context.Context) error {
	an, ok := a.Store.(store.Analyzer)
	if !ok {
		return nil
	}
	if err := an.Analyze(ctx); err != nil {
		return fmt.Errorf("refreshing planner statistics: %w", err)
	}
	return nil
}

// Close releases the store, then the database handle if the App opened
// it.
func (a *App) Close() error {
	err := a.Store.Close()
	if a.ownDB {
		err = errors.Join(err, a.DB.Close())
	}
	return err
}

// newValidator returns the structural validator wrapped in the US Core
// profile checker: validation per --profile-validation, or per a write's
// X-Lapis-Profile-Validation header when stricter (or looser, with
// --profile-validation-allow-lower). With --profile-validation off the
// profiles are loaded only when a request first asks for validation.
func newValidator(reg *definitions.Registry, cfg config.Config) (resource.Validator, error) {
	mode := cfg.FHIR.ProfileValidation
	if mode == "" {
		mode = profile.ModeOff
	}
	version := cfg.FHIR.USCoreVersion
	load := func() (*profile.Set, error) {
		sets, err := profile.Load()
		if err != nil {
			return nil, err
		}
		if s := sets[version]; s != nil {
			return s, nil
		}
		return nil, fmt.Errorf("no US Core %q profiles", version)
	}
	o := profile.Options{Mode: mode, Load: load, AllowLower: cfg.FHIR.ProfileValidationAllowLower}
	if mode != profile.ModeOff {
		s, err := load()
		if err != nil {
			return nil, err
		}
		o.Set = s
	}
	return profile.New(validate.New(reg), o)
}
