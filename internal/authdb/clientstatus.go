package authdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrNotConfidential is returned when rotating the secret of a client
// that has none (a public or backend client).
var ErrNotConfidential = errors.New("authdb: the client is not confidential (it has no secret)")

// RotateClientSecret gives the confidential client id the secret whose
// hash is newHash; its current secret becomes the previous one and keeps
// authenticating until prevUntil (a prevUntil not after now ends it at
// once). A previous secret of an earlier rotation is dropped. It returns
// ErrNotFound or ErrNotConfidential.
func (d *DB) RotateClientSecret(ctx context.Context, id string, newHash []byte, prevUntil, now time.Time) error {
	if !prevUntil.After(now) {
		prevUntil = now
	}
	res, err := d.w.ExecContext(ctx, d.rebind("UPDATE oauth_client SET prev_secret_hash = secret_hash, prev_secret_until = ?, secret_hash = ? "+
		"WHERE client_id = ? AND type = ?"), prevUntil.Unix(), hexOrEmpty(newHash), id, Confidential)
	if err != nil {
		return fmt.Errorf("authdb: rotate client secret: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		if _, err := d.Client(ctx, id); err != nil {
			return err
		}
		return ErrNotConfidential
	}
	return nil
}

// SuspendClient suspends the client id at now with reason (idempotent:
// a suspended client keeps its first suspension time and reason). The
// suspension is appended to the revocation log in the same transaction
// (kind client), so every instance drops its cached tokens of the client
// within one poll and checks the database again, which refuses them. It
// returns ErrNotFound for an unknown id, and whether the call changed
// anything.
func (d *DB) SuspendClient(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	return d.setSuspended(ctx, "oauth_client", "client_id", RevClient, id, reason, now, true)
}

// ResumeClient lifts the client's suspension (idempotent). It returns
// ErrNotFound for an unknown id, and whether the call changed anything.
func (d *DB) ResumeClient(ctx context.Context, id string, now time.Time) (bool, error) {
	return d.setSuspended(ctx, "oauth_client", "client_id", RevClient, id, "", now, false)
}

// SuspendAPIKey suspends the API key id (as SuspendClient does a
// client); every instance's key cache drops it within one poll.
func (d *DB) SuspendAPIKey(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	return d.setSuspended(ctx, "api_key", "id", RevAPIKey, id, reason, now, true)
}

// ResumeAPIKey lifts the API key's suspension (idempotent).
func (d *DB) ResumeAPIKey(ctx context.Context, id string, now time.Time) (bool, error) {
	return d.setSuspended(ctx, "api_key", "id", RevAPIKey, id, "", now, false)
}

// setSuspended sets or clears the suspension of one row of table (whose
// key column is idCol; both are constants of this package, never
// input) and logs kind/id in the same transaction.
func (d *DB) setSuspended(ctx context.Context, table, idCol, kind, id, reason string, now time.Time, on bool) (bool, error) {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("authdb: suspend: %w", err)
	}
	defer tx.Rollback()
	var res sql.Result
	if on {
		res, err = tx.ExecContext(ctx, d.rebind("UPDATE "+table+" SET suspended_at = ?, suspend_reason = ? WHERE "+idCol+" = ? AND suspended_at IS NULL"),
			now.Unix(), reason, id)
	} else {
		res, err = tx.ExecContext(ctx, d.rebind("UPDATE "+table+" SET suspended_at = NULL, suspend_reason = '' WHERE "+idCol+" = ? AND suspended_at IS NOT NULL"), id)
	}
	if err != nil {
		return false, fmt.Errorf("authdb: suspend: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		_ = tx.Rollback()
		found, err := exists(d.r.QueryRowContext(ctx, d.rebind("SELECT 1 FROM "+table+" WHERE "+idCol+" = ?"), id))
		if err != nil {
			return false, fmt.Errorf("authdb: suspend: %w", err)
		}
		if !found {
			return false, ErrNotFound
		}
		return false, nil
	}
	if on {
		if err := d.logRevocation(ctx, tx, kind, id, now); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("authdb: suspend: %w", err)
	}
	if on {
		d.revoked(ctx)
	}
	return true, nil
}

// TokenRevoked reports whether the access token with id jti, issued to
// clientID, must be refused: the token was revoked or its client is
// suspended. One query.
func (d *DB) TokenRevoked(ctx context.Context, jti, clientID string) (bool, error) {
	if !Storable(jti) || !Storable(clientID) {
		return true, nil // no token of this server has them: refused
	}
	revoked, err := exists(d.tokenRevoked.QueryRowContext(ctx, jti, clientID))
	if err != nil {
		return false, fmt.Errorf("authdb: revoked: %w", err)
	}
	return revoked, nil
}
