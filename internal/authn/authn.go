// Package authn authenticates callers of the FHIR API. New returns the
// middleware for fhirapi.Config.Middleware: it accepts
//
//   - Authorization: Bearer <access token> issued by the Lapis
//     authorization server (checked by the oauth Verifier: signature,
//     exp/nbf, iss, aud, revocation; verified signatures are cached there);
//   - Authorization: Bearer <API key> and X-API-Key: <API key> (recognised
//     by apikey.Prefix; format and checksum are checked before any lookup);
//   - Authorization: Basic <client id:secret> for clients with Basic
//     enabled (lapis client basic enable), with lockout after repeated
//     failures per client id and per address;
//
// and puts a *principal.Principal into the request context. It never
// decides what the caller may do: that is package access.
//
// The authenticated hot path does no database round trip: access tokens
// that passed every check are cached by the Verifier, and API keys that
// passed the database check are cached here (by the key's SHA-256, for
// APIKeyCacheTTL, never past the key's expiry or rotation grace; the
// last-used time is still written at most once per TouchInterval, off
// the request path). Both
// caches are kept honest by the revocation log (authdb.RevWatcher), which
// every revocation appends to in its own transaction:
//
//   - a revocation, rotation or client deletion made by this process is
//     evicted before the revoking call returns;
//   - one made by any other process (another instance, the lapis CLI) is
//     evicted within one poll interval, ~250 ms;
//   - when the log cannot be read for 2 s, both caches are bypassed and
//     every request is checked in the database (fail closed) until the
//     poller recovers, when the caches are flushed.
//
// A cold miss does the full database check. Basic clients are read from
// the database on every request (no cache); only the presence of any
// Basic-enabled client (for the WWW-Authenticate challenge) is cached, for
// basicProbeTTL.
//
// Rejections are 401 with WWW-Authenticate (RFC 6750) and an
// OperationOutcome that says nothing about why beyond "missing",
// "malformed" or "invalid"; credentials are never logged.
package authn

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/oauth/token"
	"github.com/lapis-health/lapis/internal/principal"
)

// Methods recorded in principal.Principal.Method.
const (
	MethodBearer = "bearer"
	MethodAPIKey = "apikey"
	MethodBasic  = "basic"
)

// HeaderAPIKey is the alternative header for API keys.
const HeaderAPIKey = "X-API-Key"

// TokenVerifier verifies access tokens (*oauth.Verifier). It returns
// token.ErrInvalid for any token that does not verify; other errors
// are infrastructure failures.
type TokenVerifier interface {
	Verify(ctx context.Context, tok string) (*token.Claims, error)
}

// RevocationFeed delivers the revocation log (*authdb.RevWatcher): new
// entries to subscribers, and whether it is current (Healthy).
type RevocationFeed interface {
	Subscribe(fn authdb.RevSubscriber) (cancel func())
	Healthy() bool
}

// APIKeyStore reads API keys (*authdb.DB).
type APIKeyStore interface {
	// APIKeyByHash returns the key with that SHA-256, or authdb.ErrNotFound.
	APIKeyByHash(ctx context.Context, hash []byte) (*authdb.APIKey, error)
	// TouchAPIKeyFrom records a use, and the caller's address, unless one
	// within minInterval is recorded.
	TouchAPIKeyFrom(ctx context.Context, id string, at time.Time, addr string, minInterval time.Duration) error
}

// BasicStore reads clients and their Basic setting and keeps the failure
// counts of the lockout (*authdb.DB).
type BasicStore interface {
	Client(ctx context.Context, id string) (*authdb.Client, error)
	BasicEnabled(ctx context.Context, clientID string) (bool, error)
	AnyBasicEnabled(ctx context.Context) (bool, error)
	RecordLoginFailure(ctx context.Context, key string, at time.Time) error
	LoginFailures(ctx context.Context, key string, since time.Time) (int, error)
	ClearLoginFailures(ctx context.Context, key string) error
}

// Lockout is the Basic lockout policy: after MaxFailures failures for one
// client id, or MaxFailuresPerIP from one address, within Window, Basic
// requests for that id or from that address are refused (with the same
// 401 as a wrong secret) until the window has passed.
type Lockout struct {
	MaxFailures      int
	MaxFailuresPerIP int
	Window           time.Duration
}

