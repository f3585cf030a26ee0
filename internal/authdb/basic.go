package authdb

import (
	"context"
	"fmt"
	"time"
)

// EnableBasic lets the client clientID authenticate to the FHIR API with
// HTTP Basic (idempotent). It returns ErrNotFound for an unknown client.
// (Whether the client may use Basic at all — it needs a secret — is the
// caller's decision.)
func (d *DB) EnableBasic(ctx context.Context, clientID string, now time.Time) error {
	if _, err := d.Client(ctx, clientID); err != nil {
		return err
	}
	if _, err := d.w.ExecContext(ctx, d.rebind("INSERT INTO oauth_client_basic (client_id, enabled_at) VALUES (?, ?) ON CONFLICT DO NOTHING"), clientID, now.Unix()); err != nil {
		return fmt.Errorf("authdb: enable basic: %w", err)
	}
	return nil
}

// DisableBasic turns HTTP Basic off for clientID (idempotent; an unknown
// client is not an error, so a deleted client's row can be removed).
func (d *DB) DisableBasic(ctx context.Context, clientID string) error {
	if _, err := d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_client_basic WHERE client_id = ?"), clientID); err != nil {
		return fmt.Errorf("authdb: disable basic: %w", err)
	}
	return nil
}

// BasicEnabled reports whether clientID may use HTTP Basic.
func (d *DB) BasicEnabled(ctx context.Context, clientID string) (bool, error) {
	if !Storable(clientID) {
		return false, nil
	}
	ok, err := exists(d.r.QueryRowContext(ctx, d.rebind("SELECT 1 FROM oauth_client_basic WHERE client_id = ?"), clientID))
	if err != nil {
		return false, fmt.Errorf("authdb: basic enabled: %w", err)
	}
	return ok, nil
}

// AnyBasicEnabled reports whether any client may use HTTP Basic (the FHIR
// API then also offers a Basic challenge).
func (d *DB) AnyBasicEnabled(ctx context.Context) (bool, error) {
	ok, err := exists(d.r.QueryRowContext(ctx, "SELECT 1 FROM oauth_client_basic LIMIT 1"))
	if err != nil {
		return false, fmt.Errorf("authdb: basic enabled: %w", err)
	}
	return ok, nil
}
