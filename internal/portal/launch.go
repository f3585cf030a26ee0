package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/sandbox/dataset"
	"github.com/lapis-health/lapis/internal/web"
)

// Test launches: a developer launches one of their organisation's
// sandbox apps against the sandbox as a sandbox patient or practitioner.
//
//	GET  /portal/launch?client=ID          the launch form
//	POST /portal/launch                    client, mode (ehr|standalone), login, patient
//	GET  /portal/api/sandbox/logins        the sandbox logins (public, synthetic)
//	POST /portal/api/launch                {client_id, mode, login, patient?}
//
// EHR launch: the portal stores a launch context in the sandbox's
// authorization server for the chosen login (and patient) and sends the
// browser to the app's launch URI with iss and launch. Standalone: the
// portal makes the authorization request (the app's first redirect URI,
// its scopes, state, aud and PKCE S256) and shows the code_verifier and a
// curl command before the developer goes on to the sandbox sign-in page.
// The sandbox's logins are public synthetic users; the portal shows their
// password rather than signing anyone in.

// LaunchEnv is the environment test launches run in.
const LaunchEnv = "sandbox"

// launchLifetime is how long a test launch's launch value is usable.
const launchLifetime = 5 * time.Minute

// Launch modes.
const (
	launchEHR        = "ehr"
	launchStandalone = "standalone"
)

func (p *Portal) launchRoutes() {
	p.mux.HandleFunc("GET /portal/launch", p.page(p.launchPage))
	p.mux.HandleFunc("POST /portal/launch", p.page(p.launchPost))
	p.mux.HandleFunc("GET /portal/api/sandbox/logins", p.api(p.apiSandboxLogins))
	p.mux.HandleFunc("POST /portal/api/launch", p.api(withBody(p.apiLaunch)))
}

// launchLogin is a sandbox login as the portal shows it.
type launchLogin struct {
	Username string `json:"username"`
	Password string `json:"password"`
	FHIRUser string `json:"fhir_user"`
	// Patient is the login's own patient id ("" for a practitioner).
	Patient string `json:"patient,omitempty"`
}

func sandboxLogins() []launchLogin {
	var out []launchLogin
	for _, l := range dataset.Logins() {
		pid, _ := strings.CutPrefix(l.FHIRUser, "Patient/")
		if !strings.HasPrefix(l.FHIRUser, "Patient/") {
			pid = ""
		}
		out = append(out, launchLogin{Username: l.Username, Password: l.Password, FHIRUser: l.FHIRUser, Patient: pid})
	}
	return out
}

// launchInput is a test launch request.
type launchInput struct {
	ClientID string `json:"client_id"`
	Mode     string `json:"mode"`
	Login    string `json:"login"`
	Patient  string `json:"patient"`
}

// launchResult is a prepared test launch.
type launchResult struct {
	Mode string `json:"mode"`
	// URL is where the browser goes: the app's launch URI with iss and
	// launch (EHR), or the sandbox's authorization request (standalone).
	URL string `json:"url"`
	// ISS is the sandbox's FHIR base (the issuer and aud).
	ISS string `json:"iss"`
	// Login and Password are the sandbox login to sign in with.
	Login    string `json:"login"`
	Password string `json:"password"`
	Patient  string `json:"patient,omitempty"`
	// Standalone only: the request's parameters and the PKCE verifier
	// the developer needs to exchange the code.
	State               string `json:"state,omitempty"`
	RedirectURI         string `json:"redirect_uri,omitempty"`
	Scope               string `json:"scope,omitempty"`
	CodeVerifier        string `json:"code_verifier,omitempty"`
	CodeChallenge       string `json:"code_challenge,omitempty"`
	CodeChallengeMethod string `json:"code_challenge_method,omitempty"`
	TokenURL            string `json:"token_url,omitempty"`
	Curl                string `json:"curl,omitempty"`
	// AppName is the app's display name.
	AppName string `json:"app_name"`
}

// launchError is a test launch the developer must correct (400).
type launchError struct{ msg string }

func (e *launchError) Error() string { return e.msg }

// launchApp returns the sandbox client id when an organisation of v owns
// it, else errNoCredential.
func (p *Portal) launchApp(ctx context.Context, v *Visitor, clientID string) (*actCredential, error) {
	if clientID == "" {
		return nil, errNoCredential
	}
	return p.actCredentialOf(ctx, v, LaunchEnv, clientID, "")
}

