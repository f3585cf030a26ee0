// Package authorize serves the browser pages of Lapis's authorization
// server, on top of the protocol core in package oauth and the page kit
// in package web: the authorization endpoint (/auth/authorize, GET and
// SMART authorize-post) and the pages of a request in progress (login,
// patient picker, consent; the user's decision becomes an authorization
// code through oauth.Server.IssueCode), logout, the practitioner's EHR
// launch page (/auth/launch) and the user's connected-apps page
// (/auth/apps). Every password is checked by one function, signIn, under
// the login lockout policy (oauth.LoginPolicy) and a bound on concurrent
// argon2id computations.
//
// The pages use the stores of the oauth.Server they are built on
// (oauth.Config: Accounts, Sessions, Launches, Patients); they answer 503
// until those are configured. Mount them beside the server's endpoints:
//
//	srv.Mount(mux)
//	authorize.New(srv).Mount(mux)
package authorize

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/web"
)

// AuthorizeRequestLifetime bounds the time between /authorize and the
// user's decision.
const AuthorizeRequestLifetime = 15 * time.Minute

//go:embed templates/*.html
var templateFS embed.FS

// pages are the parsed page templates.
var pages = template.Must(template.New("").ParseFS(templateFS, "templates/*.html"))

// authzRequest is an authorization request in progress, stored
// server-side between the pages; forms carry only its random id.
type authzRequest struct {
	ClientID      string    `json:"client_id"`
	ClientName    string    `json:"client_name"`
	RedirectURI   string    `json:"redirect_uri"`
	State         string    `json:"state"`
	CodeChallenge string    `json:"code_challenge"`
	Nonce         string    `json:"nonce,omitempty"`
	Scopes        []string  `json:"scopes"`
	PromptLogin   bool      `json:"prompt_login,omitempty"`
	Created       time.Time `json:"created"`
	// EHR launch context (resolved and consumed at /authorize).
	EHR             bool   `json:"ehr,omitempty"`
	LaunchSubject   string `json:"launch_subject,omitempty"`
	LaunchPatient   string `json:"launch_patient,omitempty"`
	LaunchEncounter string `json:"launch_encounter,omitempty"`
	// Patient picked by a practitioner (standalone launch/patient).
	Patient string `json:"patient,omitempty"`
}

// Pages are the authorization pages of one oauth.Server.
type Pages struct {
	srv    *oauth.Server
	cfg    oauth.Config
	log    *slog.Logger
	prefix string // path of the issuer, without trailing slash
	acct   accounts
	// codeIssuer replaces IssueCode in tests.
	codeIssuer func(context.Context, *oauth.Grant) (string, error)
	// cop rejects cross-origin POSTs to the page forms.
	cop *http.CrossOriginProtection
	// sessions are the browser sessions of the pages; render writes them.
	sessions web.Sessions
	renderer web.Renderer
}

// New returns the pages of srv, reading their stores and login policy
// from srv.Config().
func New(srv *oauth.Server) *Pages {
	cfg := srv.Config()
	s := &Pages{srv: srv, cfg: cfg, log: srv.Logger(), prefix: srv.BasePath(),
		acct: accounts{sem: make(chan struct{}, hashSlots(runtime.GOMAXPROCS(0))), wait: hashWait, dummy: oauth.DummyHash()}, cop: http.NewCrossOriginProtection()}
	s.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusForbidden, "Cross-origin form submissions are not allowed.")
	}))
	s.sessions = web.Sessions{Store: cfg.Sessions, Secure: strings.HasPrefix(cfg.Issuer, "https://"), Now: srv.Now}
	s.renderer = web.Renderer{Templates: pages, Log: s.log, Prefix: "oauth"}
	return s
}

// Mount registers /authorize and the page forms on mux under the issuer's
// path. Page forms are protected by CSRF tokens and
// http.CrossOriginProtection; /authorize itself accepts cross-origin POSTs
// (SMART authorize-post is an auto-submitted form from the app).
func (s *Pages) Mount(mux *http.ServeMux) {
	protect := func(h http.HandlerFunc) http.Handler { return s.cop.Handler(h) }
	mux.HandleFunc(s.prefix+oauth.PathAuthorize, s.handleAuthorize)
	mux.Handle(s.prefix+oauth.PathLogin, protect(s.handleLogin))
	mux.Handle(s.prefix+oauth.PathConsent, protect(s.handleConsent))
	mux.Handle(s.prefix+oauth.PathSelectPatient, protect(s.handleSelectPatient))
	mux.Handle(s.prefix+oauth.PathLaunch, protect(s.handleLaunch))
	mux.Handle(s.prefix+oauth.PathLogout, protect(s.handleLogout))
	mux.Handle(s.prefix+oauth.PathApps, protect(s.handleApps))
}

