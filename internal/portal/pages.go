package portal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/web"
)

// routes registers every page and API route. Later portal files add
// theirs here.
func (p *Portal) routes() {
	m := p.mux
	m.HandleFunc("GET /portal/{$}", p.page(p.dashboard))
	m.HandleFunc("GET /portal/signup", p.public(p.signupPage))
	m.HandleFunc("POST /portal/signup", p.public(p.signupPost))
	m.HandleFunc("GET /portal/login", p.public(p.loginPage))
	m.HandleFunc("POST /portal/login", p.public(p.loginPost))
	m.HandleFunc("POST /portal/login/totp", p.public(p.loginTOTPPost))
	m.HandleFunc("POST /portal/logout", p.page(p.logoutPost))
	m.HandleFunc("GET /portal/verify", p.public(p.verifyPage))
	m.HandleFunc("POST /portal/verify", p.public(p.verifyPost))
	m.HandleFunc("POST /portal/verify/resend", p.public(p.resendPost))
	m.HandleFunc("GET /portal/reset", p.public(p.resetPage))
	m.HandleFunc("POST /portal/reset", p.public(p.resetPost))
	m.HandleFunc("GET /portal/account", p.page(p.accountPage))
	m.HandleFunc("POST /portal/account/totp/enroll", p.page(p.totpEnrollPost))
	m.HandleFunc("POST /portal/account/totp/confirm", p.page(p.totpConfirmPost))
	m.HandleFunc("POST /portal/account/totp/disable", p.page(p.totpDisablePost))
	m.HandleFunc("POST /portal/account/tokens", p.page(p.tokenCreatePost))
	m.HandleFunc("POST /portal/account/tokens/revoke", p.page(p.tokenRevokePost))
	m.HandleFunc("GET /portal/org", p.page(p.orgPage))
	m.HandleFunc("POST /portal/org/create", p.page(p.orgCreatePost))
	m.HandleFunc("POST /portal/org/invite", p.page(p.orgInvitePost))
	m.HandleFunc("POST /portal/org/role", p.page(p.orgRolePost))
	m.HandleFunc("POST /portal/org/remove", p.page(p.orgRemovePost))
	m.HandleFunc("GET /portal/invite", p.page(p.invitePage))
	m.HandleFunc("POST /portal/invite", p.page(p.invitePost))
	m.HandleFunc("GET /portal/terms", p.page(p.termsPage))
	m.HandleFunc("POST /portal/terms", p.page(p.termsPost))
	m.HandleFunc("GET /portal/admin/terms", p.page(p.operator(p.adminTermsPage)))
	m.HandleFunc("POST /portal/admin/terms", p.page(p.operator(p.adminTermsPost)))
	m.HandleFunc("/portal/", func(w http.ResponseWriter, r *http.Request) {
		p.message(w, r, nil, http.StatusNotFound, "Not found", "There is no such page.")
	})
	p.activityRoutes()
	p.launchRoutes()
	p.apiRoutes()
	p.appRoutes()
}

// public wraps a page anyone may see: it ensures an (anonymous) session
// for the form's CSRF token and checks that token on POST.
func (p *Portal) public(h func(http.ResponseWriter, *http.Request, *web.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if err := web.ParseForm(w, r); err != nil {
				p.message(w, r, nil, http.StatusBadRequest, "Bad request", "The form could not be read.")
				return
			}
		}
		sess, err := p.sessions.Ensure(w, r)
		if err != nil {
			p.internalError(w, r, err)
			return
		}
		if r.Method == http.MethodPost && !web.CheckCSRF(sess, r) {
			p.message(w, r, nil, http.StatusForbidden, "Form expired", "The form was stale or not sent from this site. Go back, reload the page and try again.")
			return
		}
		h(w, r, sess)
	}
}

// operator restricts a page to portal operators.
func (p *Portal) operator(h func(http.ResponseWriter, *http.Request, *Visitor)) func(http.ResponseWriter, *http.Request, *Visitor) {
	return func(w http.ResponseWriter, r *http.Request, v *Visitor) {
		if !v.Dev.Operator {
			p.message(w, r, v, http.StatusForbidden, "Operators only", "This page is for the portal's operators.")
			return
		}
		h(w, r, v)
	}
}

