package developer

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// Sessions is the portal's browser-session store (web.SessionStore), in
// its own table: a portal session never logs anyone in to the
// authorization server's pages, nor the reverse.
type Sessions struct{ s *Service }

// Sessions returns the service's session store.
func (s *Service) Sessions() *Sessions { return &Sessions{s: s} }

// CreateSession stores a new session by the hash of its cookie value.
func (m *Sessions) CreateSession(ctx context.Context, tokenHash []byte, se *authdb.Session) error {
	m.s.maybePrune(ctx)
	_, err := m.s.w.ExecContext(ctx, m.s.rebind("INSERT INTO dev_session (token_hash, sid, subject, csrf, auth_time, expires_at) VALUES (?, ?, ?, ?, ?, ?)"),
		hex.EncodeToString(tokenHash), se.ID, se.Subject, se.CSRF, unix(se.AuthTime), se.Expires.Unix())
	return err
}

// SessionByToken returns the unexpired session with the cookie hash
// (authdb.ErrNotFound when none).
func (m *Sessions) SessionByToken(ctx context.Context, tokenHash []byte, now time.Time) (*authdb.Session, error) {
	var se authdb.Session
	var auth, exp int64
	err := m.s.r.QueryRowContext(ctx, m.s.rebind("SELECT sid, subject, csrf, auth_time, expires_at FROM dev_session WHERE token_hash = ?"), hex.EncodeToString(tokenHash)).
		Scan(&se.ID, &se.Subject, &se.CSRF, &auth, &exp)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && exp <= now.Unix()) {
		return nil, authdb.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if auth > 0 {
		se.AuthTime = time.Unix(auth, 0).UTC()
	}
	se.Expires = time.Unix(exp, 0).UTC()
	return &se, nil
}

// RotateSession replaces the session's cookie hash and contents (at
// login: no session fixation).
func (m *Sessions) RotateSession(ctx context.Context, oldHash, newHash []byte, se *authdb.Session) error {
	res, err := m.s.w.ExecContext(ctx, m.s.rebind("UPDATE dev_session SET token_hash = ?, subject = ?, csrf = ?, auth_time = ?, expires_at = ? WHERE token_hash = ?"),
		hex.EncodeToString(newHash), se.Subject, se.CSRF, unix(se.AuthTime), se.Expires.Unix(), hex.EncodeToString(oldHash))
	return changed(res, err, authdb.ErrNotFound)
}

// DeleteSession deletes a session.
func (m *Sessions) DeleteSession(ctx context.Context, tokenHash []byte) error {
	_, err := m.s.w.ExecContext(ctx, m.s.rebind("DELETE FROM dev_session WHERE token_hash = ?"), hex.EncodeToString(tokenHash))
	return err
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