// startLaunch finds the visitor's sandbox app in.ClientID (errNoCredential
// when there is none) and prepares its launch (a *launchError for a bad
// input, returned with the app).
func (p *Portal) startLaunch(ctx context.Context, v *Visitor, in launchInput) (*actCredential, *launchResult, error) {
	c, err := p.launchApp(ctx, v, in.ClientID)
	if err != nil {
		return nil, nil, err
	}
	res, err := p.prepareLaunch(ctx, c, in)
	return c, res, err
}

// prepareLaunch checks in and prepares the launch of c.
func (p *Portal) prepareLaunch(ctx context.Context, c *actCredential, in launchInput) (*launchResult, error) {
	cl := c.Client
	if c.Env.Auth == nil {
		return nil, &launchError{"test launches are not available on this server"}
	}
	if cl.Type == authdb.Backend {
		// An asymmetric app may run the code flow, but its token request
		// needs its own signed assertion, which the portal cannot make.
		return nil, &launchError{"test launches are for public and confidential apps: a backend service gets tokens with client_credentials, and an asymmetric app (a backend client with a redirect URI) exchanges its code with its own signed assertion"}
	}
	if !cl.SuspendedAt.IsZero() {
		return nil, &launchError{"the app is suspended"}
	}
	var login *launchLogin
	for _, l := range sandboxLogins() {
		if l.Username == in.Login {
			login = &l
		}
	}
	if login == nil {
		return nil, &launchError{"choose one of the sandbox logins (GET /portal/api/sandbox/logins)"}
	}
	base := strings.TrimSuffix(c.Env.FHIRBase, "/")
	res := &launchResult{Mode: in.Mode, ISS: base, Login: login.Username, Password: login.Password, AppName: cl.Name}
	switch in.Mode {
	case launchEHR:
		if cl.LaunchURI == "" {
			return nil, &launchError{"the app has no launch URI; register one for an EHR launch, or use a standalone launch"}
		}
		patient := login.Patient
		if patient == "" {
			patient = in.Patient
			if !slices.Contains(dataset.PatientIDs(), patient) {
				return nil, &launchError{"choose the sandbox patient in context: one of " + strings.Join(dataset.PatientIDs(), ", ")}
			}
		}
		launch, err := c.Env.Auth.CreateLaunch(ctx, cl.ID, login.Username, patient, "", launchLifetime)
		if errors.Is(err, authdb.ErrNotFound) {
			return nil, &launchError{"the sandbox has no user " + login.Username + " (an operator can load the sandbox dataset)"}
		}
		if err != nil {
			return nil, err
		}
		res.Patient = patient
		res.URL = web.RedirectTo(cl.LaunchURI, url.Values{"iss": {base}, "launch": {launch}})
	case launchStandalone:
		if len(cl.RedirectURIs) == 0 {
			return nil, &launchError{"the app has no redirect URI; register one for a standalone launch"}
		}
		verifier := randomURLSafe(48)
		sum := sha256.Sum256([]byte(verifier))
		res.State = randomURLSafe(16)
		res.RedirectURI = cl.RedirectURIs[0]
		res.Scope = strings.Join(cl.Scopes, " ")
		res.CodeVerifier = verifier
		res.CodeChallenge = base64.RawURLEncoding.EncodeToString(sum[:])
		res.CodeChallengeMethod = "S256"
		res.TokenURL = base + "/auth/token"
		res.URL = base + oauth.PathAuthorize + "?" + url.Values{
			"response_type": {"code"}, "client_id": {cl.ID}, "redirect_uri": {res.RedirectURI}, "scope": {res.Scope},
			"state": {res.State}, "aud": {base}, "code_challenge": {res.CodeChallenge}, "code_challenge_method": {"S256"},
		}.Encode()
		res.Curl = tokenCurl(res.TokenURL, cl.ID, res.RedirectURI, verifier, cl.Type == authdb.Confidential)
	default:
		return nil, &launchError{"mode must be ehr or standalone"}
	}
	return res, nil
}

