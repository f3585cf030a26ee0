package authdb

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/lapis-health/lapis/internal/database"
)

// Account is a user who logs in at the authorization pages: a patient or a
// practitioner, linked to the FHIR resource that represents them.
type Account struct {
	// Subject is the stable, opaque user id (the id_token "sub").
	Subject string `json:"subject"`
	// Username is the login name (lower case).
	Username string `json:"username"`
	// PasswordHash is the encoded password hash (never shown).
	PasswordHash string `json:"-"`
	// FHIRUser is "Patient/ID" or "Practitioner/ID".
	FHIRUser string `json:"fhir_user"`
	// CreatedAt is the creation time.
	CreatedAt time.Time `json:"created_at"`
}

// Session is a browser session of the authorization pages.
type Session struct {
	// ID is a stable, non-secret id that survives cookie rotation.
	ID string
	// Subject is the logged-in account's subject ("" before login).
	Subject string
	// CSRF is the session's anti-forgery token.
	CSRF string
	// AuthTime is when the user logged in.
	AuthTime time.Time
	// Expires is the end of the session.
	Expires time.Time
}

// Launch is the context of an EHR launch, stored behind an opaque launch
// value.
type Launch struct {
	// ClientID is the only client that may use the launch.
	ClientID string
	// Subject is the practitioner who launched the app.
	Subject string
	// Patient and Encounter are the ids in context.
	Patient, Encounter string
	// Expires is the end of the launch value's validity.
	Expires time.Time
}

// maybePrune deletes expired sessions, requests, launches and login
// failures now and then (best effort, about one call in 64).
func (d *DB) maybePrune(ctx context.Context, now time.Time) {
	if rand.IntN(64) != 0 {
		return
	}
	cut := now.Unix()
	for _, q := range []string{
		"DELETE FROM oauth_session WHERE expires_at < ?",
		"DELETE FROM oauth_authz_request WHERE expires_at < ?",
		"DELETE FROM oauth_launch WHERE expires_at < ?",
	} {
		_, _ = d.w.ExecContext(ctx, d.rebind(q), cut)
	}
	_, _ = d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_login_failure WHERE at < ?"), now.Add(-24*time.Hour).Unix())
}

const accountCols = "subject, username, password_hash, fhir_user, created_at"

func scanAccount(s scanner) (*Account, error) {
	var a Account
	var created int64
	if err := s.Scan(&a.Subject, &a.Username, &a.PasswordHash, &a.FHIRUser, &created); err != nil {
		return nil, err
	}
	a.CreatedAt = time.Unix(created, 0).UTC()
	return &a, nil
}

