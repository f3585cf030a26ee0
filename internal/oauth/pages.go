package oauth

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
)

// Paths of the authorization pages, relative to the FHIR base URL.
const (
	PathLogin         = "/auth/login"
	PathConsent       = "/auth/consent"
	PathSelectPatient = "/auth/select-patient"
	PathLaunch        = "/auth/launch"
	PathLogout        = "/auth/logout"
	PathSMARTStyle    = "/auth/smart-style.json"
)

// PathApps is the page where a signed-in user sees the apps holding live
// grants for them and revokes them, relative to the FHIR base.
const PathApps = "/auth/apps"

// AccountStore reads accounts and keeps the failed-login record.
type AccountStore interface {
	AccountByUsername(ctx context.Context, username string) (*authdb.Account, error)
	AccountBySubject(ctx context.Context, subject string) (*authdb.Account, error)
	RecordLoginFailure(ctx context.Context, key string, at time.Time) error
	LoginFailures(ctx context.Context, key string, since time.Time) (int, error)
	ClearLoginFailures(ctx context.Context, key string) error
}

// PatientSummary is a patient as shown on the pickers.
type PatientSummary struct {
	ID, Name, BirthDate, Gender string
}

// EncounterSummary is an encounter as shown on the launch page.
type EncounterSummary struct {
	ID, Label string
}

// PatientLister searches the FHIR store for the patient pickers (wired to
// the resource service).
type PatientLister interface {
	// SearchPatients returns up to limit patients whose name matches
	// name (all patients when name is empty).
	SearchPatients(ctx context.Context, name string, limit int) ([]PatientSummary, error)
	// Patient returns the patient with id, or nil if there is none.
	Patient(ctx context.Context, id string) (*PatientSummary, error)
	// Encounters returns up to limit encounters of the patient, newest
	// first.
	Encounters(ctx context.Context, patientID string, limit int) ([]EncounterSummary, error)
}

// LaunchStore keeps EHR launch contexts by the hash of their launch value.
type LaunchStore interface {
	SaveLaunch(ctx context.Context, idHash []byte, l *authdb.Launch) error
	ConsumeLaunch(ctx context.Context, idHash []byte, now time.Time) (*authdb.Launch, error)
}

// SMARTStyleURL is the absolute URL of the SMART style document.
func (s *Server) SMARTStyleURL() string { return strings.TrimRight(s.cfg.Issuer, "/") + PathSMARTStyle }

// smartStyle is the styling document apps may follow (SMART App Launch
// "smart_style_url").
var smartStyle = map[string]any{
	"color_background":     "#f4f6f9",
	"color_error":          "#b42318",
	"color_highlight":      "#1f5fbf",
	"color_modal_backdrop": "",
	"color_success":        "#067647",
	"color_text":           "#1d2430",
	"dim_border_radius":    "10px",
	"dim_font_size":        "16px",
	"dim_spacing_size":     "16px",
	"font_family_body":     "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
	"font_family_heading":  "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
}

// handleSMARTStyle serves the SMART style document (public, CORS open).
func (s *Server) handleSMARTStyle(w http.ResponseWriter, r *http.Request) {
	s.serveDocument(w, r, smartStyle)
}

// RedirectAllowed reports whether redirectURI is registered: exactly, or —
// for native apps' loopback redirects (RFC 8252 §7.3) — a registered
// http://127.0.0.1 or http://[::1] URI that differs only in its port, which
// the app picks when it starts listening. A port outside 1-65535 is never
// allowed.
func RedirectAllowed(registered []string, redirectURI string) bool {
	got, err := url.Parse(redirectURI)
	if err != nil || !portOK(got) {
		return false
	}
	if slices.Contains(registered, redirectURI) {
		return true
	}
	if got.Scheme != "http" || !loopbackIP(got.Hostname()) || got.User != nil || got.Fragment != "" {
		return false
	}
	for _, r := range registered {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "http" || !loopbackIP(u.Hostname()) {
			continue
		}
		if u.Hostname() == got.Hostname() && u.EscapedPath() == got.EscapedPath() && u.RawQuery == got.RawQuery {
			return true
		}
	}
	return false
}

// loopbackIP reports whether host is the IPv4 or IPv6 loopback literal
// (not "localhost", which RFC 8252 §8.3 advises against).
func loopbackIP(host string) bool { return host == "127.0.0.1" || host == "::1" }

// Config returns the server's configuration with its defaults applied
// (the login policy among them): the pages of package authorize read
// their stores from it.
func (s *Server) Config() Config { return s.cfg }

// Now returns the server's clock reading (Config.Now, or time.Now).
func (s *Server) Now() time.Time { return s.now() }

// Logger returns the logger of internal errors.
func (s *Server) Logger() *slog.Logger { return s.log }

// BasePath returns the path of the issuer without a trailing slash
// ("/fhir"): the endpoint paths are relative to it.
func (s *Server) BasePath() string { return s.prefix }

// Record sends a security event to the configured audit sink (if any),
// with the caller's address and user agent; the pages record logins,
// consent and logouts through it.
func (s *Server) Record(r *http.Request, e audit.Event) { s.record(r, e) }