// fail renders a domain error on a page (or an internal error).
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, v *Visitor, err error) {
	st, _, desc, ok := domainStatus(err)
	if !ok {
		p.internalError(w, r, err)
		return
	}
	p.message(w, r, v, st, http.StatusText(st), capitalize(desc)+".")
}

// invalidSentence returns the message of a developer.InvalidError as the
// sentence a page shows (capitalized, with a full stop); ok is false for
// any other error.
func invalidSentence(err error) (string, bool) {
	var ie *developer.InvalidError
	if !errors.As(err, &ie) {
		return "", false
	}
	return capitalize(ie.Msg) + ".", true
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// safeNext keeps a post-login destination only when it is a portal path.
func (p *Portal) safeNext(next string) string {
	if strings.HasPrefix(next, p.Path("/")) && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return p.Path("/")
}

func (p *Portal) dashboard(w http.ResponseWriter, r *http.Request, v *Visitor) {
	p.render(w, r, http.StatusOK, "dashboard", pageData{Title: "Dashboard", V: v, Nav: "dashboard"}, nil)
}

type signupData struct{ Email, Name, Org string }

func (p *Portal) signupPage(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	if sess.LoggedIn() {
		http.Redirect(w, r, p.Path("/"), http.StatusFound)
		return
	}
	p.render(w, r, http.StatusOK, "signup", pageData{Title: "Create an account", Data: signupData{}}, sess)
}

func (p *Portal) signupPost(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	if p.limited(w, r) {
		return
	}
	f := r.PostForm
	data := signupData{Email: f.Get("email"), Name: f.Get("name"), Org: f.Get("organization")}
	if f.Get("password") != f.Get("password2") {
		p.render(w, r, http.StatusBadRequest, "signup", pageData{Title: "Create an account", Error: "The passwords do not match.", Data: data}, sess)
		return
	}
	if err := p.signUp(r, data.Email, data.Name, f.Get("password"), data.Org); err != nil {
		st, _, desc, ok := domainStatus(err)
		if !ok {
			p.internalError(w, r, err)
			return
		}
		p.render(w, r, st, "signup", pageData{Title: "Create an account", Error: capitalize(desc) + ".", Data: data}, sess)
		return
	}
	p.message(w, r, nil, http.StatusOK, "Check your email", "We sent a link to "+developer.NormalizeEmail(data.Email)+". Open it to verify your address, then log in.")
}

// signUp creates the account and mails the verification link. An address
// that already has an account gets the same answer (no enumeration of
// accounts); its owner is mailed a notice instead of a link.
func (p *Portal) signUp(r *http.Request, email, name, password, org string) error {
	d, tok, err := p.dev.SignUp(r.Context(), email, name, password, org)
	if errors.Is(err, developer.ErrExists) {
		p.send(r.Context(), developer.NormalizeEmail(email), "Sign-up attempt on the Lapis developer portal",
			"Someone tried to create a developer portal account with this email address, which already has one.\n\n"+
				"If it was you, log in at "+p.link("/login", nil)+" or choose a new password at "+p.link("/reset", nil)+".\n"+
				"If it was not you, ignore this message; your account is unchanged.\n")
		return nil
	}
	if err != nil {
		return err
	}
	p.sendVerification(r, d.Email, tok)
	p.record(r, audit.Event{Kind: audit.KindAdmin, Action: "C", Description: "developer signed up", Subject: "developer:" + d.ID})
	return nil
}

func (p *Portal) sendVerification(r *http.Request, email, tok string) {
	p.send(r.Context(), email, "Verify your email address for the Lapis developer portal",
		"Open this link to verify your email address:\n\n"+p.link("/verify", url.Values{"token": {tok}})+
			"\n\nThe link is valid for 48 hours. If you did not sign up, ignore this message.\n")
}

type loginData struct{ Email, Next, MFA string }

func (p *Portal) loginPage(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	if sess.LoggedIn() {
		http.Redirect(w, r, p.safeNext(r.URL.Query().Get("next")), http.StatusFound)
		return
	}
	p.render(w, r, http.StatusOK, "login", pageData{Title: "Log in", Data: loginData{Next: r.URL.Query().Get("next")}}, sess)
}

func (p *Portal) loginPost(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	if p.limited(w, r) {
		return
	}
	f := r.PostForm
	data := loginData{Email: f.Get("email"), Next: f.Get("next")}
	res, err := p.dev.Login(r.Context(), data.Email, f.Get("password"), httpx.ClientAddr(r))
	if err != nil {
		p.loginFailed(w, r, sess, data, err)
		return
	}
	if res.SecondFactor != "" {
		data.MFA = res.SecondFactor
		p.render(w, r, http.StatusOK, "totp", pageData{Title: "Two-step verification", Data: data}, sess)
		return
	}
	p.completeLogin(w, r, sess, res.Developer, data.Next)
}

func (p *Portal) loginTOTPPost(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	if p.limited(w, r) {
		return
	}
	f := r.PostForm
	data := loginData{Next: f.Get("next"), MFA: f.Get("mfa")}
	d, err := p.dev.LoginSecondFactor(r.Context(), data.MFA, f.Get("code"), httpx.ClientAddr(r))
	if errors.Is(err, developer.ErrBadLogin) {
		p.record(r, audit.Event{Kind: audit.KindLoginFailure, Outcome: audit.OutcomeMinor, Description: "developer second factor failed"})
		p.render(w, r, http.StatusUnauthorized, "totp", pageData{Title: "Two-step verification", Error: "The code is not valid.", Data: data}, sess)
		return
	}
	if err != nil {
		p.loginFailed(w, r, sess, loginData{Next: data.Next}, err)
		return
	}
	p.completeLogin(w, r, sess, d, data.Next)
}

func (p *Portal) loginFailed(w http.ResponseWriter, r *http.Request, sess *web.Session, data loginData, err error) {
	st, _, desc, ok := domainStatus(err)
	if !ok {
		p.internalError(w, r, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindLoginFailure, Outcome: audit.OutcomeMinor, Description: "developer login failed"})
	d := pageData{Title: "Log in", Error: capitalize(desc) + ".", Data: data}
	if errors.Is(err, developer.ErrNotVerified) {
		d.Error = "Your email address is not verified yet. Open the link we sent you, or send a new one below."
		d.Notice = "resend"
	}
	p.render(w, r, st, "login", d, sess)
}

// completeLogin binds the session to the developer with a new cookie
// value and CSRF token (no session fixation).
func (p *Portal) completeLogin(w http.ResponseWriter, r *http.Request, sess *web.Session, d *developer.Developer, next string) {
	if err := p.sessions.LogIn(w, r, sess, d.ID); err != nil {
		p.internalError(w, r, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindLogin, Description: "developer login", Subject: "developer:" + d.ID})
	http.Redirect(w, r, p.safeNext(next), http.StatusSeeOther)
}

func (p *Portal) logoutPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	if err := p.sessions.LogOut(w, r, v.Session); err != nil {
		p.internalError(w, r, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindLogout, Description: "developer logout", Subject: "developer:" + v.Dev.ID})
	http.Redirect(w, r, p.Path("/login"), http.StatusSeeOther)
}

