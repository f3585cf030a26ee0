package cli

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
)

type serveCmd struct {
	dbFlags
	rateLimitFlags
	gatewayFlags
	portalFlags
	Addr                string `name:"addr" env:"LAPIS_ADDR" default:"127.0.0.1:8080" help:"Listen address HOST:PORT." placeholder:"HOST:PORT"`
	MaxBody             string `name:"max-body" env:"LAPIS_MAX_BODY" default:"16MiB" help:"Largest accepted request body (bytes, or with KiB/MiB/GiB)."`
	DefaultCount        int    `name:"default-count" env:"LAPIS_DEFAULT_COUNT" default:"20" help:"Search page size when _count is absent."`
	MaxCount            int    `name:"max-count" env:"LAPIS_MAX_COUNT" default:"1000" help:"Largest _count honoured."`
	MaxBundleEntries    int    `name:"max-bundle-entries" env:"LAPIS_MAX_BUNDLE_ENTRIES" default:"1000" help:"Most entries in a batch or transaction Bundle (more: 413 before any entry runs); 0 = no limit."`
	MaxResponse         string `name:"max-response" env:"LAPIS_MAX_RESPONSE" default:"32MiB" help:"Largest Bundle the FHIR API builds: a batch or transaction response, a search or history page (bytes, or with KiB/MiB/GiB; over it: 413 too-costly, per entry in a batch); 0 = no limit."`
	AllowRemote         bool   `name:"allow-remote" env:"LAPIS_ALLOW_REMOTE" help:"Allow listening on a non-loopback address."`
	DevNoAuth           bool   `name:"dev-no-auth" env:"LAPIS_DEV_NO_AUTH" help:"Benchmarks only: serve the FHIR API without authentication or scope checks (loopback only; refused with --allow-remote)."`
	KEKFile             string `name:"kek-file" env:"LAPIS_KEK_FILE" help:"Key-encryption-key file that seals the signing keys (default DATA-DIR/auth-kek; every instance of a cluster needs the same key: this file or LAPIS_KEK)." placeholder:"FILE"`
	DevAllowPrivateJWKS bool   `name:"dev-allow-private-jwks" env:"LAPIS_DEV_ALLOW_PRIVATE_JWKS" help:"Development only: let clients' jwks_uri point at loopback/private addresses over http."`
	USCoreVersion       string `name:"us-core-version" env:"LAPIS_US_CORE_VERSION" default:"6.1.0" enum:"6.1.0,7.0.0" help:"US Core version the CapabilityStatement claims (instantiates us-core-server, profiles, search parameters): 6.1.0 or 7.0.0."`
	ProfileValidation   string `name:"profile-validation" env:"LAPIS_PROFILE_VALIDATION" default:"off" enum:"off,claimed,us-core" help:"Validate writes against the US Core profiles of --us-core-version: off, claimed (the profiles a resource claims in meta.profile) or us-core (also: a resource of a US Core type that claims none must conform to one)."`
	ProfileAllowLower   bool   `name:"profile-validation-allow-lower" env:"LAPIS_PROFILE_VALIDATION_ALLOW_LOWER" help:"Let a write's X-Lapis-Profile-Validation header choose a looser mode than --profile-validation (by default a request can only make validation stricter)."`
	ServiceBaseURLs     string `name:"service-base-urls" env:"LAPIS_SERVICE_BASE_URLS" help:"JSON file listing the organisations (name, NPI, address) and their FHIR bases published at [base]/servicebaseurls; default: this server's base alone." placeholder:"FILE"`
	LogLevel            string `name:"log-level" env:"LAPIS_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level (debug, info, warn, error)."`
	auditFlags
	exportFlags
}

