package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/oauth/token"
)

// ErrInvalidToken is returned for any token that does not verify: bad
// signature, unknown key, wrong issuer or audience, expired, not yet
// valid, or revoked. Callers answer 401 without saying which. It is
// token.ErrInvalid.
var ErrInvalidToken = token.ErrInvalid

// refused is ErrInvalidToken for a genuine token that is expired or
// revoked: it names the token's client (token.Refused).
func refused(clientID string) error { return &token.Refused{ClientID: clientID} }

// AccessTokenAlgorithms is the allow-list for access-token signatures.
var AccessTokenAlgorithms = []jose.SignatureAlgorithm{keys.AccessTokenAlg}

// PublicKeys resolves the server's public keys by kid.
type PublicKeys interface {
	PublicKey(ctx context.Context, kid string) (*jose.JSONWebKey, error)
}

// RevocationChecker reports whether a token id was revoked.
type RevocationChecker interface {
	Revoked(ctx context.Context, jti string) (bool, error)
}

// TokenRevocationChecker is a RevocationChecker that also refuses the
// tokens of suspended clients, in one query (*authdb.DB). The Verifier
// uses it when its Revocations implements it.
type TokenRevocationChecker interface {
	TokenRevoked(ctx context.Context, jti, clientID string) (bool, error)
}

// RevocationFeed delivers the revocation log (*authdb.RevWatcher): new
// entries to subscribers, and whether it is current (Healthy).
type RevocationFeed interface {
	Subscribe(fn authdb.RevSubscriber) (cancel func())
	Healthy() bool
}

// revLogger is implemented by *authdb.DB.
type revLogger interface{ RevLog() *authdb.RevWatcher }

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer and Audience must match the token's iss and aud exactly.
	Issuer, Audience string
	// Keys resolves signing keys; Revocations answers revocation.
	Keys        PublicKeys
	Revocations RevocationChecker
	// Feed is the revocation log. With a healthy feed, a cached token is
	// accepted without asking Revocations (no database round trip); the
	// feed evicts revoked tokens. Default: Revocations.RevLog() when
	// Revocations is an *authdb.DB; nil: revocation is checked on every
	// call.
	Feed RevocationFeed
	// CacheSize bounds the verified-token cache (default 100,000).
	CacheSize int
	// CacheTTL bounds how long a verified token is cached (default 5
	// minutes); never beyond the token's own expiry.
	CacheTTL time.Duration
	// Now overrides the clock (tests).
	Now func() time.Time
	// LegacyHighSBefore: a token issued (iat) before this time may carry
	// a high-S ECDSA signature — Lapis releases before the low-S rule
	// signed with either form. Tokens issued later must be low-S (see
	// keys.LowS), so each token has exactly one valid string. Default:
	// DefaultLegacyHighSWindow after NewVerifier, which covers the
	// instances of a rolling upgrade; one access-token lifetime later no
	// high-S token is accepted any more.
	LegacyHighSBefore time.Time
}

// DefaultLegacyHighSWindow is how long after a Verifier starts tokens
// signed with a high-S ECDSA signature (by an older Lapis still running
// during an upgrade) are still issued and accepted.
const DefaultLegacyHighSWindow = 10 * time.Minute

// Verifier validates Lapis access tokens: signature (ES256 allow-list, key
// by kid, low-S form, canonical encoding), exp/nbf, iss, aud and
// revocation.
//
// A token that passed every check, revocation included, is cached
// (bounded; entries expire no later than the token and after CacheTTL).
// While the revocation feed is healthy, a cache hit is the whole check: no
// signature work and no database round trip. Revocation still takes
// effect quickly everywhere:
//
//   - revoked by this process (same *authdb.DB): evicted before the
//     revoking call returns;
//   - revoked by another instance: evicted when the feed's poller reads
//     the revocation log, within ~250 ms (one poll interval);
//   - feed unhealthy (no successful poll for 2 s): every call checks
//     revocation in the database again (fail closed), and the cache is
//     flushed when the feed recovers.
//
// Revoked jtis seen on the feed are remembered (bounded, for CacheTTL) so
// a verification racing with the revocation cannot re-cache the token.
// A cold miss does the full check, revocation in the database included.
type Verifier struct {
	cfg VerifierConfig
	now func() time.Time

	mu      sync.RWMutex
	cache   map[[32]byte]cached
	revoked map[string]time.Time // jti -> forget after
	// clients are client ids the feed named (deleted or suspended) ->
	// forget after: their tokens are not cached meanwhile.
	clients map[string]time.Time
}