// now reads the server's clock.
func (s *Pages) now() time.Time { return s.srv.Now() }

// record sends a security event to the server's audit sink.
func (s *Pages) record(r *http.Request, e audit.Event) { s.srv.Record(r, e) }

// page is the data of every page template.
type page struct {
	Title, Nonce, Base, CSRF, Req, Error, Client, Next, Username string
	User, PatientName, Query, Message                            string
	Choices                                                      []consentChoice
	Fixed                                                        []string
	Offline                                                      bool
	Patients                                                     []oauth.PatientSummary
	Selected                                                     *oauth.PatientSummary
	Encounters                                                   []oauth.EncounterSummary
	Clients                                                      []authdb.Client
}

// render writes a page.
func (s *Pages) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	p.Nonce, p.Base = web.NewNonce(), s.prefix
	s.renderer.Execute(w, r, status, name, p, p.Nonce)
}

// errorPage shows an error to the user without redirecting (unknown
// client, untrusted redirect URI, expired session, bad form).
func (s *Pages) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "message", &page{Title: "Authorization error", Message: msg})
}

// internalError logs err and shows a generic error page.
func (s *Pages) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, "oauth: internal error", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	s.errorPage(w, r, http.StatusInternalServerError, "Something went wrong. Please try again later.")
}

// redirectError sends the user back to the client with the error (RFC
// 6749 §4.1.2.1: its code and description; the redirect replaces its
// status) and the state echoed exactly.
func (s *Pages) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state string, e *oauth.Error) {
	// iss (RFC 9207) lets the client detect mix-up attacks.
	p := url.Values{"error": {e.Code}, "error_description": {e.Description}, "iss": {s.cfg.Issuer}}
	if state != "" {
		p.Set("state", state)
	}
	web.Headers(w, "x")
	http.Redirect(w, r, web.RedirectTo(redirectURI, p), web.RedirectStatus(r))
}

// pagesReady reports whether the stores of the pages are configured.
func (s *Pages) pagesReady() bool {
	return s.cfg.Accounts != nil && s.cfg.Sessions != nil && s.cfg.Launches != nil
}

var codeChallengeRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// handleAuthorize is the authorization endpoint, GET and POST (SMART
// authorize-post). Validation order: the client and its redirect URI first,
// whose failures are shown on an error page (never redirected); every
// later failure redirects to the redirect URI with error,
// error_description and the state.
func (s *Pages) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if !s.pagesReady() {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Authorization is not configured on this server.")
		return
	}
	var params url.Values
	switch r.Method {
	case http.MethodGet:
		params = r.URL.Query()
	case http.MethodPost:
		if err := web.ParseForm(w, r); err != nil {
			s.errorPage(w, r, http.StatusBadRequest, "The authorization request is malformed.")
			return
		}
		params = r.Form // query and body parameters merged
	default:
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	ctx := r.Context()
	if len(params["client_id"]) != 1 || len(params["redirect_uri"]) > 1 {
		s.errorPage(w, r, http.StatusBadRequest, "The request has no valid client_id or repeats redirect_uri.")
		return
	}
	client, err := s.cfg.Clients.Client(ctx, params.Get("client_id"))
	if errors.Is(err, authdb.ErrNotFound) {
		s.errorPage(w, r, http.StatusBadRequest, "Unknown application (client_id).")
		return
	} else if err != nil {
		s.internalError(w, r, err)
		return
	}
	if client.Suspended() {
		s.errorPage(w, r, http.StatusBadRequest, "This application is suspended.")
		return
	}
	// Any client with a registered redirect URI may use the flow: a backend
	// client (private_key_jwt) registered with one is SMART's
	// client-confidential-asymmetric app, authenticating at the token
	// endpoint with its client assertion.
	redirectURI := params.Get("redirect_uri")
	if redirectURI == "" || !oauth.RedirectAllowed(client.RedirectURIs, redirectURI) {
		s.errorPage(w, r, http.StatusBadRequest, "The redirect_uri is missing or not registered for this application.")
		return
	}
	state := params.Get("state")
	fail := func(code, desc string) {
		s.redirectError(w, r, redirectURI, state, &oauth.Error{Code: code, Description: desc})
	}
	for k, v := range params {
		if len(v) > 1 {
			fail(oauth.CodeInvalidRequest, "parameter "+k+" is repeated")
			return
		}
	}
	switch rt := params.Get("response_type"); {
	case rt == "":
		fail(oauth.CodeInvalidRequest, "response_type is required")
		return
	case rt != "code":
		fail(oauth.CodeUnsupportedResponseType, "only response_type=code is supported")
		return
	}
	challenge := params.Get("code_challenge")
	if challenge == "" {
		fail(oauth.CodeInvalidRequest, "PKCE is required: code_challenge is missing")
		return
	}
	if params.Get("code_challenge_method") != "S256" {
		fail(oauth.CodeInvalidRequest, "code_challenge_method must be S256")
		return
	}
	if !codeChallengeRE.MatchString(challenge) {
		fail(oauth.CodeInvalidRequest, "code_challenge is malformed")
		return
	}
	if params.Get("aud") != s.cfg.Issuer {
		fail(oauth.CodeInvalidRequest, "aud must be this server's FHIR base URL")
		return
	}
	if state == "" {
		fail(oauth.CodeInvalidRequest, "state is required")
		return
	}
	if len(params.Get("nonce")) > 512 {
		fail(oauth.CodeInvalidRequest, "nonce is too long")
		return
	}
	prompt := strings.Fields(params.Get("prompt"))
	ar := &authzRequest{
		ClientID: client.ID, ClientName: client.Name, RedirectURI: redirectURI, State: state, CodeChallenge: challenge,
		Nonce: params.Get("nonce"), PromptLogin: slices.Contains(prompt, "login"), Created: s.now(),
	}
	ar.Scopes = oauth.AllowedScopes(strings.Fields(params.Get("scope")), client.Scopes)
	if len(ar.Scopes) == 0 {
		fail(oauth.CodeInvalidScope, "no requested scope is allowed for this client")
		return
	}
	sess, err := s.sessions.Load(ctx, r)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if slices.Contains(prompt, "none") {
		// Lapis always asks for consent, so it can never answer without
		// interaction.
		if !sess.LoggedIn() {
			fail(oauth.CodeLoginRequired, "the user is not logged in")
		} else {
			fail(oauth.CodeConsentRequired, "the user must approve the request")
		}
		return
	}
	if launch := params.Get("launch"); launch != "" {
		l, err := s.cfg.Launches.ConsumeLaunch(ctx, web.HashToken(launch), s.now())
		if err != nil && !errors.Is(err, authdb.ErrNotFound) {
			s.internalError(w, r, err)
			return
		}
		if l == nil || l.ClientID != client.ID {
			fail(oauth.CodeInvalidRequest, "the launch value is invalid, expired or already used")
			return
		}
		ar.EHR, ar.LaunchSubject, ar.LaunchPatient, ar.LaunchEncounter = true, l.Subject, l.Patient, l.Encounter
	}
	if sess == nil {
		if sess, err = s.sessions.Ensure(w, r); err != nil {
			s.internalError(w, r, err)
			return
		}
	}
	reqID := web.RandomToken()
	if err := s.saveRequest(ctx, reqID, sess, ar); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.continueFlow(w, r, sess, reqID, ar, "")
}

// saveRequest stores ar under reqID, bound to the session.
func (s *Pages) saveRequest(ctx context.Context, reqID string, sess *web.Session, ar *authzRequest) error {
	b, err := json.Marshal(ar)
	if err != nil {
		return err
	}
	return s.cfg.Sessions.SaveAuthzRequest(ctx, web.HashToken(reqID), sess.ID, b, ar.Created.Add(AuthorizeRequestLifetime))
}

// requestExpired is the page of a request the session no longer holds.
const requestExpired = "This authorization request has expired. Please return to the application and start again."

// formRequest is loadRequest for a form's request: when the request is
// gone it answers 400 with the page gone, on another error 500, and
// returns nil.
func (s *Pages) formRequest(w http.ResponseWriter, r *http.Request, sess *web.Session, reqID string, consume bool, gone string) *authzRequest {
	ar, err := s.loadRequest(r.Context(), reqID, sess, consume)
	if errors.Is(err, authdb.ErrNotFound) {
		s.errorPage(w, r, http.StatusBadRequest, gone)
		return nil
	} else if err != nil {
		s.internalError(w, r, err)
		return nil
	}
	return ar
}