// gatewayFlags are the network, transport and operations flags of
// lapis serve (embedded in serveCmd).
type gatewayFlags struct {
	TLSCert           string        `name:"tls-cert" env:"LAPIS_TLS_CERT" help:"TLS certificate file (PEM, with intermediates); with --tls-key, serve HTTPS only. Reloaded when the file changes." placeholder:"FILE"`
	TLSKey            string        `name:"tls-key" env:"LAPIS_TLS_KEY" help:"TLS private key file (PEM)." placeholder:"FILE"`
	TrustedProxies    []string      `name:"trusted-proxies" env:"LAPIS_TRUSTED_PROXIES" sep:"," help:"CIDRs of reverse proxies whose forwarding header gives the client address (comma-separated or repeated)." placeholder:"CIDR"`
	ForwardedHeader   string        `name:"forwarded-header" env:"LAPIS_FORWARDED_HEADER" default:"X-Forwarded-For" enum:"X-Forwarded-For,Forwarded" help:"The header the trusted proxies set: X-Forwarded-For or Forwarded (RFC 7239); the other is ignored."`
	AllowIP           []string      `name:"allow-ip" env:"LAPIS_ALLOW_IP" sep:"," help:"Global allow-list for the FHIR API and the authorization endpoints (CIDRs, repeatable; empty allows all)." placeholder:"CIDR"`
	DenyUserAgent     []string      `name:"deny-user-agent" env:"LAPIS_DENY_USER_AGENT" sep:"none" help:"Refuse requests whose User-Agent matches this regular expression (case-insensitive, repeatable)." placeholder:"REGEX"`
	UserAgentDefaults bool          `name:"default-deny-user-agents" env:"LAPIS_DEFAULT_DENY_USER_AGENTS" default:"true" negatable:"" help:"Also refuse well-known scanner user agents (sqlmap, nikto, nmap, nuclei, ...)."`
	ReadHeaderTimeout time.Duration `name:"read-header-timeout" env:"LAPIS_READ_HEADER_TIMEOUT" default:"10s" help:"Time to read the request headers."`
	ReadTimeout       time.Duration `name:"read-timeout" env:"LAPIS_READ_TIMEOUT" default:"60s" help:"Time to read the whole request, body included."`
	WriteTimeout      time.Duration `name:"write-timeout" env:"LAPIS_WRITE_TIMEOUT" default:"120s" help:"Time to write the response, from the end of the request headers."`
	IdleTimeout       time.Duration `name:"idle-timeout" env:"LAPIS_IDLE_TIMEOUT" default:"120s" help:"How long an idle keep-alive connection stays open."`
	ShutdownTimeout   time.Duration `name:"shutdown-timeout" env:"LAPIS_SHUTDOWN_TIMEOUT" default:"10s" help:"On SIGTERM or SIGINT: how long requests in flight may take to finish (new connections are refused and /readyz answers 503 at once); then the audit queue is flushed and the process exits 0."`
	SearchTimeout     time.Duration `name:"search-timeout" env:"LAPIS_SEARCH_TIMEOUT" default:"10s" help:"Time budget of a FHIR search or history request (0 = none); beyond it the query is interrupted and the answer is a 503 OperationOutcome."`
	MetricsAddr       string        `name:"metrics-addr" env:"LAPIS_METRICS_ADDR" help:"Also serve /metrics, unrestricted, on this separate listener (e.g. a private interface); default off." placeholder:"HOST:PORT"`
	MetricsAllow      []string      `name:"metrics-allow" env:"LAPIS_METRICS_ALLOW" sep:"," help:"CIDRs besides loopback that may read /metrics on the main listener." placeholder:"CIDR"`
}

