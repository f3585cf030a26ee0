package authdb

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/lapis-health/lapis/internal/database"
)

// ErrRevoked is returned by StartFamily when the family was revoked before
// it was recorded (an authorization code replayed while its first
// exchange was still running).
var ErrRevoked = errors.New("authdb: token family revoked")

// ErrRefreshReused is returned by RotateRefreshToken for a rotated refresh
// token presented again other than as the one retry the grace period
// allows: the whole family has been revoked in the same transaction.
var ErrRefreshReused = errors.New("authdb: rotated refresh token reused")

// tombstoneLifetime is how long the row of a family revoked before it was
// recorded is kept.
const tombstoneLifetime = time.Hour

// Family is a token family: everything issued from one authorization code.
type Family struct {
	// ID identifies the family (derived from the code by the caller).
	ID string
	// ClientID and Subject are the client and user it was issued to.
	ClientID, Subject string
	// CreatedAt is the code exchange time.
	CreatedAt time.Time
}

// RefreshToken is a stored refresh token. The token itself is never
// stored, only its SHA-256.
type RefreshToken struct {
	// Hash is the SHA-256 of the token.
	Hash []byte
	// FamilyID is the family the token belongs to.
	FamilyID string
	// ClientID and Subject are the client and user it was issued to.
	ClientID, Subject string
	// Scope is the scope the refresh token may grant (space-separated).
	Scope string
	// Session is the caller's serialized launch context.
	Session []byte
	// IssuedAt and ExpiresAt bound its validity.
	IssuedAt, ExpiresAt time.Time
	// RotatedAt is when it was exchanged for a successor (zero while it
	// is the family's current token).
	RotatedAt time.Time
}

