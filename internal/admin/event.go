package admin

import (
	"context"
	"log/slog"
	"strings"

	"github.com/lapis-health/lapis/internal/audit"
)

// change is what one action changed, for its log line and audit event:
// identifiers only, never secrets or free text.
type change struct {
	// action names it: create_client, delete_user, rotate_apikey, …
	action string
	// targets are the ids it changed, in the event's description.
	targets []string
	// attrs are the log line's attributes.
	attrs []slog.Attr
	// keys are the API keys it created or changed (audit entities).
	keys []string
}

// kinds maps actions to audit kinds (the others are audit.KindAdmin).
var kinds = map[string]audit.Kind{
	"create_apikey": audit.KindAPIKeyCreated,
	"rotate_apikey": audit.KindAPIKeyRotated,
	"revoke_apikey": audit.KindAPIKeyRevoked,
}

// actor returns the actor of a change, or errNoActor.
func (s *Service) actor(ctx context.Context) (Actor, error) {
	a, ok := ActorFrom(ctx)
	if !ok || a.ClientID == "" {
		return Actor{}, errNoActor
	}
	return a, nil
}

// done logs c and records its one audit event, returning an *AuditError
// when the event could not be made durable.
func (s *Service) done(ctx context.Context, a Actor, c change) error {
	attrs := append([]slog.Attr{slog.String("action", c.action), slog.String("admin_client_id", a.ClientID)}, c.attrs...)
	s.log.LogAttrs(ctx, slog.LevelInfo, "admin", attrs...)
	if s.audit == nil {
		return nil
	}
	kind, ok := kinds[c.action]
	if !ok {
		kind = audit.KindAdmin
	}
	targets := make([]string, 0, len(c.targets))
	for _, t := range c.targets {
		if t = safeID(t); t != "" {
			targets = append(targets, t)
		}
	}
	e := audit.Event{Time: s.now(), Kind: kind, Action: "E", Outcome: audit.OutcomeSuccess,
		Description: strings.Join(append([]string{"admin", c.action}, targets...), " "),
		ClientID:    a.ClientID, Subject: a.Subject, Method: a.Method, CredentialID: a.CredentialID,
		Address: a.Address, UserAgent: truncate(a.UserAgent, 256)}
	for _, id := range c.keys {
		e.Entities = append(e.Entities, audit.Entity{Type: "Basic", ID: id, Role: "apikey"})
	}
	if err := s.audit.Commit(ctx, e); err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "admin: audit record failed", append(attrs, slog.String("error", err.Error()))...)
		return &AuditError{Action: c.action, Target: strings.Join(targets, " "), Err: err}
	}
	return nil
}

// safeID keeps a short identifier-like value (ids, usernames) for the
// event's description.
func safeID(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-:.@+/", c) >= 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
