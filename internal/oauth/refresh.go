package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
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

// RefreshStore keeps token families and their refresh tokens
// (tokenreq.RefreshStore, implemented by *authdb.DB).
type RefreshStore = tokenreq.RefreshStore

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

// refreshToken finds the stored refresh token an opaque token is; nil,
// without an error, when there is no refresh store or the token is none
// of its tokens.
func (s *Server) refreshToken(ctx context.Context, tok string) (*authdb.RefreshToken, error) {
	if s.cfg.Refresh == nil || len(tok) > tokenreq.MaxCredentialLen {
		return nil, nil
	}
	rt, err := s.cfg.Refresh.RefreshToken(ctx, tokenreq.TokenHash(tok))
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// introspectRefresh answers introspection of an opaque token: active only
// for the current, unexpired refresh token of a family that is not
// revoked; nil when it is not active.
func (s *Server) introspectRefresh(ctx context.Context, tok string) (*refreshIntrospection, error) {
	rt, err := s.refreshToken(ctx, tok)
	if rt == nil || err != nil {
		return nil, err
	}
	if !rt.RotatedAt.IsZero() || !s.now().Before(rt.ExpiresAt) {
		return nil, nil
	}
	var sess tokenreq.Session
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
	rt, err := s.refreshToken(ctx, tok)
	if rt == nil || err != nil || rt.ClientID != clientID {
		return false, err
	}
	return true, s.cfg.Refresh.RevokeFamily(ctx, rt.FamilyID, s.now())
}
