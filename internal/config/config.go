// Package config holds the settings of a Lapis process and checks them.
// Values come from command-line flags, then LAPIS_* environment variables,
// then defaults (the precedence is flag > environment > default); the cli
// package fills a Config and every other package receives it explicitly.
// The settings are grouped by the part of Lapis they configure; Normalize
// derives what follows from them (the public base URL, once) and checks
// them all, with the parsers of the packages that own a syntax (address
// lists, rate limits, alert webhooks), which receive their settings as
// options and never import config. Its errors name the command-line flag,
// which is what the user wrote.
package config

import (
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/mail"
	"github.com/lapis-health/lapis/internal/netpolicy"
	"github.com/lapis-health/lapis/internal/ratelimit"
)

// Config is the configuration of one Lapis process.
type Config struct {
	Server    Server
	TLS       TLS
	Database  Database
	FHIR      FHIR
	Auth      Auth
	Gateway   Gateway
	Metrics   Metrics
	RateLimit RateLimit
	Audit     Audit
	Export    Export
	Portal    Portal
	Sandbox   Sandbox
	// Env is the environment this configuration describes: EnvProduction
	// ("" too) or EnvSandbox (derived by SandboxConfig); it places the
	// FHIR base (FHIRBase, FHIRPath).
	Env string
	// LogLevel is debug, info, warn or error.
	LogLevel string
}

// Portal is the developer portal ([base-url]/portal/) and its mail.
type Portal struct {
	// Enabled serves the portal (default true).
	Enabled bool
	// SMTPURL is smtp://user:pass@host:port[?tls=mandatory|opportunistic|none]
	// or smtps://...; empty: development mode, where emails (with their
	// links) are written to the log instead.
	SMTPURL string `json:"-"`
	// SMTPFrom is the sender address of the portal's emails.
	SMTPFrom string
}

// DevMail reports whether the portal runs without SMTP (links logged).
func (p Portal) DevMail() bool { return p.SMTPURL == "" }

func (p Portal) check() error {
	if p.SMTPURL == "" {
		return nil
	}
	if _, err := mail.ParseURL(p.SMTPURL); err != nil {
		return fmt.Errorf("--smtp-url %s: %w", mail.Redacted(p.SMTPURL), err)
	}
	if p.SMTPFrom == "" {
		return errors.New("--smtp-url needs --smtp-from (the sender address)")
	}
	if a, err := netmail.ParseAddress(p.SMTPFrom); err != nil || a.Address == "" {
		return fmt.Errorf("--smtp-from %q is not an email address", p.SMTPFrom)
	}
	return nil
}

// The environments of a server.
const (
	EnvProduction = "production"
	EnvSandbox    = "sandbox"
)

// SandboxSchema is the PostgreSQL schema of the sandbox environment when
// production is PostgreSQL and no --sandbox-database is given: the same
// database, its own schema (created when missing) through search_path.
const SandboxSchema = "lapis_sandbox"

// Sandbox is the sandbox environment served beside production at
// [base-url]/sandbox/fhir.
type Sandbox struct {
	// Enabled serves the sandbox.
	Enabled bool
	// Load loads the built-in sandbox dataset at start into a sandbox
	// that holds no Patient yet.
	Load bool
	// DatabaseURL is the sandbox's database (empty: SQLite in
	// DataDir/sandbox when production is SQLite, the schema SandboxSchema
	// of the production database when it is PostgreSQL).
	DatabaseURL string
	// RateLimit and RateLimitBurst replace the per-client limits
	// (RateLimit.Client and RateLimit.System) in the sandbox (empty/0:
	// production's).
	RateLimit      string
	RateLimitBurst int
}

// Server is the HTTP listener.
type Server struct {
	// Addr is the listen address, HOST:PORT.
	Addr string
	// BaseURL is the public URL of this server without a trailing slash,
	// optionally with a path (https://host/lapis); the FHIR base is
	// BaseURL + "/fhir" (FHIRBase). Defaults to http://Addr (https with
	// TLS).
	BaseURL string
	// AllowRemote permits plain HTTP on a non-loopback address (behind a
	// TLS-terminating proxy). A TLS listener may bind any address.
	AllowRemote bool
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are
	// the transport timeouts (all positive).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown on SIGTERM: how long
	// requests in flight may take to finish (positive).
	ShutdownTimeout time.Duration
}

