package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// DefaultAccessTokenLifetime is the lifetime of access tokens and
// id_tokens issued by the authorization_code and refresh_token grants
// (expires_in 3600); Config.AccessTokenLifetime overrides it.
const DefaultAccessTokenLifetime = time.Hour

// Scopes that steer the token response.
const (
	ScopeOpenID        = "openid"
	ScopeFHIRUser      = "fhirUser"
	ScopeOfflineAccess = "offline_access"
	ScopeOnlineAccess  = "online_access"
)

// maxCredentialLen bounds codes and refresh tokens accepted at the token
// endpoint (ours are 43 characters).
const maxCredentialLen = 512

// ContextReference is one entry of the SMART 2.2 fhirContext array (object
// form): a relative reference to a resource in the launch context.
type ContextReference struct {
	Reference string `json:"reference,omitempty"`
	Type      string `json:"type,omitempty"`
}

// errInvalidGrant is a code or refresh token that is invalid, expired,
// revoked, already used, or issued to another client or redirect URI
// (RFC 6749 §5.2, 400).
func errInvalidGrant(desc string) *Error {
	return &Error{Code: CodeInvalidGrant, Description: desc, Status: http.StatusBadRequest}
}

// AuthorizationCode is the authorization_code grant (RFC 6749 §4.1.3 with
// PKCE, RFC 7636 §4.6): the code is consumed atomically and once (a replay
// revokes every token issued from it), must be unexpired, issued to the
// authenticated client and redirect URI, and its S256 challenge must match
// code_verifier. Client authentication (none for public clients, secret,
// or private_key_jwt) has already run by client type.
type AuthorizationCode struct{ s *Server }

// GrantType implements GrantHandler.
func (*AuthorizationCode) GrantType() string { return "authorization_code" }

