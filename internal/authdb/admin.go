package authdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// GrantFilter selects user grants (token families) by client and/or user
// subject; an empty field matches every value.
type GrantFilter struct {
	// ClientID is the client the grants were issued to.
	ClientID string
	// Subject is the user (account subject) who authorized them.
	Subject string
}

// GrantSummary describes the live grants one user gave one client: every
// unrevoked, unexpired token family of the pair, merged.
type GrantSummary struct {
	// ClientID and ClientName identify the app (ClientName is empty when
	// the client has since been deleted).
	ClientID   string `json:"client_id"`
	ClientName string `json:"client_name"`
	// Subject and Username identify the user (Username is empty when the
	// account has since been deleted).
	Subject  string `json:"subject"`
	Username string `json:"username"`
	// Scopes are the scopes the current refresh tokens may grant (empty
	// for families that hold only access tokens).
	Scopes []string `json:"scopes"`
	// Families is the number of token families (authorizations) merged.
	Families int `json:"families"`
	// CreatedAt is the first authorization; LastUsedAt the latest token
	// issue (authorization or refresh); ExpiresAt the end of the longest
	// lived family.
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// Grants lists the live grants matching f at now, one summary per (client,
// user) pair, ordered by client name, client id and username.
func (d *DB) Grants(ctx context.Context, f GrantFilter, now time.Time) ([]GrantSummary, error) {
	q := "SELECT fam.family_id, fam.client_id, fam.subject, fam.created_at, fam.expires_at, COALESCE(c.name, ''), COALESCE(a.username, ''), " +
		"COALESCE(t.scope, ''), COALESCE(t.issued_at, 0) " +
		"FROM oauth_token_family fam " +
		"LEFT JOIN oauth_client c ON c.client_id = fam.client_id " +
		"LEFT JOIN oauth_account a ON a.subject = fam.subject " +
		"LEFT JOIN oauth_refresh_token t ON t.family_id = fam.family_id AND t.rotated_at IS NULL AND t.expires_at > ? " +
		"WHERE fam.revoked_at IS NULL AND fam.expires_at > ?"
	args := []any{now.Unix(), now.Unix()}
	q, args = grantWhere(q, args, f, "fam.")
	q += " ORDER BY fam.created_at, fam.family_id"
	rows, err := d.r.QueryContext(ctx, d.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("authdb: list grants: %w", err)
	}
	defer rows.Close()
	type key struct{ client, subject string }
	byKey := map[key]*GrantSummary{}
	families := map[key]map[string]bool{}
	for rows.Next() {
		var fam, client, subject, name, username, scope string
		var created, expires, issued int64
		if err := rows.Scan(&fam, &client, &subject, &created, &expires, &name, &username, &scope, &issued); err != nil {
			return nil, fmt.Errorf("authdb: list grants: %w", err)
		}
		k := key{client, subject}
		g := byKey[k]
		if g == nil {
			g = &GrantSummary{ClientID: client, ClientName: name, Subject: subject, Username: username, Scopes: []string{},
				CreatedAt: time.Unix(created, 0).UTC()}
			byKey[k], families[k] = g, map[string]bool{}
		}
		families[k][fam] = true
		if t := time.Unix(created, 0).UTC(); t.Before(g.CreatedAt) {
			g.CreatedAt = t
		}
		last := max(created, issued)
		if t := time.Unix(last, 0).UTC(); t.After(g.LastUsedAt) {
			g.LastUsedAt = t
		}
		if t := time.Unix(expires, 0).UTC(); t.After(g.ExpiresAt) {
			g.ExpiresAt = t
		}
		for _, sc := range strings.Fields(scope) {
			if !slices.Contains(g.Scopes, sc) {
				g.Scopes = append(g.Scopes, sc)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("authdb: list grants: %w", err)
	}
	out := make([]GrantSummary, 0, len(byKey))
	for k, g := range byKey {
		g.Families = len(families[k])
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b GrantSummary) int {
		if c := strings.Compare(strings.ToLower(a.ClientName), strings.ToLower(b.ClientName)); c != 0 {
			return c
		}
		if c := strings.Compare(a.ClientID, b.ClientID); c != 0 {
			return c
		}
		if c := strings.Compare(a.Username, b.Username); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return out, nil
}

// grantWhere appends the filter's conditions on the family table (alias
// prefix p) to q.
func grantWhere(q string, args []any, f GrantFilter, p string) (string, []any) {
	if f.ClientID != "" {
		q += " AND " + p + "client_id = ?"
		args = append(args, f.ClientID)
	}
	if f.Subject != "" {
		q += " AND " + p + "subject = ?"
		args = append(args, f.Subject)
	}
	return q, args
}

// ErrNoFilter is returned by RevokeGrants for an empty filter: revoking
// every grant of every client at once is refused.
var ErrNoFilter = errors.New("authdb: a client or a subject is required")

// RevokeGrants revokes every unrevoked token family matching f (each as
// RevokeFamily does: refresh tokens deleted, unexpired access tokens added
// to the revoked tokens, so they stop verifying at once) and returns how
// many were revoked. With f.Subject empty it revokes the client's grants
// of every user (an administrator withdrawing an app).
func (d *DB) RevokeGrants(ctx context.Context, f GrantFilter, now time.Time) (int, error) {
	if f.ClientID == "" && f.Subject == "" {
		return 0, ErrNoFilter
	}
	if f.ClientID != "" && f.Subject != "" {
		return d.RevokeClientGrants(ctx, f.ClientID, f.Subject, now)
	}
	q, args := grantWhere("SELECT family_id FROM oauth_token_family WHERE revoked_at IS NULL", nil, f, "")
	return d.revokeFamilies(ctx, now, q, args...)
}