// loadRequest returns the request reqID if it belongs to the session.
func (s *Pages) loadRequest(ctx context.Context, reqID string, sess *web.Session, consume bool) (*authzRequest, error) {
	if reqID == "" || len(reqID) > 128 {
		return nil, authdb.ErrNotFound
	}
	get := s.cfg.Sessions.AuthzRequest
	if consume {
		get = s.cfg.Sessions.ConsumeAuthzRequest
	}
	sid, data, err := get(ctx, web.HashToken(reqID), s.now())
	if err != nil {
		return nil, err
	}
	if sid != sess.ID {
		return nil, authdb.ErrNotFound
	}
	var ar authzRequest
	if err := json.Unmarshal(data, &ar); err != nil {
		return nil, err
	}
	return &ar, nil
}

// needsLogin reports whether the request needs the user to log in (again:
// prompt=login is cleared by the login made for this request).
func needsLogin(sess *web.Session, ar *authzRequest) bool {
	return !sess.LoggedIn() || ar.PromptLogin
}

// sessionAccount returns the account of the session's subject when
// signedIn; nil when not signed in or when the account no longer exists.
func (s *Pages) sessionAccount(ctx context.Context, sess *web.Session, signedIn bool) (*authdb.Account, error) {
	if !signedIn {
		return nil, nil
	}
	a, err := s.cfg.Accounts.AccountBySubject(ctx, sess.Subject)
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, nil
	}
	return a, err
}

// continueFlow shows the next page of a request: login, patient picker or
// consent.
func (s *Pages) continueFlow(w http.ResponseWriter, r *http.Request, sess *web.Session, reqID string, ar *authzRequest, loginErr string) {
	ctx := r.Context()
	acct, err := s.sessionAccount(ctx, sess, !needsLogin(sess, ar))
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if acct == nil {
		status := http.StatusOK
		if loginErr != "" {
			status = http.StatusUnauthorized
		}
		s.render(w, r, status, "login", &page{Title: "Sign in", CSRF: sess.CSRF, Req: reqID, Client: ar.ClientName, Error: loginErr})
		return
	}
	if ar.EHR && ar.LaunchSubject != acct.Subject {
		_, _ = s.loadRequest(ctx, reqID, sess, true)
		s.redirectError(w, r, ar.RedirectURI, ar.State, &oauth.Error{Code: oauth.CodeAccessDenied, Description: "the launch belongs to another user"})
		return
	}
	if ar.EHR || patientID(acct) != "" || !slices.Contains(ar.Scopes, "launch/patient") || ar.Patient != "" {
		s.renderConsent(w, r, sess, reqID, ar, acct, "")
		return
	}
	s.renderPicker(w, r, sess, reqID, ar, acct, "", "")
}

// patientID returns the Patient id of a patient's account, else "".
func patientID(a *authdb.Account) string {
	if id, ok := strings.CutPrefix(a.FHIRUser, "Patient/"); ok {
		return id
	}
	return ""
}

// contextPatient is the patient in context of the request for acct: a
// patient's own record, whatever the request says; the launch's patient
// for an EHR launch; the picked patient otherwise.
func contextPatient(ar *authzRequest, acct *authdb.Account) string {
	switch {
	case patientID(acct) != "":
		return patientID(acct)
	case ar.EHR:
		return ar.LaunchPatient
	default:
		return ar.Patient
	}
}

func (s *Pages) renderConsent(w http.ResponseWriter, r *http.Request, sess *web.Session, reqID string, ar *authzRequest, acct *authdb.Account, msg string) {
	p := &page{Title: "Allow access", CSRF: sess.CSRF, Req: reqID, Client: ar.ClientName, User: acct.Username + " (" + acct.FHIRUser + ")", Error: msg}
	if pid := contextPatient(ar, acct); pid != "" {
		p.PatientName = pid
		if s.cfg.Patients != nil {
			if ps, err := s.cfg.Patients.Patient(r.Context(), pid); err == nil && ps != nil && ps.Name != "" {
				p.PatientName = ps.Name
			}
		}
	}
	for _, sc := range ar.Scopes {
		switch sc {
		case "openid", "profile":
			if !slices.Contains(p.Fixed, "Confirm who you are") {
				p.Fixed = append(p.Fixed, "Confirm who you are")
			}
		case "fhirUser":
			p.Fixed = append(p.Fixed, "See your user record ("+acct.FHIRUser+")")
		case "launch/patient", "launch":
			if p.PatientName != "" && !slices.Contains(p.Fixed, "Know which patient's record is open") {
				p.Fixed = append(p.Fixed, "Know which patient's record is open")
			}
		case "online_access":
			p.Fixed = append(p.Fixed, "Keep access while you are using it")
		case "offline_access":
			p.Offline = true
		}
	}
	p.Choices = consentChoices(oauth.ScopesForUser(ar.Scopes, acct.FHIRUser))
	s.render(w, r, http.StatusOK, "consent", p)
}

