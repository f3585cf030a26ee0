package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/netpolicy"
)

// ScopeAdmin is the scope of the admin API. It is a system/ scope, so it is
// granted only by the client_credentials grant, and only to a confidential
// or backend client registered with it (public clients cannot register
// system/ scopes, and /authorize never grants system/ scopes to a user):
//
//	lapis client create --name admin --type confidential --scope system/lapis.admin
//
// A client_credentials request without a scope gets every system/ scope the
// client registered, this one included; keep admin clients separate from
// data clients.
const ScopeAdmin = "system/lapis.admin"

// PathAdmin is the prefix of the admin API, relative to the FHIR base.
const PathAdmin = "/auth/admin/"

// maxAdminBody bounds admin API request bodies (a registered JWKS fits).
const maxAdminBody = 64 << 10

// AdminStore is the storage of the admin API and the apps page, implemented
// by *authdb.DB. The Server uses it when its Config.Clients implements it
// (Open configures the database, which does); otherwise those endpoints
// answer 503.
type AdminStore interface {
	ClientStore
	ClientCreator
	AccountCreator
	Clients(ctx context.Context) ([]authdb.Client, error)
	DeleteClient(ctx context.Context, id string) error
	Accounts(ctx context.Context) ([]authdb.Account, error)
	AccountByUsername(ctx context.Context, username string) (*authdb.Account, error)
	AccountBySubject(ctx context.Context, subject string) (*authdb.Account, error)
	DeleteAccount(ctx context.Context, username string) error
	Grants(ctx context.Context, f authdb.GrantFilter, now time.Time) ([]authdb.GrantSummary, error)
	RevokeGrants(ctx context.Context, f authdb.GrantFilter, now time.Time) (int, error)
}

// adminStore returns the admin storage, or nil when not configured.
func (s *Server) adminStore() AdminStore {
	st, _ := s.cfg.Clients.(AdminStore)
	return st
}

// Error codes of the admin API beyond RFC 6749's.
const (
	codeInvalidToken      = "invalid_token"
	codeInsufficientScope = "insufficient_scope"
	codeNotFound          = "not_found"
	codeConflict          = "conflict"
	codeUnavailable       = "temporarily_unavailable"
)

// bearerChallenge sets the RFC 6750 WWW-Authenticate header.
func bearerChallenge(w http.ResponseWriter, code string) {
	v := `Bearer realm="lapis"`
	if code != "" {
		v += `, error="` + code + `"`
	}
	if code == codeInsufficientScope {
		v += `, scope="` + ScopeAdmin + `"`
	}
	w.Header().Set("WWW-Authenticate", v)
}

// bearerToken extracts the token of an "Authorization: Bearer" header
// ("" when absent or of another scheme).
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// authenticateAdmin verifies the request's bearer token (signature, exp,
// iss, aud, revocation: the Verifier), then that it was issued by the
// client_credentials grant (sub = client_id) to a client that is still
// registered with ScopeAdmin, and that it carries ScopeAdmin. On failure
// it has answered 401, 403 or 500.
func (s *Server) authenticateAdmin(w http.ResponseWriter, r *http.Request, st AdminStore) (*AccessClaims, bool) {
	tok := bearerToken(r)
	if tok == "" {
		bearerChallenge(w, "")
		s.writeError(w, r, &Error{Code: codeInvalidToken, Description: "a bearer access token is required", Status: http.StatusUnauthorized})
		return nil, false
	}
	invalid := func() {
		bearerChallenge(w, codeInvalidToken)
		s.writeError(w, r, &Error{Code: codeInvalidToken, Description: "the access token is invalid, expired or revoked", Status: http.StatusUnauthorized})
	}
	c, err := s.verifier.Verify(r.Context(), tok)
	if errors.Is(err, ErrInvalidToken) {
		invalid()
		return nil, false
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	forbidden := func() {
		bearerChallenge(w, codeInsufficientScope)
		s.writeError(w, r, &Error{Code: codeInsufficientScope, Description: "the access token lacks the scope " + ScopeAdmin, Status: http.StatusForbidden})
	}
	if !slices.Contains(c.Scopes(), ScopeAdmin) || c.Subject != c.ClientID {
		forbidden()
		return nil, false
	}
	// The client must still exist and still hold the scope, so deleting
	// an admin client (or re-registering it without the scope) takes
	// effect at once.
	cl, err := st.Client(r.Context(), c.ClientID)
	if errors.Is(err, authdb.ErrNotFound) {
		invalid()
		return nil, false
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	if !slices.Contains(cl.Scopes, ScopeAdmin) || cl.Type == authdb.Public {
		forbidden()
		return nil, false
	}
	return c, true
}

// decodeJSONBody strictly decodes a JSON request body into v: the media
// type must be application/json, the body at most maxAdminBody bytes (413
// beyond), one JSON value with no unknown fields and nothing after it.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &Error{Code: CodeInvalidRequest, Description: "content type must be application/json", Status: http.StatusUnsupportedMediaType}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("trailing data")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return &Error{Code: CodeInvalidRequest, Description: "request body too large", Status: http.StatusRequestEntityTooLarge}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errInvalidRequest("unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return errInvalidRequest("request body is not a valid JSON object for this endpoint")
	}
}