// CreateAccount stores a new account. It returns ErrExists if the username
// or subject is taken.
func (d *DB) CreateAccount(ctx context.Context, a *Account) error {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	res, err := d.w.ExecContext(ctx, d.rebind("INSERT INTO oauth_account ("+accountCols+") VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
		a.Subject, a.Username, a.PasswordHash, a.FHIRUser, a.CreatedAt.Unix())
	if err != nil {
		return fmt.Errorf("authdb: create account: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrExists
	}
	return nil
}

func (d *DB) oneAccount(ctx context.Context, where, arg string) (*Account, error) {
	if !Storable(arg) {
		return nil, ErrNotFound
	}
	a, err := scanAccount(d.r.QueryRowContext(ctx, d.rebind("SELECT "+accountCols+" FROM oauth_account WHERE "+where+" = ?"), arg))
	return found(a, err, "account")
}

// AccountByUsername returns the account with username, or ErrNotFound.
func (d *DB) AccountByUsername(ctx context.Context, username string) (*Account, error) {
	return d.oneAccount(ctx, "username", username)
}

// AccountBySubject returns the account with subject, or ErrNotFound.
func (d *DB) AccountBySubject(ctx context.Context, subject string) (*Account, error) {
	return d.oneAccount(ctx, "subject", subject)
}

// Accounts lists every account by username.
func (d *DB) Accounts(ctx context.Context) ([]Account, error) {
	out, err := database.AppendRows(ctx, nil, d.r, rowsOf(scanAccount), "SELECT "+accountCols+" FROM oauth_account ORDER BY username")
	if err != nil {
		return nil, fmt.Errorf("authdb: list accounts: %w", err)
	}
	return out, nil
}

// DeleteAccount removes the account with username and its sessions, or
// returns ErrNotFound.
func (d *DB) DeleteAccount(ctx context.Context, username string) error {
	a, err := d.AccountByUsername(ctx, username)
	if err != nil {
		return err
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: delete account: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, d.rebind("DELETE FROM oauth_account WHERE subject = ?"), a.Subject)
	if err != nil {
		return fmt.Errorf("authdb: delete account: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, d.rebind("DELETE FROM oauth_session WHERE subject = ?"), a.Subject); err != nil {
		return fmt.Errorf("authdb: delete account sessions: %w", err)
	}
	return tx.Commit()
}

// RecordLoginFailure records a failed login for key at time at.
func (d *DB) RecordLoginFailure(ctx context.Context, key string, at time.Time) error {
	d.maybePrune(ctx, at)
	if !Storable(key) {
		return nil // names no account: nothing to lock
	}
	if _, err := d.w.ExecContext(ctx, d.rebind("INSERT INTO oauth_login_failure (key, at) VALUES (?, ?)"), key, at.Unix()); err != nil {
		return fmt.Errorf("authdb: record login failure: %w", err)
	}
	return nil
}

// LoginFailures counts the failed logins recorded for key since since.
func (d *DB) LoginFailures(ctx context.Context, key string, since time.Time) (int, error) {
	var n int
	if !Storable(key) {
		return 0, nil
	}
	if err := d.r.QueryRowContext(ctx, d.rebind("SELECT COUNT(*) FROM oauth_login_failure WHERE key = ? AND at >= ?"), key, since.Unix()).Scan(&n); err != nil {
		return 0, fmt.Errorf("authdb: count login failures: %w", err)
	}
	return n, nil
}

// ClearLoginFailures forgets the failed logins of key (after a success).
func (d *DB) ClearLoginFailures(ctx context.Context, key string) error {
	if !Storable(key) {
		return nil
	}
	if _, err := d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_login_failure WHERE key = ?"), key); err != nil {
		return fmt.Errorf("authdb: clear login failures: %w", err)
	}
	return nil
}

const sessionCols = "sid, subject, csrf, auth_time, expires_at"

// CreateSession stores a session under the hash of its cookie value.
func (d *DB) CreateSession(ctx context.Context, tokenHash []byte, s *Session) error {
	d.maybePrune(ctx, time.Now())
	_, err := d.w.ExecContext(ctx, d.rebind("INSERT INTO oauth_session (token_hash, "+sessionCols+") VALUES (?, ?, ?, ?, ?, ?)"),
		hex.EncodeToString(tokenHash), s.ID, s.Subject, s.CSRF, unixOrZero(s.AuthTime), s.Expires.Unix())
	if err != nil {
		return fmt.Errorf("authdb: create session: %w", err)
	}
	return nil
}

// SessionByToken returns the unexpired session whose cookie value hashes
// to tokenHash, or ErrNotFound.
func (d *DB) SessionByToken(ctx context.Context, tokenHash []byte, now time.Time) (*Session, error) {
	var s Session
	var auth, exp int64
	err := d.r.QueryRowContext(ctx, d.rebind("SELECT "+sessionCols+" FROM oauth_session WHERE token_hash = ? AND expires_at > ?"),
		hex.EncodeToString(tokenHash), now.Unix()).Scan(&s.ID, &s.Subject, &s.CSRF, &auth, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authdb: read session: %w", err)
	}
	if auth != 0 {
		s.AuthTime = time.Unix(auth, 0)
	}
	s.Expires = time.Unix(exp, 0)
	return &s, nil
}

// RotateSession replaces the session stored under oldHash (same ID) with
// s under newHash: the cookie value, subject, CSRF token and expiry change
// together (at login, against session fixation). It returns ErrNotFound if
// the old session is gone.
func (d *DB) RotateSession(ctx context.Context, oldHash, newHash []byte, s *Session) error {
	res, err := d.w.ExecContext(ctx, d.rebind("UPDATE oauth_session SET token_hash = ?, subject = ?, csrf = ?, auth_time = ?, expires_at = ? WHERE token_hash = ? AND sid = ?"),
		hex.EncodeToString(newHash), s.Subject, s.CSRF, unixOrZero(s.AuthTime), s.Expires.Unix(), hex.EncodeToString(oldHash), s.ID)
	if err != nil {
		return fmt.Errorf("authdb: rotate session: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteSession ends the session stored under tokenHash.
func (d *DB) DeleteSession(ctx context.Context, tokenHash []byte) error {
	if _, err := d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_session WHERE token_hash = ?"), hex.EncodeToString(tokenHash)); err != nil {
		return fmt.Errorf("authdb: delete session: %w", err)
	}
	return nil
}

// SaveAuthzRequest stores (or replaces) an authorization request in
// progress, bound to session sid, under the hash of its id.
func (d *DB) SaveAuthzRequest(ctx context.Context, idHash []byte, sid string, data []byte, expires time.Time) error {
	_, err := d.w.ExecContext(ctx, d.rebind("INSERT INTO oauth_authz_request (id_hash, sid, data, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (id_hash) DO UPDATE SET sid = excluded.sid, data = excluded.data, expires_at = excluded.expires_at"),
		hex.EncodeToString(idHash), sid, string(data), expires.Unix())
	if err != nil {
		return fmt.Errorf("authdb: save authorization request: %w", err)
	}
	return nil
}

// AuthzRequest returns the unexpired authorization request stored under
// idHash and the session it is bound to, or ErrNotFound.
func (d *DB) AuthzRequest(ctx context.Context, idHash []byte, now time.Time) (sid string, data []byte, err error) {
	var s string
	err = d.r.QueryRowContext(ctx, d.rebind("SELECT sid, data FROM oauth_authz_request WHERE id_hash = ? AND expires_at > ?"),
		hex.EncodeToString(idHash), now.Unix()).Scan(&sid, &s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, ErrNotFound
	}
	if err != nil {
		return "", nil, fmt.Errorf("authdb: read authorization request: %w", err)
	}
	return sid, []byte(s), nil
}

// ConsumeAuthzRequest atomically deletes and returns the authorization
// request stored under idHash: a second call returns ErrNotFound, as does
// an expired request.
func (d *DB) ConsumeAuthzRequest(ctx context.Context, idHash []byte, now time.Time) (sid string, data []byte, err error) {
	var s string
	var exp int64
	err = d.w.QueryRowContext(ctx, d.rebind("DELETE FROM oauth_authz_request WHERE id_hash = ? RETURNING sid, data, expires_at"),
		hex.EncodeToString(idHash)).Scan(&sid, &s, &exp)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && exp <= now.Unix()) {
		return "", nil, ErrNotFound
	}
	if err != nil {
		return "", nil, fmt.Errorf("authdb: consume authorization request: %w", err)
	}
	return sid, []byte(s), nil
}

// SaveLaunch stores an EHR launch context under the hash of its launch
// value.
func (d *DB) SaveLaunch(ctx context.Context, idHash []byte, l *Launch) error {
	d.maybePrune(ctx, time.Now())
	_, err := d.w.ExecContext(ctx, d.rebind("INSERT INTO oauth_launch (id_hash, client_id, subject, patient, encounter, expires_at) VALUES (?, ?, ?, ?, ?, ?)"),
		hex.EncodeToString(idHash), l.ClientID, l.Subject, l.Patient, l.Encounter, l.Expires.Unix())
	if err != nil {
		return fmt.Errorf("authdb: save launch: %w", err)
	}
	return nil
}

// ConsumeLaunch atomically deletes and returns the launch stored under
// idHash. Every launch value is single-use: a second call, or a call after
// expiry, returns ErrNotFound. The caller checks the client binding (the
// value is spent either way).
func (d *DB) ConsumeLaunch(ctx context.Context, idHash []byte, now time.Time) (*Launch, error) {
	var l Launch
	var exp int64
	err := d.w.QueryRowContext(ctx, d.rebind("DELETE FROM oauth_launch WHERE id_hash = ? RETURNING client_id, subject, patient, encounter, expires_at"),
		hex.EncodeToString(idHash)).Scan(&l.ClientID, &l.Subject, &l.Patient, &l.Encounter, &exp)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && exp <= now.Unix()) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authdb: consume launch: %w", err)
	}
	l.Expires = time.Unix(exp, 0)
	return &l, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
