package oauth

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// RFC 6749 §5.2 and RFC 7009 error codes.
const (
	CodeInvalidRequest       = tokenreq.CodeInvalidRequest
	CodeInvalidClient        = tokenreq.CodeInvalidClient
	CodeInvalidGrant         = tokenreq.CodeInvalidGrant
	CodeUnauthorizedClient   = tokenreq.CodeUnauthorizedClient
	CodeUnsupportedGrantType = tokenreq.CodeUnsupportedGrantType
	CodeInvalidScope         = tokenreq.CodeInvalidScope
	CodeServerError          = tokenreq.CodeServerError
)

// Error codes of the authorization endpoint, sent to the client's
// redirect URI (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6).
const (
	CodeAccessDenied            = "access_denied"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeLoginRequired           = "login_required"
	CodeConsentRequired         = "consent_required"
)

// Error is an OAuth 2.0 error response (tokenreq.Error).
type Error = tokenreq.Error

// The errors of the core's own checks (see tokenreq).
var (
	errInvalidRequest = tokenreq.InvalidRequest
	errInvalidClient  = tokenreq.InvalidClient
)

// writeJSON writes v with the no-store headers every token-bearing
// response carries.
func writeJSON(w http.ResponseWriter, status int, v any) { httpx.WriteNoStoreJSON(w, status, v) }

// writeError writes err as an RFC 6749 §5.2 error body. Errors that are
// not *Error are logged and answered with a generic server_error.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		s.log.LogAttrs(r.Context(), slog.LevelError, "oauth: internal error", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		e = &Error{Code: CodeServerError, Description: "internal error", Status: http.StatusInternalServerError}
	}
	if e.Challenge {
		w.Header().Set("WWW-Authenticate", `Basic realm="lapis", charset="UTF-8"`)
	}
	httpx.WriteOAuthError(w, e.Status, e.Code, e.Description)
}