// verifyPage asks for a click before using the token (mail scanners that
// fetch links must not consume it).
func (p *Portal) verifyPage(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	p.render(w, r, http.StatusOK, "verify", pageData{Title: "Verify your email address", Data: r.URL.Query().Get("token")}, sess)
}

func (p *Portal) verifyPost(w http.ResponseWriter, r *http.Request, _ *web.Session) {
	d, err := p.dev.Verify(r.Context(), r.PostForm.Get("token"))
	if err != nil {
		p.fail(w, r, nil, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindAdmin, Action: "U", Description: "developer email verified", Subject: "developer:" + d.ID})
	p.render(w, r, http.StatusOK, "verified", pageData{Title: "Email address verified", Data: d.Email}, nil)
}

func (p *Portal) resendPost(w http.ResponseWriter, r *http.Request, _ *web.Session) {
	if p.limited(w, r) {
		return
	}
	email := r.PostForm.Get("email")
	tok, err := p.dev.ResendVerification(r.Context(), email)
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	if tok != "" {
		p.sendVerification(r, developer.NormalizeEmail(email), tok)
	}
	p.message(w, r, nil, http.StatusOK, "Check your email", "If an unverified account uses this address, we sent it a new link.")
}

func (p *Portal) resetPage(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	p.render(w, r, http.StatusOK, "reset", pageData{Title: "Reset your password", Data: r.URL.Query().Get("token")}, sess)
}

