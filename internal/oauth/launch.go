package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/web"
)

// LaunchLifetime is how long an EHR launch value may be used (once).
const LaunchLifetime = 5 * time.Minute

// LaunchStore keeps EHR launch contexts by the hash of their launch value.
type LaunchStore interface {
	SaveLaunch(ctx context.Context, idHash []byte, l *authdb.Launch) error
	ConsumeLaunch(ctx context.Context, idHash []byte, now time.Time) (*authdb.Launch, error)
}

// clientLister lists the registered clients (authdb.DB implements it).
type clientLister interface {
	Clients(ctx context.Context) ([]authdb.Client, error)
}

// smartStyleURL is the absolute URL of the SMART style document.
func (s *Server) smartStyleURL() string { return strings.TrimRight(s.cfg.Issuer, "/") + PathSMARTStyle }

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

// launchAccount returns the logged-in practitioner of the launch page, or
// answers with the login form or a refusal.
func (s *Server) launchAccount(w http.ResponseWriter, r *http.Request, sess *web.Session) *authdb.Account {
	var acct *authdb.Account
	if sess.LoggedIn() {
		a, err := s.cfg.Accounts.AccountBySubject(r.Context(), sess.Subject)
		if err != nil && !errors.Is(err, authdb.ErrNotFound) {
			s.internalError(w, r, err)
			return nil
		}
		acct = a
	}
	if acct == nil {
		s.render(w, r, http.StatusOK, "login", &page{Title: "Sign in", CSRF: sess.CSRF, Next: "launch"})
		return nil
	}
	if !IsPractitioner(acct) {
		s.errorPage(w, r, http.StatusForbidden, "Only practitioners can launch apps.")
		return nil
	}
	return acct
}

// handleLaunch is the practitioner's EHR launch page: GET searches and
// shows patients, their encounters and the apps with a launch URI; POST
// creates a launch value and sends the browser to the app's launch URI
// with iss and launch.
func (s *Server) handleLaunch(w http.ResponseWriter, r *http.Request) {
	if !s.pagesReady() {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Authorization is not configured on this server.")
		return
	}
	if r.Method == http.MethodPost {
		s.createLaunch(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	sess, err := s.ui.sessions.Ensure(w, r)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	acct := s.launchAccount(w, r, sess)
	if acct == nil {
		return
	}
	s.renderLaunch(w, r, sess, acct, r.URL.Query().Get("q"), r.URL.Query().Get("patient"), "")
}

func (s *Server) renderLaunch(w http.ResponseWriter, r *http.Request, sess *web.Session, acct *authdb.Account, q, pid, msg string) {
	ctx := r.Context()
	p := &page{Title: "Launch an app", CSRF: sess.CSRF, User: acct.Username + " (" + acct.FHIRUser + ")", Query: q, Error: msg}
	if len(q) > 200 {
		q = q[:200]
	}
	if s.cfg.Patients == nil {
		p.Error = "Patient search is not available on this server."
		s.render(w, r, http.StatusOK, "launch", p)
		return
	}
	if pid != "" && len(pid) <= 64 {
		ps, err := s.cfg.Patients.Patient(ctx, pid)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		p.Selected = ps
	}
	var err error
	if p.Selected != nil {
		if p.Encounters, err = s.cfg.Patients.Encounters(ctx, p.Selected.ID, 20); err != nil {
			s.internalError(w, r, err)
			return
		}
		if p.Clients, err = s.launchClients(ctx); err != nil {
			s.internalError(w, r, err)
			return
		}
	} else if p.Patients, err = s.cfg.Patients.SearchPatients(ctx, q, 50); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "launch", p)
}

// launchClients lists the clients that have a launch URI.
func (s *Server) launchClients(ctx context.Context) ([]authdb.Client, error) {
	cl, ok := s.cfg.Clients.(clientLister)
	if !ok {
		return nil, nil
	}
	all, err := cl.Clients(ctx)
	if err != nil {
		return nil, err
	}
	var out []authdb.Client
	for _, c := range all {
		if c.LaunchURI != "" && c.Type != authdb.Backend {
			out = append(out, c)
		}
	}
	return out, nil
}

// createLaunch stores a launch context and redirects to the app.
func (s *Server) createLaunch(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pageSession(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	acct := s.launchAccount(w, r, sess)
	if acct == nil {
		return
	}
	f := r.PostForm
	pid, enc := f.Get("patient"), f.Get("encounter")
	if s.cfg.Patients == nil || pid == "" || len(pid) > 64 {
		s.renderLaunch(w, r, sess, acct, "", "", "Choose a patient.")
		return
	}
	ps, err := s.cfg.Patients.Patient(ctx, pid)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if ps == nil {
		s.renderLaunch(w, r, sess, acct, "", "", "Choose a patient.")
		return
	}
	if enc != "" {
		encs, err := s.cfg.Patients.Encounters(ctx, ps.ID, 1000)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		found := false
		for _, e := range encs {
			found = found || e.ID == enc
		}
		if !found {
			s.renderLaunch(w, r, sess, acct, "", ps.ID, "Choose one of this patient's encounters.")
			return
		}
	}
	client, err := s.cfg.Clients.Client(ctx, f.Get("client_id"))
	if err != nil && !errors.Is(err, authdb.ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	if client == nil || client.LaunchURI == "" || client.Type == authdb.Backend {
		s.renderLaunch(w, r, sess, acct, "", ps.ID, "Choose an app that supports EHR launch.")
		return
	}
	launch := web.RandomToken()
	l := &authdb.Launch{ClientID: client.ID, Subject: acct.Subject, Patient: ps.ID, Encounter: enc, Expires: s.now().Add(LaunchLifetime)}
	if err := s.cfg.Launches.SaveLaunch(ctx, web.HashToken(launch), l); err != nil {
		s.internalError(w, r, err)
		return
	}
	web.Headers(w, "x")
	http.Redirect(w, r, web.RedirectTo(client.LaunchURI, url.Values{"iss": {s.cfg.Issuer}, "launch": {launch}}), http.StatusSeeOther)
}
