package portal

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/web"
)

// maxJSON bounds API request bodies.
const maxJSON = 64 << 10

// apiRoutes registers the JSON API. Errors are {"error","error_description"}.
//
//	POST   /portal/api/signup              {email,password,name?,organization?} → 201 (mails the link)
//	POST   /portal/api/verify              {token}
//	POST   /portal/api/verify/resend       {email} → 202
//	POST   /portal/api/login               {email,password} → {developer,csrf_token} + cookie,
//	                                       or 401 {error:"mfa_required",mfa_token}
//	POST   /portal/api/login/totp          {mfa_token,code}  (TOTP or recovery code)
//	POST   /portal/api/reset/request       {email} → 202;  POST /portal/api/reset {token,password}
//	POST   /portal/api/logout
//	GET    /portal/api/me                  {developer,organizations,needs_terms,csrf_token?}
//	POST   /portal/api/totp/enroll         → {secret,otpauth_uri};  POST .../totp/confirm {code} → {recovery_codes}
//	POST   /portal/api/totp/disable        {password}
//	GET    /portal/api/tokens;  POST /portal/api/tokens {name} → {token,...} once;  DELETE /portal/api/tokens/{id}
//	GET    /portal/api/orgs;  POST /portal/api/orgs {name}
//	GET    /portal/api/orgs/{org}/members;  PUT|DELETE /portal/api/orgs/{org}/members/{dev} ({role})
//	GET    /portal/api/orgs/{org}/invitations;  POST ... {email,role}
//	POST   /portal/api/invitations/accept  {token}
//	GET    /portal/api/terms;  POST /portal/api/terms/accept {version}
//	PUT    /portal/api/admin/terms         {text}  (operators)
//	GET    /portal/api/activity            ?env=sandbox|production&client=ID|key=ID[&range=24h|7d] (activity.go)
//	GET    /portal/api/sandbox/logins;  POST /portal/api/launch {client_id,mode:"ehr"|"standalone",login,patient?} (launch.go)
//
// Apps, production access, API keys and webhooks (apps.go, review.go,
// keys.go, webhooks.go); {env} is sandbox or production; another
// organisation's {org} or ids are 404. Issuing a credential (app, secret,
// key, webhook secret) needs a verified account and the current terms
// (403 terms_not_accepted / not_verified).
//
//	GET    /portal/api/presets                              the wizard's presets with scope_options
//	GET    /portal/api/orgs/{org}/apps                      [App] (both environments)
//	POST   /portal/api/orgs/{org}/apps                      {preset,name,description?,redirect_uris?,launch_uri?,scopes?,
//	                                                        jwks_uri?|jwks?,logo_uri?,homepage?} → 201 {app,client_secret?} (sandbox; secret once;
//	                                                        ?download=1 adds Content-Disposition: attachment)
//	GET    /portal/api/orgs/{org}/apps/{env}/{id}           {app,production_requests}
//	DELETE /portal/api/orgs/{org}/apps/sandbox/{id}         (production apps: operators revoke)
//	POST   /portal/api/orgs/{org}/apps/{env}/{id}/secret    {overlap?: seconds, default 86400} → {client_id,client_secret,old_valid_until}
//	POST   /portal/api/orgs/{org}/apps/sandbox/{id}/production → 201 review request {id,status:"pending",due_at,...}
//	GET    /portal/api/orgs/{org}/requests[?status=]        the organisation's production access requests
//	GET    /portal/api/orgs/{org}/keys                      [Key] (both environments; never the key itself)
//	POST   /portal/api/orgs/{org}/keys                      {environment?,name,scopes,patient?,expires_in?} → 201 {key,...} once
//	                                                        (production: system scopes, needs an approved request)
//	POST   /portal/api/orgs/{org}/keys/{env}/{id}/rotate    {grace?: seconds} → {key,replaces,old_valid_until,...} once
//	POST   /portal/api/orgs/{org}/keys/{env}/{id}/suspend|resume → Key
//	DELETE /portal/api/orgs/{org}/keys/{env}/{id}           revoke
//	GET    /portal/api/orgs/{org}/webhooks;  POST ... {url,events?} → 201 {endpoint,secret} once;  DELETE .../webhooks/{id}
//	GET    /portal/api/orgs/{org}/webhooks/{id}/deliveries  recent deliveries
//	GET    /portal/api/admin/reviews[?status=]              (operators) the queue, pending by due date
//	POST   /portal/api/admin/reviews/{id}/approve           → request with production_client_id (client created in production)
//	POST   /portal/api/admin/reviews/{id}/decline           {reason}
//	GET    /portal/api/admin/apps                           (operators) every organisation's apps
//	POST   /portal/api/admin/apps/{env}/{id}/suspend|resume ({reason} to suspend);  DELETE /portal/api/admin/apps/{env}/{id} revokes
//
// Authenticated routes take the session cookie (unsafe methods also need
// X-CSRF-Token) or Authorization: Bearer lpd_...
func (p *Portal) apiRoutes() {
	m := p.mux
	m.HandleFunc("POST /portal/api/signup", p.throttled(withCredentials(p.apiSignup)))
	m.HandleFunc("POST /portal/api/verify", withCredentials(p.apiVerify))
	m.HandleFunc("POST /portal/api/verify/resend", p.throttled(withCredentials(p.apiResend)))
	m.HandleFunc("POST /portal/api/login", p.throttled(withCredentials(p.apiLogin)))
	m.HandleFunc("POST /portal/api/login/totp", p.throttled(withCredentials(p.apiLoginTOTP)))
	m.HandleFunc("POST /portal/api/reset/request", p.throttled(withCredentials(p.apiResetRequest)))
	m.HandleFunc("POST /portal/api/reset", p.throttled(withCredentials(p.apiReset)))
	m.HandleFunc("POST /portal/api/logout", p.api(p.apiLogout))
	m.HandleFunc("GET /portal/api/me", p.api(p.apiMe))
	m.HandleFunc("POST /portal/api/totp/enroll", p.api(p.apiTOTPEnroll))
	m.HandleFunc("POST /portal/api/totp/confirm", p.api(withBody(p.apiTOTPConfirm)))
	m.HandleFunc("POST /portal/api/totp/disable", p.api(withBody(p.apiTOTPDisable)))
	m.HandleFunc("GET /portal/api/tokens", p.api(p.apiTokens))
	m.HandleFunc("POST /portal/api/tokens", p.api(withBody(p.apiTokenCreate)))
	m.HandleFunc("DELETE /portal/api/tokens/{id}", p.api(p.apiTokenRevoke))
	m.HandleFunc("GET /portal/api/orgs", p.api(p.apiOrgs))
	m.HandleFunc("POST /portal/api/orgs", p.api(withBody(p.apiOrgCreate)))
	m.HandleFunc("GET /portal/api/orgs/{org}/members", p.api(p.apiMembers))
	m.HandleFunc("PUT /portal/api/orgs/{org}/members/{dev}", p.api(withBody(p.apiSetRole)))
	m.HandleFunc("DELETE /portal/api/orgs/{org}/members/{dev}", p.api(p.apiRemoveMember))
	m.HandleFunc("GET /portal/api/orgs/{org}/invitations", p.api(p.apiInvitations))
	m.HandleFunc("POST /portal/api/orgs/{org}/invitations", p.api(withBody(p.apiInvite)))
	m.HandleFunc("POST /portal/api/invitations/accept", p.api(withBody(p.apiAcceptInvite)))
	m.HandleFunc("GET /portal/api/terms", p.api(p.apiTerms))
	m.HandleFunc("POST /portal/api/terms/accept", p.api(withBody(p.apiAcceptTerms)))
	m.HandleFunc("PUT /portal/api/admin/terms", p.api(withBody(p.apiSetTerms)))
	m.HandleFunc("/portal/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API route")
	})
}

