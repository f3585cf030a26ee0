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

	"github.com/lapis-health/lapis/internal/oauth/keys"
)

// ErrInvalidToken is returned for any token that does not verify: bad
// signature, unknown key, wrong issuer or audience, expired, not yet
// valid, or revoked. Callers answer 401 without saying which.
var ErrInvalidToken = errors.New("oauth: invalid token")

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

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer and Audience must match the token's iss and aud exactly.
	Issuer, Audience string
	// Keys resolves signing keys; Revocations answers revocation.
	Keys        PublicKeys
	Revocations RevocationChecker
	// CacheSize bounds the verified-token cache (default 100,000).
	CacheSize int
	// CacheTTL bounds how long a verified token is cached (default 5
	// minutes); never beyond the token's own expiry.
	CacheTTL time.Duration
	// Now overrides the clock (tests).
	Now func() time.Time
}

// Verifier validates Lapis access tokens: signature (ES256 allow-list, key
// by kid), exp/nbf, iss, aud and revocation. Verified signatures are cached
// (bounded; entries expire no later than the token), so the hot path does
// no signature work; revocation is checked on every call against the
// database, so a revocation by any instance takes effect at once.
type Verifier struct {
	cfg VerifierConfig
	now func() time.Time

	mu    sync.RWMutex
	cache map[[32]byte]cached
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
	v := &Verifier{cfg: cfg, now: cfg.Now, cache: map[[32]byte]cached{}}
	if v.now == nil {
		v.now = time.Now
	}
	return v
}

// Verify checks an access token and returns its claims, or
// ErrInvalidToken; other errors are infrastructure failures (database
// down) and should be answered 500/503.
func (v *Verifier) Verify(ctx context.Context, token string) (*AccessClaims, error) {
	c, err := v.verifySignature(ctx, token)
	if err != nil {
		return nil, err
	}
	revoked, err := v.Revoked(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	if revoked {
		return nil, ErrInvalidToken
	}
	return c, nil
}

// Revoked reports whether the token with id jti has been revoked.
func (v *Verifier) Revoked(ctx context.Context, jti string) (bool, error) {
	return v.cfg.Revocations.Revoked(ctx, jti)
}

// maxTokenBytes bounds the tokens the verifier parses.
const maxTokenBytes = 8 << 10

// verifySignature checks everything but revocation, using the cache.
func (v *Verifier) verifySignature(ctx context.Context, token string) (*AccessClaims, error) {
	if len(token) == 0 || len(token) > maxTokenBytes {
		return nil, ErrInvalidToken
	}
	now := v.now()
	key := sha256.Sum256([]byte(token))
	v.mu.RLock()
	e, ok := v.cache[key]
	v.mu.RUnlock()
	if ok && now.Before(e.until) {
		if e.claims.NotBefore != 0 && now.Unix() < e.claims.NotBefore {
			return nil, ErrInvalidToken
		}
		return e.claims, nil
	}
	tok, err := jwt.ParseSigned(token, AccessTokenAlgorithms)
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, ErrInvalidToken
	}
	if typ, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); typ != AccessTokenType {
		return nil, ErrInvalidToken
	}
	jwk, err := v.cfg.Keys.PublicKey(ctx, tok.Headers[0].KeyID)
	if errors.Is(err, keys.ErrUnknownKey) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if jwk.Algorithm != "" && jwk.Algorithm != tok.Headers[0].Algorithm {
		return nil, ErrInvalidToken
	}
	var raw json.RawMessage
	if err := tok.Claims(jwk.Key, &raw); err != nil {
		return nil, ErrInvalidToken
	}
	var c AccessClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, ErrInvalidToken
	}
	exp := time.Unix(c.Expiry, 0)
	if c.Issuer != v.cfg.Issuer || c.Audience != v.cfg.Audience || c.ID == "" || c.Expiry == 0 ||
		!now.Before(exp) || (c.NotBefore != 0 && now.Unix() < c.NotBefore) {
		return nil, ErrInvalidToken
	}
	v.store(key, &c, earlier(exp, now.Add(v.cfg.CacheTTL)))
	return &c, nil
}

func (v *Verifier) store(key [32]byte, c *AccessClaims, until time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.cfg.CacheSize {
		now := v.now()
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
