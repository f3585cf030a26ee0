package oauth

import (
	"context"
	"time"

	"github.com/lapis-health/lapis/internal/web"
)

// SessionStore keeps the browser sessions of the authorization pages
// (web.SessionStore) and the authorization requests in progress, by hash
// only.
type SessionStore interface {
	web.SessionStore
	SaveAuthzRequest(ctx context.Context, idHash []byte, sid string, data []byte, expires time.Time) error
	AuthzRequest(ctx context.Context, idHash []byte, now time.Time) (sid string, data []byte, err error)
	ConsumeAuthzRequest(ctx context.Context, idHash []byte, now time.Time) (sid string, data []byte, err error)
}

// Session lifetimes (web.AnonymousSessionLifetime and
// web.SessionLifetime): an anonymous session (before login) lives an
// hour; a logged-in one eight hours from login.
const (
	AnonymousSessionLifetime = web.AnonymousSessionLifetime
	SessionLifetime          = web.SessionLifetime
)
