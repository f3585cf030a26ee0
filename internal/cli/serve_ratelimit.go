package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/netpolicy"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/ratelimit"
)

// rateLimitFlags are the rate-limit flags of `lapis serve` (embedded in
// serveCmd).
type rateLimitFlags struct {
	RateLimitClient       string `name:"rate-limit-client" env:"LAPIS_RATE_LIMIT_CLIENT" default:"100/s" help:"Limit per OAuth client or API key on the FHIR API, N/PERIOD in cost units (PERIOD s, m, h); 0 disables."`
	RateLimitClientBurst  int    `name:"rate-limit-client-burst" env:"LAPIS_RATE_LIMIT_CLIENT_BURST" default:"200" help:"Burst per client, in cost units (0 = N)."`
	RateLimitSystem       string `name:"rate-limit-system" env:"LAPIS_RATE_LIMIT_SYSTEM" default:"5000/s" help:"Limit per client for system credentials (only system/ scopes, no patient or user: backend services clients, system/ API keys), instead of --rate-limit-client, N/PERIOD in cost units; 0 disables. A client's or API key's own limit (--rate-limit of client/apikey create and update) replaces either."`
	RateLimitSystemBurst  int    `name:"rate-limit-system-burst" env:"LAPIS_RATE_LIMIT_SYSTEM_BURST" default:"10000" help:"Burst per system credential, in cost units (0 = N)."`
	RateLimitPatient      string `name:"rate-limit-patient" env:"LAPIS_RATE_LIMIT_PATIENT" default:"50/s" help:"Limit per patient (in context, or read/searched) on the FHIR API, N/PERIOD in cost units; 0 disables."`
	RateLimitPatientBurst int    `name:"rate-limit-patient-burst" env:"LAPIS_RATE_LIMIT_PATIENT_BURST" default:"100" help:"Burst per patient, in cost units (0 = N)."`
	RateLimitAuthIP       string `name:"rate-limit-auth-ip" env:"LAPIS_RATE_LIMIT_AUTH_IP" default:"10/s" help:"Limit per client IP address on the OAuth endpoints and pages (authorize, login, consent, select-patient, apps, token, introspect, revoke), N/PERIOD requests; 0 disables."`
	RateLimitAuthIPBurst  int    `name:"rate-limit-auth-ip-burst" env:"LAPIS_RATE_LIMIT_AUTH_IP_BURST" default:"100" help:"Burst per IP address on the OAuth endpoints (0 = N)."`
	RateLimitCosts        string `name:"rate-limit-costs" env:"LAPIS_RATE_LIMIT_COSTS" help:"Cost units per FHIR interaction, e.g. read=1,vread=1,search=2,history=2,create=3,update=3,patch=3,delete=3,batch=1,batch-min=3,operation=3 (batch is per Bundle entry, a GET entry costing at least its read or search; unnamed keys keep these defaults)." placeholder:"KEY=N,..."`
	RedisURL              string `name:"redis-url" env:"LAPIS_REDIS_URL" help:"Share the rate limits of every instance through this Redis (redis://[user:password@]host:port[/db], rediss:// for TLS); default: in-process limits." placeholder:"URL"`
	RateLimitRedisFailure string `name:"rate-limit-redis-failure" env:"LAPIS_RATE_LIMIT_REDIS_FAILURE" default:"open" enum:"open,closed" help:"When Redis cannot answer: open (admit under each instance's own in-process limits) or closed (refuse with 503)."`
	// The concurrency limit is per instance (it guards this instance's
	// database connections), never shared through Redis.
	MaxConcurrentPerClient int           `name:"max-concurrent-per-client" env:"LAPIS_MAX_CONCURRENT_PER_CLIENT" default:"0" help:"Most FHIR searches, history requests and batch/transaction Bundles of one client (OAuth client or API key) that run at once; 0 = one less than the database connections that serve searches (at least 1), -1 = no limit."`
	ConcurrencyWait        time.Duration `name:"concurrency-wait" env:"LAPIS_CONCURRENCY_WAIT" default:"5s" help:"How long a request over --max-concurrent-per-client waits, in its client's line, for one of the client's requests to finish before it is refused with 429 (0 = refuse at once)."`
}

// rateLimitStages are the rate-limit stages of the request pipeline.
type rateLimitStages struct {
	// FHIR goes into fhirStages after authentication.
	FHIR func(http.Handler) http.Handler
	// AuthIP goes into outer, after the client-IP resolver.
	AuthIP func(http.Handler) http.Handler
	// Close releases the Redis connections.
	Close func()
}