// StartFamily records a new token family with its first access token (by
// jti, so the family can revoke it) and, if rt is not nil, its first
// refresh token, in one transaction. It returns ErrRevoked if a row for
// the family already exists (it was revoked by a code replay meanwhile).
func (d *DB) StartFamily(ctx context.Context, f *Family, accessJTI string, accessExpires time.Time, rt *RefreshToken) error {
	d.maybePruneGrants(ctx)
	expires := accessExpires
	if rt != nil && rt.ExpiresAt.After(expires) {
		expires = rt.ExpiresAt
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: start family: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, d.rebind("INSERT INTO oauth_token_family (family_id, client_id, subject, created_at, expires_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
		f.ID, f.ClientID, f.Subject, f.CreatedAt.Unix(), expires.Unix())
	if err != nil {
		return fmt.Errorf("authdb: start family: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrRevoked
	}
	if err := d.insertAccess(ctx, tx, f.ID, accessJTI, accessExpires); err != nil {
		return err
	}
	if rt != nil {
		rt.FamilyID = f.ID
		if err := d.insertRefresh(ctx, tx, rt, nil); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("authdb: start family: %w", err)
	}
	return nil
}

func (d *DB) insertAccess(ctx context.Context, tx *sql.Tx, family, jti string, expires time.Time) error {
	if _, err := tx.ExecContext(ctx, d.rebind("INSERT INTO oauth_family_access (family_id, jti, expires_at) VALUES (?, ?, ?)"),
		family, jti, expires.Unix()); err != nil {
		return fmt.Errorf("authdb: record access token: %w", err)
	}
	return nil
}

// insertRefresh stores rt, the successor of the token parent (nil for the
// first token of a family).
func (d *DB) insertRefresh(ctx context.Context, tx *sql.Tx, rt *RefreshToken, parent []byte) error {
	var p sql.NullString
	if parent != nil {
		p = sql.NullString{String: hex.EncodeToString(parent), Valid: true}
	}
	if _, err := tx.ExecContext(ctx, d.rebind("INSERT INTO oauth_refresh_token (token_hash, family_id, client_id, subject, scope, session, issued_at, expires_at, parent_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		hex.EncodeToString(rt.Hash), rt.FamilyID, rt.ClientID, rt.Subject, rt.Scope, string(rt.Session), rt.IssuedAt.Unix(), rt.ExpiresAt.Unix(), p); err != nil {
		return fmt.Errorf("authdb: insert refresh token: %w", err)
	}
	return nil
}

const refreshCols = "t.token_hash, t.family_id, t.client_id, t.subject, t.scope, t.session, t.issued_at, t.expires_at, t.rotated_at"

func scanRefresh(s scanner) (*RefreshToken, error) {
	var rt RefreshToken
	var h, session string
	var issued, expires int64
	var rotated sql.NullInt64
	if err := s.Scan(&h, &rt.FamilyID, &rt.ClientID, &rt.Subject, &rt.Scope, &session, &issued, &expires, &rotated); err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("authdb: corrupt refresh token hash")
	}
	rt.Hash, rt.Session = b, []byte(session)
	rt.IssuedAt, rt.ExpiresAt = time.Unix(issued, 0), time.Unix(expires, 0)
	if rotated.Valid {
		rt.RotatedAt = time.Unix(rotated.Int64, 0)
	}
	return &rt, nil
}

// RefreshToken returns the refresh token with hash, or ErrNotFound if it
// is unknown or its family was revoked. Expiry and rotation are the
// caller's to judge.
func (d *DB) RefreshToken(ctx context.Context, hash []byte) (*RefreshToken, error) {
	rt, err := scanRefresh(d.r.QueryRowContext(ctx, d.rebind("SELECT "+refreshCols+
		" FROM oauth_refresh_token t JOIN oauth_token_family f ON f.family_id = t.family_id WHERE t.token_hash = ? AND f.revoked_at IS NULL"),
		hex.EncodeToString(hash)))
	return found(rt, err, "refresh token")
}

// RotateRefreshToken exchanges the refresh token oldHash for next, in one
// transaction: the old token must exist, be unexpired at now and belong to
// a family that is not revoked. A current token is rotated: it is marked
// rotated at now, next joins the family as its successor, the new access
// token's jti is recorded under it and the family's expiry is extended.
//
// A token already rotated is accepted once more, as the retry of a lost
// response (RFC 9700 §4.14.2), only if it was rotated no earlier than
// graceStart, its successor is still the family's current token and it
// has no other successor; next then replaces that successor (marked
// rotated: it was never delivered). Any other presentation of a rotated
// token — after the grace period, a second retry, or after its successor
// was itself used — is reuse: the family is revoked and ErrRefreshReused
// returned. So one token yields at most two successors and a family has
// at most one current token. An ineligible token returns ErrNotFound.
//
// Concurrent calls for one family are serialized (PostgreSQL: the
// family's row lock; SQLite: the single writer), so these limits hold
// under any interleaving.
func (d *DB) RotateRefreshToken(ctx context.Context, oldHash []byte, now, graceStart time.Time, next *RefreshToken, accessJTI string, accessExpires time.Time) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: rotate: %w", err)
	}
	defer tx.Rollback()
	hexOld := hex.EncodeToString(oldHash)
	var family string
	err = tx.QueryRowContext(ctx, d.rebind("SELECT family_id FROM oauth_refresh_token WHERE token_hash = ?"), hexOld).Scan(&family)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("authdb: rotate: %w", err)
	}
	if d.postgres {
		// Every rotation and revocation of the family waits here; the
		// reads below (each a fresh READ COMMITTED snapshot) then see
		// what the previous holder committed.
		live, err := exists(tx.QueryRowContext(ctx, d.rebind("SELECT 1 FROM oauth_token_family WHERE family_id = ? AND revoked_at IS NULL FOR UPDATE"), family))
		if err != nil {
			return fmt.Errorf("authdb: rotate: %w", err)
		}
		if !live {
			return ErrNotFound
		}
	}
	old, err := scanRefresh(tx.QueryRowContext(ctx, d.rebind("SELECT "+refreshCols+" FROM oauth_refresh_token t WHERE t.token_hash = ?"), hexOld))
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound // revoked meanwhile
	}
	if err != nil {
		return fmt.Errorf("authdb: rotate: %w", err)
	}
	if !now.Before(old.ExpiresAt) {
		return ErrNotFound
	}
	if !old.RotatedAt.IsZero() {
		retry, err := d.retryAllowed(ctx, tx, old, hexOld, graceStart)
		if err != nil {
			return err
		}
		switch retry {
		case retryUnknown:
			return ErrNotFound
		case retryReuse:
			if err := d.revokeFamilyTx(ctx, tx, old.FamilyID, now); err != nil {
				return err
			}
			if err := tx.Commit(); err != nil {
				return fmt.Errorf("authdb: rotate: %w", err)
			}
			d.revoked(ctx)
			return ErrRefreshReused
		}
	}
	expires := max(next.ExpiresAt.Unix(), accessExpires.Unix())
	res, err := tx.ExecContext(ctx, d.rebind("UPDATE oauth_token_family SET expires_at = CASE WHEN expires_at < ? THEN ? ELSE expires_at END WHERE family_id = ? AND revoked_at IS NULL"),
		expires, expires, old.FamilyID)
	if err != nil {
		return fmt.Errorf("authdb: rotate: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrNotFound
	}
	// The current token (old itself, or on a retry its undelivered
	// successor) is rotated now.
	if _, err := tx.ExecContext(ctx, d.rebind("UPDATE oauth_refresh_token SET rotated_at = ? WHERE family_id = ? AND rotated_at IS NULL"),
		now.Unix(), old.FamilyID); err != nil {
		return fmt.Errorf("authdb: rotate: %w", err)
	}
	next.FamilyID = old.FamilyID
	if err := d.insertRefresh(ctx, tx, next, oldHash); err != nil {
		return err
	}
	if err := d.insertAccess(ctx, tx, old.FamilyID, accessJTI, accessExpires); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("authdb: rotate: %w", err)
	}
	return nil
}