// tokenCurl is the curl command that exchanges the code by hand.
func tokenCurl(tokenURL, clientID, redirectURI, verifier string, confidential bool) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	var b strings.Builder
	b.WriteString("curl -s " + q(tokenURL) + " \\\n")
	if confidential {
		b.WriteString("  -u " + q(clientID+":YOUR_CLIENT_SECRET") + " \\\n")
	} else {
		b.WriteString("  --data-urlencode " + q("client_id="+clientID) + " \\\n")
	}
	b.WriteString("  -d grant_type=authorization_code \\\n")
	b.WriteString("  --data-urlencode 'code=THE_CODE_FROM_YOUR_REDIRECT' \\\n")
	b.WriteString("  --data-urlencode " + q("redirect_uri="+redirectURI) + " \\\n")
	b.WriteString("  --data-urlencode " + q("code_verifier="+verifier))
	return b.String()
}

// randomURLSafe returns n random bytes, base64url-encoded.
func randomURLSafe(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// launchView is the launch template's data.
type launchView struct {
	App      *actCredential
	Logins   []launchLogin
	Patients []string
	Result   *launchResult
	// Form echoes the last choice.
	Form launchInput
}

func (p *Portal) launchPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	c, err := p.launchApp(r.Context(), v, r.URL.Query().Get("client"))
	if errors.Is(err, errNoCredential) {
		p.message(w, r, v, http.StatusNotFound, "Not found", "There is no such sandbox app in your organisations.")
		return
	}
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	mode := launchStandalone
	if c.Client.LaunchURI != "" {
		mode = launchEHR
	}
	p.renderLaunch(w, r, v, http.StatusOK, c, launchInput{ClientID: c.ID, Mode: mode, Login: "practitioner"}, nil, "")
}

func (p *Portal) renderLaunch(w http.ResponseWriter, r *http.Request, v *Visitor, status int, c *actCredential, in launchInput, res *launchResult, msg string) {
	p.render(w, r, status, "launch", pageData{Title: "Test launch of " + c.Name, V: v, Nav: "apps", Error: msg,
		Data: launchView{App: c, Logins: sandboxLogins(), Patients: dataset.PatientIDs(), Result: res, Form: in}}, nil)
}

func (p *Portal) launchPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	f := r.PostForm
	in := launchInput{ClientID: f.Get("client"), Mode: f.Get("mode"), Login: f.Get("login"), Patient: f.Get("patient")}
	c, res, err := p.startLaunch(r.Context(), v, in)
	var le *launchError
	switch {
	case errors.Is(err, errNoCredential):
		p.message(w, r, v, http.StatusNotFound, "Not found", "There is no such sandbox app in your organisations.")
		return
	case errors.As(err, &le):
		p.renderLaunch(w, r, v, http.StatusBadRequest, c, in, nil, "The launch could not start: "+le.msg+".")
		return
	case err != nil:
		p.internalError(w, r, err)
		return
	}
	p.recordLaunch(r, v, c, res)
	if res.Mode == launchEHR {
		http.Redirect(w, r, res.URL, http.StatusSeeOther)
		return
	}
	p.renderLaunch(w, r, v, http.StatusOK, c, in, res, "")
}

// recordLaunch audits a test launch (no secrets: not the launch value or
// the verifier).
func (p *Portal) recordLaunch(r *http.Request, v *Visitor, c *actCredential, res *launchResult) {
	p.record(r, audit.Event{Kind: audit.KindAdmin, Action: "E", Subject: "developer:" + v.Dev.ID,
		Description: "developer test launch (" + res.Mode + ") of sandbox app " + c.ID + " as " + res.Login})
}

func (p *Portal) apiSandboxLogins(w http.ResponseWriter, _ *http.Request, _ *Visitor) {
	writeJSON(w, http.StatusOK, map[string]any{"environment": LaunchEnv, "logins": sandboxLogins(), "patients": dataset.PatientIDs()})
}

func (p *Portal) apiLaunch(w http.ResponseWriter, r *http.Request, v *Visitor, in launchInput) {
	c, res, err := p.startLaunch(r.Context(), v, in)
	var le *launchError
	switch {
	case errors.Is(err, errNoCredential):
		writeError(w, http.StatusNotFound, "not_found", "no such sandbox app in your organisations")
		return
	case errors.As(err, &le):
		writeError(w, http.StatusBadRequest, "invalid_request", le.msg)
		return
	case err != nil:
		p.apiInternal(w, r, err)
		return
	}
	p.recordLaunch(r, v, c, res)
	writeJSON(w, http.StatusOK, res)
}