func (p *Portal) resetPost(w http.ResponseWriter, r *http.Request, sess *web.Session) {
	if p.limited(w, r) {
		return
	}
	f := r.PostForm
	if tok := f.Get("token"); tok != "" {
		if f.Get("password") != f.Get("password2") {
			p.render(w, r, http.StatusBadRequest, "reset", pageData{Title: "Reset your password", Error: "The passwords do not match.", Data: tok}, sess)
			return
		}
		d, err := p.dev.Reset(r.Context(), tok, f.Get("password"))
		if err != nil {
			if msg, ok := invalidSentence(err); ok {
				p.render(w, r, http.StatusBadRequest, "reset", pageData{Title: "Reset your password", Error: msg, Data: tok}, sess)
				return
			}
			p.fail(w, r, nil, err)
			return
		}
		p.record(r, audit.Event{Kind: audit.KindAdmin, Action: "U", Description: "developer password reset", Subject: "developer:" + d.ID})
		p.message(w, r, nil, http.StatusOK, "Password changed", "Your password is changed. Log in with the new one.")
		return
	}
	p.requestReset(r, f.Get("email"))
	p.message(w, r, nil, http.StatusOK, "Check your email", "If an account uses this address, we sent it a link to choose a new password.")
}

// requestReset mails a reset link when the account exists (the answer is
// the same either way).
func (p *Portal) requestReset(r *http.Request, email string) {
	tok, err := p.dev.RequestReset(r.Context(), email)
	if err != nil {
		p.cfg.Logger.ErrorContext(r.Context(), "portal: reset", "error", err.Error())
		return
	}
	if tok != "" {
		p.send(r.Context(), developer.NormalizeEmail(email), "Reset your Lapis developer portal password",
			"Open this link to choose a new password:\n\n"+p.link("/reset", url.Values{"token": {tok}})+
				"\n\nThe link is valid for one hour. If you did not ask for it, ignore this message.\n")
	}
}

type accountData struct {
	Tokens []developer.APIToken
	// NewToken is a token value shown once.
	NewToken string
	// Enroll is a TOTP enrolment in progress; QR its image (data: URI).
	Enroll *developer.Enrollment
	QR     template.URL
	// Recovery are new recovery codes, shown once.
	Recovery []string
}

func (p *Portal) accountPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	p.renderAccount(w, r, v, http.StatusOK, accountData{}, "", "")
}

func (p *Portal) renderAccount(w http.ResponseWriter, r *http.Request, v *Visitor, status int, d accountData, errMsg, notice string) {
	toks, err := p.dev.APITokens(r.Context(), v.Dev.ID)
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	d.Tokens = toks
	p.render(w, r, status, "account", pageData{Title: "Account", V: v, Nav: "account", Data: d, Error: errMsg, Notice: notice}, nil)
}

func (p *Portal) totpEnrollPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	e, err := p.dev.EnrollTOTP(r.Context(), v.Dev.ID)
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	d := accountData{Enroll: e}
	if img, err := e.Key.Image(200, 200); err == nil {
		var buf bytes.Buffer
		if png.Encode(&buf, img) == nil {
			d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()))
		}
	}
	p.renderAccount(w, r, v, http.StatusOK, d, "", "")
}

func (p *Portal) totpConfirmPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	codes, err := p.dev.ConfirmTOTP(r.Context(), v.Dev.ID, r.PostForm.Get("code"))
	if msg, ok := invalidSentence(err); ok {
		p.renderAccount(w, r, v, http.StatusBadRequest, accountData{}, msg+" Start again.", "")
		return
	}
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	v.Dev.TOTP = true
	p.recordTOTP(r, v, true)
	p.renderAccount(w, r, v, http.StatusOK, accountData{Recovery: codes}, "", "Two-step verification is on.")
}

func (p *Portal) totpDisablePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	err := p.dev.DisableTOTP(r.Context(), v.Dev.ID, r.PostForm.Get("password"))
	if errors.Is(err, developer.ErrBadLogin) {
		p.renderAccount(w, r, v, http.StatusUnauthorized, accountData{}, "The password is wrong.", "")
		return
	}
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	v.Dev.TOTP = false
	p.recordTOTP(r, v, false)
	p.renderAccount(w, r, v, http.StatusOK, accountData{}, "", "Two-step verification is off.")
}

// recordTOTP audits that the developer v turned two-step verification
// on (enrolled) or off.
func (p *Portal) recordTOTP(r *http.Request, v *Visitor, on bool) {
	desc := "developer disabled TOTP"
	if on {
		desc = "developer enrolled TOTP"
	}
	p.record(r, audit.Event{Kind: audit.KindAdmin, Action: "U", Description: desc, Subject: "developer:" + v.Dev.ID})
}

