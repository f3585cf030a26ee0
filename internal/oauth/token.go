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

	"github.com/lapis-health/lapis/internal/access"
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

// clientIdentifier is implemented by grant handlers whose grant itself
// identifies the client when the request carries no client credentials
// and no client_id: the refresh_token grant, whose token names its public
// client (RFC 6749 §6 asks a public client for no authentication). It
// returns a public client only; a confidential or backend client must
// authenticate (invalid_client).
type clientIdentifier interface {
	identifyClient(ctx context.Context, form url.Values) (*AuthenticatedClient, error)
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
	var client *AuthenticatedClient
	if ci, ok := h.(clientIdentifier); ok && !hasClientCredentials(r, form) {
		// A public client identified by its grant (RFC 6749 §6).
		client, err = ci.identifyClient(r.Context(), form)
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
// request. No scope requested means all the client's registered system/
// scopes. Otherwise any subset of the registration is granted as
// requested (RFC 6749 §3.3): a registered scope itself, or a system/
// resource scope that a registered one covers — a wildcard narrowed to a
// type (system/*.rs → system/Patient.rs), fewer permissions
// (system/Patient.r), a v1 form of the same permissions
// (system/Patient.read) or a granular restriction added
// (system/Observation.rs?category=…). A scope beyond the registration, not
// a system/ scope or malformed is refused with invalid_scope naming it.
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
	var regRes []ResourceScope
	for _, sc := range registered {
		if rs, ok := ParseResourceScope(sc); ok && rs.Context == access.ContextSystem {
			regRes = append(regRes, rs)
		}
	}
	for _, sc := range req {
		if slices.Contains(out, sc) {
			continue
		}
		if !strings.HasPrefix(sc, "system/") {
			return nil, errInvalidScope("scope " + scopeForError(sc) + " is not a system/ scope (client_credentials grants system/ scopes only)")
		}
		if !slices.Contains(registered, sc) && !coveredSystemScope(sc, regRes) {
			return nil, errInvalidScope("scope " + scopeForError(sc) + " exceeds the client's registration")
		}
		out = append(out, sc)
	}
	return out, nil
}

// coveredSystemScope reports whether sc is a well-formed system/ resource
// scope within one of the registered resource scopes.
func coveredSystemScope(sc string, registered []ResourceScope) bool {
	rs, ok := ParseResourceScope(sc)
	if !ok || rs.Context != access.ContextSystem {
		return false
	}
	if g, err := access.ParseScopes([]string{sc}); err != nil || len(g.Scopes) != 1 {
		return false // e.g. a granular restriction on a v1 permission
	}
	return slices.ContainsFunc(registered, func(reg ResourceScope) bool { return reg.Covers(rs) })
}

// scopeForError renders a requested scope for an error_description: only
// the characters RFC 6749 §5.2 allows there (others become "?"), at most
// 128 of them.
func scopeForError(sc string) string {
	b := []byte(sc)
	if len(b) > 128 {
		b = append(b[:125], "..."...)
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}
