package oauth

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
)

// Refresh-token lifetimes and the rotation grace period (defaults of the
// Config fields of the same names).
const (
	// DefaultOfflineRefreshLifetime: offline_access refresh tokens live 90
	// days, renewed on every refresh (sliding), so an app used at least
	// once a quarter never has to re-authorize.
	DefaultOfflineRefreshLifetime = 90 * 24 * time.Hour
	// DefaultOnlineRefreshLifetime: online_access refresh tokens live 12
	// hours from the authorization, not extended by refreshes.
	DefaultOnlineRefreshLifetime = 12 * time.Hour
	// DefaultRefreshGracePeriod: a rotated refresh token is accepted once
	// more within this time after its rotation (the retry of a lost
	// response), while its successor is unused; any other reuse revokes
	// the whole family (RFC 9700 §4.14.2).
	DefaultRefreshGracePeriod = 30 * time.Second
)

// RefreshStore keeps token families and their refresh tokens (implemented
// by *authdb.DB). A family is everything issued from one authorization
// code; see the authdb methods of the same names for the exact semantics.
type RefreshStore interface {
	StartFamily(ctx context.Context, f *authdb.Family, accessJTI string, accessExpires time.Time, rt *authdb.RefreshToken) error
	RefreshToken(ctx context.Context, hash []byte) (*authdb.RefreshToken, error)
	RotateRefreshToken(ctx context.Context, oldHash []byte, now, graceStart time.Time, next *authdb.RefreshToken, accessJTI string, accessExpires time.Time) error
	RevokeFamily(ctx context.Context, familyID string, now time.Time) error
}

// RefreshTokenGrant is the refresh_token grant (RFC 6749 §6): opaque
// 256-bit tokens stored hashed, rotated on every use; a rotated token may
// be retried once within the grace period (see
// authdb.DB.RotateRefreshToken), any other reuse revokes its family; scope
// may narrow,
// never widen; the client must be the one the token was issued to
// (confidential clients re-authenticate; a public client may omit
// client_id, its token identifies it). The new access token keeps the
// launch context.
type RefreshTokenGrant struct{ s *Server }

// GrantType implements GrantHandler.
func (*RefreshTokenGrant) GrantType() string { return "refresh_token" }

// Handle implements GrantHandler.
func (g *RefreshTokenGrant) Handle(ctx context.Context, req *TokenRequest) (*TokenResponse, error) {
	s := g.s
	tok := req.Form.Get("refresh_token")
	if tok == "" {
		return nil, errInvalidRequest("refresh_token is required")
	}
	const bad = "refresh token is invalid, expired or revoked"
	if len(tok) > maxCredentialLen {
		return nil, errInvalidGrant(bad)
	}
	h := tokenHash(tok)
	now := s.now()
	rt, err := s.cfg.Refresh.RefreshToken(ctx, h)
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, errInvalidGrant(bad)
	}
	if err != nil {
		return nil, err
	}
	if rt.ClientID != req.Client.Client.ID {
		return nil, errInvalidGrant(bad) // never confirm another client's token
	}
	if !now.Before(rt.ExpiresAt) {
		return nil, errInvalidGrant(bad)
	}
	graceStart := now.Add(-s.cfg.RefreshGracePeriod)
	if !rt.RotatedAt.IsZero() && rt.RotatedAt.Before(graceStart) {
		return nil, s.refreshReused(ctx, rt.FamilyID, rt.ClientID, now)
	}
	var sess launchSession
	if err := json.Unmarshal(rt.Session, &sess); err != nil {
		return nil, fmt.Errorf("oauth: corrupt refresh session: %w", err)
	}
	// What the refresh token may still grant, bounded by its user (a
	// token from before that bound narrows here, and stays narrowed).
	granted := ScopesForUser(strings.Fields(rt.Scope), sess.FHIRUser)
	scopes := granted
	if requested := strings.Fields(req.Form.Get("scope")); len(requested) > 0 {
		for _, sc := range requested {
			if !slices.Contains(granted, sc) {
				return nil, errInvalidScope("scope exceeds the scope originally granted")
			}
		}
		scopes = uniqueScopes(requested)
	}
	resp, claims, err := s.accessResponse(ctx, rt.ClientID, rt.Subject, scopes, &sess)
	if err != nil {
		return nil, err
	}
	next := newSecret()
	expires := rt.ExpiresAt // online_access: fixed at authorization
	if slices.Contains(granted, ScopeOfflineAccess) {
		expires = now.Add(s.cfg.OfflineRefreshLifetime)
	}
	nrt := &authdb.RefreshToken{Hash: tokenHash(next), ClientID: rt.ClientID, Subject: rt.Subject, Scope: strings.Join(granted, " "),
		Session: rt.Session, IssuedAt: now, ExpiresAt: expires}
	err = s.cfg.Refresh.RotateRefreshToken(ctx, h, now, graceStart, nrt, claims.ID, time.Unix(claims.Expiry, 0))
	switch {
	case errors.Is(err, authdb.ErrRefreshReused):
		s.log.Warn("oauth: rotated refresh token reused; token family revoked", "client_id", rt.ClientID)
		return nil, errInvalidGrant(bad)
	case errors.Is(err, authdb.ErrNotFound):
		return nil, errInvalidGrant(bad)
	case err != nil:
		return nil, err
	}
	resp.RefreshToken = next
	return resp, nil
}

