// Package ratelimit enforces Lapis's request rate limits: per client
// (OAuth client or API key), per patient (the patient in context or the
// patient a request targets) and per IP address on the unauthenticated
// OAuth endpoints.
//
// Limits use the generic cell rate algorithm (GCRA): a limit "N per
// period with burst B" admits one cost unit every period/N and lets a
// caller that has been idle spend up to B units at once (or send one
// request costing more, charged in full: it then waits until that is paid
// off). Requests are cost-weighted (a search or a write costs more than a
// read, a Bundle what its entries cost, see Costs).
//
// Two Limiter implementations share these semantics: Memory, exact and
// in-process (the default), and Redis (GCRA in a Lua script through
// github.com/go-redis/redis_rate), so that several instances share one
// limit. When Redis cannot answer, the Middleware either fails open (to
// the in-process limiter, so every instance still enforces its own copy
// of the limit) or closed (503), as configured.
//
// Responses carry Retry-After when refused, and the RateLimit-Policy and
// RateLimit fields of draft-ietf-httpapi-ratelimit-headers on every
// response the FHIR and OAuth limits saw.
//
// Concurrency is the companion limit on time rather than rate: how many
// searches, history requests and batches one client runs at once, so that
// no client can hold every database connection that serves searches.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit is "Rate cost units per Period, with bursts up to Burst units".
// The zero Limit (Rate 0) is disabled.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// Enabled reports whether the limit is in force.
func (l Limit) Enabled() bool { return l.Rate > 0 && l.Period > 0 }

// String formats l as ParseLimit reads it, e.g. "100/s burst 200".
func (l Limit) String() string {
	if !l.Enabled() {
		return "0"
	}
	return fmt.Sprintf("%d/%s burst %d", l.Rate, periodName(l.Period), l.Burst)
}

// interval is the time one cost unit takes to replenish.
func (l Limit) interval() time.Duration { return l.Period / time.Duration(l.Rate) }

// burst is the effective burst: at least 1.
func (l Limit) burst() int { return max(l.Burst, 1) }

func periodName(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	}
	return d.String()
}

// MaxRate bounds the rate of a limit: a finer emission interval than 1 µs
// is not meaningful.
const MaxRate = 1_000_000

// ParseLimit reads a limit "N/PERIOD" where PERIOD is s, m, h (also
// sec, min, hour, second, minute) or a Go duration such as 10s; "0" or ""
// disables. burst is the burst in cost units (0 means N).
func ParseLimit(s string, burst int) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Limit{}, nil
	}
	num, per, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("invalid rate limit %q: want N/PERIOD, e.g. 100/s or 6000/m", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 0 || n > MaxRate {
		return Limit{}, fmt.Errorf("invalid rate limit %q: N must be an integer from 0 to %d", s, MaxRate)
	}
	var d time.Duration
	switch p := strings.TrimSpace(per); p {
	case "s", "sec", "second":
		d = time.Second
	case "m", "min", "minute":
		d = time.Minute
	case "h", "hour":
		d = time.Hour
	default:
		d, err = time.ParseDuration(p)
		if err != nil || d < time.Second || d > 24*time.Hour || d%time.Second != 0 {
			return Limit{}, fmt.Errorf("invalid rate limit %q: PERIOD must be s, m, h or whole seconds from 1s to 24h", s)
		}
	}
	if n == 0 {
		return Limit{}, nil
	}
	if burst < 0 || burst > 10*MaxRate {
		return Limit{}, fmt.Errorf("invalid burst %d for rate limit %q", burst, s)
	}
	if burst == 0 {
		burst = n
	}
	if d/time.Duration(n) < time.Microsecond {
		return Limit{}, fmt.Errorf("invalid rate limit %q: more than one unit per microsecond", s)
	}
	return Limit{Rate: n, Period: d, Burst: burst}, nil
}

// overBurst returns the cost n (at least 1) and the burst to check it
// against. A cost above the limit's burst would never be admitted, and
// capping it to the burst would make a huge request as cheap as a
// burst-sized one; instead it is admitted only when the bucket is full
// (the caller has been idle for a whole burst) and charged in full, so
// the caller's next requests wait until it is paid off. Over time a
// caller spends no more than the rate, whatever its requests cost.
func overBurst(l Limit, n int) (cost, burst int) {
	n = max(n, 1)
	return n, max(l.burst(), n)
}

// Result is a limiter's decision on one check.
type Result struct {
	// Allowed reports whether the cost was admitted (and consumed).
	Allowed bool
	// Remaining is how many cost units could be spent right now.
	Remaining int
	// RetryAfter is, when refused, how long until the same cost would be
	// admitted; 0 when allowed.
	RetryAfter time.Duration
	// Reset is how long until the limit is back to its full burst.
	Reset time.Duration
}

// Limiter decides whether a key may spend n cost units under a limit.
// Implementations are safe for concurrent use.
type Limiter interface {
	AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error)
}

// ErrUnavailable is returned (wrapped) by a limiter whose shared backend
// cannot answer.
var ErrUnavailable = errors.New("ratelimit: backend unavailable")

// gcra is the shared GCRA step: given the stored theoretical arrival
// time tat (0 when unknown) and now, both as offsets from one origin, it
// returns the decision and the new tat (unchanged when refused). It is
// the algorithm of redis_rate's Lua script in integer nanoseconds, with
// the burst raised to the cost for a cost above the burst (see
// overBurst).
func gcra(tat, now time.Duration, l Limit, n int) (Result, time.Duration) {
	n, burst := overBurst(l, n)
	iv := l.interval()
	tat = max(tat, now)
	newTAT := tat + time.Duration(n)*iv
	burstOffset := time.Duration(burst) * iv
	allowAt := newTAT - burstOffset
	if now < allowAt {
		return Result{Allowed: false, Remaining: 0, RetryAfter: allowAt - now, Reset: tat - now}, tat
	}
	return Result{Allowed: true, Remaining: int((now - allowAt) / iv), Reset: newTAT - now}, newTAT
}
