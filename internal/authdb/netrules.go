package authdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/database"
)

// ClientNetRules are a client's network rules, enforced by the gateway
// (package netpolicy) on the FHIR API.
type ClientNetRules struct {
	// ClientID is the client the rules belong to.
	ClientID string `json:"client_id"`
	// AllowIPs are the CIDRs (or single addresses) the client's tokens may
	// be used from; empty allows every address.
	AllowIPs []string `json:"allow_ips,omitempty"`
	// CORSOrigins are the browser origins (scheme://host[:port]) allowed
	// to call the FHIR API with the client's tokens.
	CORSOrigins []string `json:"cors_origins,omitempty"`
}

// SetClientNetRules replaces the network rules of r.ClientID (empty lists
// remove them). It returns ErrNotFound when the client does not exist.
// Entries must already be canonical (netpolicy.ParsePrefix,
// netpolicy.NormalizeOrigin); this only refuses what could not be stored
// faithfully.
func (d *DB) SetClientNetRules(ctx context.Context, r ClientNetRules) error {
	for _, a := range r.AllowIPs {
		if _, err := netip.ParsePrefix(a); err != nil {
			if _, err := netip.ParseAddr(a); err != nil {
				return fmt.Errorf("authdb: invalid allow-list entry %q", a)
			}
		}
	}
	for _, o := range r.CORSOrigins {
		if o == "" || strings.ContainsAny(o, " \t\r\n") {
			return fmt.Errorf("authdb: invalid CORS origin %q", o)
		}
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: set network rules: %w", err)
	}
	defer tx.Rollback()
	if found, err := exists(tx.QueryRowContext(ctx, d.rebind("SELECT 1 FROM oauth_client WHERE client_id = ?"), r.ClientID)); err != nil {
		return fmt.Errorf("authdb: set network rules: %w", err)
	} else if !found {
		return ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, d.rebind("DELETE FROM oauth_client_netrules WHERE client_id = ?"), r.ClientID); err != nil {
		return fmt.Errorf("authdb: set network rules: %w", err)
	}
	if len(r.AllowIPs) > 0 || len(r.CORSOrigins) > 0 {
		if _, err := tx.ExecContext(ctx, d.rebind("INSERT INTO oauth_client_netrules (client_id, allow_ips, cors_origins, updated_at) VALUES (?, ?, ?, ?)"),
			r.ClientID, strings.Join(r.AllowIPs, " "), strings.Join(r.CORSOrigins, " "), time.Now().Unix()); err != nil {
			return fmt.Errorf("authdb: set network rules: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("authdb: set network rules: %w", err)
	}
	return nil
}

// ClientNetRules returns the network rules of every client, ordered by
// client id; clients without rules have empty lists (so that a caller
// holding the result knows every client that existed when it was read).
func (d *DB) ClientNetRules(ctx context.Context) ([]ClientNetRules, error) {
	out, err := database.AppendRows(ctx, nil, d.r, func(rows *sql.Rows) (r ClientNetRules, err error) {
		var ips, origins string
		err = rows.Scan(&r.ClientID, &ips, &origins)
		r.AllowIPs, r.CORSOrigins = strings.Fields(ips), strings.Fields(origins)
		return r, err
	}, `SELECT c.client_id, COALESCE(n.allow_ips, ''), COALESCE(n.cors_origins, '') FROM oauth_client c
		LEFT JOIN oauth_client_netrules n ON n.client_id = c.client_id ORDER BY c.client_id`)
	if err != nil {
		return nil, fmt.Errorf("authdb: read network rules: %w", err)
	}
	return out, nil
}

// ClientNetRulesFor returns the network rules of one client (empty lists
// when it has none), or ErrNotFound when the client does not exist.
func (d *DB) ClientNetRulesFor(ctx context.Context, clientID string) (ClientNetRules, error) {
	r := ClientNetRules{ClientID: clientID}
	if !Storable(clientID) {
		return r, ErrNotFound
	}
	var ips, origins sql.NullString
	err := d.r.QueryRowContext(ctx, d.rebind(`SELECT n.allow_ips, n.cors_origins FROM oauth_client c
		LEFT JOIN oauth_client_netrules n ON n.client_id = c.client_id WHERE c.client_id = ?`), clientID).Scan(&ips, &origins)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("authdb: read network rules: %w", err)
	}
	r.AllowIPs, r.CORSOrigins = strings.Fields(ips.String), strings.Fields(origins.String)
	return r, nil
}
