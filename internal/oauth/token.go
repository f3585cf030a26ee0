package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/oauth/grant"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/oauth/token"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// AccessTokenType is the JOSE "typ" of access tokens (RFC 9068).
const AccessTokenType = "at+jwt"

// TokenRequest is a parsed token request with its authenticated client
// (tokenreq.Request).
type TokenRequest = tokenreq.Request

// TokenResponse is a successful token response (tokenreq.Response).
type TokenResponse = tokenreq.Response

// GrantHandler handles one grant type at the token endpoint
// (tokenreq.Handler); the grants are in package oauth/grant.
type GrantHandler = tokenreq.Handler

// Register adds a grant handler to the token endpoint (authorization_code
// and refresh_token plug in here).
func (s *Server) Register(h GrantHandler) { s.grants[h.GrantType()] = h }

// GrantTypes lists the registered grant types.
func (s *Server) GrantTypes() []string {
	return slices.Sorted(maps.Keys(s.grants))
}

// handleToken is the token endpoint: form checks, grant type, client
// authentication, then the grant handler.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if cors(w, r, "POST") {
		return
	}
	form, err := parseForm(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	gt := form.Get("grant_type")
	if gt == "" {
		s.writeError(w, r, errInvalidRequest("grant_type is required"))
		return
	}
	h, ok := s.grants[gt]
	if !ok {
		s.writeError(w, r, &Error{Code: CodeUnsupportedGrantType, Description: "grant type not supported", Status: http.StatusBadRequest})
		return
	}
	var client *AuthenticatedClient
	if ci, ok := h.(tokenreq.ClientIdentifier); ok && !hasClientCredentials(r, form) {
		// A public client identified by its grant (RFC 6749 §6).
		client, err = ci.IdentifyClient(r.Context(), form)
		if err == nil {
			client, err = s.allowedFrom(r.Context(), r, client)
		}
	} else {
		client, err = s.authenticateClient(r.Context(), r, form)
	}
	if err != nil {
		s.record(r, audit.Event{Kind: audit.KindTokenFailure, Outcome: audit.OutcomeMinor, Description: "client authentication failed; grant " + safeWord(gt),
			ClientID: s.knownClient(r.Context(), form.Get("client_id"))})
		s.writeError(w, r, err)
		return
	}
	resp, err := h.Handle(r.Context(), &TokenRequest{Form: form, Client: client})
	if err != nil {
		s.record(r, audit.Event{Kind: audit.KindTokenFailure, Outcome: audit.OutcomeMinor, Description: "grant " + safeWord(gt) + " refused",
			ClientID: client.Client.ID})
		s.writeError(w, r, err)
		return
	}
	kind := audit.KindTokenIssued
	if gt == "refresh_token" {
		kind = audit.KindTokenRefreshed
	}
	s.record(r, tokenEvent(kind, gt, resp))
	writeJSON(w, http.StatusOK, resp)
}

// AccessClaims are the claims of a Lapis access token (token.Claims,
// which authentication reads without importing this package).
type AccessClaims = token.Claims

// newID returns a random 128-bit identifier.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// IssueAccessToken signs an access token with the claims (iss, aud, iat,
// exp and jti are filled in) valid for lifetime.
func (s *Server) IssueAccessToken(ctx context.Context, c AccessClaims, lifetime time.Duration) (string, *AccessClaims, error) {
	now := s.now()
	c.Issuer, c.Audience, c.Env = s.cfg.Issuer, s.cfg.Issuer, s.cfg.Environment
	c.IssuedAt, c.Expiry = now.Unix(), now.Add(lifetime).Unix()
	c.ID = newID()
	payload, err := json.Marshal(c)
	if err != nil {
		return "", nil, err
	}
	tok, err := s.cfg.Keys.Sign(ctx, keys.AccessTokenAlg, AccessTokenType, payload)
	if err != nil {
		return "", nil, err
	}
	return tok, &c, nil
}

// DefaultAccessTokenLifetime is the lifetime of access tokens and
// id_tokens issued by the authorization_code and refresh_token grants
// (expires_in 3600); Config.AccessTokenLifetime overrides it.
const DefaultAccessTokenLifetime = time.Hour

// Scopes that steer the token response.
const (
	ScopeOpenID        = grant.ScopeOpenID
	ScopeFHIRUser      = grant.ScopeFHIRUser
	ScopeOfflineAccess = grant.ScopeOfflineAccess
	ScopeOnlineAccess  = grant.ScopeOnlineAccess
)

// fhirUserURL makes a relative fhirUser ("Patient/123") absolute under the
// FHIR base, as SMART 2.x asks.
func (s *Server) fhirUserURL(ref string) string {
	if ref == "" || strings.HasPrefix(ref, "https://") || strings.HasPrefix(ref, "http://") {
		return ref
	}
	return strings.TrimRight(s.cfg.Issuer, "/") + "/" + strings.TrimPrefix(ref, "/")
}