// DefaultLockout: 10 failures per client id or per address in 15 minutes.
var DefaultLockout = Lockout{MaxFailures: 10, MaxFailuresPerIP: 10, Window: 15 * time.Minute}

// Config configures the middleware.
type Config struct {
	// Verifier checks access tokens; nil rejects every JWT bearer token.
	Verifier TokenVerifier
	// APIKeys looks API keys up; nil rejects every API key.
	APIKeys APIKeyStore
	// Basic enables HTTP Basic for clients that have it enabled; nil
	// rejects every Basic credential and offers no Basic challenge.
	Basic BasicStore
	// Realm is the WWW-Authenticate realm (default "lapis").
	Realm string
	// Lockout is the Basic lockout policy (zero: DefaultLockout).
	Lockout Lockout
	// TouchInterval bounds how often an API key's last-used time is
	// written (default one minute).
	TouchInterval time.Duration
	// Revocations is the revocation-log feed that keeps the API-key cache
	// honest (default: APIKeys.RevLog() when APIKeys is, or embeds, an
	// *authdb.DB). With no feed, API keys are not cached: every request
	// reads the database.
	Revocations RevocationFeed
	// APIKeyCacheTTL bounds how long a verified API key is cached (default
	// one minute; negative: no cache).
	APIKeyCacheTTL time.Duration
	// APIKeyCacheSize bounds the API-key cache (default 10,000 keys).
	APIKeyCacheSize int
	// Logger receives rejections (never credentials) and infrastructure
	// errors; nil = slog.Default().
	Logger *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
	// Audit, when set, receives authentication failures and API-key use
	// (at most once per key per TouchInterval); never credentials.
	Audit audit.Sink
}

// basicProbeTTL is how long "is Basic enabled for any client" is cached.
const basicProbeTTL = 5 * time.Second

// maxCredentialBytes bounds any credential the middleware looks at.
const maxCredentialBytes = 8 << 10

type middleware struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	next http.Handler

	challengeBearer, challengeBasic string

	keys *keyCache // nil: no API-key cache
	// touches holds a slot per last-used write in flight (touch).
	touches chan struct{}

	mu          sync.Mutex
	basicAny    bool
	basicProbed time.Time
}

