package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/authdb"
)

// SessionStore keeps browser sessions by the hash of their cookie value.
type SessionStore interface {
	CreateSession(ctx context.Context, tokenHash []byte, s *authdb.Session) error
	SessionByToken(ctx context.Context, tokenHash []byte, now time.Time) (*authdb.Session, error)
	RotateSession(ctx context.Context, oldHash, newHash []byte, s *authdb.Session) error
	DeleteSession(ctx context.Context, tokenHash []byte) error
}

// Session lifetimes: an anonymous session (before login) lives an hour;
// a logged-in one eight hours from login.
const (
	AnonymousSessionLifetime = time.Hour
	SessionLifetime          = 8 * time.Hour
)

// Session is a loaded session with its cookie value.
type Session struct {
	authdb.Session
	// Token is the cookie value (only its hash is stored).
	Token string
}

// LoggedIn reports whether a user is logged in.
func (s *Session) LoggedIn() bool { return s != nil && s.Subject != "" }

// Sessions manages the session cookie of a site's pages.
type Sessions struct {
	// Store keeps the sessions.
	Store SessionStore
	// Secure marks an https site: the cookie is Secure and named with the
	// __Host- prefix.
	Secure bool
	// Now is the clock.
	Now func() time.Time
	// Name is the cookie's base name (default "lapis_session"); sites
	// with their own sessions on the same host (the developer portal) use
	// another.
	Name string
}

// CookieName is __Host-lapis_session over https (Secure, Path=/, no
// Domain: the browser then refuses it from any other origin), else
// lapis_session (with Name in place of lapis_session when set).
func (m *Sessions) CookieName() string {
	n := m.Name
	if n == "" {
		n = "lapis_session"
	}
	if m.Secure {
		return "__Host-" + n
	}
	return n
}

// SetCookie sets the session cookie to token until expires (HttpOnly,
// SameSite=Lax, Path=/).
func (m *Sessions) SetCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: m.CookieName(), Value: token, Path: "/", Expires: expires,
		MaxAge: int(time.Until(expires) / time.Second), HttpOnly: true, Secure: m.Secure, SameSite: http.SameSiteLaxMode,
	})
}

// Load returns the request's valid session, or nil.
func (m *Sessions) Load(ctx context.Context, r *http.Request) (*Session, error) {
	c, err := r.Cookie(m.CookieName())
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	st, err := m.Store.SessionByToken(ctx, HashToken(c.Value), m.Now())
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &Session{Session: *st, Token: c.Value}, nil
}

// Ensure returns the request's session, creating an anonymous one (with
// its cookie) when there is none.
func (m *Sessions) Ensure(w http.ResponseWriter, r *http.Request) (*Session, error) {
	sess, err := m.Load(r.Context(), r)
	if err != nil || sess != nil {
		return sess, err
	}
	sess = &Session{Session: authdb.Session{ID: uuid.NewString(), CSRF: RandomToken(), Expires: m.Now().Add(AnonymousSessionLifetime)}, Token: RandomToken()}
	if err := m.Store.CreateSession(r.Context(), HashToken(sess.Token), &sess.Session); err != nil {
		return nil, err
	}
	m.SetCookie(w, sess.Token, sess.Expires)
	return sess, nil
}

// LogIn binds the session to the account subject, rotating the cookie
// value and the CSRF token (no session fixation); the session then lives
// SessionLifetime.
func (m *Sessions) LogIn(w http.ResponseWriter, r *http.Request, sess *Session, subject string) error {
	now := m.Now()
	next := authdb.Session{ID: sess.ID, Subject: subject, CSRF: RandomToken(), AuthTime: now, Expires: now.Add(SessionLifetime)}
	token := RandomToken()
	if err := m.Store.RotateSession(r.Context(), HashToken(sess.Token), HashToken(token), &next); err != nil {
		return err
	}
	sess.Session, sess.Token = next, token
	m.SetCookie(w, token, next.Expires)
	return nil
}

// LogOut deletes the session and its cookie.
func (m *Sessions) LogOut(w http.ResponseWriter, r *http.Request, sess *Session) error {
	if err := m.Store.DeleteSession(r.Context(), HashToken(sess.Token)); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: m.CookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: m.Secure, SameSite: http.SameSiteLaxMode})
	return nil
}

// CheckCSRF compares the form's csrf field with the session's token in
// constant time (r.PostForm must be parsed).
func CheckCSRF(sess *Session, r *http.Request) bool {
	got := r.PostForm.Get("csrf")
	return sess != nil && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) == 1
}
