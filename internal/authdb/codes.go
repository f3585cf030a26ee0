package authdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ErrCodeUsed is returned by ConsumeAuthCode for a code that exists but was
// already consumed: a replay, which RFC 6749 §4.1.2 answers by revoking
// what the first use issued.
var ErrCodeUsed = errors.New("authdb: authorization code already used")

// usedCodeRetention is how long a consumed or expired code's row is kept
// past its expiry, so that a late replay is still recognised as one.
const usedCodeRetention = 10 * time.Minute

// pruneOneIn makes roughly one write in this many also delete expired
// code, family and refresh rows (a stateless, best-effort schedule).
const pruneOneIn = 128

// SaveAuthCode stores an authorization code by its hash with the
// serialized grant behind it, valid until expires.
func (d *DB) SaveAuthCode(ctx context.Context, codeHash []byte, clientID string, grant []byte, expires time.Time) error {
	d.maybePruneGrants(ctx)
	_, err := d.w.ExecContext(ctx, d.rebind("INSERT INTO oauth_code (code_hash, client_id, grant_json, expires_at) VALUES (?, ?, ?, ?)"),
		hex.EncodeToString(codeHash), clientID, string(grant), expires.Unix())
	if err != nil {
		return fmt.Errorf("authdb: save code: %w", err)
	}
	return nil
}

// ConsumeAuthCode atomically marks the code with codeHash used and returns
// its grant. A single UPDATE … WHERE used_at IS NULL … RETURNING makes the
// consumption single-use on both dialects: of two concurrent calls exactly
// one gets the grant. It returns ErrNotFound for an unknown or expired code
// and ErrCodeUsed for one already consumed.
func (d *DB) ConsumeAuthCode(ctx context.Context, codeHash []byte, now time.Time) ([]byte, error) {
	h := hex.EncodeToString(codeHash)
	var grant string
	var expires int64
	err := d.w.QueryRowContext(ctx, d.rebind("UPDATE oauth_code SET used_at = ? WHERE code_hash = ? AND used_at IS NULL RETURNING grant_json, expires_at"),
		now.Unix(), h).Scan(&grant, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		found, err := exists(d.w.QueryRowContext(ctx, d.rebind("SELECT 1 FROM oauth_code WHERE code_hash = ?"), h))
		if err != nil {
			return nil, fmt.Errorf("authdb: consume code: %w", err)
		}
		if !found {
			return nil, ErrNotFound
		}
		return nil, ErrCodeUsed
	}
	if err != nil {
		return nil, fmt.Errorf("authdb: consume code: %w", err)
	}
	if now.Unix() >= expires {
		return nil, ErrNotFound
	}
	return []byte(grant), nil
}

// maybePruneGrants deletes, about once every pruneOneIn calls, codes,
// refresh tokens, access-token records and token families past their
// expiry (best effort; errors are ignored).
func (d *DB) maybePruneGrants(ctx context.Context) {
	var b [1]byte
	if _, err := rand.Read(b[:]); err != nil || int(b[0])%pruneOneIn != 0 {
		return
	}
	d.PruneGrants(ctx, time.Now())
}

// PruneGrants deletes codes, refresh tokens, access-token records and
// token families that expired before now (codes are kept
// usedCodeRetention longer to recognise replays).
func (d *DB) PruneGrants(ctx context.Context, now time.Time) {
	cut := now.Add(-time.Minute).Unix()
	_, _ = d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_code WHERE expires_at < ?"), now.Add(-usedCodeRetention).Unix())
	_, _ = d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_refresh_token WHERE expires_at < ?"), cut)
	_, _ = d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_family_access WHERE expires_at < ?"), cut)
	_, _ = d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_token_family WHERE expires_at < ?"), cut)
}