// New returns the authentication middleware.
func New(cfg Config) func(http.Handler) http.Handler {
	if cfg.Realm == "" {
		cfg.Realm = "lapis"
	}
	if cfg.Lockout.MaxFailures <= 0 {
		cfg.Lockout.MaxFailures = DefaultLockout.MaxFailures
	}
	if cfg.Lockout.MaxFailuresPerIP <= 0 {
		cfg.Lockout.MaxFailuresPerIP = DefaultLockout.MaxFailuresPerIP
	}
	if cfg.Lockout.Window <= 0 {
		cfg.Lockout.Window = DefaultLockout.Window
	}
	if cfg.TouchInterval <= 0 {
		cfg.TouchInterval = time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	realm := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(cfg.Realm)
	if cfg.Revocations == nil {
		if rl, ok := cfg.APIKeys.(revLogger); ok {
			if w := rl.RevLog(); w != nil {
				cfg.Revocations = w
			}
		}
	}
	var keys *keyCache
	if cfg.APIKeys != nil && cfg.Revocations != nil && cfg.APIKeyCacheTTL >= 0 {
		keys = newKeyCache(cfg.Revocations, cfg.APIKeyCacheTTL, cfg.APIKeyCacheSize, now)
	}
	touches := make(chan struct{}, maxTouches)
	return func(next http.Handler) http.Handler {
		return &middleware{cfg: cfg, log: log, now: now, next: next, keys: keys, touches: touches,
			challengeBearer: `Bearer realm="` + realm + `"`, challengeBasic: `Basic realm="` + realm + `"`}
	}
}

// failure kinds.
type failure int

const (
	missing   failure = iota + 1 // no credential: challenge only
	malformed                    // error="invalid_request"
	invalid                      // error="invalid_token"
)

// errRejected carries a failure kind and a log reason (never a secret).
type errRejected struct {
	kind   failure
	reason string
	// clientID is the credential's client (API key id) when the
	// credential is genuine but refused (revoked, expired, address not
	// allowed): its activity shows the refusal.
	clientID string
	// network: the credential was refused for the caller's address (an
	// API key's allow-list). The answer is the same 401; the audit trail
	// records an allow-list refusal, which the alert rules and the
	// activity's causes count as such.
	network bool
}

func (e *errRejected) Error() string { return e.reason }

func reject(kind failure, reason string) error { return &errRejected{kind: kind, reason: reason} }

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, err := m.authenticate(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	m.next.ServeHTTP(w, r.WithContext(principal.NewContext(r.Context(), p)))
}

func (m *middleware) authenticate(r *http.Request) (*principal.Principal, error) {
	authz := r.Header.Values("Authorization")
	keys := r.Header.Values(HeaderAPIKey)
	switch {
	case len(authz)+len(keys) == 0:
		return nil, reject(missing, "no credential")
	case len(authz)+len(keys) > 1:
		return nil, reject(malformed, "more than one credential")
	case len(keys) == 1:
		return m.apiKey(r, strings.TrimSpace(keys[0]))
	}
	h := authz[0]
	if len(h) > maxCredentialBytes {
		return nil, reject(malformed, "credential too long")
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(h), " ")
	cred = strings.TrimSpace(cred)
	if cred == "" {
		return nil, reject(malformed, "empty credential")
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		if apikey.IsKey(cred) {
			return m.apiKey(r, cred)
		}
		return m.bearer(r, cred)
	case strings.EqualFold(scheme, "Basic"):
		return m.basic(r, cred)
	}
	return nil, reject(malformed, "unsupported authorization scheme")
}

func (m *middleware) bearer(r *http.Request, tok string) (*principal.Principal, error) {
	if m.cfg.Verifier == nil {
		return nil, reject(invalid, "bearer tokens not accepted")
	}
	c, err := m.cfg.Verifier.Verify(r.Context(), tok)
	if errors.Is(err, token.ErrInvalid) {
		// A genuine token, expired or revoked, names its client: the
		// refusal shows in that client's activity.
		var ref *token.Refused
		if errors.As(err, &ref) {
			return nil, &errRejected{kind: invalid, reason: "access token of client " + ref.ClientID + " expired or revoked", clientID: ref.ClientID}
		}
		return nil, reject(invalid, "invalid access token")
	}
	if err != nil {
		return nil, err
	}
	return &principal.Principal{Method: MethodBearer, ClientID: c.ClientID, Subject: c.Subject, FHIRUser: relativeFHIRUser(c.FHIRUser),
		Scopes: c.Scopes(), Patient: c.Patient, TokenID: c.ID}, nil
}

// relativeFHIRUser turns the absolute fhirUser of a token
// ("https://host/fhir/Practitioner/1") into "Practitioner/1".
func relativeFHIRUser(u string) string {
	if !strings.Contains(u, "://") {
		return u
	}
	i := strings.LastIndexByte(u, '/')
	if i <= 0 {
		return u
	}
	j := strings.LastIndexByte(u[:i], '/')
	return u[j+1:]
}

// dummyKeyHash keeps a failed lookup's work equal to a real comparison.
var dummyKeyHash = apikey.Hash("lapis-no-such-key")

func (m *middleware) apiKey(r *http.Request, key string) (*principal.Principal, error) {
	if m.cfg.APIKeys == nil {
		return nil, reject(invalid, "api keys not accepted")
	}
	if !apikey.ValidFormat(key) {
		return nil, reject(invalid, "api key: bad format or checksum")
	}
	ctx := r.Context()
	hk := keyHash(key)
	h := hk[:]
	now := m.now()
	ent := m.keys.get(hk, now)
	var k *authdb.APIKey
	if ent != nil {
		k = ent.key
	} else {
		var err error
		k, err = m.cfg.APIKeys.APIKeyByHash(ctx, h)
		if errors.Is(err, authdb.ErrNotFound) {
			subtle.ConstantTimeCompare(h, dummyKeyHash)
			return nil, reject(invalid, "api key: unknown")
		}
		if err != nil {
			return nil, err
		}
	}
	switch {
	case subtle.ConstantTimeCompare(h, k.Hash) != 1:
		return nil, reject(invalid, "api key: unknown")
	case !k.RevokedAt.IsZero():
		return nil, &errRejected{kind: invalid, reason: "api key " + k.ID + ": revoked", clientID: k.ID}
	case !k.Valid(now):
		return nil, &errRejected{kind: invalid, reason: "api key " + k.ID + ": expired", clientID: k.ID}
	case k.Suspended():
		return nil, &errRejected{kind: invalid, reason: "api key " + k.ID + ": suspended", clientID: k.ID}
	case len(k.AllowIPs) > 0 && !apikey.Allowed(k.AllowIPs, httpx.ClientIP(r)):
		return nil, &errRejected{kind: invalid, reason: "api key " + k.ID + ": address not allowed", clientID: k.ID, network: true}
	}
	if ent == nil {
		ent = m.keys.put(hk, k, now)
	}
	last, due := k.LastUsedAt, false
	if ent != nil {
		t := ent.touched.Load()
		if t == 0 || now.Sub(time.Unix(0, t)) >= m.cfg.TouchInterval {
			due = ent.touched.CompareAndSwap(t, now.UnixNano()) // one writer per interval
		}
	} else {
		due = last.IsZero() || now.Sub(last) >= m.cfg.TouchInterval
	}
	if due {
		if m.cfg.Audit != nil {
			m.cfg.Audit.Record(ctx, audit.Event{Time: now, Kind: audit.KindAPIKeyUsed, Action: "E", Outcome: audit.OutcomeSuccess,
				Description: "API key used", ClientID: k.ID, Method: MethodAPIKey, CredentialID: k.ID, Patient: k.Patient,
				Address: httpx.ClientIP(r).String()})
		}
		m.touch(ctx, k.ID, now, httpx.ClientIP(r).String())
	}
	return &principal.Principal{Method: MethodAPIKey, ClientID: k.ID, Scopes: k.Scopes, Patient: k.Patient, TokenID: k.ID}, nil
}

// maxTouches bounds the last-used writes in flight at once; beyond it a
// use is not recorded (the next one after TouchInterval is).
const maxTouches = 16

// touch records a use of API key id off the request path: the write
// waits for the database's write lock (on SQLite the one writer
// connection, which audit and other batches hold for milliseconds at a
// time), and a request must not wait for bookkeeping. At most one write
// per key per TouchInterval is due (the caller's compare-and-swap), and
// at most maxTouches run at once.
func (m *middleware) touch(ctx context.Context, id string, at time.Time, addr string) {
	select {
	case m.touches <- struct{}{}:
	default:
		m.log.Debug("authn: api key use not recorded, too many writes in flight", "key_id", id)
		return
	}
	ctx, cancel := context.WithTimeout(database.Background(context.WithoutCancel(ctx)), 30*time.Second)
	go func() {
		defer func() { <-m.touches }()
		defer cancel()
		if err := m.cfg.APIKeys.TouchAPIKeyFrom(ctx, id, at, addr, m.cfg.TouchInterval); err != nil {
			m.log.Warn("authn: recording api key use failed", "key_id", id, "error", err.Error())
		}
	}()
}

func decodeBasic(cred string) (id, secret string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", false
	}
	id, secret, found := strings.Cut(string(raw), ":")
	if !found || id == "" || secret == "" {
		return "", "", false
	}
	return id, secret, true
}

