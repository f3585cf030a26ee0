package oauth

import "github.com/lapis-health/lapis/internal/oauth/scope"

// ResourceScope is a parsed SMART resource scope (scope.ResourceScope).
type ResourceScope = scope.ResourceScope

// ParseResourceScope parses a SMART resource scope (scope.ParseResourceScope).
func ParseResourceScope(s string) (ResourceScope, bool) { return scope.ParseResourceScope(s) }

// AllowedScopes is the authorize endpoint's scope policy (scope.AllowedScopes).
func AllowedScopes(requested, registered []string) []string {
	return scope.AllowedScopes(requested, registered)
}

// ScopesForUser bounds scopes by the user they are granted to
// (scope.ScopesForUser).
func ScopesForUser(scopes []string, fhirUser string) []string {
	return scope.ScopesForUser(scopes, fhirUser)
}