// adminNotFound is the answer for an unknown resource.
func adminNotFound(what string) *Error {
	return &Error{Code: codeNotFound, Description: what + " not found", Status: http.StatusNotFound}
}

// allowMethods answers 405 unless r uses one of methods.
func (s *Server) allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	s.writeError(w, r, &Error{Code: CodeInvalidRequest, Description: "method not allowed", Status: http.StatusMethodNotAllowed})
	return false
}

// noContent answers 204 with the no-store headers.
func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusNoContent)
}

// handleAdmin is the admin API (JSON), under [issuer]/auth/admin/:
//
//	POST   clients              register a client; returns client_id and the one-time client_secret
//	GET    clients              list clients
//	GET    clients/{id}         one client
//	DELETE clients/{id}         delete a client and revoke its user grants
//	GET    clients/{id}/network the client's IP allow-list and CORS origins
//	PUT    clients/{id}/network replace them ({"allow_ips": [...], "cors_origins": [...]})
//	POST   users                create a login; returns username, subject, fhir_user
//	GET    users                list logins
//	GET    users/{username}     one login
//	DELETE users/{username}     delete a login, end its sessions, revoke its grants
//	GET    grants               live grants (?client_id=, ?username= filter)
//	POST   grants/revoke        {"client_id", "username"?}: revoke a client's grants for one user or all
//	POST   apikeys              create an API key; returns the key once (see routeAPIKeys)
//	GET    apikeys              list API keys (never the key or its hash)
//	GET    apikeys/{id}         one API key
//	DELETE apikeys/{id}         revoke an API key
//	POST   apikeys/{id}/rotate  replace an API key; the old one stays valid for "grace"
//
// Every request needs a bearer access token with ScopeAdmin (see
// authenticateAdmin); authentication runs before routing, so an
// unauthenticated caller learns nothing about the paths.
func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request) {
	st := s.adminStore()
	if st == nil {
		s.writeError(w, r, &Error{Code: codeUnavailable, Description: "the admin API is not configured", Status: http.StatusServiceUnavailable})
		return
	}
	admin, ok := s.authenticateAdmin(w, r, st)
	if !ok {
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, s.prefix+PathAdmin)
	coll, id, hasID := strings.Cut(rest, "/")
	clientNetwork := coll == "clients" && strings.HasSuffix(id, "/network") && strings.Count(id, "/") == 1
	if hasID && (id == "" || strings.Contains(id, "/")) && coll != "apikeys" && !clientNetwork {
		s.writeError(w, r, adminNotFound("resource"))
		return
	}
	a := &adminCall{s: s, st: st, w: w, r: r, admin: admin}
	switch {
	case coll == "clients" && !hasID:
		if s.allowMethods(w, r, http.MethodGet, http.MethodPost) {
			if r.Method == http.MethodPost {
				a.createClient()
			} else {
				a.listClients()
			}
		}
	case clientNetwork:
		if s.allowMethods(w, r, http.MethodGet, http.MethodPut) {
			a.clientNetwork(strings.TrimSuffix(id, "/network"))
		}
	case coll == "clients":
		if s.allowMethods(w, r, http.MethodGet, http.MethodDelete) {
			if r.Method == http.MethodDelete {
				a.deleteClient(id)
			} else {
				a.getClient(id)
			}
		}
	case coll == "users" && !hasID:
		if s.allowMethods(w, r, http.MethodGet, http.MethodPost) {
			if r.Method == http.MethodPost {
				a.createUser()
			} else {
				a.listUsers()
			}
		}
	case coll == "users":
		if s.allowMethods(w, r, http.MethodGet, http.MethodDelete) {
			if r.Method == http.MethodDelete {
				a.deleteUser(id)
			} else {
				a.getUser(id)
			}
		}
	case coll == "grants" && !hasID:
		if s.allowMethods(w, r, http.MethodGet) {
			a.listGrants()
		}
	case coll == "apikeys":
		a.routeAPIKeys(id, hasID)
	case coll == "grants" && id == "revoke":
		if s.allowMethods(w, r, http.MethodPost) {
			a.revokeGrants()
		}
	default:
		s.writeError(w, r, adminNotFound("resource"))
	}
}

