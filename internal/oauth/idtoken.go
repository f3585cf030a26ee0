package oauth

import (
	"context"
	"encoding/json"

	"github.com/lapis-health/lapis/internal/oauth/keys"
)

// IDTokenType is the JOSE "typ" of id_tokens.
const IDTokenType = "JWT"

// IDClaims are the claims of an OpenID Connect id_token (Core §2) as
// Lapis issues them: aud is the client id, fhirUser an absolute URL
// ([base]/Patient/ID) when the fhirUser scope was granted.
type IDClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	Expiry   int64  `json:"exp"`
	IssuedAt int64  `json:"iat"`
	AuthTime int64  `json:"auth_time,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	FHIRUser string `json:"fhirUser,omitempty"`
}

// issueIDToken signs an RS256 id_token for the grant, valid as long as the
// access token issued with it.
func (s *Server) issueIDToken(ctx context.Context, g *Grant, withFHIRUser bool) (string, error) {
	now := s.now()
	c := IDClaims{
		Issuer: s.cfg.Issuer, Subject: g.Subject, Audience: g.ClientID,
		IssuedAt: now.Unix(), Expiry: now.Add(s.cfg.AccessTokenLifetime).Unix(), Nonce: g.Nonce,
	}
	if !g.AuthTime.IsZero() {
		c.AuthTime = g.AuthTime.Unix()
	} else {
		c.AuthTime = now.Unix()
	}
	if withFHIRUser {
		c.FHIRUser = s.fhirUserURL(g.FHIRUser)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return s.cfg.Keys.Sign(ctx, keys.IDTokenAlg, IDTokenType, payload)
}
