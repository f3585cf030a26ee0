package grant

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/access"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/scope"
	"github.com/lapis-health/lapis/internal/oauth/token"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// ClientCredentials is the client_credentials grant (RFC 6749 §4.4, SMART
// Backend Services): confidential clients with a secret and backend
// clients with a signed assertion get a short-lived access token for
// system/ scopes within their registration, and no refresh token.
type ClientCredentials struct{ cfg *Config }

// NewClientCredentials returns the client_credentials grant.
func NewClientCredentials(cfg *Config) *ClientCredentials { return &ClientCredentials{cfg} }

// GrantType implements tokenreq.Handler.
func (*ClientCredentials) GrantType() string { return "client_credentials" }

// Handle implements tokenreq.Handler.
func (g *ClientCredentials) Handle(ctx context.Context, req *tokenreq.Request) (*tokenreq.Response, error) {
	c := req.Client.Client
	if c.Type != authdb.Confidential && c.Type != authdb.Backend {
		return nil, tokenreq.UnauthorizedClient("client may not use client_credentials")
	}
	scopes, err := systemScopes(req.Form.Get("scope"), c.Scopes)
	if err != nil {
		return nil, err
	}
	lifetime := g.cfg.BackendTokenLifetime
	tok, claims, err := g.cfg.Core.IssueAccessToken(ctx, token.Claims{Subject: c.ID, ClientID: c.ID, Scope: strings.Join(scopes, " ")}, lifetime)
	if err != nil {
		return nil, err
	}
	return &tokenreq.Response{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(lifetime / time.Second), Scope: claims.Scope}, nil
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
			return nil, tokenreq.InvalidScope("no scope requested and no system scope registered")
		}
		return out, nil
	}
	var regRes []scope.ResourceScope
	for _, sc := range registered {
		if rs, ok := scope.ParseResourceScope(sc); ok && rs.Context == access.ContextSystem {
			regRes = append(regRes, rs)
		}
	}
	for _, sc := range req {
		if slices.Contains(out, sc) {
			continue
		}
		if !strings.HasPrefix(sc, "system/") {
			return nil, tokenreq.InvalidScope("scope " + scopeForError(sc) + " is not a system/ scope (client_credentials grants system/ scopes only)")
		}
		if !slices.Contains(registered, sc) && !coveredSystemScope(sc, regRes) {
			return nil, tokenreq.InvalidScope("scope " + scopeForError(sc) + " exceeds the client's registration")
		}
		out = append(out, sc)
	}
	return out, nil
}

// coveredSystemScope reports whether sc is a well-formed system/ resource
// scope within one of the registered resource scopes.
func coveredSystemScope(sc string, registered []scope.ResourceScope) bool {
	rs, ok := scope.ParseResourceScope(sc)
	if !ok || rs.Context != access.ContextSystem {
		return false
	}
	if g, err := access.ParseScopes([]string{sc}); err != nil || len(g.Scopes) != 1 {
		return false // e.g. a granular restriction on a v1 permission
	}
	return slices.ContainsFunc(registered, func(reg scope.ResourceScope) bool { return reg.Covers(rs) })
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
