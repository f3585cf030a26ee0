package grant

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/scope"
	"github.com/lapis-health/lapis/internal/oauth/token"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// AuthorizationCode is the authorization_code grant (RFC 6749 §4.1.3 with
// PKCE, RFC 7636 §4.6): the code is consumed atomically and once (a replay
// revokes every token issued from it), must be unexpired, issued to the
// authenticated client and redirect URI, and its S256 challenge must match
// code_verifier. Client authentication (none for public clients, secret,
// or private_key_jwt) has already run by client type.
type AuthorizationCode struct{ cfg *Config }

// NewAuthorizationCode returns the authorization_code grant.
func NewAuthorizationCode(cfg *Config) *AuthorizationCode { return &AuthorizationCode{cfg} }

// GrantType implements tokenreq.Handler.
func (*AuthorizationCode) GrantType() string { return "authorization_code" }

// Handle implements tokenreq.Handler.
func (g *AuthorizationCode) Handle(ctx context.Context, req *tokenreq.Request) (*tokenreq.Response, error) {
	c := g.cfg
	const bad = "authorization code is invalid, expired or already used"
	h, err := credentialHash(req.Form, "code", bad)
	if err != nil {
		return nil, err
	}
	now := c.Now()
	grant, err := c.Codes.ConsumeCode(ctx, h, now)
	switch {
	case errors.Is(err, tokenreq.ErrCodeReused):
		// RFC 6749 §4.1.2: revoke what the first exchange issued.
		if err := c.Refresh.RevokeFamily(ctx, tokenreq.FamilyForCode(h), now); err != nil {
			return nil, err
		}
		c.Log.Warn("oauth: authorization code replayed; tokens issued from it revoked", "client_id", req.Client.Client.ID)
		return nil, tokenreq.InvalidGrant(bad)
	case errors.Is(err, tokenreq.ErrCodeInvalid):
		return nil, tokenreq.InvalidGrant(bad)
	case err != nil:
		return nil, err
	}
	if grant.ClientID != req.Client.Client.ID {
		return nil, tokenreq.InvalidGrant(bad) // never confirm another client's code
	}
	if req.Form.Get("redirect_uri") != grant.RedirectURI {
		return nil, tokenreq.InvalidGrant("redirect_uri does not match the authorization request")
	}
	if !verifyPKCE(req.Form.Get("code_verifier"), grant.CodeChallenge) {
		return nil, tokenreq.InvalidGrant("PKCE verification failed")
	}
	return c.issueForGrant(ctx, grant, tokenreq.FamilyForCode(h), now)
}

