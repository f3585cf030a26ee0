package admin

import (
	"context"
	"log/slog"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/ratelimit"
)

// rateLimitOf is the answer form of a stored limit in a client or key
// (empty, so absent from JSON, when it has none).
func rateLimitOf(r authdb.RateLimit) api.RateLimit {
	return api.RateLimit{Limit: r.Limit, Burst: r.Burst}
}

// rateLimitAnswer is the answer of a change: the limit, "default" when
// none.
func rateLimitAnswer(r authdb.RateLimit) *api.RateLimit {
	out := rateLimitOf(r)
	if r.IsZero() {
		out.Limit = api.RateLimitDefault
	}
	return &out
}

// checkRateLimit validates a requested limit and returns its stored
// (canonical) form.
func checkRateLimit(req api.RateLimit) (authdb.RateLimit, error) {
	c, err := ratelimit.ParseCredentialLimit(req.Limit, req.Burst)
	if err != nil {
		return authdb.RateLimit{}, invalid("rate_limit", "is not valid: "+err.Error()+` (or "none", "default")`)
	}
	spec, burst := c.Spec()
	return authdb.RateLimit{Limit: spec, Burst: burst}, nil
}

// rateLimitAttrs describes a limit in the change log.
func rateLimitAttrs(r authdb.RateLimit) []slog.Attr {
	a := rateLimitAnswer(r)
	return []slog.Attr{slog.String("rate_limit", a.Limit), slog.Int("rate_limit_burst", a.Burst)}
}

// SetClientRateLimit replaces the client id's own rate limit on the FHIR
// API ("default" restores the server's default, "none" lifts the
// per-client limit); every running server applies it within one poll of
// the revocation log (~250 ms).
func (s *Service) SetClientRateLimit(ctx context.Context, id string, req api.RateLimit) (*api.RateLimit, error) {
	return s.setRateLimit(ctx, req, "client", func(ctx context.Context, r authdb.RateLimit) error {
		return s.st.SetClientRateLimit(ctx, id, r)
	}, change{action: "set_client_rate_limit", targets: []string{id}, attrs: []slog.Attr{slog.String("client_id", id)}})
}

// SetAPIKeyRateLimit replaces the API key id's own rate limit; see
// SetClientRateLimit.
func (s *Service) SetAPIKeyRateLimit(ctx context.Context, id string, req api.RateLimit) (*api.RateLimit, error) {
	return s.setRateLimit(ctx, req, "api key", func(ctx context.Context, r authdb.RateLimit) error {
		return s.st.SetAPIKeyRateLimit(ctx, id, r)
	}, change{action: "set_apikey_rate_limit", targets: []string{id}, attrs: []slog.Attr{slog.String("key_id", id)}, keys: []string{id}})
}

// setRateLimit checks req, stores it with set (authdb.ErrNotFound is a
// NotFoundError for what) and records ch, with the limit's attributes
// appended, in the change log.
func (s *Service) setRateLimit(ctx context.Context, req api.RateLimit, what string, set func(context.Context, authdb.RateLimit) error, ch change) (*api.RateLimit, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	r, err := checkRateLimit(req)
	if err != nil {
		return nil, err
	}
	if err := set(ctx, r); err != nil {
		return nil, notFound(err, what)
	}
	ch.attrs = append(ch.attrs, rateLimitAttrs(r)...)
	if err := s.done(ctx, a, ch); err != nil {
		return nil, err
	}
	return rateLimitAnswer(r), nil
}
