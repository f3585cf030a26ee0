package developer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/randtoken"
)

const devCols = "id, email, name, password_hash, verified, operator, totp_secret, totp_pending, totp_step, created_at"

type scanner interface{ Scan(dest ...any) error }

func scanDev(sc scanner) (*Developer, error) {
	var d Developer
	var verified, operator, created int64
	if err := sc.Scan(&d.ID, &d.Email, &d.Name, &d.passwordHash, &verified, &operator, &d.totpSecret, &d.totpPending, &d.totpStep, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	d.Verified, d.Operator, d.TOTP = verified != 0, operator != 0, d.totpSecret != ""
	d.CreatedAt = time.Unix(created, 0).UTC()
	return &d, nil
}

// Developer returns the account with id.
func (s *Service) Developer(ctx context.Context, id string) (*Developer, error) {
	return scanDev(s.r.QueryRowContext(ctx, s.rebind("SELECT "+devCols+" FROM dev_developer WHERE id = ?"), id))
}

// DeveloperByEmail returns the account with the address email.
func (s *Service) DeveloperByEmail(ctx context.Context, email string) (*Developer, error) {
	if strings.IndexByte(email, 0) >= 0 {
		return nil, ErrNotFound // no address has one (and PostgreSQL refuses NUL)
	}
	return scanDev(s.r.QueryRowContext(ctx, s.rebind("SELECT "+devCols+" FROM dev_developer WHERE email = ?"), NormalizeEmail(email)))
}

// SignUp creates an unverified account and its organisation (the developer
// is its owner; orgName defaults to the name or address), and returns the
// email verification token to send.
func (s *Service) SignUp(ctx context.Context, email, name, password, orgName string) (*Developer, string, error) {
	email = NormalizeEmail(email)
	if err := ValidateEmail(email); err != nil {
		return nil, "", err
	}
	name, err := validateName(name, "name")
	if err != nil {
		return nil, "", err
	}
	if orgName, err = validateName(orgName, "organisation name"); err != nil {
		return nil, "", err
	}
	if orgName == "" {
		orgName = name
		if orgName == "" {
			orgName = email
		}
	}
	if err := validatePassword(password); err != nil {
		return nil, "", err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	d := &Developer{ID: uuid.NewString(), Email: email, Name: name, CreatedAt: now.UTC().Truncate(time.Second), passwordHash: h}
	org := &Org{ID: uuid.NewString(), Name: orgName}
	tok := randtoken.New()
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.rebind("INSERT INTO dev_developer (id, email, name, password_hash, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
			d.ID, d.Email, d.Name, h, now.Unix())
		if err := changed(res, err, ErrExists); err != nil {
			return err
		}
		if err := s.insertOrg(ctx, tx, org, d.ID, now); err != nil {
			return err
		}
		return s.insertToken(ctx, tx, tok, "verify", d.ID, "", d.Email, "", now, VerifyTTL)
	})
	if err != nil {
		return nil, "", err
	}
	return d, tok, nil
}

// ResendVerification returns a new verification token for an unverified
// account; for an unknown or verified address it returns "" and no error
// (the caller answers the same either way).
func (s *Service) ResendVerification(ctx context.Context, email string) (string, error) {
	d, err := s.DeveloperByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) || (err == nil && d.Verified) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return s.emailToken(ctx, d, "verify", VerifyTTL)
}

// Verify consumes an email verification token and marks the address
// verified.
func (s *Service) Verify(ctx context.Context, token string) (*Developer, error) {
	t, err := s.consumeToken(ctx, token, "verify")
	if err != nil {
		return nil, err
	}
	if _, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_developer SET verified = 1 WHERE id = ? AND email = ?"), t.developerID, t.email); err != nil {
		return nil, err
	}
	return s.Developer(ctx, t.developerID)
}

// LoginResult is the outcome of a correct password.
type LoginResult struct {
	// Developer is the account.
	Developer *Developer
	// SecondFactor is a token for LoginSecondFactor when the account has
	// TOTP; the login is complete only after it.
	SecondFactor string
}

