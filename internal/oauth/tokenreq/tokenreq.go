// Package tokenreq holds what the token endpoint's core (package oauth)
// and its grant handlers (package oauth/grant) share: the token request
// and response, the OAuth error, the authenticated client, the grant an
// authorization code stands for, the stores of codes and refresh tokens,
// and the stored form of codes and refresh tokens. It imports neither.
package tokenreq

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/randtoken"
)

// RFC 6749 §5.2 and RFC 7009 error codes.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeServerError          = "server_error"
)

// Error is an OAuth 2.0 error response: it knows its RFC 6749 error code,
// a description safe to show the client, and its HTTP status.
type Error struct {
	// Code is the RFC 6749 "error" value.
	Code string
	// Description is the "error_description": never internal details.
	Description string
	// Status is the HTTP status code.
	Status int
	// Challenge asks for a WWW-Authenticate header (failed Basic auth).
	Challenge bool
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Description }

// badRequest is an error answered with 400.
func badRequest(code, desc string) *Error {
	return &Error{Code: code, Description: desc, Status: http.StatusBadRequest}
}

// InvalidRequest is a malformed request (400).
func InvalidRequest(desc string) *Error { return badRequest(CodeInvalidRequest, desc) }

// InvalidClient is a failed client authentication: 401 with a
// WWW-Authenticate challenge when the client used (or could have used)
// HTTP Basic, else 400.
func InvalidClient(basic bool) *Error {
	e := badRequest(CodeInvalidClient, "client authentication failed")
	if basic {
		e.Status, e.Challenge = http.StatusUnauthorized, true
	}
	return e
}

// UnauthorizedClient is a client not allowed to use a grant (400).
func UnauthorizedClient(desc string) *Error { return badRequest(CodeUnauthorizedClient, desc) }

// InvalidScope is a scope that is malformed or beyond what may be
// granted (400).
func InvalidScope(desc string) *Error { return badRequest(CodeInvalidScope, desc) }

// InvalidGrant is a code or refresh token that is invalid, expired,
// revoked, already used, or issued to another client or redirect URI
// (RFC 6749 §5.2, 400).
func InvalidGrant(desc string) *Error { return badRequest(CodeInvalidGrant, desc) }

// Client authentication methods (token_endpoint_auth_methods_supported).
const (
	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// AuthenticatedClient is the client a request authenticated as.
type AuthenticatedClient struct {
	// Client is the registered client.
	Client *authdb.Client
	// Method is how it authenticated (AuthNone for a public client).
	Method string
}

// Request is a parsed token request with its authenticated client.
type Request struct {
	// Form holds the request parameters.
	Form url.Values
	// Client is the authenticated client.
	Client *AuthenticatedClient
}

// ContextReference is one entry of the SMART 2.2 fhirContext array (object
// form): a relative reference to a resource in the launch context.
type ContextReference struct {
	Reference string `json:"reference,omitempty"`
	Type      string `json:"type,omitempty"`
}

// Response is a successful token response (RFC 6749 §5.1 plus the SMART
// launch context).
type Response struct {
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

// Handler handles one grant type at the token endpoint.
type Handler interface {
	// GrantType is the grant_type value handled.
	GrantType() string
	// Handle issues tokens for an authenticated request, or returns an
	// *Error.
	Handle(ctx context.Context, req *Request) (*Response, error)
}

// ClientIdentifier is implemented by grant handlers whose grant itself
// identifies the client when the request carries no client credentials
// and no client_id: the refresh_token grant, whose token names its public
// client (RFC 6749 §6 asks a public client for no authentication). It
// returns a public client only; a confidential or backend client must
// authenticate (invalid_client).
type ClientIdentifier interface {
	IdentifyClient(ctx context.Context, form url.Values) (*AuthenticatedClient, error)
}

// Grant is what a user authorized at /authorize for one client: it is
// stored behind an authorization code, and the token endpoint turns it into
// tokens. The authorize side fills it; the authorization_code grant
// consumes it.
type Grant struct {
	ClientID string
	// Subject is the user's stable identifier (the id_token sub, at most
	// 255 characters); FHIRUser is "Patient/ID" or "Practitioner/ID".
	Subject  string
	FHIRUser string
	// Scopes are the granted scopes after the user's consent choices
	// (launch/patient, openid, fhirUser, offline_access included when
	// granted).
	Scopes []string
	// RedirectURI must be repeated exactly at the token endpoint.
	RedirectURI string
	// CodeChallenge is the PKCE S256 challenge.
	CodeChallenge string
	// Nonce is echoed in the id_token.
	Nonce string
	// Launch context: the patient and encounter in context, and the
	// SMART styling hints (EHR launch).
	Patient           string
	Encounter         string
	NeedPatientBanner bool
	SMARTStyleURL     string
	// AuthTime is when the user authenticated.
	AuthTime time.Time
}

// ErrCodeInvalid means an authorization code is unknown, expired or
// already used.
var ErrCodeInvalid = errors.New("oauth: invalid authorization code")

// ErrCodeReused is returned by a CodeStore (wrapping ErrCodeInvalid) when
// the code exists but was already consumed, so the token endpoint can
// revoke what the first exchange issued (RFC 6749 §4.1.2).
var ErrCodeReused = fmt.Errorf("%w: already used", ErrCodeInvalid)

// CodeStore keeps authorization codes, by hash only (the code itself is
// never stored). ConsumeCode must be atomic and single-use: a second call
// with the same hash returns ErrCodeInvalid.
type CodeStore interface {
	SaveCode(ctx context.Context, codeHash []byte, g *Grant, expires time.Time) error
	ConsumeCode(ctx context.Context, codeHash []byte, now time.Time) (*Grant, error)
}

// RefreshStore keeps token families and their refresh tokens (implemented
// by *authdb.DB). A family is everything issued from one authorization
// code; see the authdb methods of the same names for the exact semantics.
type RefreshStore interface {
	StartFamily(ctx context.Context, f *authdb.Family, accessJTI string, accessExpires time.Time, rt *authdb.RefreshToken) error
	RefreshToken(ctx context.Context, hash []byte) (*authdb.RefreshToken, error)
	RotateRefreshToken(ctx context.Context, oldHash []byte, now, graceStart time.Time, next *authdb.RefreshToken, accessJTI string, accessExpires time.Time) error
	RevokeFamily(ctx context.Context, familyID string, now time.Time) error
}

// Session is the launch context kept with a refresh token, so refreshed
// access tokens carry the same context.
type Session struct {
	FHIRUser          string `json:"fhirUser,omitempty"`
	Patient           string `json:"patient,omitempty"`
	Encounter         string `json:"encounter,omitempty"`
	NeedPatientBanner bool   `json:"need_patient_banner,omitempty"`
	SMARTStyleURL     string `json:"smart_style_url,omitempty"`
	AuthTime          int64  `json:"auth_time,omitempty"`
}

// MaxCredentialLen bounds codes and refresh tokens accepted at the token
// endpoint (ours are 43 characters).
const MaxCredentialLen = 512

// NewSecret returns 256 random bits, base64url without padding: the form
// of authorization codes and refresh tokens.
func NewSecret() string { return randtoken.New() }

// TokenHash is the stored form of a code or refresh token.
func TokenHash(tok string) []byte { return randtoken.Hash(tok) }

// FamilyForCode is the id of the token family issued from a code: derived
// from the code's hash, so a replayed code names the family to revoke
// without any lookup.
func FamilyForCode(codeHash []byte) string {
	h := sha256.Sum256(append([]byte("lapis-token-family\x00"), codeHash...))
	return base64.RawURLEncoding.EncodeToString(h[:18])
}
