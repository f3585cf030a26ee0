package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/httpx"
)

// record sends a security event to the configured audit sink (if any),
// with the caller's address and user agent. Events carry identifiers
// (client id, subject, token jti, key id), never credentials.
func (s *Server) record(r *http.Request, e audit.Event) {
	if s.cfg.Audit == nil {
		return
	}
	e.Time = s.now()
	if e.Action == "" {
		e.Action = "E"
	}
	if e.Outcome == "" {
		e.Outcome = audit.OutcomeSuccess
	}
	e.Address = httpx.ClientAddr(r)
	if ua := r.UserAgent(); len(ua) > 256 {
		e.UserAgent = ua[:256]
	} else {
		e.UserAgent = ua
	}
	s.cfg.Audit.Record(r.Context(), e)
}

// knownClient returns id when it names a registered client, else "" (a
// failed request's client_id is caller input and could hold anything).
func (s *Server) knownClient(ctx context.Context, id string) string {
	if id == "" || len(id) > 128 {
		return ""
	}
	if c, err := s.cfg.Clients.Client(ctx, id); err == nil && c != nil {
		return c.ID
	}
	return ""
}

// tokenIDs reads the identifiers of an access token this server just
// signed (no verification needed: it never left the process).
func tokenIDs(tok string) (c AccessClaims) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err == nil {
		_ = json.Unmarshal(b, &c)
	}
	return c
}

// tokenEvent is the event of a successful token response.
func tokenEvent(kind audit.Kind, grantType string, resp *TokenResponse) audit.Event {
	c := tokenIDs(resp.AccessToken)
	return audit.Event{Kind: kind, Description: "grant " + safeWord(grantType), ClientID: c.ClientID, Subject: c.Subject,
		FHIRUser: relativeRef(c.FHIRUser), Method: "access_token", CredentialID: c.ID, Patient: c.Patient, Status: http.StatusOK}
}

// relativeRef turns an absolute fhirUser URL into "Type/id".
func relativeRef(u string) string {
	parts := strings.Split(strings.TrimRight(u, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

// safeWord keeps a short identifier-like value (grant types are chosen by
// the caller, so they are bounded and stripped).
func safeWord(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' || c == '.' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
