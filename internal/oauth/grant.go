package oauth

import (
	"context"
	"errors"
	"time"
)

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

// CodeStore keeps authorization codes, by hash only (the code itself is
// never stored). ConsumeCode must be atomic and single-use: a second call
// with the same hash returns ErrCodeInvalid.
type CodeStore interface {
	SaveCode(ctx context.Context, codeHash []byte, g *Grant, expires time.Time) error
	ConsumeCode(ctx context.Context, codeHash []byte, now time.Time) (*Grant, error)
}
