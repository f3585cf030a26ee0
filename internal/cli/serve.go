package cli

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/access"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/adminapi"
	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authn"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhirapi"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/netpolicy"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/server"
	"github.com/lapis-health/lapis/internal/store"
)

type serveCmd struct {
	dbFlags
	rateLimitFlags
	gatewayFlags
	Addr                string `name:"addr" env:"LAPIS_ADDR" default:"127.0.0.1:8080" help:"Listen address HOST:PORT." placeholder:"HOST:PORT"`
	MaxBody             string `name:"max-body" env:"LAPIS_MAX_BODY" default:"16MiB" help:"Largest accepted request body (bytes, or with KiB/MiB/GiB)."`
	DefaultCount        int    `name:"default-count" env:"LAPIS_DEFAULT_COUNT" default:"20" help:"Search page size when _count is absent."`
	MaxCount            int    `name:"max-count" env:"LAPIS_MAX_COUNT" default:"1000" help:"Largest _count honoured."`
	MaxBundleEntries    int    `name:"max-bundle-entries" env:"LAPIS_MAX_BUNDLE_ENTRIES" default:"1000" help:"Most entries in a batch or transaction Bundle (more: 413 before any entry runs); 0 = no limit."`
	MaxResponse         string `name:"max-response" env:"LAPIS_MAX_RESPONSE" default:"32MiB" help:"Largest Bundle the FHIR API builds: a batch or transaction response, a search or history page (bytes, or with KiB/MiB/GiB; over it: 413 too-costly, per entry in a batch); 0 = no limit."`
	AllowRemote         bool   `name:"allow-remote" env:"LAPIS_ALLOW_REMOTE" help:"Allow listening on a non-loopback address."`
	DevNoAuth           bool   `name:"dev-no-auth" env:"LAPIS_DEV_NO_AUTH" help:"Benchmarks only: serve the FHIR API without authentication or scope checks (loopback only; refused with --allow-remote)."`
	DevAllowPrivateJWKS bool   `name:"dev-allow-private-jwks" env:"LAPIS_DEV_ALLOW_PRIVATE_JWKS" help:"Development only: let clients' jwks_uri point at loopback/private addresses over http."`
	LogLevel            string `name:"log-level" env:"LAPIS_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level (debug, info, warn, error)."`
	auditFlags
}

func (c *serveCmd) config() (config.Config, error) {
	cfg := config.Defaults()
	c.apply(&cfg)
	cfg.Addr = c.Addr
	n, err := parseSize(c.MaxBody)
	if err != nil {
		return cfg, err
	}
	cfg.MaxBodyBytes = n
	cfg.DefaultCount = c.DefaultCount
	cfg.MaxCount = c.MaxCount
	cfg.MaxBundleEntries = c.MaxBundleEntries
	if m := strings.TrimSpace(c.MaxResponse); m != "" && m != "0" {
		if cfg.MaxResponseBytes, err = parseSize(m); err != nil {
			return cfg, fmt.Errorf("--max-response: %w", err)
		}
	}
	cfg.AllowRemote = c.AllowRemote
	cfg.LogLevel = c.LogLevel
	if err := c.applyGateway(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Normalize(true)
}

func newLogger(e *env, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: l}))
}

