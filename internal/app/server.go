package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/access"
	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/adminapi"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authn"
	"github.com/lapis-health/lapis/internal/authorize"
	"github.com/lapis-health/lapis/internal/bulk"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/fhirapi"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/landing"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/portal"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/server"
	"github.com/lapis-health/lapis/internal/servicebase"
	"github.com/lapis-health/lapis/internal/store"
)

// Version is the Lapis version reported by "lapis version" and the
// CapabilityStatement.
const Version = "0.1.0"

// Server is a complete Lapis server: its environments (production and,
// unless disabled, the sandbox), each a FHIR API and an authorization
// server behind the gateway policies, the rate limits and the audit
// trail, on one listener. NewServer is the one place its parts are put
// together.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	gw      *gateway
	http    *server.Server
	envs    []*Environment
	closers []func()
	once    sync.Once
	portal  *portal.Portal // set by newPortal; read by the admin services' OnStatus hooks
}

// statusHook is admin.Config.OnStatus of environment env: suspensions and
// resumptions of an organisation's client or key become the portal's
// app.suspended/app.resumed webhooks (nothing without a portal).
func (s *Server) statusHook(env string) func(context.Context, admin.StatusChange) error {
	return func(ctx context.Context, c admin.StatusChange) error {
		if s.portal == nil {
			return nil
		}
		return s.portal.StatusHook(env)(ctx, c)
	}
}

// NewServer builds every part of a server from cfg, which must have been
// normalized for serving: the production environment under the FHIR
// base path cfg.FHIRPath() and, when cfg.Sandbox.Enabled, the sandbox
// environment under cfg.SandboxConfig().FHIRPath(), each with its own
// database handle (buildEnvironment), plus what the process has once:
// the metrics, the listener and its TLS, the landing page. stdout
// receives the audit stream "stdout" (nil: os.Stdout). Nothing listens
// until Listen; the caller must Close the Server once it has stopped
// serving.
func NewServer(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer, opts ...ServerOption) (_ *Server, err error) {
	if stdout == nil {
		stdout = os.Stdout
	}
	var so serverOptions
	for _, o := range opts {
		o(&so)
	}
	s := &Server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// mets holds this process's Prometheus instruments.
	mets := metrics.New()
	prod, err := s.buildEnvironment(ctx, cfg, stdout, mets, log)
	if err != nil {
		return nil, err
	}
	ready := prod.ready
	mounts := map[string]http.Handler{}
	if cfg.Sandbox.Enabled {
		scfg := cfg.SandboxConfig()
		sb, err := s.buildEnvironment(ctx, scfg, stdout, mets, log.With("env", config.EnvSandbox))
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		for _, c := range sb.ready {
			c.Name = config.EnvSandbox + "/" + c.Name
			ready = append(ready, c)
		}
		if scfg.Sandbox.Load {
			if err := loadSandbox(ctx, sb, log.With("env", config.EnvSandbox)); err != nil {
				return nil, err
			}
		}
		mounts[scfg.FHIRPath()] = sb.handler
		mounts[scfg.FHIRPath()+"/"] = sb.handler
	}
	if cfg.Portal.Enabled {
		pattern, h, err := s.newPortal(cfg, log)
		if err != nil {
			return nil, err
		}
		mounts[pattern] = h
	}
	for p, h := range so.mounts {
		mounts[p] = h
	}
	for _, m := range so.mountFns {
		h, err := m.build(s.envs)
		if err != nil {
			return nil, err
		}
		mounts[m.pattern] = h
	}
	s.gw = prod.gw
	s.http = server.New(s.gw.serverOptions(server.Options{Addr: cfg.Server.Addr, Listener: so.listener, Base: cfg.FHIRPath(), Landing: landing.Handler(cfg.FHIRBase(), landingLinks(cfg)), FHIR: prod.handler, Logger: log,
		Mounts: mounts, Ready: ready, ShutdownTimeout: cfg.Server.ShutdownTimeout}))
	return s, nil
}

// Environments returns the server's environments, production first.
func (s *Server) Environments() []*Environment { return s.envs }