// recordToken audits that the developer v created (action "C") or
// revoked ("D") the portal API token id (its id, never its value).
func (p *Portal) recordToken(r *http.Request, v *Visitor, action, id string) {
	desc := "developer revoked portal API token " + id
	if action == "C" {
		desc = "developer created portal API token " + id
	}
	p.record(r, audit.Event{Kind: audit.KindAdmin, Action: action, Description: desc, Subject: "developer:" + v.Dev.ID})
}

func (p *Portal) tokenCreatePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	val, t, err := p.dev.CreateAPIToken(r.Context(), v.Dev.ID, r.PostForm.Get("name"))
	if msg, ok := invalidSentence(err); ok {
		p.renderAccount(w, r, v, http.StatusBadRequest, accountData{}, msg, "")
		return
	}
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	p.recordToken(r, v, "C", t.ID)
	p.renderAccount(w, r, v, http.StatusOK, accountData{NewToken: val}, "", "")
}

func (p *Portal) tokenRevokePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	if err := p.dev.RevokeAPIToken(r.Context(), v.Dev.ID, r.PostForm.Get("id")); err != nil {
		p.fail(w, r, v, err)
		return
	}
	p.recordToken(r, v, "D", r.PostForm.Get("id"))
	p.renderAccount(w, r, v, http.StatusOK, accountData{}, "", "The token is revoked.")
}

type orgData struct {
	Members     []developer.Member
	Invitations []developer.Invitation
	Owner       bool
}

func (p *Portal) orgPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	p.renderOrg(w, r, v, http.StatusOK, "", "")
}

func (p *Portal) renderOrg(w http.ResponseWriter, r *http.Request, v *Visitor, status int, errMsg, notice string) {
	if v.Org == nil {
		p.message(w, r, v, http.StatusNotFound, "No organisation", "You are not a member of this organisation.")
		return
	}
	ms, err := p.dev.Members(r.Context(), v.Dev.ID, v.Org.ID)
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	d := orgData{Members: ms, Owner: v.Org.Role == developer.RoleOwner}
	if d.Owner {
		if d.Invitations, err = p.dev.Invitations(r.Context(), v.Dev.ID, v.Org.ID); err != nil {
			p.fail(w, r, v, err)
			return
		}
	}
	p.render(w, r, status, "org", pageData{Title: v.Org.Name, V: v, Nav: "org", Data: d, Error: errMsg, Notice: notice}, nil)
}

// orgAction runs an organisation action and shows the page again with
// its outcome.
func (p *Portal) orgAction(w http.ResponseWriter, r *http.Request, v *Visitor, err error, notice string) {
	if v.Org == nil {
		p.message(w, r, v, http.StatusNotFound, "No organisation", "You are not a member of this organisation.")
		return
	}
	if err != nil {
		st, _, desc, ok := domainStatus(err)
		if !ok {
			p.internalError(w, r, err)
			return
		}
		if errors.Is(err, developer.ErrExists) {
			desc = "this person is a member already"
		}
		// Refresh the membership (a member may have left).
		if nv, e := p.visitor(r, false); e == nil && nv != nil && nv.Org != nil {
			v = nv
		} else {
			p.message(w, r, v, st, http.StatusText(st), capitalize(desc)+".")
			return
		}
		p.renderOrg(w, r, v, st, capitalize(desc)+".", "")
		return
	}
	if nv, e := p.visitor(r, false); e == nil && nv != nil && nv.Org != nil {
		p.renderOrg(w, r, nv, http.StatusOK, "", notice)
		return
	}
	http.Redirect(w, r, p.Path("/"), http.StatusSeeOther)
}

func orgID(r *http.Request, v *Visitor) string {
	if v.Org != nil {
		return v.Org.ID
	}
	return r.PostForm.Get("org")
}

func (p *Portal) orgCreatePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	o, err := p.dev.CreateOrg(r.Context(), v.Dev.ID, r.PostForm.Get("name"))
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	http.Redirect(w, r, p.Path("/org")+"?org="+url.QueryEscape(o.ID), http.StatusSeeOther)
}