// TLS is the listener's certificate; both files or neither.
type TLS struct {
	// CertFile is the certificate chain (PEM), reloaded when it changes.
	CertFile string
	// KeyFile is the private key (PEM).
	KeyFile string
}

// Enabled reports whether TLS files are configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Database selects the database.
type Database struct {
	// URL selects PostgreSQL (postgres://...) or an explicit SQLite file
	// (sqlite:PATH); empty = SQLite in DataDir.
	URL string
	// DataDir holds the embedded SQLite database and the key-encryption
	// key.
	DataDir string
	// Schema, for PostgreSQL, is the schema the tables live in (created
	// when missing; empty: the URL's default search_path).
	Schema string
}

// FHIR bounds the FHIR API.
type FHIR struct {
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	// DefaultCount and MaxCount bound search page sizes.
	DefaultCount, MaxCount int
	// MaxBundleEntries bounds the entries of a batch or transaction Bundle
	// (0 = no limit: the admin commands, e.g. lapis import, which works
	// with Prefer: return=minimal).
	MaxBundleEntries int
	// MaxResponseBytes bounds every Bundle the FHIR API renders: a batch
	// or transaction response, a search or a history page (0 = no limit).
	MaxResponseBytes int64
	// SearchTimeout is the time budget of a search or history request
	// (0 = none).
	SearchTimeout time.Duration
	// USCoreVersion is the US Core version the CapabilityStatement
	// claims: one of USCoreVersions.
	USCoreVersion string
	// ProfileValidation is off, claimed (writes must conform to the US
	// Core profiles of USCoreVersion they claim) or us-core (also: a
	// resource of a US Core type that claims none must conform to one).
	ProfileValidation string
	// ProfileValidationAllowLower lets a write's X-Lapis-Profile-Validation
	// header choose a looser mode than ProfileValidation (by default a
	// request can only make validation stricter).
	ProfileValidationAllowLower bool
	// ServiceBaseURLs is the file listing the organisations and FHIR bases
	// published at [base]/servicebaseurls (package servicebase); empty =
	// this server's base alone.
	ServiceBaseURLs string
}

// USCoreVersions are the US Core versions Lapis can claim (the ONC (g)(10)
// v8 tracks); the first is the default.
var USCoreVersions = []string{"6.1.0", "7.0.0"}

// Auth configures authentication of the FHIR API.
type Auth struct {
	// DevNoAuth serves the FHIR API without authentication or scope
	// checks (benchmarks only; loopback only).
	DevNoAuth bool
	// DevAllowPrivateJWKS lets clients' jwks_uri point at loopback or
	// private addresses over http (development only).
	DevAllowPrivateJWKS bool
	// KEKFile is the key-encryption-key file that seals the signing keys
	// (default DataDir/auth-kek); every instance of a cluster shares it.
	KEKFile string
	// KEK is the key-encryption key itself (64 hex digits, from the
	// LAPIS_KEK environment variable); it takes precedence over KEKFile.
	KEK string `json:"-"`
}

// Gateway is the network policy in front of the FHIR API and the
// authorization endpoints.
type Gateway struct {
	// TrustedProxies are the CIDRs of reverse proxies whose
	// ForwardedHeader gives the client address.
	TrustedProxies []string
	// ForwardedHeader is X-Forwarded-For or Forwarded.
	ForwardedHeader string
	// AllowIPs is the global allow-list (CIDRs; empty allows all).
	AllowIPs []string
	// DenyUserAgents are regular expressions of refused user agents.
	DenyUserAgents []string
	// DefaultDenyUserAgents also refuses well-known scanners.
	DefaultDenyUserAgents bool
}

// Metrics is the /metrics endpoint.
type Metrics struct {
	// Addr, when set, is a separate unrestricted /metrics listener.
	Addr string
	// Allow are the CIDRs besides loopback that may read /metrics on the
	// main listener.
	Allow []string
}

