package authdb

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/database"
)

// ErrAPIKeyRotated is returned when rotating a key that was already
// rotated (rotate its successor instead) or that is revoked, expired or
// suspended.
var ErrAPIKeyRotated = errors.New("authdb: api key already rotated, revoked, expired or suspended")

// APIKey is a stored API key: everything but the key itself, which exists
// only as its SHA-256 (Hash).
type APIKey struct {
	// ID is the key's public id (for list, revoke, rotate and audit).
	ID string `json:"id"`
	// Name is a human-readable label.
	Name string `json:"name"`
	// Hash is the SHA-256 of the key (never shown).
	Hash []byte `json:"-"`
	// Prefix is the key's first, non-secret characters.
	Prefix string `json:"prefix"`
	// Scopes are the granted SMART scopes (system/… or patient/…).
	Scopes []string `json:"scopes"`
	// Patient is the patient id patient/ scopes are bound to.
	Patient string `json:"patient,omitempty"`
	// AllowIPs are CIDR prefixes the caller's address must be in (empty:
	// any address).
	AllowIPs []string `json:"allow_ips,omitempty"`
	// CreatedAt is the creation time.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is the end of validity (zero: never).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// RevokedAt is when the key was revoked (zero: not revoked).
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// LastUsedAt is the last use, recorded at most about once a minute.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// ReplacedBy is the id of the key this one was rotated to.
	ReplacedBy string `json:"replaced_by,omitempty"`
	// Owner is who manages the key ("admin", a developer account's id);
	// empty when it has none. A rotated key's successor keeps it.
	Owner string `json:"owner,omitempty"`
	// RateLimit is the key's own limit on the FHIR API (see RateLimit);
	// the zero value is the server's default. A rotated key's successor
	// keeps it.
	RateLimit RateLimit `json:"rate_limit,omitzero"`
	// LastUsedAddr is the caller's address at the last recorded use.
	LastUsedAddr string `json:"last_used_addr,omitempty"`
	// SuspendedAt is when an operator suspended the key (zero: not
	// suspended); a suspended key is refused until resumed.
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
	// SuspendReason is the operator's reason for the suspension.
	SuspendReason string `json:"suspend_reason,omitempty"`
}

// APIKeyFilter selects API keys; an empty field matches every value.
type APIKeyFilter struct {
	// Owner is the keys' owner.
	Owner string
}

// Valid reports whether the key may be used at now (not revoked, not
// expired). A suspended key is Valid but refused (Suspended).
func (k *APIKey) Valid(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// Suspended reports whether the key is suspended.
func (k *APIKey) Suspended() bool { return !k.SuspendedAt.IsZero() }

const apiKeyCols = apiKeyInsertCols + ", last_used_addr, suspended_at, suspend_reason"

// apiKeyInsertCols are the columns insertAPIKey writes.
const apiKeyInsertCols = "id, name, key_hash, prefix, scopes, patient, allow_ips, created_at, expires_at, revoked_at, last_used_at, replaced_by, owner, rate_limit, rate_limit_burst"

func nullUnix(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(n.Int64, 0).UTC()
}

func scanAPIKey(s scanner) (*APIKey, error) {
	var k APIKey
	var hash, scopes, ips string
	var created int64
	var expires, revoked, used, suspended sql.NullInt64
	if err := s.Scan(&k.ID, &k.Name, &hash, &k.Prefix, &scopes, &k.Patient, &ips, &created, &expires, &revoked, &used, &k.ReplacedBy, &k.Owner, &k.RateLimit.Limit, &k.RateLimit.Burst,
		&k.LastUsedAddr, &suspended, &k.SuspendReason); err != nil {
		return nil, err
	}
	h, err := hex.DecodeString(hash)
	if err != nil {
		return nil, fmt.Errorf("authdb: corrupt hash of api key %q", k.ID)
	}
	k.Hash = h
	k.Scopes = strings.Fields(scopes)
	k.AllowIPs = strings.Fields(ips)
	k.CreatedAt = time.Unix(created, 0).UTC()
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt, k.SuspendedAt = fromNull(expires), fromNull(revoked), fromNull(used), fromNull(suspended)
	return &k, nil
}

func (d *DB) insertAPIKey(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, k *APIKey) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now()
	}
	_, err := ex.ExecContext(ctx, d.rebind("INSERT INTO api_key ("+apiKeyInsertCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		k.ID, k.Name, hex.EncodeToString(k.Hash), k.Prefix, strings.Join(k.Scopes, " "), k.Patient, strings.Join(k.AllowIPs, " "),
		k.CreatedAt.Unix(), nullUnix(k.ExpiresAt), nullUnix(k.RevokedAt), nullUnix(k.LastUsedAt), k.ReplacedBy, k.Owner, k.RateLimit.Limit, k.RateLimit.Burst)
	if err != nil {
		return fmt.Errorf("authdb: create api key: %w", err)
	}
	return nil
}

// CreateAPIKey stores k (whose Hash is the SHA-256 of the key).
func (d *DB) CreateAPIKey(ctx context.Context, k *APIKey) error {
	return d.insertAPIKey(ctx, d.w, k)
}

