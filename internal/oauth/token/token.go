// Package token is what a resource server needs to know of a Lapis
// access token: its claims and the error for a token that does not
// verify. It imports nothing of Lapis, so authentication (package authn)
// can take a verifier without depending on the authorization server
// (package oauth, whose Verifier returns these claims).
package token

import (
	"errors"
	"strings"
)

// ErrInvalid is returned for any token that does not verify: bad
// signature, unknown key, wrong issuer or audience, expired, not yet
// valid, or revoked. Callers answer 401 without saying which.
var ErrInvalid = errors.New("oauth: invalid token")

// Refused is ErrInvalid for a genuine token (its signature, issuer and
// audience verified) that is expired or revoked: it names the token's
// client, so that the refusal shows in that client's activity. It is
// never a reason to accept the token.
type Refused struct {
	// ClientID is the token's client_id.
	ClientID string
}

// Error implements error.
func (e *Refused) Error() string { return ErrInvalid.Error() }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *Refused) Is(target error) bool { return target == ErrInvalid }

// Claims are the claims of a Lapis access token.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf,omitempty"`
	ID        string `json:"jti"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	Patient   string `json:"patient,omitempty"`
	Encounter string `json:"encounter,omitempty"`
	FHIRUser  string `json:"fhirUser,omitempty"`
	// Env is the environment that issued the token ("production",
	// "sandbox"); empty for a server without environments.
	Env string `json:"lapis_env,omitempty"`
}

// Scopes returns the granted scopes.
func (c *Claims) Scopes() []string { return strings.Fields(c.Scope) }
