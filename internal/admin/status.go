package admin

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/randtoken"
)

// maxReason bounds a suspension reason (characters).
const maxReason = 500

// RotateClientSecret gives the confidential client id a new secret and
// returns it (shown only here; stored as its SHA-256). The previous
// secret keeps authenticating until overlap has passed (0 ends it at
// once), then only the new one does. Only one previous secret is kept: a
// second rotation within the overlap retires the oldest at once.
func (s *Service) RotateClientSecret(ctx context.Context, id string, overlap time.Duration) (*api.NewSecret, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	if overlap < 0 || overlap > api.MaxDuration {
		return nil, invalid("overlap", "must be between 0 and 100 years")
	}
	secret := randtoken.New()
	now := s.now()
	until := now.Add(overlap)
	switch err := s.st.RotateClientSecret(ctx, id, authdb.HashSecret(secret), until, now); {
	case errors.Is(err, authdb.ErrNotFound):
		return nil, &NotFoundError{What: "client"}
	case errors.Is(err, authdb.ErrNotConfidential):
		return nil, &ConflictError{Reason: "only a confidential client has a secret to rotate"}
	case err != nil:
		return nil, err
	}
	if err := s.done(ctx, a, change{action: "rotate_client_secret", targets: []string{id},
		attrs: []slog.Attr{slog.String("client_id", id), slog.Duration("overlap", overlap)}}); err != nil {
		return nil, err
	}
	return &api.NewSecret{ClientID: id, ClientSecret: secret, OldValidUntil: until.UTC().Truncate(time.Second)}, nil
}

// checkReason validates a suspension reason.
func checkReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", invalid("reason", "must not be empty: say why the credential is suspended")
	case !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > maxReason:
		return "", invalid("reason", "must be valid text of at most 500 characters")
	}
	return reason, nil
}

// SuspendClient suspends the client id: the token endpoint refuses it
// (invalid_client), the authorization endpoint shows it as suspended, its
// refresh tokens are refused, and its access tokens stop verifying on
// every instance within one revocation-log poll (at once on this one).
// Suspending a suspended client changes nothing and records no event.
func (s *Service) SuspendClient(ctx context.Context, id, reason string) (*api.OAuthClient, error) {
	return s.setClient(ctx, id, reason, true)
}

// ResumeClient lifts the suspension of the client id (idempotent).
func (s *Service) ResumeClient(ctx context.Context, id string) (*api.OAuthClient, error) {
	return s.setClient(ctx, id, "", false)
}

func (s *Service) setClient(ctx context.Context, id, reason string, on bool) (*api.OAuthClient, error) {
	return setStatus(ctx, s, credential[api.OAuthClient]{kind: "client", what: "client", id: id,
		suspend: s.st.SuspendClient, resume: s.st.ResumeClient,
		load: func(ctx context.Context) (string, api.OAuthClient, error) {
			c, err := s.st.Client(ctx, id)
			if err != nil {
				return "", api.OAuthClient{}, err
			}
			return c.Owner, oauthClient(c), nil
		},
		change: change{targets: []string{id}, attrs: []slog.Attr{slog.String("client_id", id)}},
	}, reason, on)
}

// SuspendAPIKey suspends the API key id: it is refused at once on this
// instance and within one revocation-log poll on the others.
// Suspending a suspended key changes nothing and records no event.
func (s *Service) SuspendAPIKey(ctx context.Context, id, reason string) (*api.APIKey, error) {
	return s.setKey(ctx, id, reason, true)
}

// ResumeAPIKey lifts the suspension of the API key id (idempotent).
func (s *Service) ResumeAPIKey(ctx context.Context, id string) (*api.APIKey, error) {
	return s.setKey(ctx, id, "", false)
}

func (s *Service) setKey(ctx context.Context, id, reason string, on bool) (*api.APIKey, error) {
	return setStatus(ctx, s, credential[api.APIKey]{kind: "apikey", what: "api key", id: id,
		suspend: s.st.SuspendAPIKey, resume: s.st.ResumeAPIKey,
		load: func(ctx context.Context) (string, api.APIKey, error) {
			k, err := s.st.APIKey(ctx, id)
			if err != nil {
				return "", api.APIKey{}, err
			}
			return k.Owner, apiKeyOf(k, s.now()), nil
		},
		change: change{targets: []string{id}, attrs: []slog.Attr{slog.String("key_id", id)}, keys: []string{id}},
	}, reason, on)
}

// credential is a client or an API key whose suspension setStatus
// changes: kind names it in actions and notifications ("client",
// "apikey"), what in a NotFoundError; load reads its owner and its API
// form; change is its audit event but for the action.
type credential[T any] struct {
	kind, what, id string
	suspend        func(ctx context.Context, id, reason string, now time.Time) (bool, error)
	resume         func(ctx context.Context, id string, now time.Time) (bool, error)
	load           func(ctx context.Context) (owner string, out T, err error)
	change         change
}

// setStatus suspends (on) or resumes c: one audit event and one
// notification when that changed anything, and c as it is now.
func setStatus[T any](ctx context.Context, s *Service, c credential[T], reason string, on bool) (*T, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	action, status := "resume_"+c.kind, "resumed"
	var changed bool
	if on {
		action, status = "suspend_"+c.kind, "suspended"
		if reason, err = checkReason(reason); err != nil {
			return nil, err
		}
		changed, err = c.suspend(ctx, c.id, reason, s.now())
	} else {
		changed, err = c.resume(ctx, c.id, s.now())
	}
	if err != nil {
		return nil, notFound(err, c.what)
	}
	owner, out, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	if changed {
		c.change.action = action
		if err := s.done(ctx, a, c.change); err != nil {
			return nil, err
		}
		s.notify(ctx, StatusChange{Kind: c.kind, ID: c.id, Owner: owner, Status: status, Reason: reason})
	}
	return &out, nil
}

// notify passes a status change to the OnStatus hook, logging its error.
func (s *Service) notify(ctx context.Context, c StatusChange) {
	if s.onStatus == nil {
		return
	}
	if err := s.onStatus(ctx, c); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "admin: status hook failed", slog.String("kind", c.Kind), slog.String("id", c.ID), slog.String("error", err.Error()))
	}
}