// Environment returns the environment named name ("production",
// "sandbox"), nil when the server has none of that name.
func (s *Server) Environment(name string) *Environment {
	for _, e := range s.envs {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// buildEnvironment builds one complete environment from cfg (production,
// or the sandbox's derived configuration): its database handle, the store
// and the resource service, the audit recorder, the authorization server
// with its pages and the admin API, the gateway, the rate limits, the
// authentication stages, the export service and the FHIR API, all under
// cfg.FHIRPath(); mets is the process's metrics. Its parts close with the
// Server, in reverse order.
func (s *Server) buildEnvironment(ctx context.Context, cfg config.Config, stdout io.Writer, mets *metrics.Metrics, log *slog.Logger) (*Environment, error) {
	// Every FHIR interaction is authorized by the caller's SMART scopes.
	aopts := Options{Access: func(reg *definitions.Registry) resource.Access { return access.NewPolicy(reg) }}
	if cfg.Auth.DevNoAuth {
		log.Warn("SECURITY DISABLED: --dev-no-auth serves the FHIR API without authentication or access control")
		aopts.Access = nil
	}
	a, err := OpenWith(ctx, cfg, log, aopts)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { a.Close() })
	// The audit recorder; closed after the stages that feed it.
	auditRT, err := startAudit(ctx, a, cfg, stdout, mets, log)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, auditRT.close)
	// Refusals a caller can repeat at request rate (429s, allow-list and
	// authentication failures) are merged per second and per caller, so a
	// flood cannot crowd out the trail; closed (flushed) before the recorder.
	coalescer := audit.NewCoalescer(auditRT.sink, time.Second)
	s.closers = append(s.closers, func() { coalescer.Close() })
	var auditSink audit.Sink = coalescer
	auth, err := oauth.Open(ctx, oauth.Options{
		Issuer:           cfg.FHIRBase(),
		Environment:      cfg.EnvName(),
		Database:         a.DB,
		DataDir:          cfg.Database.DataDir,
		KEKFile:          cfg.Auth.KEKFile,
		KEK:              cfg.Auth.KEK,
		AllowPrivateJWKS: cfg.Auth.DevAllowPrivateJWKS,
		Patients:         Patients{Service: a.Service},
		Logger:           log,
		Audit:            auditSink,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { auth.Close() })
	// Network rules and transport. The reload of the client rules stops
	// when the Server closes (before the authorization database), or
	// with ctx.
	bg, cancel := context.WithCancel(ctx)
	s.closers = append(s.closers, cancel)
	gw, err := newGateway(bg, cfg, auth.DB(), mets, auditSink, log)
	if err != nil {
		return nil, err
	}
	// Client allow-lists hold at the token endpoints too.
	auth.SetClientNetwork(gw.clients)
	mw := authn.New(authn.Config{
		Verifier: auth.Verifier(),
		APIKeys:  auth.DB(),
		Basic:    auth.DB(),
		Logger:   log,
		Audit:    auditSink,
	})
	if cfg.Auth.DevNoAuth {
		mw = nil
	}
	// The request pipeline, outermost first. Each stage is a
	// func(http.Handler) http.Handler; nil stages are skipped.
	//
	//  0. routing: the request is matched first (routeFirst, then the
	//     FHIR API's own routes), so every stage can read r.Pattern and,
	//     for FHIR requests, the interaction.
	//  1. outer: every request under the FHIR base (server-level: client
	//     IP from trusted proxies, network rules, search time budget,
	//     per-IP limits on the OAuth endpoints). The server adds metrics
	//     and the request log around it.
	//  2. fhirStages: the FHIR API after /metadata: authentication first,
	//     then per-principal policies (allow-lists, CORS, rate limits),
	//     then audit, closest to the handler.
	var outer []func(http.Handler) http.Handler
	outer = append(outer, gw.outer()...)
	// CORS preflights carry no credential: answered before authentication;
	// the client's allow-list and CORS rules right after it.
	fhirStages := []func(http.Handler) http.Handler{gw.preflight, mw, gw.principal}
	// Rate limits per client and patient, after authentication; their
	// per-IP stage joins outer below. Each environment counts apart.
	rl, err := newRateLimits(cfg, log, mets, auditSink, auth.DB())
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, rl.Close)
	fhirStages = append(fhirStages, rl.FHIR)
	// Then the per-client concurrency limit on searches, history and
	// batches, sized to the store's search connections: no client can
	// hold all of them.
	searchConns := 0
	if sc, ok := a.Store.(store.SearchConns); ok {
		searchConns = sc.SearchConns()
	}
	conc, err := newConcurrency(cfg, searchConns, log, mets, auditSink)
	if err != nil {
		return nil, err
	}
	fhirStages = append(fhirStages, conc)
	// Audit stays the LAST stage (closest to the handler, after rate limits).
	fhirStages = append(fhirStages, auditRT.stage)
	exp, err := openExport(ctx, cfg, a, auth, auditRT.sink, log)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, exp.Close)
	// The service base URL Bundle, published without credentials.
	sbu, err := servicebase.BundleFor(cfg.FHIR.ServiceBaseURLs, "Lapis", cfg.FHIRBase(), time.Now())
	if err != nil {
		return nil, fmt.Errorf("--service-base-urls: %w", err)
	}
	api := fhirapi.New(fhirapi.Config{
		BaseURL:         cfg.FHIRBase(),
		ServiceBaseURLs: sbu,
		USCoreVersion:   cfg.FHIR.USCoreVersion,
		MaxBodyBytes:    cfg.FHIR.MaxBodyBytes,
		SearchTimeout:   cfg.FHIR.SearchTimeout,
		SoftwareName:    "Lapis",
		SoftwareVersion: Version,
		CapabilityHook:  func(cs map[string]any) { auth.CapabilityHook(cs); bulk.Capability(cs); access.Capability(cs) },
		// Every FHIR route but /metadata needs a bearer token, API key or
		// (per client, when enabled) Basic credentials.
		Middleware: chain(fhirStages...),
		Logger:     log,
	}, a.Service, a.Registry)
	// The FHIR API and the authorization server share the FHIR base
	// path (the issuer is the FHIR base): the authorization endpoints
	// under it, the FHIR API for the rest.
	mux := http.NewServeMux()
	auth.Mount(mux)
	// The authorization pages (/authorize, login, consent, EHR launch,
	// apps) over the same server and stores.
	authorize.New(auth).Mount(mux)
	// The admin API: the admin service behind the admin commands, over
	// HTTP; its actions are recorded (durably) before they are answered.
	adminAudit, _ := auditRT.sink.(admin.Auditor) // nil with --no-audit
	admSvc := admin.New(admin.Config{Store: auth.DB(), Audit: adminAudit, Logger: log, Records: Patients{Service: a.Service}, OnStatus: s.statusHook(cfg.EnvName())})
	adm, err := adminapi.New(adminapi.Config{
		Issuer:   cfg.FHIRBase(),
		Service:  admSvc,
		Verifier: auth.Verifier(),
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	adm.Mount(mux)
	// Bulk Data export: operations of the FHIR API, behind its stages.
	fhirHandler := func(h http.HandlerFunc) fhirapi.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) error { h(w, r); return nil }
	}
	exp.Mount(func(pattern string, h http.HandlerFunc) {
		api.Handle(interaction.Operation, pattern, fhirHandler(h))
	}, func(pattern string, h http.HandlerFunc) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.Handle(method+" "+cfg.FHIRPath()+path, api.Route(interaction.Operation, fhirHandler(h)))
	})
	mux.Handle("/", api)
	// Per-IP limits on the OAuth endpoints, after the client-IP resolver.
	outer = append(outer, rl.AuthIP)
	var sink audit.Sink = auditRT.sink
	var act *activity.Store
	if auditRT.activity != nil {
		act = auditRT.activity.Store
	}
	env := &Environment{
		Activity: act,
		Name:     cfg.EnvName(), FHIRBase: cfg.FHIRBase(), DB: a.DB, Service: a.Service, Admin: admSvc, Auth: auth, Audit: sink,
		App: a, RateLimits: rl.Middleware, gw: gw, handler: routeFirst(mux, cfg.FHIRPath(), chain(outer...)),
		ready: readyChecks(a, auth, auditRT.db, rl.Ready),
	}
	s.envs = append(s.envs, env)
	return env, nil
}