// RateLimit are the rate limits, each N/PERIOD as ratelimit.ParseLimit
// reads it ("0" or "" disables).
type RateLimit struct {
	// Client and ClientBurst limit each OAuth client or API key.
	Client      string
	ClientBurst int
	// System and SystemBurst limit each system credential (only system/
	// scopes, no patient or user), instead of Client; a credential's own
	// limit replaces either.
	System      string
	SystemBurst int
	// Patient and PatientBurst limit each patient.
	Patient      string
	PatientBurst int
	// AuthIP and AuthIPBurst limit each client address on the OAuth
	// endpoints and pages.
	AuthIP      string
	AuthIPBurst int
	// Costs are the cost units per interaction, as ratelimit.ParseCosts
	// reads them.
	Costs string
	// RedisURL shares the limits through Redis (empty: in-process).
	RedisURL string
	// RedisFailure is open or closed: what happens when Redis does not
	// answer.
	RedisFailure string
	// MaxConcurrentPerClient bounds the searches, history requests and
	// Bundles one client runs at once on this instance: 0 = the store's
	// search connections − 1 (at least 1), -1 = no limit.
	MaxConcurrentPerClient int
	// ConcurrencyWait is how long a request over that bound waits in its
	// client's line before a 429 (0 = refuse at once).
	ConcurrencyWait time.Duration
}

// Audit is the audit trail and its alerts.
type Audit struct {
	// Enabled records every interaction and security event.
	Enabled bool
	// Stream also writes each record as a JSON line to "stdout" or a file.
	Stream string
	// Queue is how many records may wait to be written.
	Queue int
	// CopyDuty is the share of one core (0.01-1) the copy into searchable
	// AuditEvents may use.
	CopyDuty float64
	// CopyLag is the lag of searchable AuditEvents behind the trail past
	// which the copy's share of a core rises with the lag (see
	// audit.Config.CopyLag).
	CopyLag time.Duration
	// AlertWebhook receives each alert as JSON.
	AlertWebhook string
	// AlertVolume and AlertVolumeWindow: alert when one client is
	// returned more resources within the window (0 disables).
	AlertVolume       int
	AlertVolumeWindow time.Duration
	// AlertAuthFailures and AlertAuthWindow: alert on repeated failed
	// authentication (0 disables).
	AlertAuthFailures int
	AlertAuthWindow   time.Duration
	// AlertRefusals alerts on requests refused by an allow-list.
	AlertRefusals bool
}

// Export is the Bulk Data $export service (package bulk).
type Export struct {
	// Dir holds the output files ("" = "export" in the data directory).
	// Instances sharing one PostgreSQL database must share it too.
	Dir string
	// Workers is how many jobs this instance runs at once (0: none, the
	// jobs it accepts are run by other instances on the same database).
	Workers int
	// MaxJobsPerClient is how many unfinished jobs one client may have;
	// a kick-off beyond it is answered 429 (0 = no limit).
	MaxJobsPerClient int
	// Expire is how long the files of a finished job are kept.
	Expire time.Duration
	// Lease is how long a job stays claimed by a worker that stopped
	// heartbeating (a crashed instance) before another takes it over.
	Lease time.Duration
	// MaxFileBytes splits a type's output into files of about this size.
	MaxFileBytes int64
	// Rate bounds the resources per second one job writes (0: no bound).
	Rate int
	// S3URL, when set, keeps the files in an S3-compatible bucket
	// (http(s)://ENDPOINT/BUCKET[/PREFIX]) instead of Dir, with the
	// credentials S3AccessKey and S3SecretKey.
	S3URL, S3AccessKey, S3SecretKey string
}

// Serve defaults of the response bounds (lapis serve; the admin commands
// keep no limit).
const (
	// DefaultMaxBundleEntries is --max-bundle-entries: comfortably above
	// the largest Synthea patient Bundle (293 entries), far below what
	// makes one request a denial of service.
	DefaultMaxBundleEntries = 1000
	// DefaultMaxResponseBytes is --max-response: twice the default request
	// body limit.
	DefaultMaxResponseBytes = 32 << 20
)