// Login checks an email address and password under the lockout policy
// (failed logins counted per account and per client address, as on the
// authorization server's login page). Every refusal is ErrBadLogin, except
// ErrNotVerified after a correct password of an unverified account.
func (s *Service) Login(ctx context.Context, email, password, ip string) (*LoginResult, error) {
	email = NormalizeEmail(email)
	if len(password) > 1024 || len(email) > 254 || strings.IndexByte(email, 0) >= 0 {
		return nil, ErrBadLogin // no account has such an address
	}
	userKey, ipKey := "email:"+email, "ip:"+httpx.LockoutAddr(ip)
	locked, err := s.locked(ctx, userKey, ipKey)
	if err != nil {
		return nil, err
	}
	d, err := s.DeveloperByEmail(ctx, email)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	hash := s.dummy
	if d != nil && !locked {
		hash = d.passwordHash
	}
	ok, err := s.verify(ctx, hash, password)
	if err != nil {
		return nil, err
	}
	if d == nil || locked || !ok {
		return nil, s.fail(ctx, userKey, ipKey)
	}
	if !d.Verified {
		return nil, ErrNotVerified
	}
	if d.TOTP {
		tok := randtoken.New()
		if err := s.insertToken(ctx, s.w, tok, "mfa", d.ID, "", "", "", s.now(), MFATTL); err != nil {
			return nil, err
		}
		return &LoginResult{Developer: d, SecondFactor: tok}, nil
	}
	if err := s.clearFailures(ctx, userKey); err != nil {
		return nil, err
	}
	return &LoginResult{Developer: d}, nil
}

// LoginSecondFactor completes a login with TOTP: the token from Login and
// a current TOTP code or an unused recovery code. Failures count towards
// the lockout; the token stays usable until it expires or succeeds.
func (s *Service) LoginSecondFactor(ctx context.Context, token, code, ip string) (*Developer, error) {
	h := hashToken(token)
	var devID string
	var exp, used int64
	err := s.r.QueryRowContext(ctx, s.rebind("SELECT developer_id, expires_at, used_at FROM dev_token WHERE token_hash = ? AND kind = 'mfa'"), h).Scan(&devID, &exp, &used)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (used != 0 || s.now().Unix() >= exp)) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, err
	}
	d, err := s.Developer(ctx, devID)
	if err != nil {
		return nil, err
	}
	userKey, ipKey := "email:"+d.Email, "ip:"+httpx.LockoutAddr(ip)
	locked, err := s.locked(ctx, userKey, ipKey)
	if err != nil {
		return nil, err
	}
	ok := false
	if !locked {
		if ok, err = s.checkSecondFactor(ctx, d, code); err != nil {
			return nil, err
		}
	}
	if !ok {
		return nil, s.fail(ctx, userKey, ipKey)
	}
	res, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_token SET used_at = ? WHERE token_hash = ? AND used_at = 0"), s.now().Unix(), h)
	if err := changed(res, err, ErrInvalidToken); err != nil {
		return nil, err
	}
	if err := s.clearFailures(ctx, userKey); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Service) locked(ctx context.Context, keys ...string) (bool, error) {
	since := s.now().Add(-s.login.Window).Unix()
	limits := []int{s.login.MaxFailures, s.login.MaxFailuresPerIP}
	for i, k := range keys {
		var n int
		if err := s.r.QueryRowContext(ctx, s.rebind("SELECT COUNT(*) FROM dev_login_failure WHERE key = ? AND at >= ?"), k, since).Scan(&n); err != nil {
			return false, err
		}
		if n >= limits[i] {
			return true, nil
		}
	}
	return false, nil
}

// fail records a failed login for each key (also while locked, so a
// sustained attack stays locked out) and returns ErrBadLogin.
func (s *Service) fail(ctx context.Context, keys ...string) error {
	now := s.now().Unix()
	for _, k := range keys {
		if _, err := s.w.ExecContext(ctx, s.rebind("INSERT INTO dev_login_failure (key, at) VALUES (?, ?)"), k, now); err != nil {
			return err
		}
	}
	s.maybePrune(ctx)
	return ErrBadLogin
}

// maybePrune deletes expired sessions, tokens and old login failures now
// and then (best effort, about one call in 64).
func (s *Service) maybePrune(ctx context.Context) {
	if mrand.IntN(64) != 0 {
		return
	}
	now := s.now().Unix()
	_, _ = s.w.ExecContext(ctx, s.rebind("DELETE FROM dev_login_failure WHERE at < ?"), now-86400)
	_, _ = s.w.ExecContext(ctx, s.rebind("DELETE FROM dev_token WHERE expires_at < ?"), now-86400)
	_, _ = s.w.ExecContext(ctx, s.rebind("DELETE FROM dev_session WHERE expires_at < ?"), now)
}

