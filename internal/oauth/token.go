package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/oauth/token"
)

// AccessTokenType is the JOSE "typ" of access tokens (RFC 9068).
const AccessTokenType = "at+jwt"

// TokenRequest is a parsed token request with its authenticated client.
type TokenRequest struct {
	// Form holds the request parameters.
	Form url.Values
	// Client is the authenticated client.
	Client *AuthenticatedClient
}

// TokenResponse is a successful token response (RFC 6749 §5.1 plus the
// SMART launch context).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	Patient      string `json:"patient,omitempty"`
	Encounter    string `json:"encounter,omitempty"`
	// NeedPatientBanner and SMARTStyleURL come with a patient or EHR
	// launch context; FHIRContext is the SMART 2.2 object form.
	NeedPatientBanner *bool              `json:"need_patient_banner,omitempty"`
	SMARTStyleURL     string             `json:"smart_style_url,omitempty"`
	FHIRContext       []ContextReference `json:"fhirContext,omitempty"`
}

// GrantHandler handles one grant type at the token endpoint.
type GrantHandler interface {
	// GrantType is the grant_type value handled.
	GrantType() string
	// Handle issues tokens for an authenticated request, or returns an
	// *Error.
	Handle(ctx context.Context, req *TokenRequest) (*TokenResponse, error)
}

// Register adds a grant handler to the token endpoint (authorization_code
// and refresh_token plug in here).
func (s *Server) Register(h GrantHandler) { s.grants[h.GrantType()] = h }

// GrantTypes lists the registered grant types.
func (s *Server) GrantTypes() []string {
	out := make([]string, 0, len(s.grants))
	for g := range s.grants {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
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
	client, err := s.authenticateClient(r.Context(), r, form)
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
	c.Issuer, c.Audience = s.cfg.Issuer, s.cfg.Issuer
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

// ClientCredentials is the client_credentials grant (RFC 6749 §4.4, SMART
// Backend Services): confidential clients with a secret and backend
// clients with a signed assertion get a short-lived access token for
// system/ scopes within their registration, and no refresh token.
type ClientCredentials struct{ s *Server }

// GrantType implements GrantHandler.
func (*ClientCredentials) GrantType() string { return "client_credentials" }

// Handle implements GrantHandler.
func (g *ClientCredentials) Handle(ctx context.Context, req *TokenRequest) (*TokenResponse, error) {
	c := req.Client.Client
	if c.Type != authdb.Confidential && c.Type != authdb.Backend {
		return nil, errUnauthorizedClient("client may not use client_credentials")
	}
	scopes, err := systemScopes(req.Form.Get("scope"), c.Scopes)
	if err != nil {
		return nil, err
	}
	lifetime := g.s.cfg.BackendTokenLifetime
	tok, claims, err := g.s.IssueAccessToken(ctx, AccessClaims{Subject: c.ID, ClientID: c.ID, Scope: strings.Join(scopes, " ")}, lifetime)
	if err != nil {
		return nil, err
	}
	return &TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(lifetime / time.Second), Scope: claims.Scope}, nil
}

// systemScopes returns the scopes to grant for a client_credentials
// request: every requested scope must be a system/ scope the client is
// registered for; no scope requested means all its registered system/
// scopes.
func systemScopes(requested string, registered []string) ([]string, error) {
	var out []string
	req := strings.Fields(requested)
	if len(req) == 0 {
		for _, sc := range registered {
			if strings.HasPrefix(sc, "system/") {
				out = append(out, sc)
			}
		}
		if len(out) == 0 {
			return nil, errInvalidScope("no scope requested and no system scope registered")
		}
		return out, nil
	}
	for _, sc := range req {
		if !strings.HasPrefix(sc, "system/") || !slices.Contains(registered, sc) {
			return nil, errInvalidScope("scope not allowed for this client")
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}
