package authorize

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/web"
)

// LaunchLifetime is how long an EHR launch value may be used (once).
const LaunchLifetime = 5 * time.Minute

// clientLister lists the registered clients (authdb.DB implements it).
type clientLister interface {
	Clients(ctx context.Context) ([]authdb.Client, error)
}

// launchAccount returns the logged-in practitioner of the launch page, or
// answers with the login form or a refusal.
func (s *Pages) launchAccount(w http.ResponseWriter, r *http.Request, sess *web.Session) *authdb.Account {
	acct, err := s.sessionAccount(r.Context(), sess, sess.LoggedIn())
	if err != nil {
		s.internalError(w, r, err)
		return nil
	}
	if acct == nil {
		s.render(w, r, http.StatusOK, "login", &page{Title: "Sign in", CSRF: sess.CSRF, Next: "launch"})
		return nil
	}
	if !oauth.IsPractitioner(acct) {
		s.errorPage(w, r, http.StatusForbidden, "Only practitioners can launch apps.")
		return nil
	}
	return acct
}

// handleLaunch is the practitioner's EHR launch page: GET searches and
// shows patients, their encounters and the apps with a launch URI; POST
// creates a launch value and sends the browser to the app's launch URI
// with iss and launch.
func (s *Pages) handleLaunch(w http.ResponseWriter, r *http.Request) {
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
	sess, err := s.sessions.Ensure(w, r)
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

func (s *Pages) renderLaunch(w http.ResponseWriter, r *http.Request, sess *web.Session, acct *authdb.Account, q, pid, msg string) {
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

// launchClients lists the clients an EHR launch can complete for
// (authdb.Client.EHRLaunchable): one without a redirect URI, or
// suspended, would only reach an error after the practitioner chose it.
func (s *Pages) launchClients(ctx context.Context) ([]authdb.Client, error) {
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
		// A private_key_jwt one included (SMART's
		// client-confidential-asymmetric app).
		if c.EHRLaunchable() {
			out = append(out, c)
		}
	}
	return out, nil
}

// createLaunch stores a launch context and redirects to the app.
func (s *Pages) createLaunch(w http.ResponseWriter, r *http.Request) {
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
	if client == nil || !client.EHRLaunchable() {
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