// Defaults returns a Config with every default filled in, as the admin
// commands use it: without the response bounds of ServeDefaults.
func Defaults() Config {
	return Config{
		Portal: Portal{Enabled: true},
		Server: Server{
			Addr:              "127.0.0.1:8080",
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      120 * time.Second,
			IdleTimeout:       120 * time.Second,
			ShutdownTimeout:   10 * time.Second,
		},
		Database: Database{DataDir: defaultDataDir()},
		Export:   Export{Workers: 2, MaxJobsPerClient: 10, Expire: 24 * time.Hour, Lease: 30 * time.Second, MaxFileBytes: 256 << 20},
		FHIR: FHIR{
			MaxBodyBytes:      16 << 20,
			DefaultCount:      20,
			MaxCount:          1000,
			SearchTimeout:     10 * time.Second,
			USCoreVersion:     USCoreVersions[0],
			ProfileValidation: "off",
		},
		Gateway: Gateway{ForwardedHeader: "X-Forwarded-For", DefaultDenyUserAgents: true},
		RateLimit: RateLimit{
			Client: "100/s", ClientBurst: 200,
			System: "5000/s", SystemBurst: 10000,
			Patient: "50/s", PatientBurst: 100,
			AuthIP: "10/s", AuthIPBurst: 100,
			RedisFailure:    "open",
			ConcurrencyWait: 5 * time.Second,
		},
		Audit: Audit{
			Enabled:           true,
			Queue:             16384,
			CopyDuty:          0.25,
			CopyLag:           30 * time.Second,
			AlertVolume:       10000,
			AlertVolumeWindow: time.Hour,
			AlertAuthFailures: 10,
			AlertAuthWindow:   5 * time.Minute,
			AlertRefusals:     true,
		},
		Sandbox:  Sandbox{Enabled: true, Load: true},
		LogLevel: "info",
	}
}

// ServeDefaults returns the defaults of lapis serve: Defaults with the
// response bounds.
func ServeDefaults() Config {
	c := Defaults()
	c.FHIR.MaxBundleEntries = DefaultMaxBundleEntries
	c.FHIR.MaxResponseBytes = DefaultMaxResponseBytes
	return c
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "lapis")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "share", "lapis")
	}
	return "lapis-data"
}

// Normalize fills the derived defaults (the base URL from the listen
// address) and checks the configuration. serve also checks what only a
// server needs: the listener (the loopback rule, TLS), the gateway, rate
// limits and the audit trail.
func (c *Config) Normalize(serve bool) error {
	host, port, err := net.SplitHostPort(c.Server.Addr)
	if err != nil {
		return fmt.Errorf("invalid --addr %q: want HOST:PORT", c.Server.Addr)
	}
	if serve {
		if err := c.TLS.check(); err != nil {
			return err
		}
		if err := c.Portal.check(); err != nil {
			return err
		}
	}
	if c.Server.BaseURL == "" {
		scheme := "http"
		if serve && c.TLS.Enabled() {
			scheme = "https"
		}
		h := host
		if h == "" || h == "0.0.0.0" || h == "::" {
			h = "localhost"
		}
		c.Server.BaseURL = scheme + "://" + net.JoinHostPort(h, port)
	}
	c.Server.BaseURL = strings.TrimRight(c.Server.BaseURL, "/")
	if err := checkBaseURL(c.Server.BaseURL); err != nil {
		return err
	}
	if err := c.FHIR.check(); err != nil {
		return err
	}
	if c.Database.URL != "" && !IsPostgres(c.Database.URL) && !strings.HasPrefix(c.Database.URL, "sqlite:") && !strings.HasPrefix(c.Database.URL, "file:") {
		return fmt.Errorf("invalid --database: want postgres://..., sqlite:PATH or empty for the embedded database")
	}
	if !serve {
		return nil
	}
	loopback := isLoopback(host)
	if !c.Server.AllowRemote && !c.TLS.Enabled() && !loopback {
		return fmt.Errorf("refusing to serve plain HTTP on %q: outside loopback Lapis needs --tls-cert/--tls-key, or --allow-remote behind a TLS-terminating proxy", c.Server.Addr)
	}
	if c.Auth.DevNoAuth && (c.Server.AllowRemote || !loopback) {
		return errors.New("--dev-no-auth cannot be combined with --allow-remote (or a non-loopback --addr)")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--read-header-timeout", c.Server.ReadHeaderTimeout}, {"--read-timeout", c.Server.ReadTimeout}, {"--write-timeout", c.Server.WriteTimeout}, {"--idle-timeout", c.Server.IdleTimeout}, {"--shutdown-timeout", c.Server.ShutdownTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive", d.name)
		}
	}
	if _, err := c.Gateway.Parse(); err != nil {
		return err
	}
	if _, err := c.Metrics.AllowPrefixes(); err != nil {
		return err
	}
	if _, err := c.RateLimit.Parse(); err != nil {
		return err
	}
	if err := c.Export.check(); err != nil {
		return err
	}
	if err := c.Sandbox.check(); err != nil {
		return err
	}
	return c.Audit.check()
}