// identifyClient implements clientIdentifier: a refresh request without
// client credentials or client_id (fhirclient's refresh) comes from the
// client its token was issued to, if that is a public client. Expiry,
// rotation, the grace retry and reuse are judged by Handle as for any
// other request, so a reused token presented this way still revokes its
// family.
func (g *RefreshTokenGrant) identifyClient(ctx context.Context, form url.Values) (*AuthenticatedClient, error) {
	s := g.s
	tok := form.Get("refresh_token")
	if tok == "" {
		return nil, errInvalidRequest("refresh_token is required")
	}
	bad := errInvalidGrant("refresh token is invalid, expired or revoked")
	if len(tok) > maxCredentialLen {
		return nil, bad
	}
	rt, err := s.cfg.Refresh.RefreshToken(ctx, tokenHash(tok))
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	c, err := s.cfg.Clients.Client(ctx, rt.ClientID)
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	if c.Type != authdb.Public {
		return nil, errInvalidClient(true) // confidential clients authenticate
	}
	return &AuthenticatedClient{Client: c, Method: AuthNone}, nil
}

// refreshReused revokes a family whose rotated refresh token came back
// after the grace period and returns the invalid_grant to answer.
func (s *Server) refreshReused(ctx context.Context, family, clientID string, now time.Time) error {
	if err := s.cfg.Refresh.RevokeFamily(ctx, family, now); err != nil {
		return err
	}
	s.log.Warn("oauth: rotated refresh token reused; token family revoked", "client_id", clientID)
	return errInvalidGrant("refresh token is invalid, expired or revoked")
}

// looksLikeJWT tells access tokens (compact JWS) from opaque refresh
// tokens.
func looksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// refreshIntrospection is an active RFC 7662 response for a refresh token.
type refreshIntrospection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope"`
	ClientID  string `json:"client_id"`
	Subject   string `json:"sub"`
	Issuer    string `json:"iss"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	Patient   string `json:"patient,omitempty"`
	Encounter string `json:"encounter,omitempty"`
	FHIRUser  string `json:"fhirUser,omitempty"`
}

// introspectRefresh answers introspection of an opaque token: active only
// for the current, unexpired refresh token of a family that is not
// revoked; nil when it is not active.
func (s *Server) introspectRefresh(ctx context.Context, tok string) (*refreshIntrospection, error) {
	if s.cfg.Refresh == nil || len(tok) > maxCredentialLen {
		return nil, nil
	}
	rt, err := s.cfg.Refresh.RefreshToken(ctx, tokenHash(tok))
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !rt.RotatedAt.IsZero() || !s.now().Before(rt.ExpiresAt) {
		return nil, nil
	}
	var sess launchSession
	_ = json.Unmarshal(rt.Session, &sess)
	return &refreshIntrospection{Active: true, Scope: rt.Scope, ClientID: rt.ClientID, Subject: rt.Subject, Issuer: s.cfg.Issuer,
		Expiry: rt.ExpiresAt.Unix(), IssuedAt: rt.IssuedAt.Unix(), Patient: sess.Patient, Encounter: sess.Encounter,
		FHIRUser: s.fhirUserURL(sess.FHIRUser)}, nil
}

// revokeRefresh revokes the family of an opaque refresh token presented
// by clientID (RFC 7009) and reports whether it did. Unknown tokens and
// tokens of another client are left alone, without an error (the caller
// answers both like a revocation, so nothing is disclosed).
func (s *Server) revokeRefresh(ctx context.Context, tok, clientID string) (bool, error) {
	if s.cfg.Refresh == nil || len(tok) > maxCredentialLen {
		return false, nil
	}
	rt, err := s.cfg.Refresh.RefreshToken(ctx, tokenHash(tok))
	if errors.Is(err, authdb.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rt.ClientID != clientID {
		return false, nil
	}
	return true, s.cfg.Refresh.RevokeFamily(ctx, rt.FamilyID, s.now())
}
