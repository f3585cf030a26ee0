package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/lapis-health/lapis/internal/apikey"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// APIKeyStore is the API key storage of the admin API, implemented by
// *authdb.DB (the same calls as "lapis apikey"). When the admin store does
// not implement it, the apikeys endpoints answer 503.
type APIKeyStore interface {
	CreateAPIKey(ctx context.Context, k *authdb.APIKey) error
	APIKey(ctx context.Context, id string) (*authdb.APIKey, error)
	APIKeys(ctx context.Context) ([]authdb.APIKey, error)
	RevokeAPIKey(ctx context.Context, id string, now time.Time) error
	RotateAPIKey(ctx context.Context, oldID string, next *authdb.APIKey, oldUntil, now time.Time) error
}

// DefaultAPIKeyGrace is how long a rotated key stays valid when the
// request names no grace (as "lapis apikey rotate").
const DefaultAPIKeyGrace = 24 * time.Hour

// AdminDuration is a duration in an admin API body: a JSON integer of
// seconds (3600) or a Go duration string ("720h", "90m"), as the CLI's
// --expires and --grace take.
type AdminDuration time.Duration

// maxAdminDuration keeps now+d representable (about 100 years).
const maxAdminDuration = 100 * 365 * 24 * time.Hour

func (d *AdminDuration) UnmarshalJSON(b []byte) error {
	var v time.Duration
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("bad duration")
		}
		v = p
	default:
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var n json.Number
		if err := dec.Decode(&n); err != nil {
			return err
		}
		i, err := n.Int64()
		if err != nil {
			return errors.New("bad duration")
		}
		if i > math.MaxInt64/int64(time.Second) || i < math.MinInt64/int64(time.Second) {
			return errors.New("bad duration")
		}
		v = time.Duration(i) * time.Second
	}
	if v > maxAdminDuration {
		return errors.New("bad duration")
	}
	*d = AdminDuration(v)
	return nil
}

// AdminAPIKeyRequest is the body of POST apikeys: the flags of "lapis
// apikey create".
type AdminAPIKeyRequest struct {
	// Name labels the key (required).
	Name string `json:"name"`
	// Scopes are SMART scopes, system/… or patient/… (each entry may hold
	// several, space-separated).
	Scopes []string `json:"scopes"`
	// Patient is the patient id patient/ scopes are bound to; it must
	// exist unless Force is set.
	Patient string `json:"patient"`
	// ExpiresIn is the key's lifetime (seconds or a duration string);
	// ExpiresAt an RFC 3339 end of validity. At most one; neither: no
	// expiry.
	ExpiresIn *AdminDuration `json:"expires_in"`
	ExpiresAt *time.Time     `json:"expires_at"`
	// AllowIPs are CIDR prefixes or addresses (IPv4 or IPv6; entries may
	// hold several, comma- or space-separated).
	AllowIPs []string `json:"allow_ips"`
	// Force creates the key even if Patient does not exist (yet).
	Force bool `json:"force,omitempty"`
}

// AdminAPIKeyRotateRequest is the (optional) body of POST
// apikeys/{id}/rotate.
type AdminAPIKeyRotateRequest struct {
	// Grace is how long the old key stays valid (seconds or a duration
	// string; 0 ends it at once; absent: DefaultAPIKeyGrace).
	Grace *AdminDuration `json:"grace"`
}

// AdminNewAPIKey is the answer of create and rotate: the fields of "lapis
// apikey create|rotate --json". Key is shown only here.
type AdminNewAPIKey struct {
	Key       string    `json:"key"`
	ID        string    `json:"id"`
	Prefix    string    `json:"prefix"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Patient   string    `json:"patient,omitempty"`
	AllowIPs  []string  `json:"allow_ips,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Rotate only: the replaced key and the end of its grace period.
	Replaces      string    `json:"replaces,omitempty"`
	OldValidUntil time.Time `json:"old_valid_until,omitzero"`
}

// AdminAPIKey is a stored key as listings show it: the fields of "lapis
// apikey list --json" (never the key or its hash) and its status.
type AdminAPIKey struct {
	authdb.APIKey
	// Status is active, rotated, expired or revoked.
	Status string `json:"status"`
}