// rateLimitFlags are the rate-limit flags of `lapis serve` (embedded in
// serveCmd).
type rateLimitFlags struct {
	RateLimitClient       string `name:"rate-limit-client" env:"LAPIS_RATE_LIMIT_CLIENT" default:"100/s" help:"Limit per OAuth client or API key on the FHIR API, N/PERIOD in cost units (PERIOD s, m, h); 0 disables."`
	RateLimitClientBurst  int    `name:"rate-limit-client-burst" env:"LAPIS_RATE_LIMIT_CLIENT_BURST" default:"200" help:"Burst per client, in cost units (0 = N)."`
	RateLimitSystem       string `name:"rate-limit-system" env:"LAPIS_RATE_LIMIT_SYSTEM" default:"5000/s" help:"Limit per client for system credentials (only system/ scopes, no patient or user: backend services clients, system/ API keys), instead of --rate-limit-client, N/PERIOD in cost units; 0 disables. A client's or API key's own limit (--rate-limit of client/apikey create and update) replaces either."`
	RateLimitSystemBurst  int    `name:"rate-limit-system-burst" env:"LAPIS_RATE_LIMIT_SYSTEM_BURST" default:"10000" help:"Burst per system credential, in cost units (0 = N)."`
	RateLimitPatient      string `name:"rate-limit-patient" env:"LAPIS_RATE_LIMIT_PATIENT" default:"50/s" help:"Limit per patient (in context, or read/searched) on the FHIR API, over all clients but system credentials, N/PERIOD in cost units; 0 disables."`
	RateLimitPatientBurst int    `name:"rate-limit-patient-burst" env:"LAPIS_RATE_LIMIT_PATIENT_BURST" default:"100" help:"Burst per patient, in cost units (0 = N)."`
	RateLimitAuthIP       string `name:"rate-limit-auth-ip" env:"LAPIS_RATE_LIMIT_AUTH_IP" default:"10/s" help:"Limit per client IP address on the OAuth endpoints and pages (authorize, login, consent, select-patient, apps, token, introspect, revoke), N/PERIOD requests; 0 disables."`
	RateLimitAuthIPBurst  int    `name:"rate-limit-auth-ip-burst" env:"LAPIS_RATE_LIMIT_AUTH_IP_BURST" default:"100" help:"Burst per IP address on the OAuth endpoints (0 = N)."`
	RateLimitCosts        string `name:"rate-limit-costs" env:"LAPIS_RATE_LIMIT_COSTS" help:"Cost units per FHIR interaction, e.g. read=1,vread=1,search=2,history=2,create=3,update=3,patch=3,delete=3,batch=1,batch-min=3,operation=3 (batch is per Bundle entry, a GET entry costing at least its read or search; unnamed keys keep these defaults)." placeholder:"KEY=N,..."`
	RedisURL              string `name:"redis-url" env:"LAPIS_REDIS_URL" help:"Share the rate limits of every instance through this Redis (redis://[user:password@]host:port[/db], rediss:// for TLS); default: in-process limits." placeholder:"URL"`
	RateLimitRedisFailure string `name:"rate-limit-redis-failure" env:"LAPIS_RATE_LIMIT_REDIS_FAILURE" default:"open" enum:"open,closed" help:"When Redis cannot answer: open (admit under each instance's own in-process limits) or closed (refuse with 503)."`
	// The concurrency limit is per instance (it guards this instance's
	// database connections), never shared through Redis.
	SandboxOn              bool          `name:"sandbox" env:"LAPIS_SANDBOX" default:"true" negatable:"" help:"Serve the sandbox environment at BASE/sandbox/fhir beside production (own database, clients, keys and tokens); --no-sandbox: production only."`
	SandboxLoad            bool          `name:"sandbox-load" env:"LAPIS_SANDBOX_LOAD" default:"true" negatable:"" help:"At start, load the built-in sandbox dataset (US Core patients, a practitioner, their logins) into a sandbox that holds no Patient yet; --no-sandbox-load leaves an empty sandbox empty."`
	SandboxRateLimit       string        `name:"sandbox-rate-limit" env:"LAPIS_SANDBOX_RATE_LIMIT" help:"Limit per client or API key in the sandbox (replaces --rate-limit-client and --rate-limit-system there), N/PERIOD; default: production's." placeholder:"N/PERIOD"`
	SandboxRateBurst       int           `name:"sandbox-rate-burst" env:"LAPIS_SANDBOX_RATE_BURST" default:"0" help:"Burst per client in the sandbox, in cost units (0 = production's, or N with --sandbox-rate-limit)."`
	MaxConcurrentPerClient int           `name:"max-concurrent-per-client" env:"LAPIS_MAX_CONCURRENT_PER_CLIENT" default:"0" help:"Most FHIR searches, history requests and batch/transaction Bundles of one client (OAuth client or API key) that run at once; 0 = one less than the database connections that serve searches (at least 1), -1 = no limit."`
	ConcurrencyWait        time.Duration `name:"concurrency-wait" env:"LAPIS_CONCURRENCY_WAIT" default:"5s" help:"How long a request over --max-concurrent-per-client waits, in its client's line, for one of the client's requests to finish before it is refused with 429 (0 = refuse at once)."`
}