// decode reads a JSON object body into v; it answers 400 and returns false
// when the body is not one.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "invalid_request", "send a JSON body (Content-Type: application/json)")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "the body is not a valid JSON object of this request"
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			msg = "the body is too large"
		} else if errors.Is(err, io.EOF) {
			msg = "the body is empty"
		} else if strings.HasPrefix(err.Error(), "json: unknown field") {
			msg = strings.TrimPrefix(err.Error(), "json: ")
		} else if errors.Is(err, api.ErrDuration) {
			msg = api.ErrDuration.Error()
		}
		writeError(w, http.StatusBadRequest, "invalid_request", msg)
		return false
	}
	return true
}

type credentials struct {
	Email        string `json:"email"`
	Name         string `json:"name"`
	Password     string `json:"password"`
	Organization string `json:"organization"`
	Token        string `json:"token"`
	MFAToken     string `json:"mfa_token"`
	Code         string `json:"code"`
}

// The bodies of the authenticated requests that take one field or two.
type (
	nameBody struct {
		Name string `json:"name"`
	}
	roleBody struct {
		Role string `json:"role"`
	}
	termsVersion struct {
		Version int `json:"version"`
	}
	termsText struct {
		Text string `json:"text"`
	}
	inviteBody struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
)

// throttled applies the per-address limit of the authentication actions
// (429 when the caller is over it) before h runs.
func (p *Portal) throttled(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !p.limited(w, r) {
			h(w, r)
		}
	}
}

