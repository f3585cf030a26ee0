// Package web is the page kit of Lapis's server-rendered HTML pages (the
// /authorize flow, the EHR launch and apps pages of the authorization
// server, and any later page such as a developer portal): the security
// headers every page carries, a per-page CSP nonce, template rendering
// that never writes half a page, bounded form parsing, redirects, the
// caller's address, and browser sessions with their cookie and CSRF token
// (Sessions, CheckCSRF).
//
// The kit knows nothing of OAuth: pages built on it decide what a session
// is for. Sessions are stored by the hash of their cookie value only
// (SessionStore, implemented by internal/authdb).
package web

import (
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/lapis-health/lapis/internal/randtoken"
)

// Headers sets the headers of every HTML page and every redirect a page
// answers with: a Content-Security-Policy that allows only the page's own
// inline style (by nonce), no framing, no sniffing, no referrer and no
// caching.
func Headers(w http.ResponseWriter, nonce string) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// NewNonce returns a fresh CSP nonce for a page's inline style.
func NewNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// Renderer writes pages from a template set.
type Renderer struct {
	// Templates holds the named page templates.
	Templates *template.Template
	// Log receives template failures.
	Log *slog.Logger
	// Prefix starts the log message of a failure ("oauth: template").
	Prefix string
}

// Execute renders the template name with data and writes it with Headers
// (nonce is the page's CSP nonce) and status; a template failure is logged
// and answered 500 without a half-written page.
func (rd *Renderer) Execute(w http.ResponseWriter, r *http.Request, status int, name string, data any, nonce string) {
	Headers(w, nonce)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var sb strings.Builder
	if err := rd.Templates.ExecuteTemplate(&sb, name, data); err != nil {
		rd.Log.LogAttrs(r.Context(), slog.LevelError, rd.Prefix+": template", slog.String("page", name), slog.String("error", err.Error()))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(sb.String()))
}

// MaxForm bounds the bodies of page forms.
const MaxForm = 64 << 10

// ParseForm reads a request's form (query and a body of at most MaxForm
// bytes) into r.Form and r.PostForm.
func ParseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, MaxForm)
	return r.ParseForm()
}

// RedirectTo appends params to a registered URI, keeping its own query.
func RedirectTo(base string, params url.Values) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + params.Encode()
}

// RedirectStatus is 302 for GET and 303 (See Other: the browser follows
// with GET) after a POST.
func RedirectStatus(r *http.Request) int {
	if r.Method == http.MethodPost {
		return http.StatusSeeOther
	}
	return http.StatusFound
}

// RandomToken returns 256 random bits, base64url: a session cookie, a
// CSRF token or any other value a browser carries.
func RandomToken() string { return randtoken.New() }

// HashToken is the stored form of a RandomToken value (SHA-256).
func HashToken(t string) []byte { return randtoken.Hash(t) }