func (p *Portal) orgInvitePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	email := developer.NormalizeEmail(r.PostForm.Get("email"))
	tok, err := p.dev.Invite(r.Context(), v.Dev.ID, orgID(r, v), email, r.PostForm.Get("role"))
	if err == nil {
		p.sendInvite(r, v, email, tok)
	}
	p.orgAction(w, r, v, err, "Invitation sent to "+email+".")
}

func (p *Portal) sendInvite(r *http.Request, v *Visitor, email, tok string) {
	org := ""
	if v.Org != nil {
		org = v.Org.Name
	}
	p.send(r.Context(), email, "You are invited to "+org+" on the Lapis developer portal",
		v.Dev.Email+" invites you to the organisation \""+org+"\". Sign up or log in with this address, then open:\n\n"+
			p.link("/invite", url.Values{"token": {tok}})+"\n\nThe invitation is valid for 7 days.\n")
	p.record(r, audit.Event{Kind: audit.KindAdmin, Action: "C", Description: "developer invited to organisation", Subject: "developer:" + v.Dev.ID})
}

func (p *Portal) orgRolePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	err := p.dev.SetRole(r.Context(), v.Dev.ID, orgID(r, v), r.PostForm.Get("member"), r.PostForm.Get("role"))
	p.orgAction(w, r, v, err, "Role changed.")
}

func (p *Portal) orgRemovePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	err := p.dev.RemoveMember(r.Context(), v.Dev.ID, orgID(r, v), r.PostForm.Get("member"))
	p.orgAction(w, r, v, err, "Member removed.")
}

func (p *Portal) invitePage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	p.render(w, r, http.StatusOK, "invite", pageData{Title: "Join an organisation", V: v, Data: r.URL.Query().Get("token")}, nil)
}

func (p *Portal) invitePost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	m, err := p.dev.AcceptInvite(r.Context(), v.Dev.ID, r.PostForm.Get("token"))
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	http.Redirect(w, r, p.Path("/org")+"?org="+url.QueryEscape(m.ID), http.StatusSeeOther)
}

type termsData struct {
	Terms    *developer.Terms
	Accepted string
}

func (p *Portal) termsPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	t, err := p.dev.CurrentTerms(r.Context())
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	d := termsData{Terms: t}
	if at, err := p.dev.AcceptedTerms(r.Context(), v.Dev.ID, t.Version); err == nil && !at.IsZero() {
		d.Accepted = at.Format("2006-01-02 15:04 UTC")
	}
	p.render(w, r, http.StatusOK, "terms", pageData{Title: "Terms of use", V: v, Nav: "terms", Data: d}, nil)
}

func (p *Portal) termsPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	ver, err := strconv.Atoi(r.PostForm.Get("version"))
	if err != nil {
		p.message(w, r, v, http.StatusBadRequest, "Bad request", "The terms version is missing.")
		return
	}
	if err := p.dev.AcceptTerms(r.Context(), v.Dev.ID, ver); err != nil {
		p.fail(w, r, v, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindConsent, Description: "developer accepted terms v" + strconv.Itoa(ver), Subject: "developer:" + v.Dev.ID})
	http.Redirect(w, r, p.Path("/"), http.StatusSeeOther)
}

func (p *Portal) adminTermsPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	t, err := p.dev.CurrentTerms(r.Context())
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	p.render(w, r, http.StatusOK, "adminterms", pageData{Title: "Terms of use (operators)", V: v, Nav: "admin", Data: t}, nil)
}

func (p *Portal) adminTermsPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	t, err := p.dev.SetTerms(r.Context(), v.Dev.ID, r.PostForm.Get("text"))
	if msg, ok := invalidSentence(err); ok {
		cur, _ := p.dev.CurrentTerms(r.Context())
		p.render(w, r, http.StatusBadRequest, "adminterms", pageData{Title: "Terms of use (operators)", V: v, Nav: "admin", Data: cur, Error: msg}, nil)
		return
	}
	if err != nil {
		p.fail(w, r, v, err)
		return
	}
	p.record(r, audit.Event{Kind: audit.KindAdmin, Action: "U", Description: "terms of use v" + strconv.Itoa(t.Version) + " published", Subject: "developer:" + v.Dev.ID})
	p.render(w, r, http.StatusOK, "adminterms", pageData{Title: "Terms of use (operators)", V: v, Nav: "admin", Data: t, Notice: "Version " + strconv.Itoa(t.Version) + " is published; everyone must accept it."}, nil)
}
