package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/lapis-health/lapis/internal/principal"
)

// Peeker is a Limiter that can tell a key's budget without spending it.
// Memory and Redis implement it.
type Peeker interface {
	Peek(ctx context.Context, key string, limit Limit) (Result, error)
}

// peekGCRA is the GCRA state of tat at now without a charge: how many
// units could be spent at once and how long until the bucket is full.
func peekGCRA(tat, now time.Duration, l Limit) Result {
	iv := l.interval()
	tat = max(tat, now)
	allowAt := tat - time.Duration(l.burst())*iv
	return Result{Allowed: true, Remaining: max(int((now-allowAt)/iv), 0), Reset: tat - now}
}

// Peek implements Peeker: key's budget under limit, nothing spent.
func (m *Memory) Peek(_ context.Context, key string, limit Limit) (Result, error) {
	if !limit.Enabled() {
		return Result{Allowed: true}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().Sub(m.origin)
	return peekGCRA(m.tat[key], now, limit), nil
}

// Peek implements Peeker: key's budget under limit in Redis, nothing
// spent (the GCRA script with cost 0 stores the state it read).
func (r *Redis) Peek(ctx context.Context, key string, limit Limit) (Result, error) {
	if !limit.Enabled() {
		return Result{Allowed: true}, nil
	}
	res, err := r.rl.AllowN(ctx, RedisKeyPrefix+key, redis_rate.Limit{Rate: limit.Rate, Burst: limit.burst(), Period: limit.Period}, 0)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return Result{Allowed: true, Remaining: min(max(res.Remaining, 0), limit.burst()), Reset: max(res.ResetAfter, 0)}, nil
}

// Budget is a credential's rate limit and what is left of it now.
type Budget struct {
	// Limit is the limit in force (disabled: unlimited).
	Limit Limit
	// Remaining is the cost units the credential could spend at once.
	Remaining int
	// Reset is how long until the budget is full again.
	Reset time.Duration
}

// Budget tells the per-client budget of p (its credential's own limit,
// else the default of its class) without spending any of it. With the
// limiter down it reads the in-process fallback, as requests then do.
func (m *Middleware) Budget(ctx context.Context, p *principal.Principal) (Budget, error) {
	l := m.clientLimit(ctx, p)
	b := Budget{Limit: l}
	if !l.Enabled() || p.ClientID == "" {
		return b, nil
	}
	key := ScopeClient + ":" + hashID(p.ClientID)
	pk, ok := m.limiter.(Peeker)
	if !ok {
		return b, fmt.Errorf("ratelimit: the limiter cannot tell a budget")
	}
	res, err := pk.Peek(ctx, key, l)
	if err != nil {
		fb, ok := m.fallback.(Peeker)
		if !ok || !m.o.FailOpen {
			return b, err
		}
		if res, err = fb.Peek(ctx, key, l); err != nil {
			return b, err
		}
	}
	b.Remaining, b.Reset = res.Remaining, res.Reset
	return b, nil
}