func adminAPIKey(k *authdb.APIKey, now time.Time) AdminAPIKey {
	v := *k
	v.Hash = nil
	return AdminAPIKey{APIKey: v, Status: k.Status(now)}
}

func newAPIKeyAnswer(key string, k *authdb.APIKey, replaces string, oldUntil time.Time) AdminNewAPIKey {
	return AdminNewAPIKey{Key: key, ID: k.ID, Prefix: k.Prefix, Name: k.Name, Scopes: k.Scopes, Patient: k.Patient, AllowIPs: k.AllowIPs,
		ExpiresAt: k.ExpiresAt.UTC().Truncate(time.Second), Replaces: replaces, OldValidUntil: oldUntil.UTC().Truncate(time.Second)}
}

// apiKeyError rephrases authn's CLI-worded validation errors for the API.
func apiKeyError(err error) *Error {
	return errInvalidRequest(strings.ReplaceAll(err.Error(), "--patient", "patient"))
}

// routeAPIKeys dispatches the apikeys paths (rest is what follows
// "apikeys/", hasID whether there was a "/"):
//
//	POST   apikeys              create; 201 with the key (shown once)
//	GET    apikeys              list (never the key or its hash)
//	GET    apikeys/{id}         one key
//	DELETE apikeys/{id}         revoke at once; 204
//	POST   apikeys/{id}/rotate  replace; the old key stays valid for "grace"
func (a *adminCall) routeAPIKeys(rest string, hasID bool) {
	ks, ok := a.st.(APIKeyStore)
	if !ok {
		a.fail(&Error{Code: codeUnavailable, Description: "api keys are not configured", Status: http.StatusServiceUnavailable})
		return
	}
	id, sub, hasSub := strings.Cut(rest, "/")
	switch {
	case !hasID:
		if a.s.allowMethods(a.w, a.r, http.MethodGet, http.MethodPost) {
			if a.r.Method == http.MethodPost {
				a.createAPIKey(ks)
			} else {
				a.listAPIKeys(ks)
			}
		}
	case id == "":
		a.fail(adminNotFound("resource"))
	case !hasSub:
		if a.s.allowMethods(a.w, a.r, http.MethodGet, http.MethodDelete) {
			if a.r.Method == http.MethodDelete {
				a.revokeAPIKey(ks, id)
			} else {
				a.getAPIKey(ks, id)
			}
		}
	case sub == "rotate":
		if a.s.allowMethods(a.w, a.r, http.MethodPost) {
			a.rotateAPIKey(ks, id)
		}
	default:
		a.fail(adminNotFound("resource"))
	}
}

func (a *adminCall) createAPIKey(ks APIKeyStore) {
	var req AdminAPIKeyRequest
	if err := decodeJSONBody(a.w, a.r, &req); err != nil {
		a.fail(err)
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		a.fail(errInvalidRequest("name must not be empty"))
		return
	}
	var scopes []string
	for _, s := range req.Scopes {
		scopes = append(scopes, strings.Fields(s)...)
	}
	if err := apikey.CheckScopes(scopes, req.Patient); err != nil {
		a.fail(apiKeyError(err))
		return
	}
	ips, err := apikey.ParseAllowList(req.AllowIPs)
	if err != nil {
		a.fail(apiKeyError(err))
		return
	}
	now := a.s.now()
	var expires time.Time
	switch {
	case req.ExpiresIn != nil && req.ExpiresAt != nil:
		a.fail(errInvalidRequest("give expires_in or expires_at, not both"))
		return
	case req.ExpiresIn != nil:
		if *req.ExpiresIn <= 0 {
			a.fail(errInvalidRequest("expires_in must be positive"))
			return
		}
		expires = now.Add(time.Duration(*req.ExpiresIn))
	case req.ExpiresAt != nil:
		if !req.ExpiresAt.After(now) || req.ExpiresAt.Sub(now) > maxAdminDuration {
			a.fail(errInvalidRequest("expires_at must be in the future"))
			return
		}
		expires = *req.ExpiresAt
	}
	if err := a.s.adminCheckPatient(a.r.Context(), req.Force, req.Patient); err != nil {
		a.fail(err)
		return
	}
	key, prefix, hash, err := apikey.New()
	if err != nil {
		a.fail(err)
		return
	}
	id, err := apikey.NewID()
	if err != nil {
		a.fail(err)
		return
	}
	k := &authdb.APIKey{ID: id, Name: name, Hash: hash, Prefix: prefix, Scopes: scopes, Patient: req.Patient, AllowIPs: ips,
		CreatedAt: now, ExpiresAt: expires}
	if err := ks.CreateAPIKey(a.r.Context(), k); err != nil {
		a.fail(err)
		return
	}
	a.audit("create_apikey", slog.String("key_id", id))
	a.w.Header().Set("Location", a.s.apiKeyURL(id))
	writeJSON(a.w, http.StatusCreated, newAPIKeyAnswer(key, k, "", time.Time{}))
}