// Handle implements GrantHandler.
func (g *AuthorizationCode) Handle(ctx context.Context, req *TokenRequest) (*TokenResponse, error) {
	s := g.s
	code := req.Form.Get("code")
	if code == "" {
		return nil, errInvalidRequest("code is required")
	}
	const bad = "authorization code is invalid, expired or already used"
	if len(code) > maxCredentialLen {
		return nil, errInvalidGrant(bad)
	}
	h := tokenHash(code)
	now := s.now()
	grant, err := s.cfg.Codes.ConsumeCode(ctx, h, now)
	switch {
	case errors.Is(err, ErrCodeReused):
		// RFC 6749 §4.1.2: revoke what the first exchange issued.
		if err := s.cfg.Refresh.RevokeFamily(ctx, familyForCode(h), now); err != nil {
			return nil, err
		}
		s.log.Warn("oauth: authorization code replayed; tokens issued from it revoked", "client_id", req.Client.Client.ID)
		return nil, errInvalidGrant(bad)
	case errors.Is(err, ErrCodeInvalid):
		return nil, errInvalidGrant(bad)
	case err != nil:
		return nil, err
	}
	if grant.ClientID != req.Client.Client.ID {
		return nil, errInvalidGrant(bad) // never confirm another client's code
	}
	if req.Form.Get("redirect_uri") != grant.RedirectURI {
		return nil, errInvalidGrant("redirect_uri does not match the authorization request")
	}
	if !verifyPKCE(req.Form.Get("code_verifier"), grant.CodeChallenge) {
		return nil, errInvalidGrant("PKCE verification failed")
	}
	return s.issueForGrant(ctx, grant, familyForCode(h), now)
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

// launchSession is the launch context kept with a refresh token, so refreshed
// access tokens carry the same context.
type launchSession struct {
	FHIRUser          string `json:"fhirUser,omitempty"`
	Patient           string `json:"patient,omitempty"`
	Encounter         string `json:"encounter,omitempty"`
	NeedPatientBanner bool   `json:"need_patient_banner,omitempty"`
	SMARTStyleURL     string `json:"smart_style_url,omitempty"`
	AuthTime          int64  `json:"auth_time,omitempty"`
}

// issueForGrant turns a consumed grant into the token response: access
// token, refresh token when offline_access or online_access was granted,
// id_token when openid was granted, and the launch context; the token
// family is recorded so a replay of the code or a refresh token can revoke
// it all.
func (s *Server) issueForGrant(ctx context.Context, g *Grant, family string, now time.Time) (*TokenResponse, error) {
	sess := launchSession{FHIRUser: g.FHIRUser, Patient: g.Patient, Encounter: g.Encounter,
		NeedPatientBanner: g.NeedPatientBanner, SMARTStyleURL: g.SMARTStyleURL}
	if !g.AuthTime.IsZero() {
		sess.AuthTime = g.AuthTime.Unix()
	}
	scopes, bounded, err := userContext(uniqueScopes(g.Scopes), &sess)
	if err != nil {
		return nil, err
	}
	sess = *bounded
	resp, claims, err := s.accessResponse(ctx, g.ClientID, g.Subject, scopes, &sess)
	if err != nil {
		return nil, err
	}
	var rt *authdb.RefreshToken
	if lifetime := s.refreshLifetime(scopes); lifetime > 0 {
		raw, err := json.Marshal(&sess)
		if err != nil {
			return nil, err
		}
		tok := newSecret()
		rt = &authdb.RefreshToken{Hash: tokenHash(tok), ClientID: g.ClientID, Subject: g.Subject, Scope: strings.Join(scopes, " "),
			Session: raw, IssuedAt: now, ExpiresAt: now.Add(lifetime)}
		resp.RefreshToken = tok
	}
	if slices.Contains(scopes, ScopeOpenID) {
		idt, err := s.issueIDToken(ctx, g, slices.Contains(scopes, ScopeFHIRUser))
		if err != nil {
			return nil, err
		}
		resp.IDToken = idt
	}
	err = s.cfg.Refresh.StartFamily(ctx, &authdb.Family{ID: family, ClientID: g.ClientID, Subject: g.Subject, CreatedAt: now},
		claims.ID, time.Unix(claims.Expiry, 0), rt)
	if errors.Is(err, authdb.ErrRevoked) {
		return nil, errInvalidGrant("authorization code is invalid, expired or already used")
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// errPatientMismatch refuses a grant of a patient user whose patient in
// context is not the user's own record (none is ever issued).
var errPatientMismatch = errInvalidGrant("the grant's patient context does not match its user")

// userContext bounds a user's token by the user (see ScopesForUser): the
// scopes, and for a patient user the patient in context, which is the
// user's own record (filled in when missing; another patient is refused).
func userContext(scopes []string, sess *launchSession) ([]string, *launchSession, error) {
	scopes = ScopesForUser(scopes, sess.FHIRUser)
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
func (s *Server) accessResponse(ctx context.Context, clientID, subject string, scopes []string, sess *launchSession) (*TokenResponse, *AccessClaims, error) {
	scopes, sess, err := userContext(scopes, sess)
	if err != nil {
		return nil, nil, err
	}
	lifetime := s.cfg.AccessTokenLifetime
	tok, claims, err := s.IssueAccessToken(ctx, AccessClaims{
		Subject: subject, ClientID: clientID, Scope: strings.Join(scopes, " "),
		Patient: sess.Patient, Encounter: sess.Encounter, FHIRUser: s.fhirUserURL(sess.FHIRUser),
	}, lifetime)
	if err != nil {
		return nil, nil, err
	}
	resp := &TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(lifetime / time.Second), Scope: claims.Scope,
		Patient: sess.Patient, Encounter: sess.Encounter, SMARTStyleURL: sess.SMARTStyleURL}
	if sess.Patient != "" || sess.Encounter != "" || sess.SMARTStyleURL != "" {
		banner := sess.NeedPatientBanner
		resp.NeedPatientBanner = &banner
	}
	if sess.Encounter != "" {
		resp.FHIRContext = []ContextReference{{Reference: "Encounter/" + strings.TrimPrefix(sess.Encounter, "Encounter/")}}
	}
	return resp, claims, nil
}

// refreshLifetime is the lifetime of a refresh token for the granted
// scopes: OfflineRefreshLifetime with offline_access, OnlineRefreshLifetime
// with online_access only, zero (no refresh token) otherwise.
func (s *Server) refreshLifetime(scopes []string) time.Duration {
	switch {
	case slices.Contains(scopes, ScopeOfflineAccess):
		return s.cfg.OfflineRefreshLifetime
	case slices.Contains(scopes, ScopeOnlineAccess):
		return s.cfg.OnlineRefreshLifetime
	}
	return 0
}

// fhirUserURL makes a relative fhirUser ("Patient/123") absolute under the
// FHIR base, as SMART 2.x asks.
func (s *Server) fhirUserURL(ref string) string {
	if ref == "" || strings.HasPrefix(ref, "https://") || strings.HasPrefix(ref, "http://") {
		return ref
	}
	return strings.TrimRight(s.cfg.Issuer, "/") + "/" + strings.TrimPrefix(ref, "/")
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