// APIKeyByHash returns the key whose SHA-256 is hash, or ErrNotFound. It
// returns revoked and expired keys too: the caller checks Valid.
func (d *DB) APIKeyByHash(ctx context.Context, hash []byte) (*APIKey, error) {
	k, err := scanAPIKey(d.r.QueryRowContext(ctx, d.rebind("SELECT "+apiKeyCols+" FROM api_key WHERE key_hash = ?"), hex.EncodeToString(hash)))
	return found(k, err, "api key")
}

// APIKey returns the key with id, or ErrNotFound.
func (d *DB) APIKey(ctx context.Context, id string) (*APIKey, error) {
	if !Storable(id) {
		return nil, ErrNotFound
	}
	k, err := scanAPIKey(d.r.QueryRowContext(ctx, d.rebind("SELECT "+apiKeyCols+" FROM api_key WHERE id = ?"), id))
	return found(k, err, "api key")
}

// APIKeys lists every key (revoked and expired ones included), oldest
// first.
func (d *DB) APIKeys(ctx context.Context) ([]APIKey, error) {
	return d.APIKeysBy(ctx, APIKeyFilter{})
}

// APIKeysBy lists the keys matching f (revoked and expired ones
// included), oldest first.
func (d *DB) APIKeysBy(ctx context.Context, f APIKeyFilter) ([]APIKey, error) {
	q, args := "SELECT "+apiKeyCols+" FROM api_key", []any(nil)
	if f.Owner != "" {
		q, args = q+" WHERE owner = ?", append(args, f.Owner)
	}
	out, err := database.AppendRows(ctx, []APIKey{}, d.r, rowsOf(scanAPIKey), d.rebind(q+" ORDER BY created_at, id"), args...)
	if err != nil {
		return nil, fmt.Errorf("authdb: list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes the key with id at now (idempotent). It returns
// ErrNotFound for an unknown id. The revocation is appended to the
// revocation log in the same transaction.
func (d *DB) RevokeAPIKey(ctx context.Context, id string, now time.Time) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: revoke api key: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, d.rebind("UPDATE api_key SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"), now.Unix(), id)
	if err != nil {
		return fmt.Errorf("authdb: revoke api key: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		_ = tx.Rollback()
		if _, err := d.APIKey(ctx, id); err != nil {
			return err
		}
		return nil
	}
	return d.commitRevocation(ctx, tx, RevAPIKey, id, now, "revoke api key")
}

// RotateAPIKey replaces the key oldID by next in one transaction: next
// (with ID, Hash and Prefix set by the caller) takes the old key's name,
// scopes, patient, allow-list, expiry, owner and rate limit; the old key stays valid until
// oldUntil (or its own expiry, if earlier) and records its successor. It
// returns ErrNotFound for an unknown id and ErrAPIKeyRotated for a key
// that was already rotated, or is revoked, expired or suspended.
func (d *DB) RotateAPIKey(ctx context.Context, oldID string, next *APIKey, oldUntil, now time.Time) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: rotate api key: %w", err)
	}
	defer tx.Rollback()
	old, err := scanAPIKey(tx.QueryRowContext(ctx, d.rebind("SELECT "+apiKeyCols+" FROM api_key WHERE id = ?"), oldID))
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("authdb: rotate api key: %w", err)
	}
	if old.ReplacedBy != "" || !old.Valid(now) || old.Suspended() {
		// A suspended key is not rotated: its successor would escape the
		// suspension.
		return ErrAPIKeyRotated
	}
	next.Name, next.Scopes, next.Patient, next.AllowIPs, next.ExpiresAt, next.Owner, next.RateLimit = old.Name, old.Scopes, old.Patient, old.AllowIPs, old.ExpiresAt, old.Owner, old.RateLimit
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	if !old.ExpiresAt.IsZero() && old.ExpiresAt.Before(oldUntil) {
		oldUntil = old.ExpiresAt
	}
	res, err := tx.ExecContext(ctx, d.rebind("UPDATE api_key SET expires_at = ?, replaced_by = ? WHERE id = ? AND replaced_by = '' AND revoked_at IS NULL AND suspended_at IS NULL"), oldUntil.Unix(), next.ID, oldID)
	if err != nil {
		return fmt.Errorf("authdb: rotate api key: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrAPIKeyRotated
	}
	if err := d.insertAPIKey(ctx, tx, next); err != nil {
		return err
	}
	// The old key's expiry moved: caches holding it must re-read it.
	return d.commitRevocation(ctx, tx, RevAPIKey, oldID, now, "rotate api key")
}

// TouchAPIKey records a use of the key id at at, unless a use at or after
// at-minInterval is already recorded (so busy keys cost at most one write
// per interval, across instances too).
func (d *DB) TouchAPIKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) error {
	return d.TouchAPIKeyFrom(ctx, id, at, "", minInterval)
}

// TouchAPIKeyFrom is TouchAPIKey that also records the caller's address
// (the same write: no extra one per request).
func (d *DB) TouchAPIKeyFrom(ctx context.Context, id string, at time.Time, addr string, minInterval time.Duration) error {
	if len(addr) > 64 {
		addr = addr[:64]
	}
	_, err := d.w.ExecContext(ctx, d.rebind("UPDATE api_key SET last_used_at = ?, last_used_addr = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)"),
		at.Unix(), addr, id, at.Add(-minInterval).Unix())
	if err != nil {
		return fmt.Errorf("authdb: touch api key: %w", err)
	}
	return nil
}