// Listen loads the TLS certificate, if any, and opens the configured
// listening socket.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := s.http.Listen()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.cfg.Server.Addr, err)
	}
	return ln, nil
}

// Serve starts the separate metrics listener, if configured, and serves
// on ln (from Listen, or any listener for plain HTTP) until ctx is
// cancelled, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.gw.startMetrics(ctx); err != nil {
		ln.Close()
		return err
	}
	dialect := "sqlite"
	if config.IsPostgres(s.cfg.Database.URL) {
		dialect = "postgres"
	}
	var bases []string
	for _, e := range s.envs {
		bases = append(bases, e.Name+"="+e.FHIRBase)
	}
	s.log.Info("lapis serving", "addr", ln.Addr().String(), "fhir_base", s.cfg.FHIRBase(), "environments", strings.Join(bases, " "), "database", dialect, "database_location", database.Location(s.cfg.Database.URL, s.cfg.Database.DataDir), "version", Version,
		"max_bundle_entries", s.cfg.FHIR.MaxBundleEntries, "max_response_bytes", s.cfg.FHIR.MaxResponseBytes)
	return s.http.Serve(ctx, ln)
}

// Run listens on the configured address and serves until ctx is
// cancelled.
func (s *Server) Run(ctx context.Context) error {
	ln, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Close releases everything NewServer opened, in reverse order: the rate
// limiter, the client rules' reload, the authorization database, the
// audit trail (flushed), the store and last the database handle they
// share. Call it after Serve returns.
func (s *Server) Close() error {
	s.once.Do(func() {
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
	})
	return nil
}

// routeFirst routes r on mux before stages run: the matched route is
// named to the request log (the FHIR API, mounted at "/", names its own
// routes precisely once it has matched them; base/{path} until then) and
// set as r.Pattern for the stages; then mux serves r.
func routeFirst(mux *http.ServeMux, base string, stages func(http.Handler) http.Handler) http.Handler {
	var inner http.Handler = mux
	if stages != nil {
		inner = stages(mux)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if class := authClass(pattern); class != "" {
			httpx.SetRoute(r.Context(), class, httpx.PatternPath(pattern))
		} else {
			httpx.SetRoute(r.Context(), "fhir.other", base+"/{path}")
		}
		r2 := *r
		r2.Pattern = pattern
		inner.ServeHTTP(w, &r2)
	})
}