// adminCall is one authenticated admin API request.
type adminCall struct {
	s     *Server
	st    AdminStore
	w     http.ResponseWriter
	r     *http.Request
	admin *AccessClaims
}

func (a *adminCall) fail(err error) { a.s.writeError(a.w, a.r, err) }

// audit logs an admin action (identifiers only, never secrets).
func (a *adminCall) audit(action string, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{slog.String("action", action), slog.String("admin_client_id", a.admin.ClientID)}, attrs...)
	a.s.log.LogAttrs(a.r.Context(), slog.LevelInfo, "oauth: admin", attrs...)
	a.recordAdmin(action, attrs)
}

// AdminClientRequest is the body of POST clients: the fields of "lapis
// client create".
type AdminClientRequest struct {
	// Name is the display name (required).
	Name string `json:"name"`
	// Type is "public", "confidential" or "backend".
	Type string `json:"type"`
	// RedirectURIs are exact redirect URIs.
	RedirectURIs []string `json:"redirect_uris"`
	// LaunchURI is the app's EHR launch URL.
	LaunchURI string `json:"launch_uri"`
	// Scopes are the allowed scopes (each entry may hold several,
	// space-separated).
	Scopes []string `json:"scopes"`
	// JWKS is a backend client's JSON Web Key Set, as a JSON object.
	JWKS json.RawMessage `json:"jwks"`
	// JWKSURI is a backend client's JWKS URL.
	JWKSURI string `json:"jwks_uri"`
	// AllowIPs restricts where the client's tokens may be used from
	// (CIDRs or addresses; empty: anywhere).
	AllowIPs []string `json:"allow_ips"`
	// CORSOrigins are the browser origins allowed to call the FHIR API
	// with the client's tokens.
	CORSOrigins []string `json:"cors_origins"`
}

// recordingStore passes creations to a store and remembers the store's
// error, telling storage failures (internal) from validation errors
// (the caller's).
type recordingStore struct {
	AdminStore
	err error
}

func (rs *recordingStore) CreateClient(ctx context.Context, c *authdb.Client) error {
	rs.err = rs.AdminStore.CreateClient(ctx, c)
	return rs.err
}

func (rs *recordingStore) CreateAccount(ctx context.Context, acct *authdb.Account) error {
	rs.err = rs.AdminStore.CreateAccount(ctx, acct)
	return rs.err
}

func (a *adminCall) createClient() {
	var req AdminClientRequest
	if err := decodeJSONBody(a.w, a.r, &req); err != nil {
		a.fail(err)
		return
	}
	reg := Registration{Name: req.Name, Type: req.Type, RedirectURIs: req.RedirectURIs, LaunchURI: req.LaunchURI,
		Scopes: req.Scopes, JWKSURI: req.JWKSURI}
	if len(req.JWKS) > 0 && string(req.JWKS) != "null" {
		reg.JWKS = req.JWKS
	}
	rules, err := netpolicy.ClientRulesFrom("", req.AllowIPs, req.CORSOrigins)
	if err != nil {
		a.fail(errInvalidRequest(err.Error()))
		return
	}
	ns, hasNet := a.st.(clientNetRulesStore)
	if !hasNet && (len(rules.AllowIPs) > 0 || len(rules.CORSOrigins) > 0) {
		a.fail(&Error{Code: codeUnavailable, Description: "client network rules are not configured", Status: http.StatusServiceUnavailable})
		return
	}
	rs := &recordingStore{AdminStore: a.st}
	out, err := RegisterClient(a.r.Context(), rs, reg)
	if err != nil {
		if rs.err != nil {
			a.fail(rs.err)
		} else {
			a.fail(errInvalidRequest(err.Error()))
		}
		return
	}
	if len(rules.AllowIPs) > 0 || len(rules.CORSOrigins) > 0 {
		// No client may exist without the restrictions it was created with.
		rules.ClientID = out.ClientID
		if err := ns.SetClientNetRules(a.r.Context(), rules); err != nil {
			_ = a.st.DeleteClient(a.r.Context(), out.ClientID)
			a.fail(err)
			return
		}
	}
	a.audit("create_client", slog.String("client_id", out.ClientID), slog.String("type", req.Type))
	writeJSON(a.w, http.StatusCreated, out)
}

// clientNetRulesStore reads and replaces clients' network rules
// (*authdb.DB).
type clientNetRulesStore interface {
	ClientNetRulesFor(ctx context.Context, clientID string) (authdb.ClientNetRules, error)
	SetClientNetRules(ctx context.Context, r authdb.ClientNetRules) error
}

