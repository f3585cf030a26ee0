package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/ratelimit"
)

// rateLimitStages are the rate-limit stages of the request pipeline.
type rateLimitStages struct {
	// FHIR goes into fhirStages after authentication.
	FHIR func(http.Handler) http.Handler
	// AuthIP goes into outer, after the client-IP resolver.
	AuthIP func(http.Handler) http.Handler
	// Close releases the Redis connections.
	Close func()
	// Ready pings Redis when the limits fail closed without it (a
	// readiness check; nil otherwise).
	Ready func(context.Context) error
	// Middleware tells a credential's budget in use (Budget) for its
	// activity page.
	Middleware *ratelimit.Middleware
}

// newRateLimits builds the limiter and the stages of cfg.RateLimit; obs is
// the process's *metrics.Metrics and sink its audit sink.
// db is the auth database, whose clients and API keys may carry their own
// limits (nil: only the configured limits).
func newRateLimits(cfg config.Config, log *slog.Logger, obs ratelimit.Observer, sink audit.Sink, db *authdb.DB) (rateLimitStages, error) {
	st := rateLimitStages{Close: func() {}}
	f := cfg.RateLimit
	lim, err := f.Parse()
	if err != nil {
		return st, err
	}
	prefix := cfg.FHIRPath()
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
		// Each environment counts apart: production keeps the plain
		// prefix, others add their name.
		var keyPrefix string
		if cfg.EnvName() != config.EnvProduction {
			keyPrefix = cfg.EnvName() + ":"
		}
		rl, err := ratelimit.OpenRedis(f.RedisURL, ratelimit.RedisOptions{KeyPrefix: keyPrefix})
		if err != nil {
			return st, fmt.Errorf("--redis-url: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := rl.Ping(ctx); err != nil {
			log.Warn("rate limit: Redis does not answer yet", "failure_mode", f.RedisFailure, "error", err.Error())
		}
		cancel()
		limiter, backend = rl, "redis"
		st.Close = func() { _ = rl.Close() }
		if f.RedisFailure == "closed" {
			st.Ready = rl.Ping
		}
	}
	var creds ratelimit.CredentialLimits
	if db != nil {
		// Kept current by the revocation log: a change reaches every
		// instance within one poll.
		creds = ratelimit.NewCredentialCache(db, db.RevLog(), ratelimit.CredentialCacheOptions{Logger: log})
	}
	m := ratelimit.New(ratelimit.Options{
		Limiter:      limiter,
		FailOpen:     f.RedisFailure != "closed",
		Client:       lim.Client,
		System:       lim.System,
		Credentials:  creds,
		Patient:      lim.Patient,
		IP:           lim.AuthIP,
		Costs:        lim.Costs,
		FHIRBase:     prefix,
		AuthPaths:    paths,
		MaxBodyBytes: cfg.FHIR.MaxBodyBytes,
		// Bundles over the entry limit are refused before they run.
		MaxBundleEntries: cfg.FHIR.MaxBundleEntries,
		Metrics:          obs,
		Audit:            sink,
		Logger:           log,
	})
	st.FHIR, st.AuthIP, st.Middleware = m.FHIR, m.AuthEndpoints, m
	log.Info("rate limits", "backend", backend, "client", lim.Client.String(), "system", lim.System.String(), "patient", lim.Patient.String(),
		"auth_ip", lim.AuthIP.String(), "costs", lim.Costs.String(), "redis_failure", f.RedisFailure)
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

// newConcurrency builds the per-client concurrency stage from
// cfg.RateLimit; searchConns is the number of database connections that
// serve searches (store.SearchConns; 0 when unknown). The stage is nil
// when disabled.
func newConcurrency(cfg config.Config, searchConns int, log *slog.Logger, obs ratelimit.Observer, sink audit.Sink) (func(http.Handler) http.Handler, error) {
	n := cfg.RateLimit.MaxConcurrentPerClient
	switch {
	case n == -1:
		log.Info("concurrency limit per client off")
		return nil, nil
	case n == 0:
		if searchConns <= 0 {
			searchConns = defaultConcurrencyConns
		}
		n = max(1, searchConns-1)
	}
	c := ratelimit.NewConcurrency(ratelimit.ConcurrencyOptions{
		PerClient: n,
		MaxWait:   cfg.RateLimit.ConcurrencyWait,
		Metrics:   obs,
		Audit:     sink,
	})
	log.Info("concurrency limit per client", "searches", n, "search_connections", searchConns, "wait", cfg.RateLimit.ConcurrencyWait.String())
	return c.Stage, nil
}