// withCredentials decodes the body of an unauthenticated request before h
// runs (400 when it is not a JSON object of credentials).
func withCredentials(h func(http.ResponseWriter, *http.Request, credentials)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var c credentials
		if decode(w, r, &c) {
			h(w, r, c)
		}
	}
}

// withBody decodes the body of an authenticated request into a T before h
// runs (400 when it is not a JSON object of that shape).
func withBody[T any](h func(http.ResponseWriter, *http.Request, *Visitor, T)) func(http.ResponseWriter, *http.Request, *Visitor) {
	return func(w http.ResponseWriter, r *http.Request, v *Visitor) {
		var in T
		if decode(w, r, &in) {
			h(w, r, v, in)
		}
	}
}

func (p *Portal) apiSignup(w http.ResponseWriter, r *http.Request, c credentials) {
	if err := p.signUp(r, c.Email, c.Name, c.Password, c.Organization); err != nil {
		p.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"status": "verification_sent", "email": developer.NormalizeEmail(c.Email)})
}

func (p *Portal) apiVerify(w http.ResponseWriter, r *http.Request, c credentials) {
	d, err := p.dev.Verify(r.Context(), c.Token)
	p.answer(w, r, http.StatusOK, d, err)
}

func (p *Portal) apiResend(w http.ResponseWriter, r *http.Request, c credentials) {
	tok, err := p.dev.ResendVerification(r.Context(), c.Email)
	if err != nil {
		p.apiInternal(w, r, err)
		return
	}
	if tok != "" {
		p.sendVerification(r, developer.NormalizeEmail(c.Email), tok)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "sent_if_unverified"})
}

// apiLogin starts a session (cookie) by email and password; with TOTP it
// answers 401 mfa_required and an mfa_token for /portal/api/login/totp.
func (p *Portal) apiLogin(w http.ResponseWriter, r *http.Request, c credentials) {
	res, err := p.dev.Login(r.Context(), c.Email, c.Password, httpx.ClientAddr(r))
	if err != nil {
		p.record(r, audit.Event{Kind: audit.KindLoginFailure, Outcome: audit.OutcomeMinor, Description: "developer login failed"})
		p.apiFail(w, r, err)
		return
	}
	if res.SecondFactor != "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "mfa_required", "error_description": "send a TOTP or recovery code to /portal/api/login/totp", "mfa_token": res.SecondFactor})
		return
	}
	p.apiStartSession(w, r, res.Developer)
}

func (p *Portal) apiLoginTOTP(w http.ResponseWriter, r *http.Request, c credentials) {
	d, err := p.dev.LoginSecondFactor(r.Context(), c.MFAToken, c.Code, httpx.ClientAddr(r))
	if err != nil {
		p.apiFail(w, r, err)
		return
	}
	p.apiStartSession(w, r, d)
}

