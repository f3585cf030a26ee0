package admin

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

func apiKeyOf(k *authdb.APIKey, now time.Time) api.APIKey {
	return api.APIKey{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Scopes: nonNil(k.Scopes), Patient: k.Patient, AllowIPs: k.AllowIPs,
		CreatedAt: k.CreatedAt.UTC(), ExpiresAt: k.ExpiresAt.UTC(), RevokedAt: k.RevokedAt.UTC(), LastUsedAt: k.LastUsedAt.UTC(),
		ReplacedBy: k.ReplacedBy, Owner: k.Owner, Status: k.Status(now), RateLimit: rateLimitOf(k.RateLimit),
		LastUsedAddr: k.LastUsedAddr, SuspendedAt: k.SuspendedAt.UTC(), SuspendReason: k.SuspendReason}
}

func newAPIKey(key string, k *authdb.APIKey, replaces string, oldUntil time.Time) *api.NewAPIKey {
	return &api.NewAPIKey{Key: key, ID: k.ID, Prefix: k.Prefix, Name: k.Name, Scopes: k.Scopes, Patient: k.Patient, AllowIPs: k.AllowIPs,
		ExpiresAt: k.ExpiresAt.UTC().Truncate(time.Second), Replaces: replaces, OldValidUntil: oldUntil.UTC().Truncate(time.Second), Owner: k.Owner,
		RateLimit: rateLimitOf(k.RateLimit)}
}

// keyInvalid words package apikey's validation errors for any front end
// (they name the CLI's flag).
func keyInvalid(err error) error {
	return invalid("", strings.ReplaceAll(err.Error(), "--patient", "patient"))
}

// generate makes a new key: the secret, its prefix and hash, and an id.
func generate() (key string, k *authdb.APIKey, err error) {
	key, prefix, hash, err := apikey.New()
	if err != nil {
		return "", nil, err
	}
	id, err := apikey.NewID()
	if err != nil {
		return "", nil, err
	}
	return key, &authdb.APIKey{ID: id, Hash: hash, Prefix: prefix}, nil
}

// CreateAPIKey creates an API key; the answer holds the key, shown only
// here (it is stored as its SHA-256).
func (s *Service) CreateAPIKey(ctx context.Context, req api.APIKeyRequest) (*api.NewAPIKey, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return nil, invalid("name", "must not be empty")
	}
	if err := checkOwner(req.Owner); err != nil {
		return nil, err
	}
	var scopes []string
	for _, sc := range req.Scopes {
		scopes = append(scopes, strings.Fields(sc)...)
	}
	if err := apikey.CheckScopes(scopes, req.Patient); err != nil {
		return nil, keyInvalid(err)
	}
	ips, err := apikey.ParseAllowList(req.AllowIPs)
	if err != nil {
		return nil, keyInvalid(err)
	}
	if s.recs != nil && !req.Force && req.Patient != "" {
		if err := missingRecord(oauth.CheckPatient(ctx, s.recs, req.Patient), "key"); err != nil {
			return nil, err
		}
	}
	rl, err := checkRateLimit(req.RateLimit)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var expires time.Time
	switch {
	case req.ExpiresIn != nil && req.ExpiresAt != nil:
		return nil, invalid("", "give expires_in or expires_at, not both")
	case req.ExpiresIn != nil:
		if *req.ExpiresIn <= 0 {
			return nil, invalid("expires_in", "must be positive")
		}
		expires = now.Add(time.Duration(*req.ExpiresIn))
	case req.ExpiresAt != nil:
		if !req.ExpiresAt.After(now) || req.ExpiresAt.Sub(now) > api.MaxDuration {
			return nil, invalid("expires_at", "must be in the future")
		}
		expires = *req.ExpiresAt
	}
	key, k, err := generate()
	if err != nil {
		return nil, err
	}
	k.Name, k.Scopes, k.Patient, k.AllowIPs, k.Owner, k.CreatedAt, k.ExpiresAt, k.RateLimit = name, scopes, req.Patient, ips, req.Owner, now, expires, rl
	if err := s.st.CreateAPIKey(ctx, k); err != nil {
		return nil, err
	}
	attrs := []slog.Attr{slog.String("key_id", k.ID)}
	if req.Owner != "" {
		attrs = append(attrs, slog.String("owner", req.Owner))
	}
	if !rl.IsZero() {
		attrs = append(attrs, rateLimitAttrs(rl)...)
	}
	if err := s.done(ctx, a, change{action: "create_apikey", targets: []string{k.ID}, attrs: attrs, keys: []string{k.ID}}); err != nil {
		return nil, err
	}
	return newAPIKey(key, k, "", time.Time{}), nil
}

// APIKeys lists the API keys matching f (revoked and expired ones
// included), oldest first, with their status now.
func (s *Service) APIKeys(ctx context.Context, f api.APIKeyFilter) ([]api.APIKey, error) {
	ks, err := s.st.APIKeysBy(ctx, authdb.APIKeyFilter{Owner: f.Owner})
	if err != nil {
		return nil, err
	}
	now := s.now()
	return convert(ks, func(k *authdb.APIKey) api.APIKey { return apiKeyOf(k, now) }), nil
}

// APIKey returns the API key id with its status now.
func (s *Service) APIKey(ctx context.Context, id string) (*api.APIKey, error) {
	k, err := s.st.APIKey(ctx, id)
	if err != nil {
		return nil, notFound(err, "api key")
	}
	out := apiKeyOf(k, s.now())
	return &out, nil
}

// RevokeAPIKey revokes the API key id at once (idempotent).
func (s *Service) RevokeAPIKey(ctx context.Context, id string) error {
	a, err := s.actor(ctx)
	if err != nil {
		return err
	}
	if err := s.st.RevokeAPIKey(ctx, id, s.now()); err != nil {
		return notFound(err, "api key")
	}
	return s.done(ctx, a, change{action: "revoke_apikey", targets: []string{id}, attrs: []slog.Attr{slog.String("key_id", id)}, keys: []string{id}})
}

// RotateAPIKey replaces the API key id by a new one with the same name,
// scopes, patient, allow-list, expiry, owner and rate limit; the old key stays valid
// for req.Grace (default api.DefaultGrace; 0 ends it at once). A key
// already rotated, revoked, expired or suspended is a conflict.
func (s *Service) RotateAPIKey(ctx context.Context, id string, req api.RotateRequest) (*api.NewAPIKey, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	grace := api.DefaultGrace
	if req.Grace != nil {
		grace = time.Duration(*req.Grace)
	}
	if grace < 0 {
		return nil, invalid("grace", "must not be negative")
	}
	key, next, err := generate()
	if err != nil {
		return nil, err
	}
	now := s.now()
	next.CreatedAt = now
	switch err := s.st.RotateAPIKey(ctx, id, next, now.Add(grace), now); {
	case errors.Is(err, authdb.ErrNotFound):
		return nil, &NotFoundError{What: "api key"}
	case errors.Is(err, authdb.ErrAPIKeyRotated):
		return nil, &ConflictError{Reason: "the api key was already rotated, or is revoked, expired or suspended"}
	case err != nil:
		return nil, err
	}
	old, err := s.st.APIKey(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.done(ctx, a, change{action: "rotate_apikey", targets: []string{next.ID, id},
		attrs: []slog.Attr{slog.String("key_id", next.ID), slog.String("replaces", id)}, keys: []string{id, next.ID}}); err != nil {
		return nil, err
	}
	return newAPIKey(key, next, id, old.ExpiresAt), nil
}