// auditFlags are serve's audit-trail and alert flags (embedded in
// serveCmd).
type auditFlags struct {
	Audit             bool          `name:"audit" env:"LAPIS_AUDIT" default:"true" negatable:"" help:"Record every FHIR interaction and security event as a hash-chained AuditEvent (--no-audit: benchmarks only)."`
	AuditStream       string        `name:"audit-stream" env:"LAPIS_AUDIT_STREAM" help:"Also write every audit record as a JSON line to stdout or to FILE (appended), for a SIEM." placeholder:"stdout|FILE"`
	AuditQueue        int           `name:"audit-queue" env:"LAPIS_AUDIT_QUEUE" default:"16384" help:"Audit records that may wait to be written; a full queue holds requests back (never drops silently)."`
	AuditCopyDuty     float64       `name:"audit-copy-duty" env:"LAPIS_AUDIT_COPY_DUTY" default:"0.25" help:"Share of one core (0.01-1) the copy of audit records into searchable AuditEvents may use while records keep coming."`
	AuditCopyLag      time.Duration `name:"audit-copy-lag" env:"LAPIS_AUDIT_COPY_LAG" default:"30s" help:"Lag of searchable AuditEvents behind the audit trail past which their copy may use more than --audit-copy-duty, in proportion to the lag (up to a whole core at lag × 1/duty); lapis_audit_copy_lag_seconds shows the lag."`
	AlertWebhook      string        `name:"alert-webhook" env:"LAPIS_ALERT_WEBHOOK" help:"POST each alert as JSON to URL (https, or http on loopback)." placeholder:"URL"`
	AlertVolume       int           `name:"alert-volume" env:"LAPIS_ALERT_VOLUME" default:"10000" help:"Alert when one client is returned more resources than this within --alert-volume-window (0 disables)."`
	AlertVolumeWindow time.Duration `name:"alert-volume-window" env:"LAPIS_ALERT_VOLUME_WINDOW" default:"1h" help:"Window of --alert-volume."`
	AlertAuthFailures int           `name:"alert-auth-failures" env:"LAPIS_ALERT_AUTH_FAILURES" default:"10" help:"Alert when one client or address fails authentication more often than this within --alert-auth-window (0 disables)."`
	AlertAuthWindow   time.Duration `name:"alert-auth-window" env:"LAPIS_ALERT_AUTH_WINDOW" default:"5m" help:"Window of --alert-auth-failures."`
	AlertRefusals     bool          `name:"alert-refusals" env:"LAPIS_ALERT_REFUSALS" default:"true" negatable:"" help:"Alert on requests refused by an allow-list."`
}

