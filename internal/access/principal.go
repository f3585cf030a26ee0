// Package access decides what an authenticated caller may do on the FHIR
// API: it turns the caller's SMART scopes (v1, v2, granular, system/) and
// launch context into the resource.Access decisions and the
// store.AccessFilter pushed down into search SQL.
package access

import "context"

// Principal is an authenticated caller of the FHIR API, put into the
// request context by the authentication middleware.
type Principal struct {
	// Method is how the caller authenticated: "bearer", "apikey" or "basic".
	Method string
	// ClientID is the OAuth client (or the API key's id).
	ClientID string
	// Subject and FHIRUser identify the user, when there is one
	// (FHIRUser is "Patient/ID" or "Practitioner/ID").
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

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller, or nil when the request is
// unauthenticated.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
