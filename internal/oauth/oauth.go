// Package oauth is the protocol core of Lapis's OAuth 2.0 / SMART App
// Launch authorization server: discovery documents, the JWKS, the token
// endpoint (client authentication, then the grant handlers of package
// oauth/grant, which New registers), token introspection (RFC 7662) and
// revocation (RFC 7009), OpenID Connect UserInfo, the SMART style
// document, the scope and redirect-URI policy of /authorize (AllowedScopes,
// ScopesForUser, RedirectAllowed), authorization codes (IssueCode),
// accounts and passwords, and the Verifier the FHIR API uses to check
// bearer access tokens.
//
// Endpoints served by Mount, all under the FHIR base URL, which is also
// the issuer:
//
//	[base]/.well-known/smart-configuration  SMART discovery
//	[base]/.well-known/openid-configuration OpenID Connect discovery
//	[base]/auth/jwks                         public signing keys
//	[base]/auth/token                        token endpoint
//	[base]/auth/introspect                   introspection
//	[base]/auth/revoke                       revocation
//	[base]/auth/userinfo                     OpenID Connect UserInfo
//	[base]/auth/smart-style.json             SMART style document
//
// The browser pages — /auth/authorize and its login, consent and patient
// picker pages, logout, the EHR launch page and the apps page — are
// package authorize, built on a Server (authorize.New(srv).Mount(mux));
// their paths are declared here (PathAuthorize, PathLogin, …) because the
// discovery documents and IPLimitedEndpoints name them.
//
// The token endpoint is a composer: each grant type (client_credentials,
// authorization_code, refresh_token) is a GrantHandler, and client
// authentication (client_secret_basic, client_secret_post,
// private_key_jwt) runs before the handler. Failures are *Error values
// that carry their RFC 6749 code, description and HTTP status. Protocol
// logic never touches SQL: it uses the narrow storage interfaces below,
// implemented by internal/authdb. Signing keys live in the keys
// subpackage, clients' JWKS documents are fetched by jwksfetch, and the
// access-token claims are in the leaf package token. The admin API is
// package adminapi.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/oauth/grant"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/oauth/keys"
)

// Paths of the endpoints, relative to the FHIR base URL.
const (
	PathSMARTConfiguration  = "/.well-known/smart-configuration"
	PathOpenIDConfiguration = "/.well-known/openid-configuration"
	PathJWKS                = "/auth/jwks"
	PathAuthorize           = "/auth/authorize"
	PathToken               = "/auth/token"
	PathIntrospect          = "/auth/introspect"
	PathRevoke              = "/auth/revoke"
)

// IPLimitedEndpoints are the endpoints, relative to the FHIR base, that
// the per-IP rate limit of `lapis serve` guards (--rate-limit-auth-ip),
// mapped to whether they are pages a browser loads (refused in plain
// text) rather than JSON endpoints: every endpoint that authenticates a
// client, every page that takes a password (PathLogin, PathApps: the
// callers of signIn) and the pages of an authorization request. Not
// limited: the discovery documents, the JWKS and the SMART style (public,
// cacheable), the launch and logout pages (they need a signed-in session
// and its CSRF token) and the admin API (bearer tokens with
// system/lapis.admin).
func IPLimitedEndpoints() map[string]bool {
	return map[string]bool{
		PathAuthorize: true, PathLogin: true, PathConsent: true, PathSelectPatient: true, PathApps: true,
		PathToken: false, PathIntrospect: false, PathRevoke: false,
	}
}

// MaxBackendTokenLifetime caps access tokens of client_credentials grants
// (SMART Backend Services recommends five minutes).
const MaxBackendTokenLifetime = 5 * time.Minute

// ClientStore looks up registered clients.
type ClientStore interface {
	Client(ctx context.Context, id string) (*authdb.Client, error)
}

// AssertionStore remembers client-assertion ids until they expire, so a
// replayed assertion is refused.
type AssertionStore interface {
	UseAssertionID(ctx context.Context, clientID, jti string, expires time.Time) (fresh bool, err error)
}

// RevocationStore records and answers token revocations.
type RevocationStore interface {
	RevokeToken(ctx context.Context, jti string, expires time.Time) error
	Revoked(ctx context.Context, jti string) (bool, error)
}

