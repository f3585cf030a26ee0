package oauth

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/lapis-health/lapis/internal/httpx"
)

// RFC 6749 §5.2 and RFC 7009 error codes.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeServerError          = "server_error"
)

// Error codes of the authorization endpoint, sent to the client's
// redirect URI (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6).
const (
	CodeAccessDenied            = "access_denied"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeLoginRequired           = "login_required"
	CodeConsentRequired         = "consent_required"
)

// Error is an OAuth 2.0 error response: it knows its RFC 6749 error code,
// a description safe to show the client, and its HTTP status.
type Error struct {
	// Code is the RFC 6749 "error" value.
	Code string
	// Description is the "error_description": never internal details.
	Description string
	// Status is the HTTP status code.
	Status int
	// Challenge asks for a WWW-Authenticate header (failed Basic auth).
	Challenge bool
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Description }

// errInvalidRequest is a malformed request (400).
func errInvalidRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Description: desc, Status: http.StatusBadRequest}
}

// errInvalidClient is a failed client authentication: 401 with a
// WWW-Authenticate challenge when the client used (or could have used)
// HTTP Basic, else 400.
func errInvalidClient(basic bool) *Error {
	e := &Error{Code: CodeInvalidClient, Description: "client authentication failed", Status: http.StatusBadRequest}
	if basic {
		e.Status, e.Challenge = http.StatusUnauthorized, true
	}
	return e
}

func errUnauthorizedClient(desc string) *Error {
	return &Error{Code: CodeUnauthorizedClient, Description: desc, Status: http.StatusBadRequest}
}

func errInvalidScope(desc string) *Error {
	return &Error{Code: CodeInvalidScope, Description: desc, Status: http.StatusBadRequest}
}

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