// AdminNetworkRequest is the body of PUT clients/{id}/network: both lists
// are replaced (empty lists remove the rules).
type AdminNetworkRequest struct {
	// AllowIPs are CIDRs or addresses (empty: anywhere).
	AllowIPs []string `json:"allow_ips"`
	// CORSOrigins are browser origins, https://host[:port].
	CORSOrigins []string `json:"cors_origins"`
}

// clientNetwork serves GET and PUT clients/{id}/network.
func (a *adminCall) clientNetwork(id string) {
	ns, ok := a.st.(clientNetRulesStore)
	if !ok {
		a.fail(&Error{Code: codeUnavailable, Description: "client network rules are not configured", Status: http.StatusServiceUnavailable})
		return
	}
	ctx := a.r.Context()
	if a.r.Method == http.MethodPut {
		var req AdminNetworkRequest
		if err := decodeJSONBody(a.w, a.r, &req); err != nil {
			a.fail(err)
			return
		}
		rules, err := netpolicy.ClientRulesFrom(id, req.AllowIPs, req.CORSOrigins)
		if err != nil {
			a.fail(errInvalidRequest(err.Error()))
			return
		}
		if err := ns.SetClientNetRules(ctx, rules); errors.Is(err, authdb.ErrNotFound) {
			a.fail(adminNotFound("client"))
			return
		} else if err != nil {
			a.fail(err)
			return
		}
		a.audit("set_client_network", slog.String("client_id", id), slog.Int("allow_ips", len(rules.AllowIPs)), slog.Int("cors_origins", len(rules.CORSOrigins)))
	}
	rules, err := ns.ClientNetRulesFor(ctx, id)
	if errors.Is(err, authdb.ErrNotFound) {
		a.fail(adminNotFound("client"))
		return
	} else if err != nil {
		a.fail(err)
		return
	}
	writeJSON(a.w, http.StatusOK, map[string]any{"client_id": id, "allow_ips": nonNilStrings(rules.AllowIPs), "cors_origins": nonNilStrings(rules.CORSOrigins)})
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *adminCall) listClients() {
	cs, err := a.st.Clients(a.r.Context())
	if err != nil {
		a.fail(err)
		return
	}
	if cs == nil {
		cs = []authdb.Client{}
	}
	writeJSON(a.w, http.StatusOK, map[string]any{"clients": cs})
}

func (a *adminCall) getClient(id string) {
	c, err := a.st.Client(a.r.Context(), id)
	if errors.Is(err, authdb.ErrNotFound) {
		a.fail(adminNotFound("client"))
		return
	}
	if err != nil {
		a.fail(err)
		return
	}
	writeJSON(a.w, http.StatusOK, c)
}

func (a *adminCall) deleteClient(id string) {
	ctx := a.r.Context()
	if err := a.st.DeleteClient(ctx, id); errors.Is(err, authdb.ErrNotFound) {
		a.fail(adminNotFound("client"))
		return
	} else if err != nil {
		a.fail(err)
		return
	}
	n, err := a.st.RevokeGrants(ctx, authdb.GrantFilter{ClientID: id}, a.s.now())
	if err != nil {
		a.fail(err)
		return
	}
	a.audit("delete_client", slog.String("client_id", id), slog.Int("grants_revoked", n))
	noContent(a.w)
}

// AdminUserRequest is the body of POST users.
type AdminUserRequest struct {
	// Username is the login name (case-insensitive).
	Username string `json:"username"`
	// Password is the initial password (8-256 characters; stored as an
	// argon2id hash, never logged).
	Password string `json:"password"`
	// FHIRUser is "Patient/ID" or "Practitioner/ID"; it must exist
	// unless Force is set.
	FHIRUser string `json:"fhir_user"`
	// Force creates the login even if FHIRUser does not exist (yet).
	Force bool `json:"force,omitempty"`
}

// AdminUser is a login as the admin API shows it.
type AdminUser struct {
	Username  string    `json:"username"`
	Subject   string    `json:"subject"`
	FHIRUser  string    `json:"fhir_user"`
	CreatedAt time.Time `json:"created_at"`
}

func adminUser(acct *authdb.Account) AdminUser {
	return AdminUser{Username: acct.Username, Subject: acct.Subject, FHIRUser: acct.FHIRUser, CreatedAt: acct.CreatedAt.UTC()}
}

