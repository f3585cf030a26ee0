package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// RedisKeyPrefix starts every key Lapis passes to Redis (redis_rate
// itself puts "rate:" in front, so keys read rate:lapis:rl:SCOPE:HASH).
const RedisKeyPrefix = "lapis:rl:"

// redisBackoff is how long a Redis limiter stops asking Redis after a
// failed call: requests in that time fail at once instead of each waiting
// for a timeout.
const redisBackoff = 500 * time.Millisecond

// RedisOptions configures a Redis limiter.
type RedisOptions struct {
	// Timeout bounds each Redis round trip (0 = 250 ms). A limiter must
	// not make the request path wait long on a sick Redis.
	Timeout time.Duration
	// Now is the clock of the failure backoff (nil = time.Now).
	Now func() time.Time
	// KeyPrefix follows RedisKeyPrefix in every key (e.g. "sandbox:"),
	// so that environments sharing one Redis count apart.
	KeyPrefix string
}

// Redis is a GCRA limiter shared by every instance that uses the same
// Redis: the decision runs atomically in a Lua script on the Redis
// server's clock (github.com/go-redis/redis_rate). Errors wrap
// ErrUnavailable.
type Redis struct {
	client *redis.Client
	rl     *redis_rate.Limiter
	now    func() time.Time
	prefix string // RedisKeyPrefix + RedisOptions.KeyPrefix

	mu        sync.Mutex
	downUntil time.Time
}

// OpenRedis connects lazily to the Redis at url (redis://[user:password@]
// host:port[/db] or rediss:// for TLS). The error never repeats the URL,
// which may hold a password.
func OpenRedis(url string, o RedisOptions) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("invalid Redis URL: want redis://[user:password@]host:port[/db] or rediss://…")
	}
	t := o.Timeout
	if t <= 0 {
		t = 250 * time.Millisecond
	}
	opt.DialTimeout = 2 * t
	opt.DialerRetries = 1 // one dial per call: a failing Redis must not hold requests
	opt.ReadTimeout = t
	opt.WriteTimeout = t
	opt.PoolTimeout = t
	opt.MaxRetries = -1 // fail fast; the middleware decides what a failure means
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	r := &Redis{client: c, rl: redis_rate.NewLimiter(c), now: o.Now, prefix: RedisKeyPrefix + o.KeyPrefix}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.client.Close() }

// AllowN spends n cost units of key under limit in Redis. After a failed
// call it fails at once for a short backoff.
func (r *Redis) AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error) {
	if !limit.Enabled() {
		return Result{Allowed: true}, nil
	}
	r.mu.Lock()
	down := r.now().Before(r.downUntil)
	r.mu.Unlock()
	if down {
		return Result{}, fmt.Errorf("%w: backing off after a failure", ErrUnavailable)
	}
	n, burst := overBurst(limit, n)
	res, err := r.rl.AllowN(ctx, r.prefix+key, redis_rate.Limit{Rate: limit.Rate, Burst: burst, Period: limit.Period}, n)
	if err != nil {
		if ctx.Err() == nil {
			r.mu.Lock()
			r.downUntil = r.now().Add(redisBackoff)
			r.mu.Unlock()
		}
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := Result{Allowed: res.Allowed > 0, Remaining: max(res.Remaining, 0), Reset: max(res.ResetAfter, 0)}
	if !out.Allowed {
		out.RetryAfter = max(res.RetryAfter, 0)
	}
	return out, nil
}
