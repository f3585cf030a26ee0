// Package grant holds the token endpoint's grant handlers:
// authorization_code (with PKCE), refresh_token (rotation, the grace
// retry, family revocation) and client_credentials (confidential and SMART
// Backend Services clients; the client assertion itself is checked by the
// core's client authentication before a grant runs). The core (package
// oauth) registers them and passes in what they need through Config and
// the Core interface; this package does not import it.
package grant

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/token"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// Scopes that steer the token response.
const (
	ScopeOpenID        = "openid"
	ScopeFHIRUser      = "fhirUser"
	ScopeOfflineAccess = "offline_access"
	ScopeOnlineAccess  = "online_access"
)

// Core is what the grants need of the authorization server: signing
// tokens and making fhirUser absolute.
type Core interface {
	// IssueAccessToken signs an access token with the claims (iss, aud,
	// iat, exp and jti are filled in) valid for lifetime.
	IssueAccessToken(ctx context.Context, c token.Claims, lifetime time.Duration) (string, *token.Claims, error)
	// IssueIDToken signs an id_token for the grant.
	IssueIDToken(ctx context.Context, g *tokenreq.Grant, withFHIRUser bool) (string, error)
	// FHIRUserURL makes a relative fhirUser absolute under the FHIR base.
	FHIRUserURL(ref string) string
}

// ClientStore looks clients up by id (implemented by *authdb.DB).
type ClientStore interface {
	Client(ctx context.Context, id string) (*authdb.Client, error)
}

// Config is what the grants share; the core fills it once, with its
// defaults applied, before registering them.
type Config struct {
	Core    Core
	Clients ClientStore
	// Codes and Refresh are needed by the authorization_code and
	// refresh_token grants only.
	Codes   tokenreq.CodeStore
	Refresh tokenreq.RefreshStore
	Log     *slog.Logger
	Now     func() time.Time
	// Lifetimes (see the oauth.Config fields of the same names).
	AccessTokenLifetime    time.Duration
	BackendTokenLifetime   time.Duration
	OfflineRefreshLifetime time.Duration
	OnlineRefreshLifetime  time.Duration
	RefreshGracePeriod     time.Duration
}

// uniqueScopes drops empty and repeated scopes, keeping the order.
func uniqueScopes(in []string) []string {
	out := make([]string, 0, len(in))
	for _, f := range in {
		for _, sc := range strings.Fields(f) {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	return out
}

// credentialHash is the stored form (tokenreq.TokenHash) of the code or
// refresh token in the form field name: missing, it is invalid_request;
// longer than any this server issues, invalid_grant with bad.
func credentialHash(form url.Values, name, bad string) ([]byte, error) {
	v := form.Get(name)
	if v == "" {
		return nil, tokenreq.InvalidRequest(name + " is required")
	}
	if len(v) > tokenreq.MaxCredentialLen {
		return nil, tokenreq.InvalidGrant(bad)
	}
	return tokenreq.TokenHash(v), nil
}