func (e Export) check() error {
	switch {
	case e.Workers < 0 || e.MaxJobsPerClient < 0 || e.Rate < 0:
		return errors.New("--export-workers, --export-max-per-client and --export-rate must not be negative")
	case e.Expire <= 0:
		return errors.New("--export-expire must be positive")
	case e.Lease < time.Second:
		return errors.New("--export-lease must be at least 1s")
	case e.MaxFileBytes < 1<<10:
		return errors.New("--export-file-size must be at least 1KiB")
	}
	return nil
}

func (s Sandbox) check() error {
	if s.DatabaseURL != "" && !IsPostgres(s.DatabaseURL) && !strings.HasPrefix(s.DatabaseURL, "sqlite:") && !strings.HasPrefix(s.DatabaseURL, "file:") {
		return errors.New("invalid --sandbox-database: want postgres://..., sqlite:PATH or empty")
	}
	if s.RateLimitBurst < 0 {
		return errors.New("--sandbox-rate-burst must not be negative")
	}
	if _, err := ratelimit.ParseLimit(s.RateLimit, s.RateLimitBurst); s.RateLimit != "" && err != nil {
		return fmt.Errorf("--sandbox-rate-limit: %w", err)
	}
	return nil
}

func (t TLS) check() error {
	if t.Enabled() && (t.CertFile == "" || t.KeyFile == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	return nil
}

// checkBaseURL accepts an absolute http(s) URL without credentials, query
// or fragment whose path, if any, is made of plain segments: the path is
// the prefix of every route, so it must not be read as a pattern or
// normalised differently by a proxy.
func checkBaseURL(s string) error {
	bad := fmt.Errorf("invalid --base-url %q: want an absolute http(s) URL without query or fragment, e.g. https://fhir.example.org or https://example.org/lapis", s)
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.Opaque != "" {
		return bad
	}
	if u.Path == "" {
		return nil
	}
	if u.RawPath != "" {
		return fmt.Errorf("invalid --base-url %q: the path must not be percent-encoded", s)
	}
	for _, seg := range strings.Split(strings.TrimPrefix(u.Path, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." || strings.TrimLeft(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~") != "" {
			return fmt.Errorf("invalid --base-url %q: each path segment must be letters, digits, '-', '.', '_' or '~'", s)
		}
	}
	return nil
}

func (f *FHIR) check() error {
	if f.MaxBodyBytes <= 0 {
		return fmt.Errorf("invalid max body size %d: must be positive", f.MaxBodyBytes)
	}
	if f.MaxBundleEntries < 0 {
		return fmt.Errorf("invalid max bundle entries %d: must be positive, or 0 for no limit", f.MaxBundleEntries)
	}
	if f.MaxResponseBytes < 0 {
		return fmt.Errorf("invalid max response size %d: must be positive, or 0 for no limit", f.MaxResponseBytes)
	}
	if f.DefaultCount <= 0 || f.MaxCount < f.DefaultCount {
		return fmt.Errorf("invalid page sizes: default %d, max %d", f.DefaultCount, f.MaxCount)
	}
	if f.SearchTimeout < 0 {
		return errors.New("--search-timeout must not be negative")
	}
	if f.USCoreVersion == "" {
		f.USCoreVersion = USCoreVersions[0]
	}
	if f.ProfileValidation == "" {
		f.ProfileValidation = "off"
	}
	if !slices.Contains([]string{"off", "claimed", "us-core"}, f.ProfileValidation) {
		return fmt.Errorf("invalid --profile-validation %q: want off, claimed or us-core", f.ProfileValidation)
	}
	if !slices.Contains(USCoreVersions, f.USCoreVersion) {
		return fmt.Errorf("invalid --us-core-version %q: want one of %s", f.USCoreVersion, strings.Join(USCoreVersions, ", "))
	}
	return nil
}

// GatewayRules are the parsed address lists of a Gateway.
type GatewayRules struct {
	TrustedProxies, AllowIPs []netip.Prefix
	// DenyUserAgents are the configured rules, then the defaults when
	// DefaultDenyUserAgents is set.
	DenyUserAgents []string
}

// Parse checks and parses the gateway's address lists.
func (g Gateway) Parse() (GatewayRules, error) {
	var r GatewayRules
	var err error
	if r.TrustedProxies, err = netpolicy.ParsePrefixes(g.TrustedProxies); err != nil {
		return r, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if r.AllowIPs, err = netpolicy.ParsePrefixes(g.AllowIPs); err != nil {
		return r, fmt.Errorf("--allow-ip: %w", err)
	}
	switch g.ForwardedHeader {
	case "X-Forwarded-For", "Forwarded":
	default:
		return r, fmt.Errorf("invalid --forwarded-header %q: want X-Forwarded-For or Forwarded", g.ForwardedHeader)
	}
	r.DenyUserAgents = append([]string(nil), g.DenyUserAgents...)
	if g.DefaultDenyUserAgents {
		r.DenyUserAgents = append(r.DenyUserAgents, netpolicy.DefaultDenyUserAgents...)
	}
	return r, nil
}

// AllowPrefixes checks and parses Allow.
func (m Metrics) AllowPrefixes() ([]netip.Prefix, error) {
	p, err := netpolicy.ParsePrefixes(m.Allow)
	if err != nil {
		return nil, fmt.Errorf("--metrics-allow: %w", err)
	}
	return p, nil
}

// RateLimits are the parsed limits of a RateLimit.
type RateLimits struct {
	Client, System, Patient, AuthIP ratelimit.Limit
	Costs                           ratelimit.Costs
}

// Parse checks and parses the limits and costs.
func (r RateLimit) Parse() (RateLimits, error) {
	var l RateLimits
	var err error
	if l.Client, err = ratelimit.ParseLimit(r.Client, r.ClientBurst); err != nil {
		return l, fmt.Errorf("--rate-limit-client: %w", err)
	}
	if l.System, err = ratelimit.ParseLimit(r.System, r.SystemBurst); err != nil {
		return l, fmt.Errorf("--rate-limit-system: %w", err)
	}
	if l.Patient, err = ratelimit.ParseLimit(r.Patient, r.PatientBurst); err != nil {
		return l, fmt.Errorf("--rate-limit-patient: %w", err)
	}
	if l.AuthIP, err = ratelimit.ParseLimit(r.AuthIP, r.AuthIPBurst); err != nil {
		return l, fmt.Errorf("--rate-limit-auth-ip: %w", err)
	}
	if l.Costs, err = ratelimit.ParseCosts(r.Costs); err != nil {
		return l, fmt.Errorf("--rate-limit-costs: %w", err)
	}
	switch r.RedisFailure {
	case "open", "closed":
	default:
		return l, fmt.Errorf("invalid --rate-limit-redis-failure %q: want open or closed", r.RedisFailure)
	}
	if r.MaxConcurrentPerClient < -1 {
		return l, fmt.Errorf("--max-concurrent-per-client: %d is not a limit (want a positive number, 0 for the default or -1 for none)", r.MaxConcurrentPerClient)
	}
	if r.ConcurrencyWait < 0 {
		return l, errors.New("--concurrency-wait must not be negative")
	}
	return l, nil
}

func (a Audit) check() error {
	if a.CopyDuty < 0.01 || a.CopyDuty > 1 {
		return errors.New("--audit-copy-duty must be between 0.01 and 1")
	}
	if a.CopyLag < time.Second {
		return errors.New("--audit-copy-lag must be at least 1s")
	}
	if !a.Enabled {
		return nil
	}
	if a.AlertWebhook != "" {
		if err := audit.CheckWebhook(a.AlertWebhook); err != nil {
			return fmt.Errorf("--alert-webhook: %w", err)
		}
	}
	return nil
}

// fhirDir is where the FHIR base is under the base URL.
const fhirDir = "/fhir"

// sandboxDir is where the sandbox's FHIR base is under the base URL.
const sandboxDir = "/sandbox/fhir"

// envDir is where this environment's FHIR base is under the base URL.
func (c *Config) envDir() string {
	if c.Env == EnvSandbox {
		return sandboxDir
	}
	return fhirDir
}

// EnvName is the environment's name: EnvProduction or EnvSandbox.
func (c *Config) EnvName() string {
	if c.Env == "" {
		return EnvProduction
	}
	return c.Env
}

// FHIRBase returns the FHIR base URL, BaseURL + "/fhir" (the sandbox's:
// BaseURL + "/sandbox/fhir"): the issuer of the authorization server too.
func (c *Config) FHIRBase() string { return c.Server.BaseURL + c.envDir() }

// SandboxConfig derives the configuration of the sandbox environment
// from a normalized production configuration: its FHIR base
// [base-url]/sandbox/fhir, its database (Sandbox.DatabaseURL, else SQLite
// in DataDir/sandbox when production is SQLite, else the schema
// SandboxSchema of the production PostgreSQL database), its export
// folder (a "sandbox" folder of production's), its rate limits and the
// same key-encryption key as production.
func (c Config) SandboxConfig() Config {
	s := c
	s.Env = EnvSandbox
	s.Database.DataDir = filepath.Join(c.Database.DataDir, "sandbox")
	switch {
	case c.Sandbox.DatabaseURL != "":
		s.Database.URL, s.Database.Schema = c.Sandbox.DatabaseURL, ""
	case IsPostgres(c.Database.URL):
		s.Database.Schema = SandboxSchema
	default:
		s.Database.URL, s.Database.Schema = "", ""
	}
	if s.Auth.KEKFile == "" && s.Auth.KEK == "" && c.Database.DataDir != "" {
		s.Auth.KEKFile = filepath.Join(c.Database.DataDir, "auth-kek")
	}
	if c.Export.Dir != "" {
		s.Export.Dir = filepath.Join(c.Export.Dir, "sandbox")
	} else {
		s.Export.Dir = filepath.Join(c.Database.DataDir, "export", "sandbox")
	}
	if c.Export.S3URL != "" {
		s.Export.S3URL = strings.TrimRight(c.Export.S3URL, "/") + "/sandbox"
	}
	if c.Sandbox.RateLimit != "" {
		s.RateLimit.Client, s.RateLimit.System = c.Sandbox.RateLimit, c.Sandbox.RateLimit
		s.RateLimit.ClientBurst, s.RateLimit.SystemBurst = c.Sandbox.RateLimitBurst, c.Sandbox.RateLimitBurst
	} else if c.Sandbox.RateLimitBurst > 0 {
		s.RateLimit.ClientBurst, s.RateLimit.SystemBurst = c.Sandbox.RateLimitBurst, c.Sandbox.RateLimitBurst
	}
	return s
}

// FHIRPath returns the path of the FHIR base URL ("/fhir", or
// "/lapis/fhir" for the base URL https://host/lapis): every route of the
// FHIR API and the authorization server is under it.
func (c *Config) FHIRPath() string {
	u, err := url.Parse(c.Server.BaseURL)
	if err != nil {
		return c.envDir()
	}
	return u.Path + c.envDir()
}

// Origin returns the origin of the base URL, scheme://host[:port].
func (c *Config) Origin() string {
	u, err := url.Parse(c.Server.BaseURL)
	if err != nil {
		return c.Server.BaseURL
	}
	return u.Scheme + "://" + u.Host
}

// IsPostgres reports whether a database URL selects PostgreSQL.
func IsPostgres(u string) bool { return database.IsPostgresURL(u) }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
