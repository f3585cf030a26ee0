// Package adminapi is the HTTP admin API, under [base]/auth/admin/: a
// JSON front end of the admin service (package admin), with the shapes of
// package client/admin.
//
//	POST   clients              register a client; 201 with client_id and the one-time client_secret
//	GET    clients              list clients (?owner= filters)
//	GET    clients/{id}         one client
//	DELETE clients/{id}         delete a client and revoke its users' grants; 204
//	GET    clients/{id}/network the client's IP allow-list and CORS origins
//	PUT    clients/{id}/network replace them ({"allow_ips": [...], "cors_origins": [...]})
//	PUT    clients/{id}/ratelimit the client's own rate limit ({"rate_limit": "500/s"|"none"|"default", "rate_limit_burst": 2000})
//	POST   clients/{id}/rotate-secret {"overlap": "24h"}: new secret, shown once; the old one works for the overlap
//	POST   clients/{id}/suspend {"reason": "..."}: no tokens, its tokens refused on every instance at once
//	POST   clients/{id}/resume  lift the suspension
//	POST   users                create a login; 201 with username, subject, fhir_user
//	GET    users                list logins
//	GET    users/{username}     one login
//	DELETE users/{username}     delete a login, end its sessions, revoke its grants; 204
//	GET    grants               live grants (?client_id=, ?username= filter)
//	POST   grants/revoke        {"client_id", "username"?}: revoke a client's grants for one user or all
//	POST   apikeys              create an API key; 201 with the key, shown once
//	GET    apikeys              list API keys, never the key or its hash (?owner= filters)
//	GET    apikeys/{id}         one API key
//	DELETE apikeys/{id}         revoke an API key at once; 204
//	POST   apikeys/{id}/rotate  replace an API key; the old one stays valid for "grace"
//	PUT    apikeys/{id}/ratelimit the key's own rate limit (as for clients)
//	POST   apikeys/{id}/suspend {"reason": "..."}: the key is refused at once
//	POST   apikeys/{id}/resume  lift the suspension
//
// One middleware authenticates every request before routing (an
// unauthenticated caller learns nothing about the paths): a bearer access
// token with the scope system/lapis.admin, issued by the client_credentials
// grant to a client that is still registered with that scope. Every error
// answer, from authentication to routing, is an RFC 6749 §5.2 JSON object
// {"error", "error_description"}; every answer carries Cache-Control:
// no-store.
package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/authn"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/oauth"
)

// Path is the admin API's path, relative to the FHIR base URL.
const Path = "/" + api.Path

// maxBody bounds request bodies (a registered JWKS fits).
const maxBody = 64 << 10

// Config configures the admin API.
type Config struct {
	// Issuer is the FHIR base URL (the authorization server's issuer):
	// the API is served under its path + Path.
	Issuer string
	// Service performs the actions (required).
	Service *admin.Service
	// Verifier checks bearer access tokens (the authorization server's
	// *oauth.Verifier; required).
	Verifier authn.TokenVerifier
	// Logger receives internal errors (default slog.Default()).
	Logger *slog.Logger
}

// API is the admin API handler.
type API struct {
	svc      *admin.Service
	verifier authn.TokenVerifier
	log      *slog.Logger
	base     string // issuer without trailing slash
	prefix   string // path of the issuer, without trailing slash
	h        http.Handler
}

// New builds the admin API.
func New(cfg Config) (*API, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("adminapi: issuer %q is not an absolute http(s) URL", cfg.Issuer)
	}
	if cfg.Service == nil || cfg.Verifier == nil {
		return nil, errors.New("adminapi: Service and Verifier are required")
	}
	a := &API{svc: cfg.Service, verifier: cfg.Verifier, log: cfg.Logger, base: strings.TrimRight(cfg.Issuer, "/"),
		prefix: strings.TrimRight(u.Path, "/")}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.h = http.StripPrefix(a.prefix+strings.TrimSuffix(Path, "/"), a.authenticate(a.routes()))
	return a, nil
}

// Mount registers the API on mux under the issuer's path.
func (a *API) Mount(mux *http.ServeMux) { mux.Handle(a.prefix+Path, a) }

// ServeHTTP serves the API (paths under the issuer's path + Path).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.h.ServeHTTP(w, r) }

// handlerFunc is an endpoint: it writes its answer, or returns the error
// to answer with.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// router registers "METHOD /path" patterns and answers, in the API's
// error format, 405 (with Allow) for the other methods of a known path
// and 404 for unknown paths.
type router struct {
	a       *API
	mux     *http.ServeMux
	paths   []string
	methods map[string][]string
}