// exportFlags are serve's Bulk Data $export flags (embedded in serveCmd).
type exportFlags struct {
	ExportDir          string        `name:"export-dir" env:"LAPIS_EXPORT_DIR" help:"Folder of the $export output files (default: export in the data directory); instances sharing a PostgreSQL database must share it." placeholder:"DIR"`
	ExportWorkers      int           `name:"export-workers" env:"LAPIS_EXPORT_WORKERS" default:"2" help:"Export jobs this instance runs at once (0: none; other instances on the same PostgreSQL database run the jobs it accepts)."`
	ExportRate         int           `name:"export-rate" env:"LAPIS_EXPORT_RATE" default:"0" help:"Most resources per second one export job writes, to spare the database for other clients (0 = no bound)."`
	ExportS3URL        string        `name:"export-s3-url" env:"LAPIS_EXPORT_S3_URL" help:"Keep the export files in an S3-compatible bucket instead of --export-dir: http(s)://ENDPOINT/BUCKET[/PREFIX] (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)."`
	ExportMaxPerClient int           `name:"export-max-per-client" env:"LAPIS_EXPORT_MAX_PER_CLIENT" default:"10" help:"Unfinished export jobs one client may have; a kick-off beyond it gets 429 (0 = no limit)."`
	ExportExpire       time.Duration `name:"export-expire" env:"LAPIS_EXPORT_EXPIRE" default:"24h" help:"How long the files of a finished export are kept."`
	ExportLease        time.Duration `name:"export-lease" env:"LAPIS_EXPORT_LEASE" default:"30s" help:"How long a job stays with a worker that stopped renewing its lease (a crashed instance) before another worker takes it over."`
	ExportFileSize     string        `name:"export-file-size" env:"LAPIS_EXPORT_FILE_SIZE" default:"256MiB" help:"Start a new output file of a type past this size."`
}

