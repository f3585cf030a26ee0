package oauth

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/httpx"
)

// PathUserInfo is the OpenID Connect UserInfo endpoint, relative to the
// FHIR base (advertised as userinfo_endpoint in both discovery
// documents).
const PathUserInfo = "/auth/userinfo"

// UserInfo is the UserInfo response (OpenID Connect Core §5.3.2): the
// id_token's sub and, when the fhirUser scope was granted, fhirUser as an
// absolute URL, exactly as in the id_token.
type UserInfo struct {
	Subject  string `json:"sub"`
	FHIRUser string `json:"fhirUser,omitempty"`
}

// userInfoError is an RFC 6750 §3 error of a protected resource.
type userInfoError struct {
	status int
	code   string // "" when the request carried no token (§3.1)
	desc   string
	scope  string // insufficient_scope: the scope needed
}

// handleUserInfo is the OpenID Connect UserInfo endpoint (Core §5.3): GET
// or POST with a bearer access token in the Authorization header (RFC 6750
// §2.1) or, for POST, the access_token form parameter (§2.2), never both.
// The token must verify (signature, issuer, audience, expiry, revocation),
// belong to a user (its scope holds openid) and be used from its client's
// allowed networks. Errors follow RFC 6750 §3: 401 with WWW-Authenticate
// Bearer (no error code when no token was sent, invalid_token for a bad,
// expired or revoked one), 403 insufficient_scope without openid, 400
// invalid_request for a malformed request; each also as a JSON body.
// CORS is open like the other endpoints.
func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Expose-Headers", "WWW-Authenticate")
	if cors(w, r, "GET, POST") {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		s.writeError(w, r, &Error{Code: CodeInvalidRequest, Description: "method must be GET or POST", Status: http.StatusMethodNotAllowed})
		return
	}
	tok, berr := userInfoToken(w, r)
	if berr != nil {
		writeUserInfoError(w, berr)
		return
	}
	c, err := s.verifier.Verify(r.Context(), tok)
	if errors.Is(err, ErrInvalidToken) {
		writeUserInfoError(w, &userInfoError{status: http.StatusUnauthorized, code: "invalid_token", desc: "the access token is invalid, expired or revoked"})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	scopes := c.Scopes()
	if c.Subject == "" || !slices.Contains(scopes, ScopeOpenID) {
		writeUserInfoError(w, &userInfoError{status: http.StatusForbidden, code: "insufficient_scope",
			desc: "the access token was not granted the openid scope", scope: ScopeOpenID})
		return
	}
	if s.network != nil {
		ok, err := s.network.AllowsAddress(r.Context(), c.ClientID, httpx.ClientIP(r))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !ok {
			s.record(r, audit.Event{Kind: audit.KindNetworkRefused, Outcome: audit.OutcomeMinor,
				Description: "address not on the client's allow-list", ClientID: c.ClientID})
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "access_denied", "error_description": "the request is not allowed"})
			return
		}
	}
	info := UserInfo{Subject: c.Subject}
	if slices.Contains(scopes, ScopeFHIRUser) {
		info.FHIRUser = s.fhirUserURL(c.FHIRUser)
	}
	writeJSON(w, http.StatusOK, info)
}

// userInfoToken extracts the one bearer token of a request: the
// Authorization header or, for a form-encoded POST, access_token.
func userInfoToken(w http.ResponseWriter, r *http.Request) (string, *userInfoError) {
	malformed := func(desc string) (string, *userInfoError) {
		return "", &userInfoError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
	}
	var tok string
	hdrs := r.Header.Values("Authorization")
	switch len(hdrs) {
	case 0:
	case 1:
		scheme, rest, _ := strings.Cut(hdrs[0], " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", &userInfoError{status: http.StatusUnauthorized} // no bearer token: a bare challenge
		}
		if tok = strings.TrimSpace(rest); tok == "" {
			return malformed("the Authorization header has no token")
		}
	default:
		return malformed("more than one Authorization header")
	}
	if r.Method == http.MethodPost {
		ct := r.Header.Get("Content-Type")
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		if strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded") {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				return malformed("malformed request body")
			}
			if v, ok := r.PostForm["access_token"]; ok {
				switch {
				case len(v) != 1 || v[0] == "":
					return malformed("access_token must be given once")
				case tok != "":
					return malformed("the token was sent both in the header and in the body")
				}
				tok = v[0]
			}
		}
	}
	if tok == "" {
		return "", &userInfoError{status: http.StatusUnauthorized}
	}
	if len(tok) > maxBearerLen {
		return "", &userInfoError{status: http.StatusUnauthorized, code: "invalid_token", desc: "the access token is invalid, expired or revoked"}
	}
	return tok, nil
}

// maxBearerLen bounds the bearer tokens read (ours are under 1 KiB).
const maxBearerLen = 8 << 10

// writeUserInfoError answers an RFC 6750 §3 error: the WWW-Authenticate
// challenge (without an error code when no token was sent, §3.1) and a
// JSON body.
func writeUserInfoError(w http.ResponseWriter, e *userInfoError) {
	ch := `Bearer realm="lapis"`
	if e.code != "" {
		ch += `, error="` + e.code + `", error_description="` + e.desc + `"`
		if e.scope != "" {
			ch += `, scope="` + e.scope + `"`
		}
	}
	w.Header().Set("WWW-Authenticate", ch)
	body := map[string]string{"error": e.code, "error_description": e.desc}
	if e.code == "" {
		// As the admin API answers a request without a token.
		body["error"], body["error_description"] = "invalid_token", "a bearer access token is required"
	}
	writeJSON(w, e.status, body)
}
