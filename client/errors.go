package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrUnauthorized matches (with errors.Is) every error that means the
// server refused the credentials: a 401 answer after the single retry with
// fresh credentials, or a token endpoint that rejected the client or
// grant. The error text never contains the credentials.
var ErrUnauthorized = errors.New("fhir client: authentication failed")

// Error is an HTTP error answer of the FHIR server (status 4xx or 5xx),
// with the OperationOutcome the server sent, if any. Use errors.As to get
// it, or the helpers IsNotFound, IsGone, IsConflict and
// IsPreconditionFailed. It holds no credentials and no query string.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Method and Path are the request's method and URL path.
	Method string
	Path   string
	// Outcome is the server's OperationOutcome, nil when it sent none.
	Outcome *OperationOutcome
}

// Error implements error: method, path, status and the outcome's first
// issues.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fhir: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Outcome != nil {
		if s := e.Outcome.String(); s != "" {
			b.WriteString(": ")
			b.WriteString(s)
		}
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrUnauthorized) true for a 401 answer.
func (e *Error) Unwrap() error {
	if e.StatusCode == http.StatusUnauthorized {
		return ErrUnauthorized
	}
	return nil
}

// OperationOutcome is a FHIR OperationOutcome: the issues a server reports
// with an error (or a warning).
type OperationOutcome struct {
	Issues []Issue `json:"issue"`
}

// Issue is one OperationOutcome.issue.
type Issue struct {
	// Severity is fatal, error, warning or information.
	Severity string `json:"severity"`
	// Code is the issue type, e.g. not-found, invalid, conflict.
	Code string `json:"code"`
	// Diagnostics is the server's human-readable detail.
	Diagnostics string `json:"diagnostics,omitempty"`
	// Expression are FHIRPath locations of the problem.
	Expression []string `json:"expression,omitempty"`
}

// String summarises the issues on one line (at most three).
func (o *OperationOutcome) String() string {
	if o == nil {
		return ""
	}
	parts := make([]string, 0, 3)
	for i, is := range o.Issues {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("(+%d more)", len(o.Issues)-3))
			break
		}
		s := is.Severity + " " + is.Code
		if is.Diagnostics != "" {
			s += ": " + truncate(is.Diagnostics, 300)
		}
		if len(is.Expression) > 0 {
			s += " at " + strings.Join(is.Expression, ", ")
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// truncate shortens s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// parseOutcome decodes body as an OperationOutcome, nil if it is not one.
func parseOutcome(body []byte) *OperationOutcome {
	var v struct {
		ResourceType string  `json:"resourceType"`
		Issue        []Issue `json:"issue"`
	}
	if json.Unmarshal(body, &v) != nil || v.ResourceType != "OperationOutcome" {
		return nil
	}
	return &OperationOutcome{Issues: v.Issue}
}

// maxErrorBytes bounds the error body read for its OperationOutcome.
const maxErrorBytes = 1 << 20

// errorFrom turns an error response into an *Error, consuming the body.
func (c *Client) errorFrom(r *request, resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	return &Error{StatusCode: resp.StatusCode, Method: r.method, Path: r.url.Path, Outcome: parseOutcome(body)}
}

// statusOf returns the status of an *Error in err's chain, or 0.
func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is a 404 Not Found answer.
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsGone reports whether err is a 410 Gone answer (a deleted resource).
func IsGone(err error) bool { return statusOf(err) == http.StatusGone }

// IsConflict reports whether err is a 409 Conflict answer.
func IsConflict(err error) bool { return statusOf(err) == http.StatusConflict }

// IsPreconditionFailed reports whether err is a 412 Precondition Failed
// answer, e.g. an update with a stale If-Match version.
func IsPreconditionFailed(err error) bool { return statusOf(err) == http.StatusPreconditionFailed }

// OAuthError is an error answer of an OAuth 2.0 token endpoint (RFC 6749
// §5.2). It never contains the client secret, assertion or tokens.
type OAuthError struct {
	// StatusCode is the HTTP status of the token endpoint's answer.
	StatusCode int
	// Code is the RFC 6749 error code, e.g. invalid_client.
	Code string
	// Description is the server's error_description.
	Description string
	// RetryAfter is how long the server asked to wait (its Retry-After
	// header, on 429 or 503); 0 when it did not say.
	RetryAfter time.Duration
}

// Error implements error.
func (e *OAuthError) Error() string {
	s := fmt.Sprintf("oauth: token request failed: %d", e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + truncate(e.Description, 300)
	}
	return s
}

// Unwrap makes errors.Is(err, ErrUnauthorized) true when the server
// refused the client's credentials or grant.
func (e *OAuthError) Unwrap() error {
	switch e.Code {
	case "invalid_client", "invalid_grant", "unauthorized_client", "access_denied":
		return ErrUnauthorized
	}
	if e.StatusCode == http.StatusUnauthorized {
		return ErrUnauthorized
	}
	return nil
}