// stages builds the limiter and the stages from the flags; obs is the
// process's *metrics.Metrics, sink its audit sink and db the auth
// database, whose clients and API keys may carry their own limits (nil:
// only the flags' limits).
func (f rateLimitFlags) stages(cfg config.Config, log *slog.Logger, obs ratelimit.Observer, sink audit.Sink, db *authdb.DB) (rateLimitStages, error) {
	st := rateLimitStages{Close: func() {}}
	client, err := ratelimit.ParseLimit(f.RateLimitClient, f.RateLimitClientBurst)
	if err != nil {
		return st, fmt.Errorf("--rate-limit-client: %w", err)
	}
	system, err := ratelimit.ParseLimit(f.RateLimitSystem, f.RateLimitSystemBurst)
	if err != nil {
		return st, fmt.Errorf("--rate-limit-system: %w", err)
	}
	patient, err := ratelimit.ParseLimit(f.RateLimitPatient, f.RateLimitPatientBurst)
	if err != nil {
		return st, fmt.Errorf("--rate-limit-patient: %w", err)
	}
	ip, err := ratelimit.ParseLimit(f.RateLimitAuthIP, f.RateLimitAuthIPBurst)
	if err != nil {
		return st, fmt.Errorf("--rate-limit-auth-ip: %w", err)
	}
	costs, err := ratelimit.ParseCosts(f.RateLimitCosts)
	if err != nil {
		return st, fmt.Errorf("--rate-limit-costs: %w", err)
	}
	u, err := url.Parse(cfg.FHIRBase())
	if err != nil {
		return st, fmt.Errorf("FHIR base URL: %w", err)
	}
	prefix := u.Path
	// One list, kept by the oauth package: every page that takes a
	// password and every endpoint that authenticates a client.
	paths := map[string]ratelimit.Endpoint{}
	for p, browser := range oauth.IPLimitedEndpoints() {
		paths[prefix+p] = ratelimit.Endpoint{Browser: browser}
	}
	var limiter ratelimit.Limiter
	backend := "in-process"
	if f.RedisURL != "" {
		// The Redis client's own messages (one per failed dial) become
		// debug lines of our JSON log; the rate limiter logs outages
		// itself, throttled. (The client's logger is process-wide; serve
		// sets it once.)
		redis.SetLogger(redisLogger{log})
		rl, err := ratelimit.OpenRedis(f.RedisURL, ratelimit.RedisOptions{})
		if err != nil {
			return st, fmt.Errorf("--redis-url: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := rl.Ping(ctx); err != nil {
			log.Warn("rate limit: Redis does not answer yet", "failure_mode", f.RateLimitRedisFailure, "error", err.Error())
		}
		cancel()
		limiter, backend = rl, "redis"
		st.Close = func() { _ = rl.Close() }
	}
	var creds ratelimit.CredentialLimits
	if db != nil {
		// Kept current by the revocation log: a change reaches every
		// instance within one poll.
		creds = ratelimit.NewCredentialCache(db, db.RevLog(), ratelimit.CredentialCacheOptions{Logger: log})
	}
	m := ratelimit.New(ratelimit.Options{
		Limiter:      limiter,
		FailOpen:     f.RateLimitRedisFailure != "closed",
		Client:       client,
		System:       system,
		Credentials:  creds,
		Patient:      patient,
		IP:           ip,
		Costs:        costs,
		FHIRBase:     prefix,
		AuthPaths:    paths,
		ClientIP:     netpolicy.ClientIP,
		MaxBodyBytes: cfg.MaxBodyBytes,
		// Bundles over the entry limit are refused before they run.
		MaxBundleEntries: cfg.MaxBundleEntries,
		Metrics:          obs,
		Audit:            sink,
		Logger:           log,
	})
	st.FHIR, st.AuthIP = m.FHIR, m.AuthEndpoints
	log.Info("rate limits", "backend", backend, "client", client.String(), "system", system.String(), "patient", patient.String(),
		"auth_ip", ip.String(), "costs", costs.String(), "redis_failure", f.RateLimitRedisFailure)
	return st, nil
}

// redisLogger routes the Redis client's messages into the process log at
// debug level.
type redisLogger struct{ log *slog.Logger }

// Printf logs one message of the Redis client.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}

// defaultConcurrencyConns is the number of search connections assumed
// when the store cannot say.
const defaultConcurrencyConns = 4

// concurrency builds the per-client concurrency stage from the flags;
// searchConns is the number of database connections that serve searches
// (store.SearchConns; 0 when unknown). The stage is nil when disabled.
func (f rateLimitFlags) concurrency(cfg config.Config, searchConns int, log *slog.Logger, obs ratelimit.Observer, sink audit.Sink) (func(http.Handler) http.Handler, error) {
	n := f.MaxConcurrentPerClient
	switch {
	case n < -1:
		return nil, fmt.Errorf("--max-concurrent-per-client: %d is not a limit (want a positive number, 0 for the default or -1 for none)", n)
	case f.ConcurrencyWait < 0:
		return nil, fmt.Errorf("--concurrency-wait must not be negative")
	case n == -1:
		log.Info("concurrency limit per client off")
		return nil, nil
	case n == 0:
		if searchConns <= 0 {
			searchConns = defaultConcurrencyConns
		}
		n = max(1, searchConns-1)
	}
	u, err := url.Parse(cfg.FHIRBase())
	if err != nil {
		return nil, fmt.Errorf("FHIR base URL: %w", err)
	}
	c := ratelimit.NewConcurrency(ratelimit.ConcurrencyOptions{
		PerClient: n,
		MaxWait:   f.ConcurrencyWait,
		FHIRBase:  u.Path,
		ClientIP:  netpolicy.ClientIP,
		Metrics:   obs,
		Audit:     sink,
	})
	log.Info("concurrency limit per client", "searches", n, "search_connections", searchConns, "wait", f.ConcurrencyWait.String())
	return c.Stage, nil
}