func (s *Pages) renderPicker(w http.ResponseWriter, r *http.Request, sess *web.Session, reqID string, ar *authzRequest, acct *authdb.Account, q, msg string) {
	p := &page{Title: "Choose a patient", CSRF: sess.CSRF, Req: reqID, Client: ar.ClientName, User: acct.Username, Query: q, Error: msg}
	if s.cfg.Patients == nil {
		p.Error = "Patient search is not available on this server."
	} else {
		ps, err := s.cfg.Patients.SearchPatients(r.Context(), q, 50)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		p.Patients = ps
	}
	s.render(w, r, http.StatusOK, "picker", p)
}

// pageSession loads the session of a POSTed page form, parses the form
// and checks its CSRF token; on failure it has answered.
func (s *Pages) pageSession(w http.ResponseWriter, r *http.Request) (*web.Session, bool) {
	if !s.pagesReady() {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Authorization is not configured on this server.")
		return nil, false
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed.")
		return nil, false
	}
	if err := web.ParseForm(w, r); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "The form is malformed.")
		return nil, false
	}
	sess, err := s.sessions.Load(r.Context(), r)
	if err != nil {
		s.internalError(w, r, err)
		return nil, false
	}
	if sess == nil {
		s.errorPage(w, r, http.StatusForbidden, "Your session has expired. Please return to the application and start again.")
		return nil, false
	}
	if !web.CheckCSRF(sess, r) {
		s.errorPage(w, r, http.StatusForbidden, "The form could not be verified (CSRF). Please return to the application and start again.")
		return nil, false
	}
	return sess, true
}