// authClass is the metric label of an authorization server route
// ("auth.token", "auth.discovery", "auth.admin"), "" for the FHIR API.
func authClass(pattern string) string {
	path := httpx.PatternPath(pattern)
	switch {
	case strings.Contains(path, "/.well-known/"):
		return "auth.discovery"
	case strings.Contains(path, "/auth/admin/"):
		return "auth.admin"
	}
	if i := strings.LastIndex(path, "/auth/"); i >= 0 {
		return "auth." + strings.TrimSuffix(path[i+len("/auth/"):], ".json")
	}
	return ""
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

// ServerOption adjusts how NewServer builds a Server.
type ServerOption func(*serverOptions)

type serverOptions struct {
	listener net.Listener
	mounts   map[string]http.Handler
	mountFns []mountFn
}

type mountFn struct {
	pattern string
	build   func(envs []*Environment) (http.Handler, error)
}

// WithMountFunc serves at pattern the handler build returns once the
// environments are built (production first): for a part that works on
// them, such as the developer portal. An error of build fails NewServer.
func WithMountFunc(pattern string, build func(envs []*Environment) (http.Handler, error)) ServerOption {
	return func(o *serverOptions) { o.mountFns = append(o.mountFns, mountFn{pattern, build}) }
}

// WithMount serves h at the path prefix pattern (e.g. "/portal/") beside
// the environments.
func WithMount(pattern string, h http.Handler) ServerOption {
	return func(o *serverOptions) {
		if o.mounts == nil {
			o.mounts = map[string]http.Handler{}
		}
		o.mounts[pattern] = h
	}
}

// WithListener makes the Server serve on ln (already bound, e.g. to learn
// the port the kernel picked for port 0) instead of opening its address;
// a nil ln changes nothing.
func WithListener(ln net.Listener) ServerOption {
	return func(o *serverOptions) { o.listener = ln }
}

// landingLinks are the optional parts of cfg's server the landing page
// links to: the sandbox and the developer portal.
func landingLinks(cfg config.Config) landing.Options {
	var o landing.Options
	if cfg.Sandbox.Enabled {
		scfg := cfg.SandboxConfig()
		o.Sandbox = scfg.FHIRBase()
	}
	if cfg.Portal.Enabled {
		o.Portal = cfg.Server.BaseURL + "/portal/"
	}
	return o
}