// Verdicts on a rotated refresh token presented again.
const (
	retryOK      = iota // the one retry of a lost response
	retryReuse          // reuse: revoke the family
	retryUnknown        // its successor predates parent_hash: refuse, revoke nothing
)

// retryAllowed judges a rotated token presented again (in the rotation's
// transaction, the family serialized): see RotateRefreshToken.
func (d *DB) retryAllowed(ctx context.Context, tx *sql.Tx, old *RefreshToken, hexOld string, graceStart time.Time) (int, error) {
	if old.RotatedAt.Before(graceStart) {
		return retryReuse, nil
	}
	parents, err := database.AppendRows(ctx, nil, tx, database.ScanOne[sql.NullString],
		d.rebind("SELECT parent_hash FROM oauth_refresh_token WHERE family_id = ? AND rotated_at IS NULL"), old.FamilyID)
	if err != nil {
		return 0, fmt.Errorf("authdb: rotate: %w", err)
	}
	if len(parents) != 1 || parents[0].String != hexOld {
		if len(parents) == 1 && !parents[0].Valid {
			return retryUnknown, nil
		}
		return retryReuse, nil // its successor was used (or superseded)
	}
	var children int
	if err := tx.QueryRowContext(ctx, d.rebind("SELECT COUNT(*) FROM oauth_refresh_token WHERE family_id = ? AND parent_hash = ?"),
		old.FamilyID, hexOld).Scan(&children); err != nil {
		return 0, fmt.Errorf("authdb: rotate: %w", err)
	}
	if children != 1 {
		return retryReuse, nil // already retried once
	}
	return retryOK, nil
}

// RevokeFamily revokes a token family: its refresh tokens are deleted and
// its unexpired access tokens are added to the revoked tokens. A family not
// recorded yet is recorded as revoked, so a StartFamily racing with the
// revocation fails.
func (d *DB) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: revoke family: %w", err)
	}
	defer tx.Rollback()
	if err := d.revokeFamilyTx(ctx, tx, familyID, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("authdb: revoke family: %w", err)
	}
	d.revoked(ctx)
	return nil
}

func (d *DB) revokeFamilyTx(ctx context.Context, tx *sql.Tx, familyID string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, d.rebind("INSERT INTO oauth_token_family (family_id, client_id, subject, created_at, expires_at, revoked_at) VALUES (?, '', '', ?, ?, ?) "+
		"ON CONFLICT (family_id) DO UPDATE SET revoked_at = excluded.revoked_at"),
		familyID, now.Unix(), now.Add(tombstoneLifetime).Unix(), now.Unix()); err != nil {
		return fmt.Errorf("authdb: revoke family: %w", err)
	}
	if err := d.logFamilyRevocation(ctx, tx, familyID, now); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, d.rebind("INSERT INTO oauth_revoked_token (jti, expires_at) SELECT jti, expires_at FROM oauth_family_access WHERE family_id = ? AND expires_at > ? ON CONFLICT DO NOTHING"),
		familyID, now.Unix()); err != nil {
		return fmt.Errorf("authdb: revoke family access tokens: %w", err)
	}
	if _, err := tx.ExecContext(ctx, d.rebind("DELETE FROM oauth_refresh_token WHERE family_id = ?"), familyID); err != nil {
		return fmt.Errorf("authdb: revoke family refresh tokens: %w", err)
	}
	return nil
}

// RevokeClientGrants revokes every token family a client holds for a
// subject (a user withdrawing an app's access) and returns how many were
// revoked.
func (d *DB) RevokeClientGrants(ctx context.Context, clientID, subject string, now time.Time) (int, error) {
	return d.revokeFamilies(ctx, now, "SELECT family_id FROM oauth_token_family WHERE client_id = ? AND subject = ? AND revoked_at IS NULL", clientID, subject)
}

// revokeFamilies revokes (RevokeFamily) every token family whose id the
// query q (with ? placeholders) selects and returns how many it revoked.
func (d *DB) revokeFamilies(ctx context.Context, now time.Time, q string, args ...any) (int, error) {
	ids, err := database.AppendRows(ctx, nil, d.w, database.ScanOne[string], d.rebind(q), args...)
	if err != nil {
		return 0, fmt.Errorf("authdb: revoke grants: %w", err)
	}
	for _, id := range ids {
		if err := d.RevokeFamily(ctx, id, now); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}
