package admin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/authdb"
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
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
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
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	action, status := "resume_client", "resumed"
	var changed bool
	if on {
		action, status = "suspend_client", "suspended"
		if reason, err = checkReason(reason); err != nil {
			return nil, err
		}
		changed, err = s.st.SuspendClient(ctx, id, reason, s.now())
	} else {
		changed, err = s.st.ResumeClient(ctx, id, s.now())
	}
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, &NotFoundError{What: "client"}
	} else if err != nil {
		return nil, err
	}
	c, err := s.st.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := s.done(ctx, a, change{action: action, targets: []string{id}, attrs: []slog.Attr{slog.String("client_id", id)}}); err != nil {
			return nil, err
		}
		s.notify(ctx, StatusChange{Kind: "client", ID: id, Owner: c.Owner, Status: status, Reason: reason})
	}
	out := oauthClient(c)
	return &out, nil
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
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	action, status := "resume_apikey", "resumed"
	var changed bool
	if on {
		action, status = "suspend_apikey", "suspended"
		if reason, err = checkReason(reason); err != nil {
			return nil, err
		}
		changed, err = s.st.SuspendAPIKey(ctx, id, reason, s.now())
	} else {
		changed, err = s.st.ResumeAPIKey(ctx, id, s.now())
	}
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, &NotFoundError{What: "api key"}
	} else if err != nil {
		return nil, err
	}
	k, err := s.st.APIKey(ctx, id)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := s.done(ctx, a, change{action: action, targets: []string{id}, attrs: []slog.Attr{slog.String("key_id", id)}, keys: []string{id}}); err != nil {
			return nil, err
		}
		s.notify(ctx, StatusChange{Kind: "apikey", ID: id, Owner: k.Owner, Status: status, Reason: reason})
	}
	out := apiKeyOf(k, s.now())
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