// Keys signs tokens and resolves the server's public keys.
type Keys interface {
	Sign(ctx context.Context, alg jose.SignatureAlgorithm, typ string, payload []byte) (string, error)
	PublicKey(ctx context.Context, kid string) (*jose.JSONWebKey, error)
	JWKS(ctx context.Context) (jose.JSONWebKeySet, error)
}

// JWKSFetcher fetches a client's registered JWKS URL.
type JWKSFetcher interface {
	Get(ctx context.Context, url string, refresh bool) (*jose.JSONWebKeySet, error)
}

// Config configures a Server.
type Config struct {
	// Issuer is the FHIR base URL ("https://host/fhir"); it is the issuer
	// of every token and document, byte for byte, and the access tokens'
	// audience. The endpoints live under its path.
	Issuer string
	// Environment names the environment whose issuer this is
	// ("production", "sandbox"): the lapis_env claim of every access
	// token (empty: none).
	Environment string
	// Clients, Assertions, Revocations and Keys are the storage.
	Clients     ClientStore
	Assertions  AssertionStore
	Revocations RevocationStore
	Keys        Keys
	// JWKS fetches clients' jwks_uri documents.
	JWKS JWKSFetcher
	// BackendTokenLifetime is the lifetime of client_credentials access
	// tokens (default and maximum MaxBackendTokenLifetime).
	BackendTokenLifetime time.Duration
	// Codes and Refresh store authorization codes and token families;
	// with both set the authorization_code and refresh_token grants are
	// enabled (Open sets them; NewCodeStore adapts *authdb.DB).
	Codes   CodeStore
	Refresh RefreshStore
	// AccessTokenLifetime is the lifetime of user access tokens and
	// id_tokens (default DefaultAccessTokenLifetime).
	AccessTokenLifetime time.Duration
	// OfflineRefreshLifetime, OnlineRefreshLifetime and
	// RefreshGracePeriod default to the constants of the same names with
	// the Default prefix.
	OfflineRefreshLifetime time.Duration
	OnlineRefreshLifetime  time.Duration
	RefreshGracePeriod     time.Duration
	// Accounts, Sessions and Launches store user accounts, browser
	// sessions (with authorization requests in progress) and EHR launch
	// contexts; /authorize and its pages answer 503 until all three are
	// set (Open sets them to the database).
	Accounts AccountStore
	Sessions SessionStore
	Launches LaunchStore
	// Patients searches the FHIR store for the patient pickers (optional).
	Patients PatientLister
	// Login is the lockout policy (zero fields take DefaultLoginPolicy).
	Login LoginPolicy
	// Logger receives internal errors (never secrets or tokens).
	Logger *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
	// Audit, when set, receives the security events (logins, consent,
	// tokens issued, refreshed and revoked, grant failures); never
	// credentials. The admin API (package adminapi) records its own.
	Audit audit.Sink
}

// Server is the authorization server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	prefix   string // path of the issuer, without trailing slash
	ep       endpoints
	grants   map[string]GrantHandler
	verifier *Verifier
	closer   func() error
	db       *authdb.DB    // set by Open
	network  ClientNetwork // client allow-lists at the token endpoints (nil: none)
	grantCfg *grant.Config // what the grants share (package oauth/grant)
}

// endpoints are the absolute endpoint URLs, shared by all discovery
// documents and the CapabilityStatement.
type endpoints struct {
	authorize, token, introspect, revoke, jwks, userinfo string
}

