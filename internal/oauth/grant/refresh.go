package grant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/scope"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// RefreshTokenGrant is the refresh_token grant (RFC 6749 §6): opaque
// 256-bit tokens stored hashed, rotated on every use; a rotated token may
// be retried once within the grace period (see
// authdb.DB.RotateRefreshToken), any other reuse revokes its family; scope
// may narrow,
// never widen; the client must be the one the token was issued to
// (confidential clients re-authenticate; a public client may omit
// client_id, its token identifies it). The new access token keeps the
// launch context.
type RefreshTokenGrant struct{ cfg *Config }

// badRefreshToken is the invalid_grant description of every refresh token
// that cannot be used, whatever the reason.
const badRefreshToken = "refresh token is invalid, expired or revoked"

// NewRefreshToken returns the refresh_token grant.
func NewRefreshToken(cfg *Config) *RefreshTokenGrant { return &RefreshTokenGrant{cfg} }

// GrantType implements tokenreq.Handler.
func (*RefreshTokenGrant) GrantType() string { return "refresh_token" }

// Handle implements tokenreq.Handler.
func (g *RefreshTokenGrant) Handle(ctx context.Context, req *tokenreq.Request) (*tokenreq.Response, error) {
	c := g.cfg
	h, err := credentialHash(req.Form, "refresh_token", badRefreshToken)
	if err != nil {
		return nil, err
	}
	now := c.Now()
	rt, err := c.Refresh.RefreshToken(ctx, h)
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, tokenreq.InvalidGrant(badRefreshToken)
	}
	if err != nil {
		return nil, err
	}
	if rt.ClientID != req.Client.Client.ID {
		return nil, tokenreq.InvalidGrant(badRefreshToken) // never confirm another client's token
	}
	if !now.Before(rt.ExpiresAt) {
		return nil, tokenreq.InvalidGrant(badRefreshToken)
	}
	graceStart := now.Add(-c.RefreshGracePeriod)
	if !rt.RotatedAt.IsZero() && rt.RotatedAt.Before(graceStart) {
		return nil, c.refreshReused(ctx, rt.FamilyID, rt.ClientID, now)
	}
	var sess tokenreq.Session
	if err := json.Unmarshal(rt.Session, &sess); err != nil {
		return nil, fmt.Errorf("oauth: corrupt refresh session: %w", err)
	}
	// What the refresh token may still grant, bounded by its user (a
	// token from before that bound narrows here, and stays narrowed).
	granted := scope.ScopesForUser(strings.Fields(rt.Scope), sess.FHIRUser)
	scopes := granted
	if requested := strings.Fields(req.Form.Get("scope")); len(requested) > 0 {
		for _, sc := range requested {
			if !slices.Contains(granted, sc) {
				return nil, tokenreq.InvalidScope("scope exceeds the scope originally granted")
			}
		}
		scopes = uniqueScopes(requested)
	}
	resp, claims, err := c.accessResponse(ctx, rt.ClientID, rt.Subject, scopes, &sess)
	if err != nil {
		return nil, err
	}
	next := tokenreq.NewSecret()
	expires := rt.ExpiresAt // online_access: fixed at authorization
	if slices.Contains(granted, ScopeOfflineAccess) {
		expires = now.Add(c.OfflineRefreshLifetime)
	}
	nrt := &authdb.RefreshToken{Hash: tokenreq.TokenHash(next), ClientID: rt.ClientID, Subject: rt.Subject, Scope: strings.Join(granted, " "),
		Session: rt.Session, IssuedAt: now, ExpiresAt: expires}
	err = c.Refresh.RotateRefreshToken(ctx, h, now, graceStart, nrt, claims.ID, time.Unix(claims.Expiry, 0))
	switch {
	case errors.Is(err, authdb.ErrRefreshReused):
		c.Log.Warn("oauth: rotated refresh token reused; token family revoked", "client_id", rt.ClientID)
		return nil, tokenreq.InvalidGrant(badRefreshToken)
	case errors.Is(err, authdb.ErrNotFound):
		return nil, tokenreq.InvalidGrant(badRefreshToken)
	case err != nil:
		return nil, err
	}
	resp.RefreshToken = next
	return resp, nil
}

// IdentifyClient implements tokenreq.ClientIdentifier: a refresh request without
// client credentials or client_id (fhirclient's refresh) comes from the
// client its token was issued to, if that is a public client. Expiry,
// rotation, the grace retry and reuse are judged by Handle as for any
// other request, so a reused token presented this way still revokes its
// family.
func (g *RefreshTokenGrant) IdentifyClient(ctx context.Context, form url.Values) (*tokenreq.AuthenticatedClient, error) {
	c := g.cfg
	h, err := credentialHash(form, "refresh_token", badRefreshToken)
	if err != nil {
		return nil, err
	}
	bad := tokenreq.InvalidGrant(badRefreshToken)
	rt, err := c.Refresh.RefreshToken(ctx, h)
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	cl, err := c.Clients.Client(ctx, rt.ClientID)
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	if cl.Type != authdb.Public {
		return nil, tokenreq.InvalidClient(true) // confidential clients authenticate
	}
	return &tokenreq.AuthenticatedClient{Client: cl, Method: tokenreq.AuthNone}, nil
}

// refreshReused revokes a family whose rotated refresh token came back
// after the grace period and returns the invalid_grant to answer.
func (c *Config) refreshReused(ctx context.Context, family, clientID string, now time.Time) error {
	if err := c.Refresh.RevokeFamily(ctx, family, now); err != nil {
		return err
	}
	c.Log.Warn("oauth: rotated refresh token reused; token family revoked", "client_id", clientID)
	return tokenreq.InvalidGrant("refresh token is invalid, expired or revoked")
}