// config maps the flags onto a normalized config.Config; the config
// package checks the values.
func (c *serveCmd) config() (config.Config, error) {
	cfg := config.ServeDefaults()
	if c.Env != "" && c.Env != config.EnvProduction {
		return cfg, usagef("lapis serve serves every environment; --env is for the admin commands")
	}
	c.dbFlags.apply(&cfg)
	c.portalFlags.apply(&cfg)
	cfg.Sandbox.Enabled = c.SandboxOn
	cfg.Sandbox.Load = c.SandboxOn && c.SandboxLoad
	cfg.Sandbox.RateLimit, cfg.Sandbox.RateLimitBurst = c.SandboxRateLimit, c.SandboxRateBurst
	cfg.Server.Addr = c.Addr
	cfg.Server.AllowRemote = c.AllowRemote
	g := c.gatewayFlags
	cfg.Server.ReadHeaderTimeout, cfg.Server.ReadTimeout, cfg.Server.WriteTimeout, cfg.Server.IdleTimeout = g.ReadHeaderTimeout, g.ReadTimeout, g.WriteTimeout, g.IdleTimeout
	cfg.Server.ShutdownTimeout = g.ShutdownTimeout
	cfg.TLS = config.TLS{CertFile: g.TLSCert, KeyFile: g.TLSKey}
	n, err := parseSize(c.MaxBody)
	if err != nil {
		return cfg, err
	}
	cfg.FHIR.MaxBodyBytes = n
	cfg.FHIR.DefaultCount = c.DefaultCount
	cfg.FHIR.MaxCount = c.MaxCount
	cfg.FHIR.MaxBundleEntries = c.MaxBundleEntries
	cfg.FHIR.MaxResponseBytes = 0
	if m := strings.TrimSpace(c.MaxResponse); m != "" && m != "0" {
		if cfg.FHIR.MaxResponseBytes, err = parseSize(m); err != nil {
			return cfg, fmt.Errorf("--max-response: %w", err)
		}
	}
	cfg.FHIR.SearchTimeout = g.SearchTimeout
	cfg.FHIR.USCoreVersion = c.USCoreVersion
	cfg.FHIR.ServiceBaseURLs = c.ServiceBaseURLs
	cfg.FHIR.ProfileValidation = c.ProfileValidation
	cfg.FHIR.ProfileValidationAllowLower = c.ProfileAllowLower
	cfg.Auth = config.Auth{DevNoAuth: c.DevNoAuth, DevAllowPrivateJWKS: c.DevAllowPrivateJWKS,
		KEKFile: c.KEKFile, KEK: os.Getenv("LAPIS_KEK")}
	cfg.Gateway = config.Gateway{
		TrustedProxies:        g.TrustedProxies,
		ForwardedHeader:       g.ForwardedHeader,
		AllowIPs:              g.AllowIP,
		DenyUserAgents:        g.DenyUserAgent,
		DefaultDenyUserAgents: g.UserAgentDefaults,
	}
	cfg.Metrics = config.Metrics{Addr: g.MetricsAddr, Allow: g.MetricsAllow}
	r := c.rateLimitFlags
	cfg.RateLimit = config.RateLimit{
		Client: r.RateLimitClient, ClientBurst: r.RateLimitClientBurst,
		System: r.RateLimitSystem, SystemBurst: r.RateLimitSystemBurst,
		Patient: r.RateLimitPatient, PatientBurst: r.RateLimitPatientBurst,
		AuthIP: r.RateLimitAuthIP, AuthIPBurst: r.RateLimitAuthIPBurst,
		Costs:        r.RateLimitCosts,
		RedisURL:     r.RedisURL,
		RedisFailure: r.RateLimitRedisFailure,

		MaxConcurrentPerClient: r.MaxConcurrentPerClient,
		ConcurrencyWait:        r.ConcurrencyWait,
	}
	a := c.auditFlags
	cfg.Audit = config.Audit{
		Enabled:           a.Audit,
		Stream:            a.AuditStream,
		Queue:             a.AuditQueue,
		CopyDuty:          a.AuditCopyDuty,
		CopyLag:           a.AuditCopyLag,
		AlertWebhook:      a.AlertWebhook,
		AlertVolume:       a.AlertVolume,
		AlertVolumeWindow: a.AlertVolumeWindow,
		AlertAuthFailures: a.AlertAuthFailures,
		AlertAuthWindow:   a.AlertAuthWindow,
		AlertRefusals:     a.AlertRefusals,
	}
	x := c.exportFlags
	cfg.Export = config.Export{Dir: x.ExportDir, Workers: x.ExportWorkers, MaxJobsPerClient: x.ExportMaxPerClient, Expire: x.ExportExpire, Lease: x.ExportLease, Rate: x.ExportRate,
		S3URL: x.ExportS3URL}
	if x.ExportS3URL != "" {
		cfg.Export.S3AccessKey, cfg.Export.S3SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if cfg.Export.MaxFileBytes, err = parseSize(x.ExportFileSize); err != nil {
		return cfg, fmt.Errorf("--export-file-size: %w", err)
	}
	cfg.LogLevel = c.LogLevel
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
	// Port 0 lets the kernel pick a free port: bind it now, before anything
	// derives a URL from the address, so that the default base URL (the
	// FHIR base and the issuer) names the port actually bound.
	bound, err := c.bindPortZero(&cfg)
	if err != nil {
		return err
	}
	if bound != nil {
		defer bound.Close()
	}
	srv, err := app.NewServer(e.ctx, cfg, newLogger(e, cfg.LogLevel), e.stdout, app.WithListener(bound))
	if err != nil {
		return err
	}
	defer srv.Close()
	return srv.Run(e.ctx)
}

// bindPortZero opens the listening socket early when the port of --addr is
// 0, records the bound address in c and reloads *cfg from it (so a
// default base URL, or a --base-url on port 0 of the same host, carries
// the real port). It returns nil for any other
// port: the server binds later, as usual.
func (c *serveCmd) bindPortZero(cfg *config.Config) (net.Listener, error) {
	if _, port, err := net.SplitHostPort(cfg.Server.Addr); err != nil || port != "0" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Server.Addr, err)
	}
	c.Addr = ln.Addr().String()
	// A --base-url on port 0 of the same host (http://127.0.0.1:0/lapis)
	// names the port just bound too.
	if u, err := url.Parse(c.BaseURL); err == nil && u.Port() == "0" {
		if host, port, err := net.SplitHostPort(c.Addr); err == nil && u.Hostname() == host {
			u.Host = net.JoinHostPort(host, port)
			c.BaseURL = u.String()
		}
	}
	if *cfg, err = c.config(); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
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