func (c *serveCmd) Run(e *env) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if c.DevNoAuth && cfg.AllowRemote {
		return fmt.Errorf("--dev-no-auth cannot be combined with --allow-remote")
	}
	log := newLogger(e, cfg.LogLevel)
	// mets holds this process's Prometheus instruments; auditSink receives
	// every audit event (replaced by the audit recorder when it is built).
	mets := metrics.New()
	var auditSink audit.Sink = audit.Discard{}
	_, _ = mets, auditSink
	// Every FHIR interaction is authorized by the caller's SMART scopes.
	opts := app.Options{Access: func(reg *definitions.Registry) resource.Access { return access.NewPolicy(reg) }}
	if c.DevNoAuth {
		log.Warn("SECURITY DISABLED: --dev-no-auth serves the FHIR API without authentication or access control")
		opts.Access = nil
	}
	a, err := app.OpenWith(e.ctx, cfg, log, opts)
	if err != nil {
		return err
	}
	defer a.Close()
	// The audit recorder (serve_audit.go); closed before the store.
	auditRT, err := c.auditFlags.startAudit(e.ctx, e, a, cfg, mets, log)
	if err != nil {
		return err
	}
	defer auditRT.close()
	// Refusals a caller can repeat at request rate (429s, allow-list and
	// authentication failures) are merged per second and per caller, so a
	// flood cannot crowd out the trail; closed (flushed) before the recorder.
	coalescer := audit.NewCoalescer(auditRT.sink, time.Second)
	defer coalescer.Close()
	auditSink = coalescer
	auth, err := oauth.Open(e.ctx, oauth.Options{
		Issuer:           cfg.FHIRBase(),
		DatabaseURL:      cfg.DatabaseURL,
		DataDir:          cfg.DataDir,
		AllowPrivateJWKS: c.DevAllowPrivateJWKS,
		Patients:         FHIRPatients{Service: a.Service},
		Logger:           log,
		Audit:            auditSink,
	})
	if err != nil {
		return err
	}
	defer auth.Close()
	// Network rules and transport (serve_gateway.go).
	gw, err := c.buildGateway(e.ctx, cfg, auth.DB(), mets, auditSink, log)
	if err != nil {
		return err
	}
	// Client allow-lists hold at the token endpoints too.
	auth.SetClientNetwork(gw.clients)
	mw := authn.New(authn.Config{
		ClientIP: netpolicy.ClientIP,
		Verifier: auth.Verifier(),
		APIKeys:  auth.DB(),
		Basic:    auth.DB(),
		Logger:   log,
		Audit:    auditSink,
	})
	if c.DevNoAuth {
		mw = nil
	}
	// The request pipeline, outermost first. Each stage is a
	// func(http.Handler) http.Handler; nil stages are skipped.
	//
	//  1. outer: every request (server-level: metrics, client IP from
	//     trusted proxies, network rules, per-IP limits on the OAuth
	//     endpoints, request log). Listed in serve order.
	//  2. fhirStages: the FHIR API after /metadata: authentication first,
	//     then per-principal policies (allow-lists, CORS, rate limits),
	//     then audit, closest to the handler.
	var outer []func(http.Handler) http.Handler
	outer = append(outer, gw.outer()...)
	// CORS preflights carry no credential: answered before authentication;
	// the client's allow-list and CORS rules right after it.
	fhirStages := []func(http.Handler) http.Handler{gw.preflight, mw, gw.principal}
	// Rate limits per client and patient (serve_ratelimit.go), after
	// authentication; their per-IP stage joins outer below.
	rl, err := c.rateLimitFlags.stages(cfg, log, mets, auditSink, auth.DB())
	if err != nil {
		return err
	}
	defer rl.Close()
	fhirStages = append(fhirStages, rl.FHIR)
	// Then the per-client concurrency limit on searches, history and
	// batches, sized to the store's search connections: no client can
	// hold all of them.
	searchConns := 0
	if sc, ok := a.Store.(store.SearchConns); ok {
		searchConns = sc.SearchConns()
	}
	conc, err := c.rateLimitFlags.concurrency(cfg, searchConns, log, mets, auditSink)
	if err != nil {
		return err
	}
	fhirStages = append(fhirStages, conc)
	// Audit stays the LAST stage (closest to the handler, after rate limits).
	fhirStages = append(fhirStages, auditRT.stage)
	api := fhirapi.New(fhirapi.Config{
		BaseURL:         cfg.FHIRBase(),
		MaxBodyBytes:    cfg.MaxBodyBytes,
		SoftwareName:    "Lapis",
		SoftwareVersion: Version,
		CapabilityHook:  auth.CapabilityHook,
		// Every FHIR route but /metadata needs a bearer token, API key or
		// (per client, when enabled) Basic credentials.
		Middleware: chain(fhirStages...),
		Logger:     log,
	}, a.Service, a.Registry)
	// The FHIR API and the authorization server share the /fhir prefix:
	// the issuer is the FHIR base.
	mux := http.NewServeMux()
	mux.Handle("/fhir", api)
	mux.Handle("/fhir/", api)
	auth.Mount(mux)
	// The admin API: the admin service behind the admin commands, over
	// HTTP; its actions are recorded (durably) before they are answered.
	adminAudit, _ := auditRT.sink.(admin.Auditor) // nil with --no-audit
	adm, err := adminapi.New(adminapi.Config{
		Issuer:   cfg.FHIRBase(),
		Service:  admin.New(admin.Config{Store: auth.DB(), Audit: adminAudit, Logger: log}),
		Verifier: auth.Verifier(),
		Logger:   log,
	})
	if err != nil {
		return err
	}
	adm.Mount(mux)
	var fhirHandler http.Handler = mux
	// Per-IP limits on the OAuth endpoints, after the client-IP resolver.
	outer = append(outer, rl.AuthIP)
	if f := chain(outer...); f != nil {
		fhirHandler = f(mux)
	}
	srv := server.New(gw.serverOptions(server.Options{Addr: cfg.Addr, FHIR: fhirHandler, Ready: a, Logger: log}))
	ln, err := srv.Listen()
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if err := gw.startMetrics(e.ctx); err != nil {
		return err
	}
	dialect := "sqlite"
	if config.IsPostgres(cfg.DatabaseURL) {
		dialect = "postgres"
	}
	log.Info("lapis serving", "addr", ln.Addr().String(), "fhir_base", cfg.FHIRBase(), "database", dialect, "version", Version,
		"max_bundle_entries", cfg.MaxBundleEntries, "max_response_bytes", cfg.MaxResponseBytes)
	return srv.Serve(e.ctx, ln)
}

// chain composes middleware, the first outermost, skipping nil stages; it
// returns nil when there is none.
func chain(stages ...func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	var live []func(http.Handler) http.Handler
	for _, st := range stages {
		if st != nil {
			live = append(live, st)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return func(h http.Handler) http.Handler {
		for i := len(live) - 1; i >= 0; i-- {
			h = live[i](h)
		}
		return h
	}
}

// parseSize parses a byte size: a plain number or one with a KB, KiB, MB,
// MiB, GB or GiB suffix.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	num := strings.TrimSpace(s)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("invalid size %q: want a positive number of bytes, e.g. 16MiB", s)
	}
	return n * mult, nil
}