type cached struct {
	claims *AccessClaims
	until  time.Time
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg VerifierConfig) *Verifier {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100_000
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	v := &Verifier{cfg: cfg, now: cfg.Now, cache: map[[32]byte]cached{}, revoked: map[string]time.Time{}, clients: map[string]time.Time{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.cfg.LegacyHighSBefore.IsZero() {
		v.cfg.LegacyHighSBefore = v.now().Add(DefaultLegacyHighSWindow)
	}
	if v.cfg.Feed == nil {
		if rl, ok := cfg.Revocations.(revLogger); ok {
			if w := rl.RevLog(); w != nil {
				v.cfg.Feed = w
			}
		}
	}
	if v.cfg.Feed != nil {
		v.cfg.Feed.Subscribe(v.onRevocations)
	}
	return v
}

// onRevocations evicts what the revocation log names: tokens by jti (and
// the jti is remembered), every token of a deleted or suspended client
// (and the client is remembered); reset flushes the cache.
func (v *Verifier) onRevocations(entries []authdb.RevEntry, reset bool) {
	if f, ok := v.cfg.Keys.(interface{ Forget() }); ok && reset {
		// Keys may have been replaced (a wiped database): read them
		// again before the cache is flushed.
		f.Forget()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if reset {
		clear(v.cache)
	}
	var jtis, clients map[string]bool
	now := v.now()
	for _, e := range entries {
		switch e.Kind {
		case authdb.RevToken:
			if jtis == nil {
				jtis = map[string]bool{}
			}
			jtis[e.Subject] = true
			v.rememberRevoked(e.Subject, now)
		case authdb.RevClient:
			if clients == nil {
				clients = map[string]bool{}
			}
			clients[e.Subject] = true
			v.rememberClient(e.Subject, now)
		}
	}
	if jtis == nil && clients == nil {
		return
	}
	for k, c := range v.cache {
		if jtis[c.claims.ID] || clients[c.claims.ClientID] {
			delete(v.cache, k)
		}
	}
}

// rememberClient records a client the feed named (deleted or
// suspended) for CacheTTL (v.mu held), so a verification racing with the
// suspension cannot re-cache one of its tokens. Bounded like
// rememberRevoked.
func (v *Verifier) rememberClient(id string, now time.Time) {
	v.remember(v.clients, id, now)
}

// rememberRevoked records a revoked jti for CacheTTL (v.mu held). The set
// is bounded by CacheSize; when it is full of live entries, the whole
// cache and set are dropped (safe: every token is then checked in the
// database again).
func (v *Verifier) rememberRevoked(jti string, now time.Time) {
	v.remember(v.revoked, jti, now)
}

// remember records key in set (v.revoked or v.clients) for CacheTTL (v.mu
// held). The set is bounded by CacheSize: expired entries go first; when
// it is still full of live entries, the set and the token cache are
// dropped.
func (v *Verifier) remember(set map[string]time.Time, key string, now time.Time) {
	if len(set) >= v.cfg.CacheSize {
		for k, until := range set {
			if !now.Before(until) {
				delete(set, k)
			}
		}
		if len(set) >= v.cfg.CacheSize {
			clear(set)
			clear(v.cache)
		}
	}
	set[key] = now.Add(v.cfg.CacheTTL)
}

// Verify checks an access token and returns its claims, or
// ErrInvalidToken; other errors are infrastructure failures (database
// down) and should be answered 500/503.
func (v *Verifier) Verify(ctx context.Context, token string) (*AccessClaims, error) {
	c, key, until, hit, err := v.check(ctx, token)
	if err != nil {
		return nil, err
	}
	feedOK := v.cfg.Feed != nil && v.cfg.Feed.Healthy()
	if hit && feedOK {
		return c, nil // revoked tokens were evicted by the feed
	}
	revoked, err := v.tokenRevoked(ctx, c)
	if err != nil {
		return nil, err
	}
	if revoked {
		v.evict(key)
		return nil, refused(c.ClientID)
	}
	if !hit {
		v.store(key, c, until)
	}
	return c, nil
}

func (v *Verifier) evict(key [32]byte) {
	v.mu.Lock()
	delete(v.cache, key)
	v.mu.Unlock()
}

// tokenRevoked reports whether the token was revoked or its client is
// suspended (when Revocations can tell).
func (v *Verifier) tokenRevoked(ctx context.Context, c *AccessClaims) (bool, error) {
	if tr, ok := v.cfg.Revocations.(TokenRevocationChecker); ok {
		return tr.TokenRevoked(ctx, c.ID, c.ClientID)
	}
	return v.Revoked(ctx, c.ID)
}

// Revoked reports whether the token with id jti has been revoked.
func (v *Verifier) Revoked(ctx context.Context, jti string) (bool, error) {
	return v.cfg.Revocations.Revoked(ctx, jti)
}

// maxTokenBytes bounds the tokens the verifier parses.
const maxTokenBytes = 8 << 10

// verifySignature checks everything but revocation, using the cache (a
// miss is not cached: only fully verified tokens are).
func (v *Verifier) verifySignature(ctx context.Context, token string) (*AccessClaims, error) {
	c, _, _, _, err := v.check(ctx, token)
	return c, err
}

// check checks everything but revocation, using the cache. It returns the
// cache key and, on a miss, until when the claims may be cached; hit
// reports a cache hit.
func (v *Verifier) check(ctx context.Context, token string) (c *AccessClaims, key [32]byte, until time.Time, hit bool, err error) {
	if len(token) == 0 || len(token) > maxTokenBytes {
		return nil, key, until, false, ErrInvalidToken
	}
	now := v.now()
	key = sha256.Sum256([]byte(token))
	v.mu.RLock()
	e, ok := v.cache[key]
	v.mu.RUnlock()
	if ok && now.Before(e.until) {
		if e.claims.NotBefore != 0 && now.Unix() < e.claims.NotBefore {
			return nil, key, until, false, ErrInvalidToken
		}
		return e.claims, key, e.until, true, nil
	}
	tok, err := jwt.ParseSigned(token, AccessTokenAlgorithms)
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, key, until, false, ErrInvalidToken
	}
	if typ, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); typ != AccessTokenType {
		return nil, key, until, false, ErrInvalidToken
	}
	// One token, one string: the signature must be canonically encoded
	// (go-jose's decoder ignores the unused bits of the last character)
	// and, checked below once iat is known, in its low-S form.
	sig, err := keys.SignatureOf(token)
	if err != nil {
		return nil, key, until, false, ErrInvalidToken
	}
	jwk, err := v.cfg.Keys.PublicKey(ctx, tok.Headers[0].KeyID)
	if errors.Is(err, keys.ErrUnknownKey) {
		return nil, key, until, false, ErrInvalidToken
	}
	if err != nil {
		return nil, key, until, false, err
	}
	if jwk.Algorithm != "" && jwk.Algorithm != tok.Headers[0].Algorithm {
		return nil, key, until, false, ErrInvalidToken
	}
	var raw json.RawMessage
	if err := tok.Claims(jwk.Key, &raw); err != nil {
		return nil, key, until, false, ErrInvalidToken
	}
	c = new(AccessClaims)
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, key, until, false, ErrInvalidToken
	}
	exp := time.Unix(c.Expiry, 0)
	if c.Issuer != v.cfg.Issuer || c.Audience != v.cfg.Audience || c.ID == "" || c.Expiry == 0 ||
		(c.NotBefore != 0 && now.Unix() < c.NotBefore) {
		return nil, key, until, false, ErrInvalidToken
	}
	if !now.Before(exp) {
		return nil, key, until, false, refused(c.ClientID)
	}
	if !keys.LowS(jose.SignatureAlgorithm(tok.Headers[0].Algorithm), sig) && c.IssuedAt >= v.cfg.LegacyHighSBefore.Unix() {
		return nil, key, until, false, ErrInvalidToken
	}
	return c, key, earlier(exp, now.Add(v.cfg.CacheTTL)), false, nil
}

// store caches verified claims, unless the feed has meanwhile named the
// jti as revoked (a verification racing with a revocation).
func (v *Verifier) store(key [32]byte, c *AccessClaims, until time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if r, ok := v.revoked[c.ID]; ok {
		if now.Before(r) {
			return
		}
		delete(v.revoked, c.ID)
	}
	if r, ok := v.clients[c.ClientID]; ok {
		if now.Before(r) {
			return
		}
		delete(v.clients, c.ClientID)
	}
	if len(v.cache) >= v.cfg.CacheSize {
		for k, e := range v.cache {
			if !now.Before(e.until) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache { // still full: drop arbitrary entries
			if len(v.cache) < v.cfg.CacheSize*9/10 {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = cached{claims: c, until: until}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
