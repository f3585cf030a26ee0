package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/principal"
)

// Per-credential limits. An OAuth client or an API key may carry its own
// limit, which replaces the server's default for its class (Options.Client,
// or Options.System for a credential with only system/ scopes):
//
//	""/"default"  no limit of its own: the class default applies
//	"none"/"0"    unlimited: no per-client limit (the per-patient limit
//	              still applies)
//	"N/PERIOD"    its own limit, with its own burst (0: N)
//
// The per-patient limit is never replaced: it protects one patient's
// record, whoever asks.

// Spellings of a credential limit.
const (
	// LimitDefault is "no limit of its own".
	LimitDefault = "default"
	// LimitNone is "unlimited".
	LimitNone = "none"
)

// CredentialLimit is a credential's own limit: Set is false when it has
// none (the class default applies); Limit is disabled for "unlimited".
type CredentialLimit struct {
	Set   bool
	Limit Limit
}

// String is the canonical spelling: "default", "none" or "N/PERIOD burst B".
func (c CredentialLimit) String() string {
	switch {
	case !c.Set:
		return LimitDefault
	case !c.Limit.Enabled():
		return LimitNone
	}
	return c.Limit.String()
}

// Spec is the stored form: "" (default), "none" or "N/PERIOD", with the
// burst apart (0 unless a limit).
func (c CredentialLimit) Spec() (limit string, burst int) {
	switch {
	case !c.Set:
		return "", 0
	case !c.Limit.Enabled():
		return LimitNone, 0
	}
	return fmt.Sprintf("%d/%s", c.Limit.Rate, periodName(c.Limit.Period)), c.Limit.Burst
}

// ParseCredentialLimit reads a credential's own limit: "" or "default"
// (none of its own), "none" or "0" (unlimited), or N/PERIOD as
// ParseLimit reads it, with burst (0 = N). A burst without a limit is an
// error.
func ParseCredentialLimit(s string, burst int) (CredentialLimit, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", LimitDefault, LimitNone, "0", "unlimited":
		if burst != 0 {
			return CredentialLimit{}, fmt.Errorf("a burst needs a rate limit N/PERIOD, not %q", s)
		}
		if s == "" || strings.EqualFold(s, LimitDefault) {
			return CredentialLimit{}, nil
		}
		return CredentialLimit{Set: true}, nil
	}
	l, err := ParseLimit(s, burst)
	if err != nil {
		return CredentialLimit{}, err
	}
	return CredentialLimit{Set: true, Limit: l}, nil
}

// CredentialLimits tells the Middleware a credential's own limit.
type CredentialLimits interface {
	// LimitFor returns the own limit of the credential p authenticated
	// with (its OAuth client, or its API key).
	LimitFor(ctx context.Context, p *principal.Principal) CredentialLimit
}

// CredentialSource reads credentials' own limits (*authdb.DB).
type CredentialSource interface {
	CredentialRateLimit(ctx context.Context, kind, id string) (authdb.RateLimit, error)
}

// CredentialFeed is the revocation-log feed that announces changes of
// credential limits (*authdb.RevWatcher).
type CredentialFeed interface {
	Subscribe(fn authdb.RevSubscriber) (cancel func())
}

// CredentialCacheOptions configures a CredentialCache.
type CredentialCacheOptions struct {
	// TTL bounds how long a limit is cached (default one minute): the
	// feed evicts changed limits at once; TTL bounds staleness should the
	// feed miss one.
	TTL time.Duration
	// Size bounds the cache (default 10,000 credentials).
	Size int
	// Logger receives read failures (nil: discarded).
	Logger *slog.Logger
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// CredentialCache is the CredentialLimits of a server: credentials' own
// limits read from src on first use and cached, so the hot path does no
// database round trip. The revocation log (feed) keeps it current: a
// change made by this process is applied before the changing call
// returns, one made by another instance or the CLI within one poll
// (~250 ms); after a feed outage everything is re-read.
type CredentialCache struct {
	src  CredentialSource
	ttl  time.Duration
	size int
	log  *slog.Logger
	now  func() time.Time

	mu  sync.RWMutex
	m   map[string]credEntry
	gen uint64 // bumped by every eviction: a read racing one is not cached
}

type credEntry struct {
	l     CredentialLimit
	until time.Time
}

// NewCredentialCache returns a cache reading src, kept current by feed
// (nil: by TTL alone).
func NewCredentialCache(src CredentialSource, feed CredentialFeed, o CredentialCacheOptions) *CredentialCache {
	c := &CredentialCache{src: src, ttl: o.TTL, size: o.Size, log: o.Logger, now: o.Now, m: map[string]credEntry{}}
	if c.ttl <= 0 {
		c.ttl = time.Minute
	}
	if c.size <= 0 {
		c.size = 10_000
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if feed != nil {
		feed.Subscribe(c.onChanges)
	}
	return c
}

// credentialKind is the kind of credential p authenticated with.
func credentialKind(p *principal.Principal) string {
	if p.Method == "apikey" {
		return authdb.CredentialAPIKey
	}
	return authdb.CredentialClient
}

// LimitFor returns the own limit of p's credential (its client, or its
// API key). A read failure counts as "none of its own" (the class
// default applies) and is not cached.
func (c *CredentialCache) LimitFor(ctx context.Context, p *principal.Principal) CredentialLimit {
	kind := credentialKind(p)
	key := authdb.RateLimitSubject(kind, p.ClientID)
	now := c.now()
	c.mu.RLock()
	e, ok := c.m[key]
	gen := c.gen
	c.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.l
	}
	r, err := c.src.CredentialRateLimit(ctx, kind, p.ClientID)
	if err != nil {
		c.log.Warn("rate limit: reading a credential's own limit failed; the default applies", "kind", kind, "id", p.ClientID, "error", err.Error())
		return CredentialLimit{}
	}
	l, err := ParseCredentialLimit(r.Limit, r.Burst)
	if err != nil { // only the admin service writes it, validated
		c.log.Warn("rate limit: a credential's stored limit does not parse; the default applies", "kind", kind, "id", p.ClientID, "error", err.Error())
		l = CredentialLimit{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return l // changed meanwhile: do not cache what may be stale
	}
	if len(c.m) >= c.size {
		for k, old := range c.m {
			if !now.Before(old.until) || len(c.m) >= c.size*9/10 {
				delete(c.m, k)
			}
		}
	}
	c.m[key] = credEntry{l: l, until: now.Add(c.ttl)}
	return l
}

// onChanges evicts the credentials the log names (a changed limit, a
// deleted client, a revoked or rotated key); reset flushes everything.
func (c *CredentialCache) onChanges(entries []authdb.RevEntry, reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reset {
		clear(c.m)
		c.gen++
	}
	for _, e := range entries {
		var key string
		switch e.Kind {
		case authdb.RevRateLimit:
			key = e.Subject
		case authdb.RevClient:
			key = authdb.RateLimitSubject(authdb.CredentialClient, e.Subject)
		case authdb.RevAPIKey:
			key = authdb.RateLimitSubject(authdb.CredentialAPIKey, e.Subject)
		default:
			continue
		}
		delete(c.m, key)
		c.gen++
	}
}