func (a *adminCall) createUser() {
	var req AdminUserRequest
	if err := decodeJSONBody(a.w, a.r, &req); err != nil {
		a.fail(err)
		return
	}
	if ValidateAccount(req.Username, req.Password, req.FHIRUser) == nil {
		if err := a.s.adminCheckFHIRUser(a.r.Context(), req.Force, req.FHIRUser); err != nil {
			a.fail(err)
			return
		}
	}
	rs := &recordingStore{AdminStore: a.st}
	acct, err := CreateAccount(a.r.Context(), rs, req.Username, req.Password, req.FHIRUser)
	switch {
	case err == nil:
	case errors.Is(rs.err, authdb.ErrExists):
		a.fail(&Error{Code: codeConflict, Description: "the username is taken", Status: http.StatusConflict})
		return
	case rs.err != nil:
		a.fail(rs.err)
		return
	default:
		a.fail(errInvalidRequest(err.Error()))
		return
	}
	a.audit("create_user", slog.String("username", acct.Username), slog.String("subject", acct.Subject))
	writeJSON(a.w, http.StatusCreated, adminUser(acct))
}

func (a *adminCall) listUsers() {
	accts, err := a.st.Accounts(a.r.Context())
	if err != nil {
		a.fail(err)
		return
	}
	out := make([]AdminUser, 0, len(accts))
	for i := range accts {
		out = append(out, adminUser(&accts[i]))
	}
	writeJSON(a.w, http.StatusOK, map[string]any{"users": out})
}

// account returns the account named username, or answers 404.
func (a *adminCall) account(username string) *authdb.Account {
	acct, err := a.st.AccountByUsername(a.r.Context(), NormalizeUsername(username))
	if errors.Is(err, authdb.ErrNotFound) {
		a.fail(adminNotFound("user"))
		return nil
	}
	if err != nil {
		a.fail(err)
		return nil
	}
	return acct
}

func (a *adminCall) getUser(username string) {
	if acct := a.account(username); acct != nil {
		writeJSON(a.w, http.StatusOK, adminUser(acct))
	}
}

func (a *adminCall) deleteUser(username string) {
	ctx := a.r.Context()
	acct := a.account(username)
	if acct == nil {
		return
	}
	if err := a.st.DeleteAccount(ctx, acct.Username); errors.Is(err, authdb.ErrNotFound) {
		a.fail(adminNotFound("user"))
		return
	} else if err != nil {
		a.fail(err)
		return
	}
	n, err := a.st.RevokeGrants(ctx, authdb.GrantFilter{Subject: acct.Subject}, a.s.now())
	if err != nil {
		a.fail(err)
		return
	}
	a.audit("delete_user", slog.String("username", acct.Username), slog.String("subject", acct.Subject), slog.Int("grants_revoked", n))
	noContent(a.w)
}

func (a *adminCall) listGrants() {
	q := a.r.URL.Query()
	f := authdb.GrantFilter{ClientID: q.Get("client_id")}
	if u := q.Get("username"); u != "" {
		acct := a.account(u)
		if acct == nil {
			return
		}
		f.Subject = acct.Subject
	}
	gs, err := a.st.Grants(a.r.Context(), f, a.s.now())
	if err != nil {
		a.fail(err)
		return
	}
	writeJSON(a.w, http.StatusOK, map[string]any{"grants": gs})
}

// AdminRevokeRequest is the body of POST grants/revoke.
type AdminRevokeRequest struct {
	// ClientID is the app whose grants are revoked (required).
	ClientID string `json:"client_id"`
	// Username limits the revocation to one user; empty revokes the
	// client's grants of every user.
	Username string `json:"username"`
}

// AdminRevokeResponse is the answer of POST grants/revoke.
type AdminRevokeResponse struct {
	// Revoked is the number of token families revoked.
	Revoked int `json:"revoked"`
}

func (a *adminCall) revokeGrants() {
	var req AdminRevokeRequest
	if err := decodeJSONBody(a.w, a.r, &req); err != nil {
		a.fail(err)
		return
	}
	if req.ClientID == "" {
		a.fail(errInvalidRequest("client_id is required"))
		return
	}
	f := authdb.GrantFilter{ClientID: req.ClientID}
	if req.Username != "" {
		acct := a.account(req.Username)
		if acct == nil {
			return
		}
		f.Subject = acct.Subject
	}
	n, err := a.st.RevokeGrants(a.r.Context(), f, a.s.now())
	if err != nil {
		a.fail(err)
		return
	}
	a.audit("revoke_grants", slog.String("client_id", req.ClientID), slog.String("subject", f.Subject), slog.Int("revoked", n))
	writeJSON(a.w, http.StatusOK, AdminRevokeResponse{Revoked: n})
}
