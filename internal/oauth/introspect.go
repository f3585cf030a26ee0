package oauth

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
)

// ScopeIntrospect, registered for a confidential or backend client (a
// resource server, a gateway), lets it introspect the tokens of every
// client; like ScopeAdmin it is a system/ scope, so public clients cannot
// hold it:
//
//	lapis client create --name gateway --type confidential --scope system/lapis.introspect
const ScopeIntrospect = "system/lapis.introspect"

// introspectsAll reports whether c may introspect other clients' tokens:
// it is registered with ScopeIntrospect or ScopeAdmin.
func introspectsAll(c *authdb.Client) bool {
	return c.Type != authdb.Public && (slices.Contains(c.Scopes, ScopeIntrospect) || slices.Contains(c.Scopes, ScopeAdmin))
}

// inactive is the answer for every token the caller may not learn about.
var inactive = map[string]bool{"active": false}

// handleIntrospect is RFC 7662 token introspection. The caller must
// authenticate as a confidential or backend client. It learns about its
// own tokens; only a client registered with ScopeIntrospect or ScopeAdmin
// learns about other clients' tokens (RFC 7662 §4: a token of another
// client is answered exactly as an unknown one). The answer is
// {"active":false} for anything unknown, expired, revoked or not the
// caller's. Opaque tokens are looked up as refresh tokens.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	client, token, ok := s.tokenRequest(w, r, true)
	if !ok {
		return
	}
	if !looksLikeJWT(token) {
		ri, err := s.introspectRefresh(r.Context(), token)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if ri == nil || (ri.ClientID != client.Client.ID && !introspectsAll(client.Client)) {
			writeJSON(w, http.StatusOK, inactive)
			return
		}
		writeJSON(w, http.StatusOK, ri)
		return
	}
	c, err := s.verifier.Verify(r.Context(), token)
	if errors.Is(err, ErrInvalidToken) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.ClientID != client.Client.ID && !introspectsAll(client.Client) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	writeJSON(w, http.StatusOK, introspection{
		Active: true, Scope: c.Scope, ClientID: c.ClientID, Subject: c.Subject, Issuer: c.Issuer,
		Audience: c.Audience, Expiry: c.Expiry, IssuedAt: c.IssuedAt, NotBefore: c.NotBefore, ID: c.ID,
		TokenType: "Bearer", Patient: c.Patient, Encounter: c.Encounter, FHIRUser: c.FHIRUser, Env: c.Env,
	})
}

// introspection is an active RFC 7662 response.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope"`
	ClientID  string `json:"client_id"`
	Subject   string `json:"sub"`
	Issuer    string `json:"iss"`
	Audience  string `json:"aud"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf,omitempty"`
	ID        string `json:"jti"`
	TokenType string `json:"token_type"`
	Patient   string `json:"patient,omitempty"`
	Encounter string `json:"encounter,omitempty"`
	FHIRUser  string `json:"fhirUser,omitempty"`
	Env       string `json:"lapis_env,omitempty"`
}

// handleRevoke is RFC 7009 revocation of access tokens and refresh tokens
// (a refresh token revokes its whole family, access tokens included). The client
// authenticates as for the token endpoint (public clients by client_id).
// Only the caller's own tokens are revoked; a token issued to another
// client is left alone and answered like an unknown, malformed or expired
// one — 200 (RFC 7009 §2.1-2.2), so the answer never confirms that another
// client's token exists.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	client, token, ok := s.tokenRequest(w, r, false)
	if !ok {
		return
	}
	if !looksLikeJWT(token) {
		// A refresh token: revoke its whole family (access tokens too).
		revoked, err := s.revokeRefresh(r.Context(), token, client.Client.ID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !revoked {
			writeJSON(w, http.StatusOK, struct{}{})
			return
		}
		s.record(r, audit.Event{Kind: audit.KindTokenRevoked, Description: "refresh token family revoked", ClientID: client.Client.ID})
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	c, err := s.verifier.verifySignature(r.Context(), token)
	if errors.Is(err, ErrInvalidToken) {
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.ClientID != client.Client.ID {
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if err := s.cfg.Revocations.RevokeToken(r.Context(), c.ID, time.Unix(c.Expiry, 0)); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.record(r, audit.Event{Kind: audit.KindTokenRevoked, Description: "access token revoked", ClientID: client.Client.ID,
		Subject: c.Subject, Method: "access_token", CredentialID: c.ID, Patient: c.Patient})
	writeJSON(w, http.StatusOK, struct{}{})
}

// tokenRequest reads what introspection and revocation share: a POST form
// from an authenticated client (a confidential or backend one when
// confidential is set) naming a token. It answers the request itself
// (preflight, error) when ok is false.
func (s *Server) tokenRequest(w http.ResponseWriter, r *http.Request, confidential bool) (client *AuthenticatedClient, token string, ok bool) {
	if cors(w, r, "POST") {
		return nil, "", false
	}
	form, err := parseForm(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return nil, "", false
	}
	client, err = s.authenticateClient(r.Context(), r, form)
	if err == nil && confidential && client.Client.Type == authdb.Public {
		err = errInvalidClient(true)
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, "", false
	}
	token = form.Get("token")
	if token == "" {
		s.writeError(w, r, errInvalidRequest("token is required"))
		return nil, "", false
	}
	return client, token, true
}