// handleLogin checks a username and password and continues the request
// (or goes to the launch page).
func (s *Pages) handleLogin(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pageSession(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	reqID := r.PostForm.Get("req")
	var ar *authzRequest
	if reqID != "" {
		if ar = s.formRequest(w, r, sess, reqID, false, requestExpired); ar == nil {
			return
		}
	}
	_, err := s.signIn(w, r, sess, r.PostForm.Get("username"), r.PostForm.Get("password"))
	if errors.Is(err, errBadLogin) {
		p := &page{Title: "Sign in", CSRF: sess.CSRF, Req: reqID, Next: r.PostForm.Get("next"), Error: "Invalid username or password.", Username: oauth.NormalizeUsername(r.PostForm.Get("username"))}
		if ar != nil {
			p.Client = ar.ClientName
		}
		s.render(w, r, http.StatusUnauthorized, "login", p)
		return
	} else if err != nil {
		s.signInError(w, r, err)
		return
	}
	if ar == nil {
		web.Headers(w, "x")
		http.Redirect(w, r, s.prefix+oauth.PathLaunch, http.StatusSeeOther)
		return
	}
	if ar.PromptLogin {
		ar.PromptLogin = false
		if err := s.saveRequest(ctx, reqID, sess, ar); err != nil {
			s.internalError(w, r, err)
			return
		}
	}
	s.continueFlow(w, r, sess, reqID, ar, "")
}

// handleSelectPatient searches for, or picks, the patient of a
// practitioner's standalone launch.
func (s *Pages) handleSelectPatient(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pageSession(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	reqID := r.PostForm.Get("req")
	ar := s.formRequest(w, r, sess, reqID, false, requestExpired)
	if ar == nil {
		return
	}
	if needsLogin(sess, ar) {
		s.continueFlow(w, r, sess, reqID, ar, "")
		return
	}
	acct, err := s.cfg.Accounts.AccountBySubject(ctx, sess.Subject)
	if err != nil {
		s.continueFlow(w, r, sess, reqID, ar, "")
		return
	}
	if !oauth.IsPractitioner(acct) || ar.EHR {
		s.errorPage(w, r, http.StatusForbidden, "Only practitioners choose a patient.")
		return
	}
	q := strings.TrimSpace(r.PostForm.Get("q"))
	if len(q) > 200 {
		q = q[:200]
	}
	pid := r.PostForm.Get("patient")
	if r.PostForm.Get("action") != "select" || pid == "" {
		s.renderPicker(w, r, sess, reqID, ar, acct, q, "")
		return
	}
	var ps *oauth.PatientSummary
	if s.cfg.Patients != nil && len(pid) <= 64 {
		if ps, err = s.cfg.Patients.Patient(ctx, pid); err != nil {
			s.internalError(w, r, err)
			return
		}
	}
	if ps == nil {
		s.renderPicker(w, r, sess, reqID, ar, acct, q, "Choose a patient from the list.")
		return
	}
	ar.Patient = ps.ID
	if err := s.saveRequest(ctx, reqID, sess, ar); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.renderConsent(w, r, sess, reqID, ar, acct, "")
}

// handleConsent applies the user's decision: a code bound to exactly the
// ticked scopes, or access_denied.
func (s *Pages) handleConsent(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pageSession(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	reqID := r.PostForm.Get("req")
	peek := s.formRequest(w, r, sess, reqID, false, "This authorization request has expired or was already answered. Please return to the application and start again.")
	if peek == nil {
		return
	}
	acct, err := s.sessionAccount(ctx, sess, !needsLogin(sess, peek))
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if acct == nil || (peek.EHR && peek.LaunchSubject != acct.Subject) || contextMissing(peek, acct) {
		s.continueFlow(w, r, sess, reqID, peek, "")
		return
	}
	// Single use: the request is consumed before the code is issued.
	ar := s.formRequest(w, r, sess, reqID, true, "This authorization request was already answered.")
	if ar == nil {
		return
	}
	if r.PostForm.Get("decision") != "approve" {
		s.record(r, audit.Event{Kind: audit.KindConsent, Outcome: audit.OutcomeMinor, Description: "consent denied", ClientID: ar.ClientID, Subject: acct.Subject, FHIRUser: acct.FHIRUser})
		s.redirectError(w, r, ar.RedirectURI, ar.State, &oauth.Error{Code: oauth.CodeAccessDenied, Description: "the user denied the request"})
		return
	}
	patient := contextPatient(ar, acct)
	g := &oauth.Grant{
		ClientID: ar.ClientID, Subject: acct.Subject, FHIRUser: acct.FHIRUser,
		Scopes:      grantedScopes(oauth.ScopesForUser(ar.Scopes, acct.FHIRUser), r.PostForm["scope"], ar.EHR, patient != ""),
		RedirectURI: ar.RedirectURI, CodeChallenge: ar.CodeChallenge, Nonce: ar.Nonce,
		Patient: patient, AuthTime: sess.AuthTime,
	}
	if ar.EHR {
		g.Encounter = ar.LaunchEncounter
		g.NeedPatientBanner = true
		g.SMARTStyleURL = s.srv.SMARTStyleURL()
	}
	code, err := s.issueCode(ctx, g)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "oauth: issue code", slog.String("client_id", ar.ClientID), slog.String("error", err.Error()))
		s.redirectError(w, r, ar.RedirectURI, ar.State, &oauth.Error{Code: oauth.CodeServerError, Description: "the authorization code could not be issued"})
		return
	}
	s.record(r, audit.Event{Kind: audit.KindConsent, Description: "consent given", ClientID: ar.ClientID, Subject: acct.Subject, FHIRUser: acct.FHIRUser, Patient: patient})
	web.Headers(w, "x")
	http.Redirect(w, r, web.RedirectTo(ar.RedirectURI, url.Values{"code": {code}, "state": {ar.State}, "iss": {s.cfg.Issuer}}), http.StatusSeeOther)
}

// contextMissing reports whether a practitioner's standalone launch still
// lacks its patient.
func contextMissing(ar *authzRequest, acct *authdb.Account) bool {
	return !ar.EHR && patientID(acct) == "" && slices.Contains(ar.Scopes, "launch/patient") && ar.Patient == ""
}

// issueCode issues the code of a grant (through a test hook when set).
func (s *Pages) issueCode(ctx context.Context, g *oauth.Grant) (string, error) {
	if s.codeIssuer != nil {
		return s.codeIssuer(ctx, g)
	}
	return s.srv.IssueCode(ctx, g)
}

// handleLogout ends the session.
func (s *Pages) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pageSession(w, r)
	if !ok {
		return
	}
	if err := s.sessions.LogOut(w, r, sess); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.record(r, audit.Event{Kind: audit.KindLogout, Description: "logout", Subject: sess.Subject})
	s.render(w, r, http.StatusOK, "message", &page{Title: "Signed out", Message: "You are signed out."})
}