// dummySecretHash keeps an unknown client's work equal to a known one's.
var dummySecretHash = authdb.HashSecret("lapis-no-such-client")

func (m *middleware) basic(r *http.Request, cred string) (*principal.Principal, error) {
	id, secret, ok := decodeBasic(cred)
	if !ok {
		return nil, reject(malformed, "basic: malformed credential")
	}
	st := m.cfg.Basic
	if st == nil {
		return nil, reject(invalid, "basic not accepted")
	}
	ctx := r.Context()
	now := m.now()
	lo := m.cfg.Lockout
	clientKey, ipKey := "basic:client:"+id, "basic:ip:"+httpx.ClientIP(r).String()
	since := now.Add(-lo.Window)
	nClient, err := st.LoginFailures(ctx, clientKey, since)
	if err != nil {
		return nil, err
	}
	nIP, err := st.LoginFailures(ctx, ipKey, since)
	if err != nil {
		return nil, err
	}
	if nClient >= lo.MaxFailures || nIP >= lo.MaxFailuresPerIP {
		return nil, reject(invalid, "basic: locked out")
	}
	got := authdb.HashSecret(secret)
	c, err := st.Client(ctx, id)
	if errors.Is(err, authdb.ErrNotFound) {
		c, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	enabled := false
	if c != nil {
		if enabled, err = st.BasicEnabled(ctx, id); err != nil {
			return nil, err
		}
	}
	var match bool
	if c != nil {
		// The current secret, or the previous one during a rotation's
		// overlap.
		match = c.SecretMatches(secret, now)
	} else {
		match = subtle.ConstantTimeCompare(got, dummySecretHash) == 1
	}
	if c == nil || !enabled || c.Type != authdb.Confidential || !match || c.Suspended() {
		for _, k := range []string{clientKey, ipKey} {
			if err := st.RecordLoginFailure(ctx, k, now); err != nil {
				return nil, err
			}
		}
		// The id is logged only for a registered client: an unknown "id"
		// may be a secret typed into the wrong field.
		reason := "basic: unknown client"
		if c != nil {
			reason = "basic: bad secret or basic not enabled for client " + c.ID
		}
		return nil, reject(invalid, reason)
	}
	if nClient > 0 {
		if err := st.ClearLoginFailures(ctx, clientKey); err != nil {
			m.log.Warn("authn: clearing basic failures failed", "client_id", id, "error", err.Error())
		}
	}
	return &principal.Principal{Method: MethodBasic, ClientID: c.ID, Scopes: c.Scopes, TokenID: "basic:" + c.ID}, nil
}

// basicOffered reports whether any client has Basic enabled (cached for
// basicProbeTTL).
func (m *middleware) basicOffered(ctx context.Context) bool {
	if m.cfg.Basic == nil {
		return false
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.basicProbed.IsZero() && now.Sub(m.basicProbed) < basicProbeTTL && !now.Before(m.basicProbed) {
		return m.basicAny
	}
	on, err := m.cfg.Basic.AnyBasicEnabled(ctx)
	if err != nil {
		m.log.Warn("authn: basic probe failed", "error", err.Error())
		return m.basicAny
	}
	m.basicAny, m.basicProbed = on, now
	return on
}

var (
	errMissing   = outcome.New(http.StatusUnauthorized, "login", "Authentication is required")
	errMalformed = outcome.New(http.StatusUnauthorized, "login", "The credential is malformed")
	errInvalid   = outcome.New(http.StatusUnauthorized, "login", "The credential is invalid, expired or revoked")
	errInternal  = outcome.New(http.StatusServiceUnavailable, "transient", "Authentication is temporarily unavailable")
)

func (m *middleware) fail(w http.ResponseWriter, r *http.Request, err error) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	var rej *errRejected
	if !errors.As(err, &rej) {
		if r.Context().Err() != nil {
			return // the client went away; nothing to answer or report
		}
		m.log.Error("authn: authentication failed", "error", err.Error(), "method", r.Method, "path", r.URL.Path)
		outcome.Write(w, errInternal)
		return
	}
	bearer, body := m.challengeBearer, errMissing
	switch rej.kind {
	case malformed:
		bearer, body = bearer+`, error="invalid_request"`, errMalformed
	case invalid:
		bearer, body = bearer+`, error="invalid_token"`, errInvalid
	}
	h.Add("WWW-Authenticate", bearer)
	if m.basicOffered(r.Context()) {
		h.Add("WWW-Authenticate", m.challengeBasic)
	}
	if rej.kind != missing {
		m.log.Info("authn: rejected", "reason", rej.reason, "remote", httpx.ClientIP(r).String(), "path", r.URL.Path)
	}
	if m.cfg.Audit != nil {
		kind, cause := audit.KindAuthnFailure, httpx.CauseCredential
		desc := map[failure]string{missing: "credential missing", malformed: "credential malformed", invalid: "credential invalid"}[rej.kind]
		if rej.network {
			kind, cause, desc = audit.KindNetworkRefused, httpx.CauseNetwork, "address not on the API key's allow-list"
		}
		m.cfg.Audit.Record(r.Context(), audit.Event{Time: m.now(), Kind: kind, Action: "E", Outcome: audit.OutcomeMinor,
			Description: desc, Status: http.StatusUnauthorized, Address: httpx.ClientAddr(r), UserAgent: truncateUA(r.UserAgent()),
			ClientID: rej.clientID, CredentialID: rej.clientID, Route: audit.RouteShape(r), Cause: string(cause)})
	}
	outcome.Write(w, body)
}

// truncateUA bounds the user agent kept in audit events.
func truncateUA(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}
