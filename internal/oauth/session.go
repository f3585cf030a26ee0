package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/authdb"
)

// SessionStore keeps the browser sessions of the authorization pages and
// the authorization requests in progress, by hash only.
type SessionStore interface {
	CreateSession(ctx context.Context, tokenHash []byte, s *authdb.Session) error
	SessionByToken(ctx context.Context, tokenHash []byte, now time.Time) (*authdb.Session, error)
	RotateSession(ctx context.Context, oldHash, newHash []byte, s *authdb.Session) error
	DeleteSession(ctx context.Context, tokenHash []byte) error
	SaveAuthzRequest(ctx context.Context, idHash []byte, sid string, data []byte, expires time.Time) error
	AuthzRequest(ctx context.Context, idHash []byte, now time.Time) (sid string, data []byte, err error)
	ConsumeAuthzRequest(ctx context.Context, idHash []byte, now time.Time) (sid string, data []byte, err error)
}

// Session lifetimes: an anonymous session (before login) lives an hour;
// a logged-in one eight hours from login.
const (
	AnonymousSessionLifetime = time.Hour
	SessionLifetime          = 8 * time.Hour
)

// session is a loaded session with its cookie value.
type session struct {
	authdb.Session
	token string
}

// loggedIn reports whether a user is logged in.
func (s *session) loggedIn() bool { return s != nil && s.Subject != "" }

// randomToken returns 256 random bits, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is the stored form of a cookie, launch or request value.
func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// cookieName is __Host-lapis_session over https (Secure, Path=/, no
// Domain: the browser then refuses it from any other origin), else
// lapis_session.
func (s *Server) cookieName() string {
	if s.secure {
		return "__Host-lapis_session"
	}
	return "lapis_session"
}

func (s *Server) setSessionCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: token, Path: "/", Expires: expires,
		MaxAge: int(time.Until(expires) / time.Second), HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

// loadSession returns the request's valid session, or nil.
func (s *Server) loadSession(ctx context.Context, r *http.Request) (*session, error) {
	c, err := r.Cookie(s.cookieName())
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	st, err := s.cfg.Sessions.SessionByToken(ctx, hashToken(c.Value), s.now())
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &session{Session: *st, token: c.Value}, nil
}

// ensureSession returns the request's session, creating an anonymous one
// (with its cookie) when there is none.
func (s *Server) ensureSession(w http.ResponseWriter, r *http.Request) (*session, error) {
	sess, err := s.loadSession(r.Context(), r)
	if err != nil || sess != nil {
		return sess, err
	}
	sess = &session{Session: authdb.Session{ID: uuid.NewString(), CSRF: randomToken(), Expires: s.now().Add(AnonymousSessionLifetime)}, token: randomToken()}
	if err := s.cfg.Sessions.CreateSession(r.Context(), hashToken(sess.token), &sess.Session); err != nil {
		return nil, err
	}
	s.setSessionCookie(w, sess.token, sess.Expires)
	return sess, nil
}

// logIn binds the session to acct, rotating the cookie value and the CSRF
// token (no session fixation).
func (s *Server) logIn(w http.ResponseWriter, r *http.Request, sess *session, acct *authdb.Account) error {
	now := s.now()
	next := authdb.Session{ID: sess.ID, Subject: acct.Subject, CSRF: randomToken(), AuthTime: now, Expires: now.Add(SessionLifetime)}
	token := randomToken()
	if err := s.cfg.Sessions.RotateSession(r.Context(), hashToken(sess.token), hashToken(token), &next); err != nil {
		return err
	}
	sess.Session, sess.token = next, token
	s.setSessionCookie(w, token, next.Expires)
	return nil
}

// checkCSRF compares the form's csrf field with the session's token in
// constant time.
func checkCSRF(sess *session, r *http.Request) bool {
	got := r.PostForm.Get("csrf")
	return sess != nil && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) == 1
}