// apiStartSession logs the developer in on a fresh session (any session
// cookie sent is replaced, not reused) and returns its CSRF token.
func (p *Portal) apiStartSession(w http.ResponseWriter, r *http.Request, d *developer.Developer) {
	sess, err := p.sessions.Ensure(w, r)
	if err != nil {
		p.apiInternal(w, r, err)
		return
	}
	if err := p.sessions.LogIn(w, r, sess, d.ID); err != nil {
		p.apiInternal(w, r, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindLogin, Description: "developer login", Subject: "developer:" + d.ID})
	writeJSON(w, http.StatusOK, map[string]any{"developer": d, "csrf_token": sess.CSRF})
}

func (p *Portal) apiResetRequest(w http.ResponseWriter, r *http.Request, c credentials) {
	p.requestReset(r, c.Email)
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "sent_if_registered"})
}

func (p *Portal) apiReset(w http.ResponseWriter, r *http.Request, c credentials) {
	if _, err := p.dev.Reset(r.Context(), c.Token, c.Password); err != nil {
		p.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "password_changed"})
}

func (p *Portal) apiLogout(w http.ResponseWriter, r *http.Request, v *Visitor) {
	if v.Session != nil {
		if err := p.sessions.LogOut(w, r, v.Session); err != nil {
			p.apiInternal(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *Portal) apiMe(w http.ResponseWriter, r *http.Request, v *Visitor) {
	out := map[string]any{"developer": v.Dev, "organizations": nonNil(v.Orgs), "needs_terms": v.NeedsTerms}
	if v.Session != nil {
		out["csrf_token"] = v.Session.CSRF
	}
	writeJSON(w, http.StatusOK, out)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (p *Portal) apiTOTPEnroll(w http.ResponseWriter, r *http.Request, v *Visitor) {
	e, err := p.dev.EnrollTOTP(r.Context(), v.Dev.ID)
	p.answer(w, r, http.StatusOK, e, err)
}

func (p *Portal) apiTOTPConfirm(w http.ResponseWriter, r *http.Request, v *Visitor, c credentials) {
	codes, err := p.dev.ConfirmTOTP(r.Context(), v.Dev.ID, c.Code)
	if err != nil {
		p.apiFail(w, r, err)
		return
	}
	p.recordTOTP(r, v, true)
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

func (p *Portal) apiTOTPDisable(w http.ResponseWriter, r *http.Request, v *Visitor, c credentials) {
	err := p.dev.DisableTOTP(r.Context(), v.Dev.ID, c.Password)
	if err == nil {
		p.recordTOTP(r, v, false)
	}
	p.answer(w, r, http.StatusNoContent, nil, err)
}

func (p *Portal) apiTokens(w http.ResponseWriter, r *http.Request, v *Visitor) {
	l, err := p.dev.APITokens(r.Context(), v.Dev.ID)
	p.answer(w, r, http.StatusOK, nonNil(l), err)
}

func (p *Portal) apiTokenCreate(w http.ResponseWriter, r *http.Request, v *Visitor, in nameBody) {
	val, t, err := p.dev.CreateAPIToken(r.Context(), v.Dev.ID, in.Name)
	if err != nil {
		p.apiFail(w, r, err)
		return
	}
	p.recordToken(r, v, "C", t.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"token": val, "id": t.ID, "name": t.Name, "created_at": t.CreatedAt})
}

func (p *Portal) apiTokenRevoke(w http.ResponseWriter, r *http.Request, v *Visitor) {
	err := p.dev.RevokeAPIToken(r.Context(), v.Dev.ID, r.PathValue("id"))
	if err == nil {
		p.recordToken(r, v, "D", r.PathValue("id"))
	}
	p.answer(w, r, http.StatusNoContent, nil, err)
}

func (p *Portal) apiOrgs(w http.ResponseWriter, _ *http.Request, v *Visitor) {
	writeJSON(w, http.StatusOK, nonNil(v.Orgs))
}

func (p *Portal) apiOrgCreate(w http.ResponseWriter, r *http.Request, v *Visitor, in nameBody) {
	o, err := p.dev.CreateOrg(r.Context(), v.Dev.ID, in.Name)
	if err != nil {
		p.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, developer.Membership{Org: *o, Role: developer.RoleOwner})
}

func (p *Portal) apiMembers(w http.ResponseWriter, r *http.Request, v *Visitor) {
	l, err := p.dev.Members(r.Context(), v.Dev.ID, r.PathValue("org"))
	p.answer(w, r, http.StatusOK, nonNil(l), err)
}

func (p *Portal) apiSetRole(w http.ResponseWriter, r *http.Request, v *Visitor, in roleBody) {
	err := p.dev.SetRole(r.Context(), v.Dev.ID, r.PathValue("org"), r.PathValue("dev"), in.Role)
	p.answer(w, r, http.StatusNoContent, nil, err)
}

func (p *Portal) apiRemoveMember(w http.ResponseWriter, r *http.Request, v *Visitor) {
	err := p.dev.RemoveMember(r.Context(), v.Dev.ID, r.PathValue("org"), r.PathValue("dev"))
	p.answer(w, r, http.StatusNoContent, nil, err)
}

func (p *Portal) apiInvitations(w http.ResponseWriter, r *http.Request, v *Visitor) {
	l, err := p.dev.Invitations(r.Context(), v.Dev.ID, r.PathValue("org"))
	p.answer(w, r, http.StatusOK, nonNil(l), err)
}

func (p *Portal) apiInvite(w http.ResponseWriter, r *http.Request, v *Visitor, in inviteBody) {
	org := r.PathValue("org")
	tok, err := p.dev.Invite(r.Context(), v.Dev.ID, org, in.Email, in.Role)
	if err != nil {
		p.apiFail(w, r, err)
		return
	}
	for i := range v.Orgs {
		if v.Orgs[i].ID == org {
			v.Org = &v.Orgs[i]
		}
	}
	p.sendInvite(r, v, developer.NormalizeEmail(in.Email), tok)
	writeJSON(w, http.StatusCreated, map[string]string{"status": "invitation_sent", "email": developer.NormalizeEmail(in.Email), "role": in.Role})
}

func (p *Portal) apiAcceptInvite(w http.ResponseWriter, r *http.Request, v *Visitor, c credentials) {
	m, err := p.dev.AcceptInvite(r.Context(), v.Dev.ID, c.Token)
	p.answer(w, r, http.StatusOK, m, err)
}

func (p *Portal) apiTerms(w http.ResponseWriter, r *http.Request, v *Visitor) {
	t, err := p.dev.CurrentTerms(r.Context())
	if err != nil {
		p.apiFail(w, r, err)
		return
	}
	at, err := p.dev.AcceptedTerms(r.Context(), v.Dev.ID, t.Version)
	if err != nil {
		p.apiFail(w, r, err)
		return
	}
	out := map[string]any{"version": t.Version, "text": t.Text, "created_at": t.CreatedAt, "accepted": !at.IsZero()}
	if !at.IsZero() {
		out["accepted_at"] = at
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *Portal) apiAcceptTerms(w http.ResponseWriter, r *http.Request, v *Visitor, in termsVersion) {
	if err := p.dev.AcceptTerms(r.Context(), v.Dev.ID, in.Version); err != nil {
		p.apiFail(w, r, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindConsent, Description: "developer accepted terms", Subject: "developer:" + v.Dev.ID})
	w.WriteHeader(http.StatusNoContent)
}

func (p *Portal) apiSetTerms(w http.ResponseWriter, r *http.Request, v *Visitor, in termsText) {
	t, err := p.dev.SetTerms(r.Context(), v.Dev.ID, in.Text)
	p.answer(w, r, http.StatusCreated, t, err)
}

// ensure web is used (sessions are web.Sessions).
var _ web.SessionStore = (*developer.Sessions)(nil)