func (rt *router) handle(pattern string, h handlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	if _, ok := rt.methods[path]; !ok {
		rt.paths = append(rt.paths, path)
	}
	rt.methods[path] = append(rt.methods[path], method)
	rt.mux.Handle(pattern, rt.a.endpoint(h))
}

func (rt *router) handler() http.Handler {
	for _, p := range rt.paths {
		allow := strings.Join(rt.methods[p], ", ")
		rt.mux.Handle(p, rt.a.endpoint(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allow)
			return &httpError{status: http.StatusMethodNotAllowed, code: api.CodeInvalidRequest, desc: "method not allowed"}
		}))
	}
	rt.mux.Handle("/", rt.a.endpoint(func(http.ResponseWriter, *http.Request) error {
		return &httpError{status: http.StatusNotFound, code: api.CodeNotFound, desc: "resource not found"}
	}))
	return rt.mux
}

func (a *API) routes() http.Handler {
	rt := &router{a: a, mux: http.NewServeMux(), methods: map[string][]string{}}
	rt.handle("GET /clients", a.listClients)
	rt.handle("POST /clients", create(a.svc.CreateClient))
	rt.handle("GET /clients/{id}", read("id", a.svc.OAuthClient))
	rt.handle("DELETE /clients/{id}", remove("id", a.svc.DeleteClient))
	rt.handle("GET /clients/{id}/network", read("id", a.svc.ClientNetwork))
	rt.handle("PUT /clients/{id}/network", change(a.svc.SetClientNetwork))
	rt.handle("PUT /clients/{id}/ratelimit", change(a.svc.SetClientRateLimit))
	rt.handle("POST /clients/{id}/rotate-secret", withBody(a.rotateClientSecret))
	rt.handle("POST /clients/{id}/suspend", suspend(a.svc.SuspendClient))
	rt.handle("POST /clients/{id}/resume", resume(a.svc.ResumeClient))
	rt.handle("GET /users", a.listUsers)
	rt.handle("POST /users", create(a.svc.CreateUser))
	rt.handle("GET /users/{username}", read("username", a.svc.User))
	rt.handle("DELETE /users/{username}", remove("username", a.svc.DeleteUser))
	rt.handle("GET /grants", a.listGrants)
	rt.handle("POST /grants/revoke", withBody(a.revokeGrants))
	rt.handle("GET /apikeys", a.listAPIKeys)
	rt.handle("POST /apikeys", withBody(a.createAPIKey))
	rt.handle("GET /apikeys/{id}", read("id", a.svc.APIKey))
	rt.handle("DELETE /apikeys/{id}", remove("id", a.svc.RevokeAPIKey))
	rt.handle("POST /apikeys/{id}/rotate", a.rotateAPIKey)
	rt.handle("PUT /apikeys/{id}/ratelimit", change(a.svc.SetAPIKeyRateLimit))
	rt.handle("POST /apikeys/{id}/suspend", suspend(a.svc.SuspendAPIKey))
	rt.handle("POST /apikeys/{id}/resume", resume(a.svc.ResumeAPIKey))
	return rt.handler()
}

// --- answers ---

// httpError is an error answer of the API itself (authentication,
// routing, request bodies).
type httpError struct {
	status     int
	code, desc string
	// challenge is the WWW-Authenticate header, when one is due.
	challenge string
}

func (e *httpError) Error() string { return e.code + ": " + e.desc }

func badRequest(desc string) *httpError {
	return &httpError{status: http.StatusBadRequest, code: api.CodeInvalidRequest, desc: desc}
}

// endpoint adapts h, answering its error in the API's format.
func (a *API) endpoint(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !storableURL(r.URL) {
			a.fail(w, r, badRequest("the URL holds a NUL character or invalid UTF-8"))
			return
		}
		if err := h(w, r); err != nil {
			a.fail(w, r, err)
		}
	})
}

