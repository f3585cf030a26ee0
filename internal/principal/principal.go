// Package principal says who is calling: the Principal the authentication
// middleware puts into the request context for the gateway, audit and
// authorization to read. It imports nothing of Lapis, so the packages
// below authorization (gateway policies, authentication, audit) can know
// the caller without depending on what the caller may do (package access).
package principal

import (
	"context"
	"strings"
)

// Principal is an authenticated caller of the FHIR API, put into the
// request context by the authentication middleware.
type Principal struct {
	// Method is how the caller authenticated: "bearer", "apikey" or "basic".
	Method string
	// ClientID is the OAuth client (or the API key's id).
	ClientID string
	// Subject and FHIRUser identify the user, when there is one
	// (FHIRUser is "Patient/ID" or "Practitioner/ID"). FHIRUser bounds what
	// the scopes grant: see access.Effective.
	Subject  string
	FHIRUser string
	// Scopes are the granted SMART scopes.
	Scopes []string
	// Patient is the patient in context (launch/patient, or the patient an
	// API key is bound to); patient/ scopes are limited to its compartment.
	Patient string
	// TokenID identifies the credential (jti or key id) for audit; never
	// the secret itself.
	TokenID string
}

type contextKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, contextKey{}, p)
}

// FromContext returns the caller, or nil when the request is
// unauthenticated.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(contextKey{}).(*Principal)
	return p
}

// PatientUser returns the Patient id of a caller whose user is a patient
// (FHIRUser "Patient/ID"), and whether it is one. The id is "" when the
// FHIRUser is malformed ("Patient/", "Patient/a/b").
func (p *Principal) PatientUser() (string, bool) {
	id, ok := strings.CutPrefix(p.FHIRUser, "Patient/")
	if !ok {
		return "", false
	}
	if strings.Contains(id, "/") {
		id = ""
	}
	return id, true
}
