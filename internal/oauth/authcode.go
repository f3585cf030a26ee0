package oauth

import (
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/oauth/grant"
)

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