// fail answers err: the API's own errors and the service's refusals as
// they are, anything else as a logged, generic server_error.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		he *httpError
		ie *admin.InvalidError
		ne *admin.NotFoundError
		ce *admin.ConflictError
		ae *admin.AuditError
	)
	switch {
	case errors.As(err, &he):
	case errors.As(err, &ie):
		he = badRequest(ie.Error())
	case errors.As(err, &ne):
		he = &httpError{status: http.StatusNotFound, code: api.CodeNotFound, desc: ne.Error()}
	case errors.As(err, &ce):
		he = &httpError{status: http.StatusConflict, code: api.CodeConflict, desc: ce.Error()}
	case errors.As(err, &ae):
		a.log.LogAttrs(r.Context(), slog.LevelError, "adminapi: audit record failed", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		he = &httpError{status: http.StatusInternalServerError, code: api.CodeServerError, desc: "the change was made, but its audit record could not be written"}
	default:
		a.log.LogAttrs(r.Context(), slog.LevelError, "adminapi: internal error", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		he = &httpError{status: http.StatusInternalServerError, code: api.CodeServerError, desc: "internal error"}
	}
	if he.challenge != "" {
		w.Header().Set("WWW-Authenticate", he.challenge)
	}
	writeJSON(w, he.status, api.Error{Code: he.code, Description: he.desc})
}

// noStore sets the headers of every answer.
func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	noStore(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func noContent(w http.ResponseWriter) {
	noStore(w.Header())
	w.WriteHeader(http.StatusNoContent)
}

// storableURL reports whether u's decoded path and query are storable.
func storableURL(u *url.URL) bool {
	if !authdb.Storable(u.Path) {
		return false
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return true // the handlers' own parsing refuses it
	}
	for k, vs := range q {
		if !authdb.Storable(k) {
			return false
		}
		for _, v := range vs {
			if !authdb.Storable(v) {
				return false
			}
		}
	}
	return true
}

// storableJSON reports whether every string (and key) of a decoded JSON
// value is free of NUL (encoding/json already turns invalid UTF-8 into
// U+FFFD).
func storableJSON(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) < 0
	case []any:
		for _, e := range v {
			if !storableJSON(e) {
				return false
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 || !storableJSON(e) {
				return false
			}
		}
	}
	return true
}

// decode strictly decodes a JSON request body into v: the media type
// must be application/json, the body at most maxBody bytes (413 beyond),
// one JSON value with no unknown fields and nothing after it.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &httpError{status: http.StatusUnsupportedMediaType, code: api.CodeInvalidRequest, desc: "content type must be application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var generic any
	if err == nil && json.Unmarshal(body, &generic) == nil && !storableJSON(generic) {
		return badRequest("a string of the request body holds a NUL character")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err == nil {
		err = dec.Decode(v)
	}
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data")
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return &httpError{status: http.StatusRequestEntityTooLarge, code: api.CodeInvalidRequest, desc: "request body too large"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, api.ErrDuration):
		return badRequest(api.ErrDuration.Error())
	default:
		return badRequest("request body is not a valid JSON object for this endpoint")
	}
}

// --- authentication ---

// authenticate runs next for requests bearing a valid admin token, with
// the token's client as the admin.Actor of the request's context; it
// answers the others 401 or 403 with an RFC 6750 challenge.
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, err := a.actor(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(admin.WithActor(r.Context(), actor)))
	})
}

const realm = `Bearer realm="lapis"`

var (
	errNoToken = &httpError{status: http.StatusUnauthorized, code: api.CodeInvalidToken, desc: "a bearer access token is required",
		challenge: realm}
	errBadToken = &httpError{status: http.StatusUnauthorized, code: api.CodeInvalidToken, desc: "the access token is invalid, expired or revoked",
		challenge: realm + `, error="` + api.CodeInvalidToken + `"`}
	errScope = &httpError{status: http.StatusForbidden, code: api.CodeInsufficientScope, desc: "the access token lacks the scope " + api.Scope,
		challenge: realm + `, error="` + api.CodeInsufficientScope + `", scope="` + api.Scope + `"`}
)

// actor verifies the request's bearer token (signature, exp, iss, aud,
// revocation: the Verifier), then that it was issued by the
// client_credentials grant (sub = client_id) with the admin scope to a
// client that is still registered with it (so deleting an admin client,
// or re-registering it without the scope, takes effect at once).
func (a *API) actor(r *http.Request) (admin.Actor, error) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if tok = strings.TrimSpace(tok); !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return admin.Actor{}, errNoToken
	}
	c, err := a.verifier.Verify(r.Context(), tok)
	if errors.Is(err, oauth.ErrInvalidToken) {
		return admin.Actor{}, errBadToken
	} else if err != nil {
		return admin.Actor{}, err
	}
	if !slices.Contains(c.Scopes(), api.Scope) || c.Subject != c.ClientID {
		return admin.Actor{}, errScope
	}
	cl, err := a.svc.OAuthClient(r.Context(), c.ClientID)
	if errors.Is(err, api.ErrNotFound) {
		return admin.Actor{}, errBadToken
	} else if err != nil {
		return admin.Actor{}, err
	}
	if !slices.Contains(cl.Scopes, api.Scope) || cl.Type == authdb.Public {
		return admin.Actor{}, errScope
	}
	actor := admin.Actor{ClientID: c.ClientID, Method: "access_token", CredentialID: c.ID, UserAgent: r.UserAgent()}
	if ip := httpx.ClientIP(r); ip.IsValid() {
		actor.Address = ip.String()
	}
	return actor, nil
}