func (s *Service) clearFailures(ctx context.Context, key string) error {
	_, err := s.w.ExecContext(ctx, s.rebind("DELETE FROM dev_login_failure WHERE key = ?"), key)
	return err
}

// RequestReset returns a password reset token for the address, or "" and
// no error when there is no such account (the caller answers the same).
func (s *Service) RequestReset(ctx context.Context, email string) (string, error) {
	d, err := s.DeveloperByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return s.emailToken(ctx, d, "reset", ResetTTL)
}

// Reset consumes a reset token and sets a new password; it also verifies
// the address (the link reached it), forgets the failed logins and ends
// the account's sessions.
func (s *Service) Reset(ctx context.Context, token, password string) (*Developer, error) {
	if err := validatePassword(password); err != nil {
		return nil, err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return nil, err
	}
	t, err := s.consumeToken(ctx, token, "reset")
	if err != nil {
		return nil, err
	}
	if _, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_developer SET password_hash = ?, verified = 1 WHERE id = ?"), h, t.developerID); err != nil {
		return nil, err
	}
	if _, err := s.w.ExecContext(ctx, s.rebind("DELETE FROM dev_session WHERE subject = ?"), t.developerID); err != nil {
		return nil, err
	}
	if err := s.clearFailures(ctx, "email:"+t.email); err != nil {
		return nil, err
	}
	return s.Developer(ctx, t.developerID)
}

// SetOperator marks (or unmarks) the account with the address as a portal
// operator.
func (s *Service) SetOperator(ctx context.Context, email string, on bool) error {
	res, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_developer SET operator = ? WHERE email = ?"), b2i(on), NormalizeEmail(email))
	return changed(res, err, ErrNotFound)
}

// IsOperator reports whether the developer is a portal operator.
func (s *Service) IsOperator(ctx context.Context, id string) (bool, error) {
	d, err := s.Developer(ctx, id)
	if err != nil {
		return false, err
	}
	return d.Operator, nil
}

// token is a stored one-time token.
type token struct {
	developerID, orgID, email, role string
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// emailToken stores and returns a new token of kind for a link mailed to
// d's address, valid for ttl.
func (s *Service) emailToken(ctx context.Context, d *Developer, kind string, ttl time.Duration) (string, error) {
	tok := randtoken.New()
	if err := s.insertToken(ctx, s.w, tok, kind, d.ID, "", d.Email, "", s.now(), ttl); err != nil {
		return "", err
	}
	return tok, nil
}

func (s *Service) insertToken(ctx context.Context, db execer, tok, kind, devID, orgID, email, role string, now time.Time, ttl time.Duration) error {
	_, err := db.ExecContext(ctx, s.rebind("INSERT INTO dev_token (token_hash, kind, developer_id, org_id, email, role, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
		hashToken(tok), kind, devID, orgID, email, role, now.Unix(), now.Add(ttl).Unix())
	return err
}

// consumeToken marks a valid token of kind used and returns it; a token is
// used at most once, even by concurrent calls.
func (s *Service) consumeToken(ctx context.Context, tok, kind string) (*token, error) {
	if tok == "" || len(tok) > 128 {
		return nil, ErrInvalidToken
	}
	h := hashToken(tok)
	now := s.now().Unix()
	res, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_token SET used_at = ? WHERE token_hash = ? AND kind = ? AND used_at = 0 AND expires_at > ?"), now, h, kind, now)
	if err := changed(res, err, ErrInvalidToken); err != nil {
		return nil, err
	}
	var t token
	if err := s.w.QueryRowContext(ctx, s.rebind("SELECT developer_id, org_id, email, role FROM dev_token WHERE token_hash = ?"), h).Scan(&t.developerID, &t.orgID, &t.email, &t.role); err != nil {
		return nil, err
	}
	return &t, nil
}

func (s *Service) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("developer: commit: %w", err)
	}
	return nil
}

// containsControl reports control characters (for names and texts).
func containsControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\r' && r != '\t' })
}

// txish is a transaction of Service.tx.
type txish = *sql.Tx