// verifyPKCE checks an RFC 7636 code_verifier (43–128 unreserved
// characters) against an S256 challenge in constant time.
func verifyPKCE(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 || challenge == "" {
		return false
	}
	for i := 0; i < len(verifier); i++ {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// issueForGrant turns a consumed grant into the token response: access
// token, refresh token when offline_access or online_access was granted,
// id_token when openid was granted, and the launch context; the token
// family is recorded so a replay of the code or a refresh token can revoke
// it all.
func (c *Config) issueForGrant(ctx context.Context, g *tokenreq.Grant, family string, now time.Time) (*tokenreq.Response, error) {
	sess := tokenreq.Session{FHIRUser: g.FHIRUser, Patient: g.Patient, Encounter: g.Encounter,
		NeedPatientBanner: g.NeedPatientBanner, SMARTStyleURL: g.SMARTStyleURL}
	if !g.AuthTime.IsZero() {
		sess.AuthTime = g.AuthTime.Unix()
	}
	scopes, bounded, err := userContext(uniqueScopes(g.Scopes), &sess)
	if err != nil {
		return nil, err
	}
	sess = *bounded
	resp, claims, err := c.accessResponse(ctx, g.ClientID, g.Subject, scopes, &sess)
	if err != nil {
		return nil, err
	}
	var rt *authdb.RefreshToken
	if lifetime := c.refreshLifetime(scopes); lifetime > 0 {
		raw, err := json.Marshal(&sess)
		if err != nil {
			return nil, err
		}
		tok := tokenreq.NewSecret()
		rt = &authdb.RefreshToken{Hash: tokenreq.TokenHash(tok), ClientID: g.ClientID, Subject: g.Subject, Scope: strings.Join(scopes, " "),
			Session: raw, IssuedAt: now, ExpiresAt: now.Add(lifetime)}
		resp.RefreshToken = tok
	}
	if slices.Contains(scopes, ScopeOpenID) {
		idt, err := c.Core.IssueIDToken(ctx, g, slices.Contains(scopes, ScopeFHIRUser))
		if err != nil {
			return nil, err
		}
		resp.IDToken = idt
	}
	err = c.Refresh.StartFamily(ctx, &authdb.Family{ID: family, ClientID: g.ClientID, Subject: g.Subject, CreatedAt: now},
		claims.ID, time.Unix(claims.Expiry, 0), rt)
	if errors.Is(err, authdb.ErrRevoked) {
		return nil, tokenreq.InvalidGrant("authorization code is invalid, expired or already used")
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// errPatientMismatch refuses a grant of a patient user whose patient in
// context is not the user's own record (none is ever issued).
var errPatientMismatch = tokenreq.InvalidGrant("the grant's patient context does not match its user")

// userContext bounds a user's token by the user (see scope.ScopesForUser): the
// scopes, and for a patient user the patient in context, which is the
// user's own record (filled in when missing; another patient is refused).
func userContext(scopes []string, sess *tokenreq.Session) ([]string, *tokenreq.Session, error) {
	scopes = scope.ScopesForUser(scopes, sess.FHIRUser)
	if id, ok := strings.CutPrefix(sess.FHIRUser, "Patient/"); ok {
		if id == "" || (sess.Patient != "" && sess.Patient != id) {
			return nil, nil, errPatientMismatch
		}
		if sess.Patient == "" {
			c := *sess
			c.Patient = id
			sess = &c
		}
	}
	return scopes, sess, nil
}

// accessResponse signs an access token for the scopes and launch context
// and builds the token response around it (no refresh or id token). The
// scopes and context are bounded by the user first (userContext), so no
// path issues a patient user more than their own compartment.
func (c *Config) accessResponse(ctx context.Context, clientID, subject string, scopes []string, sess *tokenreq.Session) (*tokenreq.Response, *token.Claims, error) {
	scopes, sess, err := userContext(scopes, sess)
	if err != nil {
		return nil, nil, err
	}
	lifetime := c.AccessTokenLifetime
	tok, claims, err := c.Core.IssueAccessToken(ctx, token.Claims{
		Subject: subject, ClientID: clientID, Scope: strings.Join(scopes, " "),
		Patient: sess.Patient, Encounter: sess.Encounter, FHIRUser: c.Core.FHIRUserURL(sess.FHIRUser),
	}, lifetime)
	if err != nil {
		return nil, nil, err
	}
	resp := &tokenreq.Response{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(lifetime / time.Second), Scope: claims.Scope,
		Patient: sess.Patient, Encounter: sess.Encounter, SMARTStyleURL: sess.SMARTStyleURL}
	if sess.Patient != "" || sess.Encounter != "" || sess.SMARTStyleURL != "" {
		banner := sess.NeedPatientBanner
		resp.NeedPatientBanner = &banner
	}
	if sess.Encounter != "" {
		resp.FHIRContext = []tokenreq.ContextReference{{Reference: "Encounter/" + strings.TrimPrefix(sess.Encounter, "Encounter/")}}
	}
	return resp, claims, nil
}

// refreshLifetime is the lifetime of a refresh token for the granted
// scopes: OfflineRefreshLifetime with offline_access, OnlineRefreshLifetime
// with online_access only, zero (no refresh token) otherwise.
func (c *Config) refreshLifetime(scopes []string) time.Duration {
	switch {
	case slices.Contains(scopes, ScopeOfflineAccess):
		return c.OfflineRefreshLifetime
	case slices.Contains(scopes, ScopeOnlineAccess):
		return c.OnlineRefreshLifetime
	}
	return 0
}