func (a *adminCall) listAPIKeys(ks APIKeyStore) {
	keys, err := ks.APIKeys(a.r.Context())
	if err != nil {
		a.fail(err)
		return
	}
	now := a.s.now()
	out := make([]AdminAPIKey, 0, len(keys))
	for i := range keys {
		out = append(out, adminAPIKey(&keys[i], now))
	}
	writeJSON(a.w, http.StatusOK, map[string]any{"apikeys": out})
}

func (a *adminCall) getAPIKey(ks APIKeyStore, id string) {
	k, err := ks.APIKey(a.r.Context(), id)
	if errors.Is(err, authdb.ErrNotFound) {
		a.fail(adminNotFound("api key"))
		return
	}
	if err != nil {
		a.fail(err)
		return
	}
	writeJSON(a.w, http.StatusOK, adminAPIKey(k, a.s.now()))
}

func (a *adminCall) revokeAPIKey(ks APIKeyStore, id string) {
	if err := ks.RevokeAPIKey(a.r.Context(), id, a.s.now()); errors.Is(err, authdb.ErrNotFound) {
		a.fail(adminNotFound("api key"))
		return
	} else if err != nil {
		a.fail(err)
		return
	}
	a.audit("revoke_apikey", slog.String("key_id", id))
	noContent(a.w)
}

func (a *adminCall) rotateAPIKey(ks APIKeyStore, id string) {
	var req AdminAPIKeyRotateRequest
	if a.r.ContentLength != 0 {
		if err := decodeJSONBody(a.w, a.r, &req); err != nil {
			a.fail(err)
			return
		}
	}
	grace := DefaultAPIKeyGrace
	if req.Grace != nil {
		grace = time.Duration(*req.Grace)
	}
	if grace < 0 {
		a.fail(errInvalidRequest("grace must not be negative"))
		return
	}
	key, prefix, hash, err := apikey.New()
	if err != nil {
		a.fail(err)
		return
	}
	nid, err := apikey.NewID()
	if err != nil {
		a.fail(err)
		return
	}
	ctx := a.r.Context()
	now := a.s.now()
	next := &authdb.APIKey{ID: nid, Hash: hash, Prefix: prefix, CreatedAt: now}
	switch err := ks.RotateAPIKey(ctx, id, next, now.Add(grace), now); {
	case errors.Is(err, authdb.ErrNotFound):
		a.fail(adminNotFound("api key"))
		return
	case errors.Is(err, authdb.ErrAPIKeyRotated):
		a.fail(&Error{Code: codeConflict, Description: "the api key was already rotated, or is revoked or expired", Status: http.StatusConflict})
		return
	case err != nil:
		a.fail(err)
		return
	}
	old, err := ks.APIKey(ctx, id)
	if err != nil {
		a.fail(err)
		return
	}
	a.audit("rotate_apikey", slog.String("key_id", nid), slog.String("replaces", id))
	a.w.Header().Set("Location", a.s.apiKeyURL(nid))
	writeJSON(a.w, http.StatusCreated, newAPIKeyAnswer(key, next, id, old.ExpiresAt))
}

// apiKeyURL is the admin API URL of the key id (the Location of create
// and rotate).
func (s *Server) apiKeyURL(id string) string {
	return strings.TrimRight(s.cfg.Issuer, "/") + PathAdmin + "apikeys/" + id
}