// New builds a Server with the client_credentials grant, and the
// authorization_code and refresh_token grants when Codes and Refresh are
// configured.
func New(cfg Config) (*Server, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oauth: issuer %q is not an absolute http(s) URL", cfg.Issuer)
	}
	if cfg.Clients == nil || cfg.Assertions == nil || cfg.Revocations == nil || cfg.Keys == nil || cfg.JWKS == nil {
		return nil, errors.New("oauth: incomplete configuration")
	}
	if cfg.BackendTokenLifetime <= 0 || cfg.BackendTokenLifetime > MaxBackendTokenLifetime {
		cfg.BackendTokenLifetime = MaxBackendTokenLifetime
	}
	if (cfg.Codes == nil) != (cfg.Refresh == nil) {
		return nil, errors.New("oauth: Codes and Refresh must be configured together")
	}
	if cfg.AccessTokenLifetime <= 0 {
		cfg.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if cfg.OfflineRefreshLifetime <= 0 {
		cfg.OfflineRefreshLifetime = DefaultOfflineRefreshLifetime
	}
	if cfg.OnlineRefreshLifetime <= 0 {
		cfg.OnlineRefreshLifetime = DefaultOnlineRefreshLifetime
	}
	if cfg.RefreshGracePeriod <= 0 {
		cfg.RefreshGracePeriod = DefaultRefreshGracePeriod
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, grants: map[string]GrantHandler{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	base := strings.TrimRight(cfg.Issuer, "/")
	s.prefix = strings.TrimRight(u.Path, "/")
	s.ep = endpoints{
		authorize:  base + PathAuthorize,
		token:      base + PathToken,
		introspect: base + PathIntrospect,
		revoke:     base + PathRevoke,
		jwks:       base + PathJWKS,
		userinfo:   base + PathUserInfo,
	}
	s.verifier = NewVerifier(VerifierConfig{Issuer: cfg.Issuer, Audience: cfg.Issuer, Keys: cfg.Keys, Revocations: cfg.Revocations, Now: s.now})
	s.grantCfg = &grant.Config{Core: grantCore{s}, Clients: cfg.Clients, Codes: cfg.Codes, Refresh: cfg.Refresh, Log: s.log, Now: s.now,
		AccessTokenLifetime: cfg.AccessTokenLifetime, BackendTokenLifetime: cfg.BackendTokenLifetime,
		OfflineRefreshLifetime: cfg.OfflineRefreshLifetime, OnlineRefreshLifetime: cfg.OnlineRefreshLifetime, RefreshGracePeriod: cfg.RefreshGracePeriod}
	s.Register(grant.NewClientCredentials(s.grantCfg))
	if s.cfg.Login.MaxFailures <= 0 {
		s.cfg.Login.MaxFailures = DefaultLoginPolicy.MaxFailures
	}
	if s.cfg.Login.MaxFailuresPerIP <= 0 {
		s.cfg.Login.MaxFailuresPerIP = DefaultLoginPolicy.MaxFailuresPerIP
	}
	if s.cfg.Login.Window <= 0 {
		s.cfg.Login.Window = DefaultLoginPolicy.Window
	}
	if cfg.Codes != nil {
		s.Register(grant.NewAuthorizationCode(s.grantCfg))
		s.Register(grant.NewRefreshToken(s.grantCfg))
	}
	return s, nil
}

// Options are the settings of Open.
type Options struct {
	// Issuer is the FHIR base URL (config.Config.FHIRBase()).
	Issuer string
	// Environment is Config.Environment.
	Environment string
	// Database is the process's database handle, where the authorization
	// database's tables are (its migrations run on Open).
	Database *database.DB
	// DataDir is the data directory (of the key-encryption key).
	DataDir string
	// KEKFile is the key-encryption-key file (default DataDir/auth-kek).
	KEKFile string
	// KEK is the key-encryption key itself (64 hex digits, LAPIS_KEK);
	// it takes precedence over KEKFile.
	KEK string
	// AllowPrivateJWKS lets jwks_uri point at loopback/private addresses
	// over plain http: development and tests only.
	AllowPrivateJWKS bool
	// Patients searches the FHIR store for the patient pickers of
	// /authorize and the EHR launch page (wire it to the resource service).
	Patients PatientLister
	// Login is the login lockout policy (zero: DefaultLoginPolicy).
	Login LoginPolicy
	// Logger receives internal errors.
	Logger *slog.Logger
	// Audit receives the security events (optional).
	Audit audit.Sink
}

// Open opens the authorization database on opts.Database, loads (or
// creates) the signing keys and returns a ready Server; Close releases
// the authorization database (not the handle).
func Open(ctx context.Context, opts Options) (*Server, error) {
	if opts.Database == nil {
		return nil, errors.New("oauth: no database")
	}
	db, err := authdb.New(ctx, opts.Database)
	if err != nil {
		return nil, err
	}
	kek := opts.KEKFile
	if kek == "" && opts.KEK == "" {
		if opts.DataDir == "" {
			db.Close()
			return nil, errors.New("oauth: no data directory for the key-encryption key")
		}
		kek = filepath.Join(opts.DataDir, keys.KEKFile)
	}
	km, err := keys.Open(ctx, db, keys.Options{KEKFile: kek, KEK: opts.KEK})
	if err != nil {
		db.Close()
		return nil, err
	}
	s, err := New(Config{
		Issuer: opts.Issuer, Environment: opts.Environment, Clients: db, Assertions: db, Revocations: db, Keys: km,
		Codes: NewCodeStore(db), Refresh: db,
		Accounts: db, Sessions: db, Launches: db, Patients: opts.Patients, Login: opts.Login,
		JWKS: jwksfetch.New(jwksfetch.Options{AllowPrivate: opts.AllowPrivateJWKS}), Logger: opts.Logger,
		Audit: opts.Audit,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	s.closer = db.Close
	s.db = db
	return s, nil
}

// Close releases what Open opened.
func (s *Server) Close() error {
	if s.closer != nil {
		return s.closer()
	}
	return nil
}

// Verifier returns the access-token verifier for the FHIR API.
func (s *Server) Verifier() *Verifier { return s.verifier }

// DB returns the authorization database opened by Open (nil for a Server
// built with New): the API-key and Basic-auth stores of the FHIR API's
// authentication middleware live there too.
func (s *Server) DB() *authdb.DB { return s.db }

// TokenURL returns the absolute token endpoint URL (the required aud of
// client assertions).
func (s *Server) TokenURL() string { return s.ep.token }

// Mount registers the endpoints on mux under the issuer's path (e.g.
// /fhir/auth/token). These patterns are more specific than the FHIR API's
// "/fhir/", so both can share one mux. The pages (package authorize) are
// mounted separately.
func (s *Server) Mount(mux *http.ServeMux) {
	mux.HandleFunc(s.prefix+PathSMARTConfiguration, s.handleSMARTConfiguration)
	mux.HandleFunc(s.prefix+PathOpenIDConfiguration, s.handleOpenIDConfiguration)
	mux.HandleFunc(s.prefix+PathJWKS, s.handleJWKS)
	mux.HandleFunc(s.prefix+PathToken, s.handleToken)
	mux.HandleFunc(s.prefix+PathIntrospect, s.handleIntrospect)
	mux.HandleFunc(s.prefix+PathRevoke, s.handleRevoke)
	mux.HandleFunc(s.prefix+PathUserInfo, s.handleUserInfo)
	mux.HandleFunc(s.prefix+PathSMARTStyle, s.handleSMARTStyle)
}

// Handler returns a handler serving only the endpoints of Mount.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Mount(mux)
	return mux
}

// cors allows cross-origin calls: the endpoints use no cookies and every
// credential travels explicitly, so any origin may call them.
func cors(w http.ResponseWriter, r *http.Request, methods string) (done bool) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", methods+", OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// maxForm bounds token, introspection and revocation request bodies.
const maxForm = 64 << 10

// parseForm reads an application/x-www-form-urlencoded POST body. A
// parameter given twice is invalid (RFC 6749 §3.1); query parameters are
// ignored.
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		return nil, &Error{Code: CodeInvalidRequest, Description: "method must be POST", Status: http.StatusMethodNotAllowed}
	}
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	if !strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded") {
		return nil, errInvalidRequest("content type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return nil, errInvalidRequest("malformed request body")
	}
	for _, v := range r.PostForm {
		if len(v) > 1 {
			return nil, errInvalidRequest("a parameter is repeated")
		}
	}
	return r.PostForm, nil
}

// KeysReady returns nil when the signing keys sign (a readiness check;
// nil too for Keys that cannot tell).
func (s *Server) KeysReady(ctx context.Context) error {
	if r, ok := s.cfg.Keys.(interface{ Ready(context.Context) error }); ok {
		return r.Ready(ctx)
	}
	return nil
}

// grantCore is the narrow view of the Server the grants get (grant.Core).
type grantCore struct{ s *Server }

// IssueAccessToken implements grant.Core.
func (c grantCore) IssueAccessToken(ctx context.Context, cl AccessClaims, lifetime time.Duration) (string, *AccessClaims, error) {
	return c.s.IssueAccessToken(ctx, cl, lifetime)
}

// IssueIDToken implements grant.Core.
func (c grantCore) IssueIDToken(ctx context.Context, g *Grant, withFHIRUser bool) (string, error) {
	return c.s.issueIDToken(ctx, g, withFHIRUser)
}

// FHIRUserURL implements grant.Core.
func (c grantCore) FHIRUserURL(ref string) string { return c.s.fhirUserURL(ref) }
