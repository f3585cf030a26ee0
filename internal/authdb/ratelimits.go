package authdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Kinds of credential that carry their own rate limit (the first part of
// a RevRateLimit subject).
const (
	CredentialClient = "client"
	CredentialAPIKey = "apikey"
)

// RateLimit is a credential's own limit on the FHIR API, replacing the
// server's default for its class (migration 00009). Limit is "" (the
// default applies), "none" (unlimited) or N/PERIOD as package ratelimit
// reads it (e.g. "500/s"); Burst is its burst in cost units (0: N). The
// admin service validates and canonicalises both before they are stored.
type RateLimit struct {
	Limit string `json:"limit,omitempty"`
	Burst int    `json:"burst,omitempty"`
}

// IsZero reports whether r is the default (no limit of its own).
func (r RateLimit) IsZero() bool { return r.Limit == "" }

// RateLimitSubject is the subject of a RevRateLimit entry for the
// credential kind (CredentialClient, CredentialAPIKey) and id.
func RateLimitSubject(kind, id string) string { return kind + ":" + id }

// SetClientRateLimit replaces the rate limit of the client id (the zero
// RateLimit restores the default), or returns ErrNotFound. The change is
// appended to the revocation log in the same transaction, so that every
// instance re-reads it within one poll (this one before it returns).
func (d *DB) SetClientRateLimit(ctx context.Context, id string, r RateLimit) error {
	return d.setRateLimit(ctx, "UPDATE oauth_client SET rate_limit = ?, rate_limit_burst = ? WHERE client_id = ?", CredentialClient, id, r)
}

// SetAPIKeyRateLimit replaces the rate limit of the API key id (the zero
// RateLimit restores the default), or returns ErrNotFound; see
// SetClientRateLimit.
func (d *DB) SetAPIKeyRateLimit(ctx context.Context, id string, r RateLimit) error {
	return d.setRateLimit(ctx, "UPDATE api_key SET rate_limit = ?, rate_limit_burst = ? WHERE id = ?", CredentialAPIKey, id, r)
}

func (d *DB) setRateLimit(ctx context.Context, q, kind, id string, r RateLimit) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: set rate limit: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, d.rebind(q), r.Limit, r.Burst, id)
	if err != nil {
		return fmt.Errorf("authdb: set rate limit: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return d.commitRevocation(ctx, tx, RevRateLimit, RateLimitSubject(kind, id), time.Now(), "set rate limit")
}

// CredentialRateLimit returns the rate limit of the credential kind
// (CredentialClient, CredentialAPIKey) and id: the zero RateLimit when it
// has none or does not exist (an unknown credential never reaches the
// rate limiter: authentication refused it).
func (d *DB) CredentialRateLimit(ctx context.Context, kind, id string) (RateLimit, error) {
	var q string
	switch kind {
	case CredentialClient:
		q = "SELECT rate_limit, rate_limit_burst FROM oauth_client WHERE client_id = ?"
	case CredentialAPIKey:
		q = "SELECT rate_limit, rate_limit_burst FROM api_key WHERE id = ?"
	default:
		return RateLimit{}, fmt.Errorf("authdb: unknown credential kind %q", kind)
	}
	var r RateLimit
	err := d.r.QueryRowContext(ctx, d.rebind(q), id).Scan(&r.Limit, &r.Burst)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return RateLimit{}, fmt.Errorf("authdb: read rate limit: %w", err)
	}
	return r, nil
}
