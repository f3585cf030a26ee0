// Package outcome is the FHIR OperationOutcome: the error value every layer
// above the store returns when a request cannot be carried out, and its JSON
// form. Messages are written for API users and never carry internal detail
// (SQL, stack traces, file paths).
package outcome

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"` // fatal | error | warning | information
	Code        string   `json:"code"`     // IssueType: invalid, structure, required, value, not-found, deleted, conflict, not-supported, processing, security, forbidden, login, too-costly, exception, duplicate, multiple-matches, informational
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Error is an error that carries an HTTP status and OperationOutcome issues.
type Error struct {
	Status int
	Issues []Issue
}

// Error implements error with the first issue's diagnostics.
func (e *Error) Error() string {
	if len(e.Issues) == 0 {
		return http.StatusText(e.Status)
	}
	msgs := make([]string, 0, len(e.Issues))
	for _, is := range e.Issues {
		m := is.Diagnostics
		if len(is.Expression) > 0 {
			m += " (at " + strings.Join(is.Expression, ", ") + ")"
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

// New returns an Error with one error-severity issue.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: fmt.Sprintf(format, args...)}}}
}

// At returns a copy of e whose issues carry the expression (location).
func (e *Error) At(expression ...string) *Error {
	c := &Error{Status: e.Status, Issues: append([]Issue(nil), e.Issues...)}
	for i := range c.Issues {
		c.Issues[i].Expression = expression
	}
	return c
}

// BadRequest is a 400 with issue code "invalid".
func BadRequest(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "invalid", format, args...)
}

// NotFound is a 404 with issue code "not-found".
func NotFound(format string, args ...any) *Error {
	return New(http.StatusNotFound, "not-found", format, args...)
}

// MethodNotAllowed is the 405 of a request whose method the URL does not
// serve; it sets h's Allow header to allow, the methods it does.
func MethodNotAllowed(h http.Header, method string, allow []string) *Error {
	list := strings.Join(allow, ", ")
	h.Set("Allow", list)
	return New(http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed here (allowed: %s)", method, list)
}

// Resource renders an OperationOutcome resource from issues.
func Resource(issues []Issue) map[string]any {
	list := make([]any, 0, len(issues))
	for _, is := range issues {
		m := map[string]any{"severity": is.Severity, "code": is.Code}
		if is.Diagnostics != "" {
			m["diagnostics"] = is.Diagnostics
		}
		if len(is.Expression) > 0 {
			m["expression"] = is.Expression
		}
		list = append(list, m)
	}
	return map[string]any{"resourceType": "OperationOutcome", "issue": list}
}

// JSON renders e as an OperationOutcome JSON document.
func (e *Error) JSON() []byte {
	b, _ := json.Marshal(Resource(e.Issues))
	return b
}

// Info returns a one-issue informational OperationOutcome (for
// Prefer: return=OperationOutcome on success).
func Info(msg string) []byte {
	b, _ := json.Marshal(Resource([]Issue{{Severity: "information", Code: "informational", Diagnostics: msg}}))
	return b
}

// ContentType is the media type of FHIR JSON responses.
const ContentType = "application/fhir+json; charset=utf-8"

// Write answers with e as an OperationOutcome: the one writer of FHIR
// errors for the stages in front of the FHIR API (authentication,
// gateway policies, rate limits, audit). Headers already set on w (Retry-
// After, Cache-Control) are kept.
func Write(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_, _ = w.Write(e.JSON())
}

// Truncate shortens s to at most n bytes, on a rune boundary, and marks
// the cut with "…": request data quoted in a message.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
