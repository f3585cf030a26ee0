package authn

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// Defaults of the verified API-key cache.
const (
	defaultKeyCacheTTL  = time.Minute
	defaultKeyCacheSize = 10_000
)

// revLogger is implemented by *authdb.DB.
type revLogger interface{ RevLog() *authdb.RevWatcher }

// keyCache holds API keys that passed the full database check, by the
// SHA-256 of the key, so the hot path does no database round trip. It is
// only trusted while the revocation feed is healthy; the feed evicts keys
// that are revoked or rotated (by id) and flushes everything after an
// outage. Entries expire after ttl and never past the key's own expiry
// (for a rotated key: the end of its grace period).
type keyCache struct {
	feed RevocationFeed
	ttl  time.Duration
	size int
	now  func() time.Time

	mu      sync.RWMutex
	m       map[[32]byte]*keyEntry
	revoked map[string]time.Time // key id -> forget after
}

type keyEntry struct {
	key   *authdb.APIKey // read-only
	until time.Time
	// touched is the UnixNano of the last recorded use (0: none).
	touched atomic.Int64
}

func newKeyCache(feed RevocationFeed, ttl time.Duration, size int, now func() time.Time) *keyCache {
	if ttl == 0 {
		ttl = defaultKeyCacheTTL
	}
	if size <= 0 {
		size = defaultKeyCacheSize
	}
	c := &keyCache{feed: feed, ttl: ttl, size: size, now: now, m: map[[32]byte]*keyEntry{}, revoked: map[string]time.Time{}}
	feed.Subscribe(c.onRevocations)
	return c
}

func keyHash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// get returns the cached entry, or nil on a miss, an expired entry, or an
// unhealthy feed (then the caller reads the database).
func (c *keyCache) get(h [32]byte, now time.Time) *keyEntry {
	if c == nil || !c.feed.Healthy() {
		return nil
	}
	c.mu.RLock()
	e := c.m[h]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

// put caches k (just verified against the database) unless the feed has
// meanwhile named it revoked.
func (c *keyCache) put(h [32]byte, k *authdb.APIKey, now time.Time) *keyEntry {
	if c == nil {
		return nil
	}
	until := now.Add(c.ttl)
	if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(until) {
		until = k.ExpiresAt
	}
	e := &keyEntry{key: k, until: until}
	if !k.LastUsedAt.IsZero() {
		e.touched.Store(k.LastUsedAt.UnixNano())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.revoked[k.ID]; ok {
		if now.Before(r) {
			return e
		}
		delete(c.revoked, k.ID)
	}
	if len(c.m) >= c.size {
		for hk, old := range c.m {
			if !now.Before(old.until) {
				delete(c.m, hk)
			}
		}
		for hk := range c.m { // still full: drop arbitrary entries
			if len(c.m) < c.size*9/10 {
				break
			}
			delete(c.m, hk)
		}
	}
	c.m[h] = e
	return e
}

// onRevocations evicts keys named by the revocation log (revoked, or
// rotated: their expiry changed) and remembers their ids for ttl, so a
// lookup racing with the revocation cannot re-cache them.
func (c *keyCache) onRevocations(entries []authdb.RevEntry, reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reset {
		clear(c.m)
	}
	var ids map[string]bool
	now := c.now()
	for _, e := range entries {
		if e.Kind != authdb.RevAPIKey {
			continue
		}
		if ids == nil {
			ids = map[string]bool{}
		}
		ids[e.Subject] = true
		if len(c.revoked) >= c.size {
			for id, until := range c.revoked {
				if !now.Before(until) {
					delete(c.revoked, id)
				}
			}
			if len(c.revoked) >= c.size { // fail safe: forget everything
				clear(c.revoked)
				clear(c.m)
			}
		}
		c.revoked[e.Subject] = now.Add(2 * c.ttl)
	}
	if ids == nil {
		return
	}
	for h, e := range c.m {
		if ids[e.key.ID] {
			delete(c.m, h)
		}
	}
}