// --- endpoints ---

func (a *API) listClients(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.svc.Clients(r.Context(), api.ClientFilter{Owner: r.URL.Query().Get("owner")})
	return answer(w, map[string]any{"clients": cs}, err)
}

func (a *API) rotateClientSecret(w http.ResponseWriter, r *http.Request, req api.RotateSecretRequest) error {
	overlap := api.DefaultOverlap
	if req.Overlap != nil {
		overlap = time.Duration(*req.Overlap)
	}
	out, err := a.svc.RotateClientSecret(r.Context(), r.PathValue("id"), overlap)
	return answer(w, out, err)
}

// withBody decodes the request's JSON body into a T (see decode) before h
// runs.
func withBody[T any](h func(http.ResponseWriter, *http.Request, T) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req T
		if err := decode(w, r, &req); err != nil {
			return err
		}
		return h(w, r, req)
	}
}

// read answers with what get returns for the path value key.
func read[T any](key string, get func(context.Context, string) (T, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := get(r.Context(), r.PathValue(key))
		return answer(w, v, err)
	}
}

// change decodes the request's JSON body into a Req and answers with what
// set returns for the path's id and it.
func change[Req, T any](set func(context.Context, string, Req) (T, error)) handlerFunc {
	return withBody(func(w http.ResponseWriter, r *http.Request, req Req) error {
		v, err := set(r.Context(), r.PathValue("id"), req)
		return answer(w, v, err)
	})
}

// create decodes the request's JSON body into a Req and answers 201 with
// what build returns for it.
func create[Req, T any](build func(context.Context, Req) (T, error)) handlerFunc {
	return withBody(func(w http.ResponseWriter, r *http.Request, req Req) error {
		v, err := build(r.Context(), req)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, v)
		return nil
	})
}

// suspend decodes an api.SuspendRequest and answers with what set returns
// for the path's id and the request's reason.
func suspend[T any](set func(ctx context.Context, id, reason string) (T, error)) handlerFunc {
	return change(func(ctx context.Context, id string, req api.SuspendRequest) (T, error) {
		return set(ctx, id, req.Reason)
	})
}

// resume is read of the path's id after an optional empty body
// (decodeOptional).
func resume[T any](get func(context.Context, string) (T, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := decodeOptional(w, r); err != nil {
			return err
		}
		return read("id", get)(w, r)
	}
}

// remove answers 204 once del has removed the path value key.
func remove(key string, del func(context.Context, string) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		return done(w, del(r.Context(), r.PathValue(key)))
	}
}

// decodeOptional accepts an empty body or an empty JSON object.
func decodeOptional(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	var empty struct{}
	return decode(w, r, &empty)
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := a.svc.Users(r.Context())
	return answer(w, map[string]any{"users": us}, err)
}

func (a *API) listGrants(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	gs, err := a.svc.Grants(r.Context(), api.GrantFilter{ClientID: q.Get("client_id"), Username: q.Get("username")})
	return answer(w, map[string]any{"grants": gs}, err)
}

func (a *API) revokeGrants(w http.ResponseWriter, r *http.Request, req api.RevokeRequest) error {
	out, err := a.svc.RevokeGrants(r.Context(), req)
	return answer(w, out, err)
}

func (a *API) createAPIKey(w http.ResponseWriter, r *http.Request, req api.APIKeyRequest) error {
	k, err := a.svc.CreateAPIKey(r.Context(), req)
	if err != nil {
		return err
	}
	a.created(w, k)
	return nil
}

func (a *API) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := a.svc.APIKeys(r.Context(), api.APIKeyFilter{Owner: r.URL.Query().Get("owner")})
	return answer(w, map[string]any{"apikeys": ks}, err)
}

func (a *API) rotateAPIKey(w http.ResponseWriter, r *http.Request) error {
	var req api.RotateRequest
	if r.ContentLength != 0 { // the body is optional
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	k, err := a.svc.RotateAPIKey(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	a.created(w, k)
	return nil
}

// created answers 201 with a new key and its URL.
func (a *API) created(w http.ResponseWriter, k *api.NewAPIKey) {
	w.Header().Set("Location", a.base+Path+"apikeys/"+k.ID)
	writeJSON(w, http.StatusCreated, k)
}

// answer writes v (200), or returns err.
func answer(w http.ResponseWriter, v any, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// done answers 204, or returns err.
func done(w http.ResponseWriter, err error) error {
	if err == nil {
		noContent(w)
	}
	return err
}
