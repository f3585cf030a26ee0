package portal

// Apps: an organisation's OAuth clients in each environment. Sandbox apps
// are created at once by the wizard (review.Presets); production clients
// only when an operator approves a production access request (review.go).
// Client secrets are shown once, on the page or in the JSON answer that
// made them, with a download of the same data (a data: URL built into
// that one answer); the portal never stores them. Rotation keeps the old
// secret valid for the chosen overlap (admin.RotateClientSecret).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/review"
	"github.com/lapis-health/lapis/internal/webhook"
)

// Environment names.
const (
	EnvProduction = "production"
	EnvSandbox    = "sandbox"
)

// maxDescription bounds an app description (characters).
const maxDescription = 1000

// initApps builds the app metadata store, the review store (whose
// decisions send webhooks) and, unless given, the webhook service.
func (p *Portal) initApps(ctx context.Context) error {
	m, err := newMetaStore(ctx, p.cfg.DB)
	if err != nil {
		return err
	}
	p.meta = m
	p.hooks = p.cfg.Webhooks
	if p.hooks == nil {
		if p.hooks, err = webhook.New(ctx, p.cfg.DB, webhook.Config{KEK: p.cfg.KEK, Logger: p.cfg.Logger, Now: p.cfg.Now}); err != nil {
			return err
		}
	}
	rc := review.Config{SLA: p.cfg.ReviewSLA, Now: p.cfg.Now, Logger: p.cfg.Logger, OnDecision: p.onDecision}
	if a, ok := p.cfg.Audit.(review.Auditor); ok {
		rc.Audit = a
	}
	p.reviews, err = review.New(ctx, p.cfg.DB, rc)
	return err
}

// Webhooks is the portal's webhook service (the server starts and closes
// its delivery worker).
func (p *Portal) Webhooks() *webhook.Service { return p.hooks }

// Reviews is the portal's store of production access requests.
func (p *Portal) Reviews() *review.Store { return p.reviews }

// StatusHook returns the admin.Config.OnStatus hook of environment env:
// suspensions and resumptions of an organisation's client or key become
// app.suspended / app.resumed webhooks of that organisation.
func (p *Portal) StatusHook(env string) func(ctx context.Context, c admin.StatusChange) error {
	return func(ctx context.Context, c admin.StatusChange) error {
		org, ok := strings.CutPrefix(c.Owner, "org:")
		if !ok || p.hooks == nil {
			return nil
		}
		ev := webhook.AppSuspended
		if c.Status == "resumed" {
			ev = webhook.AppResumed
		}
		data := map[string]string{"kind": c.Kind, "id": c.ID, "environment": env, "status": c.Status}
		if c.Reason != "" {
			data["reason"] = c.Reason
		}
		_, err := p.hooks.Enqueue(ctx, org, ev, data)
		return err
	}
}

// onDecision sends app.approved / app.declined to the organisation.
func (p *Portal) onDecision(ctx context.Context, r *review.Request) error {
	ev := webhook.AppApproved
	if r.Status == review.Declined {
		ev = webhook.AppDeclined
	}
	data := map[string]string{"request_id": r.ID, "status": r.Status, "app_name": r.App.Name}
	if r.SandboxClientID != "" {
		data["sandbox_client_id"] = r.SandboxClientID
	}
	if r.ProductionClientID != "" {
		data["production_client_id"] = r.ProductionClientID
	}
	if r.Reason != "" {
		data["reason"] = r.Reason
	}
	_, err := p.hooks.Enqueue(ctx, r.OrgID, ev, data)
	return err
}

// env returns the environment named name, or nil when none is.
func (p *Portal) env(name string) *Env {
	for i := range p.cfg.Environments {
		if p.cfg.Environments[i].Name == name {
			return &p.cfg.Environments[i]
		}
	}
	return nil
}

// envNames are the configured environments, sandbox first.
func (p *Portal) envNames() []string {
	var out []string
	for _, n := range []string{EnvSandbox, EnvProduction} {
		if p.env(n) != nil {
			out = append(out, n)
		}
	}
	return out
}

// actorCtx is ctx carrying the developer as the actor of admin actions.
func actorCtx(r *http.Request, v *Visitor) context.Context {
	method := "portal_session"
	if v.Session == nil {
		method = "developer_token"
	}
	return admin.WithActor(r.Context(), admin.Actor{ClientID: "lapis-portal", Subject: "developer:" + v.Dev.ID, Method: method,
		Address: httpx.ClientAddr(r), UserAgent: r.UserAgent()})
}

// appError is a refusal of the portal's app, key and webhook actions.
type appError struct {
	status     int
	code, desc string
}

func (e *appError) Error() string { return e.desc }

var (
	errNotFound   = &appError{http.StatusNotFound, "not_found", "not found"}
	errNeedsTerms = &appError{http.StatusForbidden, "terms_not_accepted", "accept the current terms of use before you get credentials"}
	errUnverified = &appError{http.StatusForbidden, "not_verified", "verify your email address before you get credentials"}
	errNoOrg      = &appError{http.StatusBadRequest, "no_organization", "create or join an organisation first"}
)

func errNoEnv(name string) error {
	return &appError{http.StatusServiceUnavailable, "no_environment", "this server has no " + name + " environment"}
}

func invalidf(desc string) error { return &appError{http.StatusBadRequest, "invalid_request", desc} }

func conflict(desc string) error { return &appError{http.StatusConflict, "conflict", desc} }

// canIssue refuses credential issuance to unverified developers and to
// those who have not accepted the current terms.
func canIssue(v *Visitor) error {
	switch {
	case !v.Dev.Verified:
		return errUnverified
	case v.NeedsTerms:
		return errNeedsTerms
	}
	return nil
}

// appStatus maps an error of the app actions to a status, code and a
// description safe to show; ok false for internal errors.
func appStatus(err error) (int, string, string, bool) {
	var ae *appError
	var ai *admin.InvalidError
	var ri *review.InvalidError
	var wi *webhook.InvalidError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code, ae.desc, true
	case errors.As(err, &ai):
		return http.StatusBadRequest, "invalid_request", ai.Error(), true
	case errors.As(err, &ri):
		return http.StatusBadRequest, "invalid_request", ri.Error(), true
	case errors.As(err, &wi):
		return http.StatusBadRequest, "invalid_request", wi.Error(), true
	case errors.Is(err, api.ErrNotFound), errors.Is(err, review.ErrNotFound), errors.Is(err, webhook.ErrNotFound):
		return http.StatusNotFound, "not_found", "not found", true
	case errors.Is(err, review.ErrDecided):
		return http.StatusConflict, "conflict", "the request was already decided", true
	case errors.Is(err, api.ErrConflict):
		return http.StatusConflict, "conflict", err.Error(), true
	}
	return domainStatus(err)
}

// apiAppFail answers an app action's error as JSON.
func (p *Portal) apiAppFail(w http.ResponseWriter, r *http.Request, err error) {
	if st, code, desc, ok := appStatus(err); ok {
		writeError(w, st, code, desc)
		return
	}
	p.apiInternal(w, r, err)
}

// pageFail renders an app action's error as a page.
func (p *Portal) pageFail(w http.ResponseWriter, r *http.Request, v *Visitor, err error) {
	st, _, desc, ok := appStatus(err)
	if !ok {
		p.internalError(w, r, err)
		return
	}
	title := http.StatusText(st)
	if st == http.StatusNotFound {
		title = "Not found"
		desc = "there is no such page"
	}
	p.message(w, r, v, st, title, capitalize(desc)+".")
}

// apiOrg is the organisation of an API path ({org}) the developer is a
// member of; any other is not found.
func apiOrg(r *http.Request, v *Visitor) (*developer.Membership, error) {
	id := r.PathValue("org")
	for i := range v.Orgs {
		if v.Orgs[i].ID == id {
			return &v.Orgs[i], nil
		}
	}
	return nil, errNotFound
}

// pageOrg is the page's organisation (?org= or the first); an
// organisation named that the developer is no member of is not found.
func pageOrg(r *http.Request, v *Visitor) (*developer.Membership, error) {
	if v.Org == nil {
		if r.URL.Query().Get("org") != "" || r.PostForm.Get("org") != "" {
			return nil, errNotFound
		}
		return nil, errNoOrg
	}
	return v.Org, nil
}

// orgHandler is a page or JSON API handler about one organisation of the
// visitor; the error it returns is answered by the adapter (forOrgPage,
// forOrgAPI) it is registered with.
type orgHandler func(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error

// forOrgAPI adapts h to the JSON API: the organisation of the path (apiOrg)
// is looked up first, and an error is answered through apiAppFail.
func (p *Portal) forOrgAPI(h orgHandler) func(http.ResponseWriter, *http.Request, *Visitor) {
	return forOrg(apiOrg, h, func(w http.ResponseWriter, r *http.Request, _ *Visitor, err error) { p.apiAppFail(w, r, err) })
}

// forOrgPage adapts h to the pages: the page's organisation (pageOrg) is
// looked up first, and an error is rendered through pageFail.
func (p *Portal) forOrgPage(h orgHandler) func(http.ResponseWriter, *http.Request, *Visitor) {
	return forOrg(pageOrg, h, p.pageFail)
}

// forOrg adapts h: the organisation is looked up with org first, and an
// error of either is answered by fail.
func forOrg(org func(*http.Request, *Visitor) (*developer.Membership, error), h orgHandler,
	fail func(http.ResponseWriter, *http.Request, *Visitor, error)) func(http.ResponseWriter, *http.Request, *Visitor) {
	return func(w http.ResponseWriter, r *http.Request, v *Visitor) {
		o, err := org(r, v)
		if err == nil {
			err = h(w, r, v, o)
		}
		if err != nil {
			fail(w, r, v, err)
		}
	}
}

// App is an app as the portal shows it: the OAuth client, its
// environment, the portal's metadata and its status.
type App struct {
	api.OAuthClient
	Environment string `json:"environment"`
	Preset      string `json:"preset,omitempty"`
	Description string `json:"description,omitempty"`
	LogoURI     string `json:"logo_uri,omitempty"`
	Homepage    string `json:"homepage,omitempty"`
	// Status is active or suspended.
	Status string `json:"status"`
}

func (p *Portal) appOf(ctx context.Context, env string, c api.OAuthClient) (App, error) {
	m, err := p.meta.get(ctx, env, c.ID)
	if err != nil {
		return App{}, err
	}
	a := App{OAuthClient: c, Environment: env, Preset: m.Preset, Description: m.Description, LogoURI: m.LogoURI, Homepage: m.Homepage, Status: "active"}
	if !c.SuspendedAt.IsZero() {
		a.Status = "suspended"
	}
	return a, nil
}

// orgApps lists the organisation's apps, sandbox first.
func (p *Portal) orgApps(ctx context.Context, org *developer.Membership) ([]App, error) {
	return listOwned(ctx, p, org, func(ctx context.Context, e *Env, owner string) ([]api.OAuthClient, error) {
		return e.Admin.Clients(ctx, api.ClientFilter{Owner: owner})
	}, func(name string, c api.OAuthClient) (App, error) { return p.appOf(ctx, name, c) })
}

// ownedApp returns env's client id when org owns it; anything else
// (unknown environment, client, or another owner) is errNotFound.
func (p *Portal) ownedApp(ctx context.Context, envName, id string, org *developer.Membership) (*App, *Env, error) {
	c, e, err := owned(ctx, p, envName, id, org, (*admin.Service).OAuthClient, func(c *api.OAuthClient) string { return c.Owner })
	if err != nil {
		return nil, nil, err
	}
	a, err := p.appOf(ctx, envName, *c)
	if err != nil {
		return nil, nil, err
	}
	return &a, e, nil
}

// listOwned lists, in every environment (sandbox first), what org owns,
// each item wrapped with the name of its environment.
func listOwned[T, R any](ctx context.Context, p *Portal, org *developer.Membership,
	list func(ctx context.Context, e *Env, owner string) ([]T, error), wrap func(envName string, t T) (R, error)) ([]R, error) {
	out := []R{}
	for _, name := range p.envNames() {
		items, err := list(ctx, p.env(name), org.Owner())
		if err != nil {
			return nil, err
		}
		for _, t := range items {
			r, err := wrap(name, t)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// owned fetches env's object id with get and returns it with its
// environment when org owns it; anything else (unknown environment or
// id, another owner) is errNotFound.
func owned[T any](ctx context.Context, p *Portal, envName, id string, org *developer.Membership,
	get func(*admin.Service, context.Context, string) (*T, error), owner func(*T) string) (*T, *Env, error) {
	e := p.env(envName)
	if e == nil || id == "" {
		return nil, nil, errNotFound
	}
	t, err := get(e.Admin, ctx, id)
	if errors.Is(err, api.ErrNotFound) {
		return nil, nil, errNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	if owner(t) != org.Owner() {
		return nil, nil, errNotFound
	}
	return t, e, nil
}

// AppInput is what the wizard asks for (the JSON body of POST
// /portal/api/orgs/{org}/apps).
type AppInput struct {
	review.AppSpec
	Description string `json:"description,omitempty"`
	LogoURI     string `json:"logo_uri,omitempty"`
	Homepage    string `json:"homepage,omitempty"`
}

// NewApp is the answer of an app's creation: ClientSecret is shown only
// here (confidential apps).
type NewApp struct {
	App          App    `json:"app"`
	ClientSecret string `json:"client_secret,omitempty"`
	// Endpoints are the URLs the app talks to in its environment.
	Endpoints *Endpoints `json:"endpoints,omitempty"`
}

// Endpoints are the URLs a developer configures an app with: the
// environment's FHIR base, its authorization server's endpoints and the
// SMART configuration that lists them.
type Endpoints struct {
	FHIRBase           string `json:"fhir_base"`
	AuthorizeURL       string `json:"authorization_endpoint"`
	TokenURL           string `json:"token_endpoint"`
	SMARTConfiguration string `json:"smart_configuration"`
}

// endpoints are the URLs of the environment envName (nil when it is not
// served).
func (p *Portal) endpoints(envName string) *Endpoints {
	e := p.env(envName)
	if e == nil {
		return nil
	}
	base := strings.TrimSuffix(e.FHIRBase, "/")
	return &Endpoints{FHIRBase: base, AuthorizeURL: base + "/auth/authorize", TokenURL: base + "/auth/token",
		SMARTConfiguration: base + "/.well-known/smart-configuration"}
}

// checkLink checks an optional logo or homepage link (https, or http on
// localhost).
func checkLink(field, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	ok := err == nil && u.Host != "" && !strings.ContainsAny(s, " \t\r\n") &&
		(u.Scheme == "https" || (u.Scheme == "http" && (u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1")))
	if !ok || len(s) > 500 {
		return invalidf(field + " must be an https URL of at most 500 characters")
	}
	return nil
}

// MaxSandboxApps bounds an organisation's sandbox apps.
const MaxSandboxApps = 200

// createApp creates a sandbox app for org from in.
func (p *Portal) createApp(r *http.Request, v *Visitor, org *developer.Membership, in AppInput) (*NewApp, error) {
	if err := canIssue(v); err != nil {
		return nil, err
	}
	sb := p.env(EnvSandbox)
	if sb == nil {
		return nil, errNoEnv(EnvSandbox)
	}
	in.Description = strings.TrimSpace(in.Description)
	if len([]rune(in.Description)) > maxDescription {
		return nil, invalidf("description must be at most 1000 characters")
	}
	if err := checkLink("logo_uri", in.LogoURI); err != nil {
		return nil, err
	}
	if err := checkLink("homepage", in.Homepage); err != nil {
		return nil, err
	}
	in.Owner = org.Owner()
	if have, err := sb.Admin.Clients(r.Context(), api.ClientFilter{Owner: in.Owner}); err != nil {
		return nil, err
	} else if len(have) >= MaxSandboxApps {
		return nil, invalidf(fmt.Sprintf("an organisation has at most %d sandbox apps; delete one first", MaxSandboxApps))
	}
	req, err := review.Build(in.AppSpec)
	if err != nil {
		return nil, err
	}
	ctx := actorCtx(r, v)
	reg, err := sb.Admin.CreateClient(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := p.meta.put(ctx, AppMeta{Env: EnvSandbox, ClientID: reg.ClientID, OrgID: org.ID, Preset: in.Preset,
		Description: in.Description, LogoURI: in.LogoURI, Homepage: in.Homepage, CreatedAt: p.cfg.Now()}); err != nil {
		return nil, err
	}
	a, _, err := p.ownedApp(ctx, EnvSandbox, reg.ClientID, org)
	if err != nil {
		return nil, err
	}
	return &NewApp{App: *a, ClientSecret: reg.ClientSecret}, nil
}

// rotateSecret gives an app a new secret, the old one valid for overlap.
func (p *Portal) rotateSecret(r *http.Request, v *Visitor, org *developer.Membership, envName, id string, overlap time.Duration) (*api.NewSecret, error) {
	a, e, err := p.ownedApp(r.Context(), envName, id, org)
	if err != nil {
		return nil, err
	}
	if err := canIssue(v); err != nil {
		return nil, err
	}
	if a.Type != "confidential" {
		return nil, conflict("only a confidential app has a client secret")
	}
	if overlap < 0 || overlap > 30*24*time.Hour {
		return nil, invalidf("overlap must be between 0 and 30 days")
	}
	return e.Admin.RotateClientSecret(actorCtx(r, v), id, overlap)
}

// deleteApp deletes an organisation's sandbox app (production apps are
// revoked by operators).
func (p *Portal) deleteApp(r *http.Request, v *Visitor, org *developer.Membership, envName, id string) error {
	_, e, err := p.ownedApp(r.Context(), envName, id, org)
	if err != nil {
		return err
	}
	if envName != EnvSandbox {
		return &appError{http.StatusForbidden, "forbidden", "production apps are revoked by the portal's operators"}
	}
	if err := e.Admin.DeleteClient(actorCtx(r, v), id); err != nil {
		return err
	}
	return p.meta.remove(r.Context(), envName, id)
}

// scopeOptions are the scopes the wizard offers a preset: what the
// environment advertises (oauth.ScopesSupported) that fits the preset,
// plus granular per-type options.
func scopeOptions(pr review.Preset) []string {
	var out []string
	fits := func(sc string) bool {
		for _, pre := range pr.ScopePrefixes {
			if sc == pre || (strings.HasSuffix(pre, "/") && strings.HasPrefix(sc, pre)) {
				return true
			}
		}
		return false
	}
	all := slices.Clone(oauth.ScopesSupported)
	for _, ctx := range []string{"patient", "user", "system"} {
		for _, t := range []string{"Patient", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Immunization", "Encounter", "DocumentReference"} {
			all = append(all, ctx+"/"+t+".rs")
		}
		all = append(all, ctx+"/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			ctx+"/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs")
	}
	for _, sc := range all {
		if fits(sc) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// secretFile is the download of a newly shown secret: a data: URL of a
// JSON document, built into the one answer that shows the secret.
func secretFile(v any) template.URL {
	b, _ := json.MarshalIndent(v, "", "  ")
	return template.URL("data:application/json;base64," + base64.StdEncoding.EncodeToString(b))
}

// ---- pages ----

type appsData struct {
	Org      *developer.Membership
	Apps     []App
	Requests []review.Request
	Now      time.Time
}

func (p *Portal) appsPage(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	apps, err := p.orgApps(r.Context(), org)
	if err != nil {
		p.internalError(w, r, err)
		return nil
	}
	reqs, err := p.reviews.List(r.Context(), review.Filter{OrgID: org.ID})
	if err != nil {
		p.internalError(w, r, err)
		return nil
	}
	p.render(w, r, http.StatusOK, "apps", pageData{Title: "Apps", V: v, Nav: "apps", Notice: r.URL.Query().Get("notice"),
		Data: appsData{Org: org, Apps: apps, Requests: reqs, Now: p.cfg.Now()}}, nil)
	return nil
}

type wizardData struct {
	Org     *developer.Membership
	Presets []review.Preset
	Preset  *review.Preset
	Options []string
	In      AppInput
	// Checked are the scopes ticked.
	Checked map[string]bool
	Extra   string
}

func (p *Portal) wizardPage(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	d := wizardData{Org: org, Presets: review.Presets()}
	if pr, ok := review.PresetByName(r.URL.Query().Get("preset")); ok {
		d.Preset = &pr
		d.Options = scopeOptions(pr)
		d.In.Preset = pr.Name
		d.Checked = map[string]bool{}
		for _, sc := range pr.Scopes {
			d.Checked[sc] = true
		}
	}
	p.render(w, r, http.StatusOK, "appnew", pageData{Title: "New app", V: v, Nav: "apps", Data: d}, nil)
	return nil
}

// lines splits a textarea into its non-empty lines (or fields).
func lines(s string) []string {
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ' ' || r == '\t' }) {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

type secretData struct {
	Org      *developer.Membership
	App      App
	Secret   string
	Download template.URL
	File     string
	OldUntil time.Time
	Created  bool
}

func (p *Portal) wizardPost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	f := r.PostForm
	in := AppInput{Description: f.Get("description"), LogoURI: strings.TrimSpace(f.Get("logo_uri")), Homepage: strings.TrimSpace(f.Get("homepage"))}
	in.Preset, in.Name = f.Get("preset"), f.Get("name")
	in.RedirectURIs, in.LaunchURI = lines(f.Get("redirect_uris")), strings.TrimSpace(f.Get("launch_uri"))
	in.Scopes = append(slices.Clone(f["scope"]), lines(f.Get("extra_scopes"))...)
	in.JWKSURI = strings.TrimSpace(f.Get("jwks_uri"))
	if j := strings.TrimSpace(f.Get("jwks")); j != "" {
		if !json.Valid([]byte(j)) {
			p.wizardError(w, r, v, org, in, f, invalidf("jwks must be a JSON Web Key Set"))
			return nil
		}
		in.JWKS = json.RawMessage(j)
	}
	out, err := p.createApp(r, v, org, in)
	if err != nil {
		p.wizardError(w, r, v, org, in, f, err)
		return nil
	}
	p.record(r, appEvent("developer created sandbox app", v, out.App.ID))
	d := secretData{Org: org, App: out.App, Secret: out.ClientSecret, Created: true}
	if out.ClientSecret != "" {
		d.File = "lapis-sandbox-" + out.App.ID + ".json"
		d.Download = secretFile(map[string]string{"environment": EnvSandbox, "issuer": p.env(EnvSandbox).FHIRBase, "client_id": out.App.ID, "client_secret": out.ClientSecret})
	}
	p.render(w, r, http.StatusCreated, "appsecret", pageData{Title: "App created", V: v, Nav: "apps", Data: d}, nil)
	return nil
}

func (p *Portal) wizardError(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership, in AppInput, f url.Values, err error) {
	st, _, desc, ok := appStatus(err)
	if !ok {
		p.internalError(w, r, err)
		return
	}
	d := wizardData{Org: org, Presets: review.Presets(), In: in, Checked: map[string]bool{}, Extra: f.Get("extra_scopes")}
	if pr, ok := review.PresetByName(in.Preset); ok {
		d.Preset, d.Options = &pr, scopeOptions(pr)
	}
	for _, sc := range f["scope"] {
		d.Checked[sc] = true
	}
	var ie *review.InvalidError
	if errors.As(err, &ie) && wizardLabels[ie.Field] != "" {
		desc = wizardLabels[ie.Field] + ": " + ie.Reason
	}
	p.render(w, r, st, "appnew", pageData{Title: "New app", V: v, Nav: "apps", Error: capitalize(desc) + ".", Data: d}, nil)
}

// wizardLabels are the wizard's labels of the fields a refused app names
// by their JSON API names (review.InvalidError.Field).
var wizardLabels = map[string]string{
	"preset": "Kind of app", "name": "Name", "redirect_uris": "Redirect URIs", "launch_uri": "Launch URI",
	"scopes": "Scopes", "jwks_uri": "JWKS URL", "jwks": "JWKS",
}

type appData struct {
	Org        *developer.Membership
	App        App
	Requests   []review.Request
	CanRequest bool
	Now        time.Time
	// Production is the production app approved from this sandbox app.
	Production string
	// Endpoints are the app's environment's URLs.
	Endpoints *Endpoints
}

func (p *Portal) appPage(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	a, _, err := p.ownedApp(r.Context(), r.PathValue("env"), r.PathValue("id"), org)
	if err != nil {
		return err
	}
	reqs, err := p.appRequests(r.Context(), org, a)
	if err != nil {
		p.internalError(w, r, err)
		return nil
	}
	d := appData{Org: org, App: *a, Requests: reqs, Now: p.cfg.Now(), CanRequest: a.Environment == EnvSandbox && p.env(EnvProduction) != nil,
		Endpoints: p.endpoints(a.Environment)}
	for _, rq := range reqs {
		if rq.Status != review.Declined {
			d.CanRequest = false
		}
		if rq.Status == review.Approved {
			d.Production = rq.ProductionClientID
		}
	}
	p.render(w, r, http.StatusOK, "app", pageData{Title: a.Name, V: v, Nav: "apps", Notice: r.URL.Query().Get("notice"), Data: d}, nil)
	return nil
}

// overlaps are the rotation overlaps the pages offer.
var overlaps = map[string]time.Duration{"0": 0, "1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

func (p *Portal) rotatePost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	overlap, ok := overlaps[r.PostForm.Get("overlap")]
	if !ok {
		return invalidf("choose an overlap")
	}
	envName, id := r.PathValue("env"), r.PathValue("id")
	ns, err := p.rotateSecret(r, v, org, envName, id, overlap)
	if err != nil {
		return err
	}
	a, _, err := p.ownedApp(r.Context(), envName, id, org)
	if err != nil {
		return err
	}
	p.record(r, appEvent("developer rotated a client secret", v, id))
	d := secretData{Org: org, App: *a, Secret: ns.ClientSecret, OldUntil: ns.OldValidUntil, File: "lapis-" + envName + "-" + id + ".json",
		Download: secretFile(map[string]string{"environment": envName, "issuer": p.env(envName).FHIRBase, "client_id": id, "client_secret": ns.ClientSecret})}
	p.render(w, r, http.StatusOK, "appsecret", pageData{Title: "New client secret", V: v, Nav: "apps", Data: d}, nil)
	return nil
}

func (p *Portal) appDeletePost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	if err := p.deleteApp(r, v, org, r.PathValue("env"), r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, p.Path("/apps")+"?"+url.Values{"org": {org.ID}, "notice": {"The app was deleted."}}.Encode(), http.StatusSeeOther)
	return nil
}

// ---- JSON API ----

func (p *Portal) apiPresets(w http.ResponseWriter, r *http.Request, _ *Visitor) {
	type preset struct {
		review.Preset
		ScopeOptions []string `json:"scope_options"`
	}
	var out []preset
	for _, pr := range review.Presets() {
		out = append(out, preset{pr, scopeOptions(pr)})
	}
	writeJSON(w, http.StatusOK, out)
}

// orgList is the handler of GET …/orgs/{org}/THINGS: the caller's
// organisation (404 when not a member), then list's answer as JSON, an
// error through apiAppFail.
func orgList[T any](p *Portal, list func(r *http.Request, org *developer.Membership) ([]T, error)) func(http.ResponseWriter, *http.Request, *Visitor) {
	return func(w http.ResponseWriter, r *http.Request, v *Visitor) {
		org, err := apiOrg(r, v)
		if err != nil {
			p.apiAppFail(w, r, err)
			return
		}
		l, err := list(r, org)
		if err != nil {
			p.apiAppFail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, l)
	}
}

func (p *Portal) apiAppCreate(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	var in AppInput
	if !decode(w, r, &in) {
		return nil
	}
	out, err := p.createApp(r, v, org, in)
	if err != nil {
		return err
	}
	p.record(r, appEvent("developer created sandbox app", v, out.App.ID))
	out.Endpoints = p.endpoints(EnvSandbox)
	if r.URL.Query().Get("download") == "1" && out.ClientSecret != "" {
		w.Header().Set("Content-Disposition", `attachment; filename="lapis-sandbox-`+out.App.ID+`.json"`)
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (p *Portal) apiApp(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	a, _, err := p.ownedApp(r.Context(), r.PathValue("env"), r.PathValue("id"), org)
	if err != nil {
		return err
	}
	reqs, err := p.appRequests(r.Context(), org, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"app": a, "production_requests": reqs, "endpoints": p.endpoints(a.Environment)})
	return nil
}

func (p *Portal) apiAppDelete(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	if err := p.deleteApp(r, v, org, r.PathValue("env"), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (p *Portal) apiRotate(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	var in struct {
		Overlap *api.Duration `json:"overlap"`
	}
	if r.ContentLength != 0 && !decode(w, r, &in) {
		return nil
	}
	overlap := 24 * time.Hour
	if in.Overlap != nil {
		overlap = time.Duration(*in.Overlap)
	}
	ns, err := p.rotateSecret(r, v, org, r.PathValue("env"), r.PathValue("id"), overlap)
	if err != nil {
		return err
	}
	p.record(r, appEvent("developer rotated a client secret", v, ns.ClientID))
	writeJSON(w, http.StatusOK, ns)
	return nil
}

// appRoutes registers the pages and JSON API of apps, production access
// requests, API keys and webhooks (see the route table of api.go).
func (p *Portal) appRoutes() {
	m := p.mux
	m.HandleFunc("GET /portal/apps", p.page(p.forOrgPage(p.appsPage)))
	m.HandleFunc("GET /portal/apps/new", p.page(p.forOrgPage(p.wizardPage)))
	m.HandleFunc("POST /portal/apps/new", p.page(p.forOrgPage(p.wizardPost)))
	m.HandleFunc("GET /portal/apps/{env}/{id}", p.page(p.forOrgPage(p.appPage)))
	m.HandleFunc("POST /portal/apps/{env}/{id}/rotate", p.page(p.forOrgPage(p.rotatePost)))
	m.HandleFunc("POST /portal/apps/{env}/{id}/delete", p.page(p.forOrgPage(p.appDeletePost)))
	m.HandleFunc("POST /portal/apps/{env}/{id}/production", p.page(p.forOrgPage(p.productionPost)))
	m.HandleFunc("GET /portal/keys", p.page(p.forOrgPage(p.keysPage)))
	m.HandleFunc("POST /portal/keys/new", p.page(p.forOrgPage(p.keyCreatePost)))
	m.HandleFunc("POST /portal/keys/{env}/{id}/{action}", p.page(p.forOrgPage(p.keyActionPost)))
	m.HandleFunc("GET /portal/webhooks", p.page(p.forOrgPage(p.webhooksPage)))
	m.HandleFunc("POST /portal/webhooks/new", p.page(p.forOrgPage(p.webhookCreatePost)))
	m.HandleFunc("POST /portal/webhooks/{id}/delete", p.page(p.forOrgPage(p.webhookDeletePost)))
	m.HandleFunc("GET /portal/admin/reviews", p.page(p.operator(p.adminReviewsPage)))
	m.HandleFunc("POST /portal/admin/reviews/{id}/{action}", p.page(p.operator(p.adminReviewPost)))
	m.HandleFunc("GET /portal/admin/apps", p.page(p.operator(p.adminAppsPage)))
	m.HandleFunc("POST /portal/admin/apps/{env}/{id}/{action}", p.page(p.operator(p.adminAppPost)))

	m.HandleFunc("GET /portal/api/presets", p.api(p.apiPresets))
	m.HandleFunc("GET /portal/api/orgs/{org}/apps", p.api(orgList(p, func(r *http.Request, org *developer.Membership) ([]App, error) { return p.orgApps(r.Context(), org) })))
	m.HandleFunc("POST /portal/api/orgs/{org}/apps", p.api(p.forOrgAPI(p.apiAppCreate)))
	m.HandleFunc("GET /portal/api/orgs/{org}/apps/{env}/{id}", p.api(p.forOrgAPI(p.apiApp)))
	m.HandleFunc("DELETE /portal/api/orgs/{org}/apps/{env}/{id}", p.api(p.forOrgAPI(p.apiAppDelete)))
	m.HandleFunc("POST /portal/api/orgs/{org}/apps/{env}/{id}/secret", p.api(p.forOrgAPI(p.apiRotate)))
	m.HandleFunc("POST /portal/api/orgs/{org}/apps/{env}/{id}/production", p.api(p.forOrgAPI(p.apiProduction)))
	m.HandleFunc("GET /portal/api/orgs/{org}/requests", p.api(orgList(p, p.requests)))
	m.HandleFunc("GET /portal/api/orgs/{org}/keys", p.api(orgList(p, func(r *http.Request, org *developer.Membership) ([]Key, error) { return p.orgKeys(r.Context(), org) })))
	m.HandleFunc("POST /portal/api/orgs/{org}/keys", p.api(p.forOrgAPI(p.apiKeyCreate)))
	m.HandleFunc("POST /portal/api/orgs/{org}/keys/{env}/{id}/{action}", p.api(p.forOrgAPI(p.apiKeyAction)))
	m.HandleFunc("DELETE /portal/api/orgs/{org}/keys/{env}/{id}", p.api(p.forOrgAPI(p.apiKeyRevoke)))
	m.HandleFunc("GET /portal/api/orgs/{org}/webhooks", p.api(orgList(p, p.webhookEndpoints)))
	m.HandleFunc("POST /portal/api/orgs/{org}/webhooks", p.api(p.forOrgAPI(p.apiWebhookCreate)))
	m.HandleFunc("DELETE /portal/api/orgs/{org}/webhooks/{id}", p.api(p.forOrgAPI(p.apiWebhookDelete)))
	m.HandleFunc("GET /portal/api/orgs/{org}/webhooks/{id}/deliveries", p.api(p.forOrgAPI(p.apiDeliveries)))
	m.HandleFunc("GET /portal/api/admin/reviews", p.api(p.apiOperator(p.apiAdminReviews)))
	m.HandleFunc("POST /portal/api/admin/reviews/{id}/approve", p.api(p.apiOperator(p.apiAdminApprove)))
	m.HandleFunc("POST /portal/api/admin/reviews/{id}/decline", p.api(p.apiOperator(withBody(p.apiAdminDecline))))
	m.HandleFunc("GET /portal/api/admin/apps", p.api(p.apiOperator(p.apiAdminApps)))
	m.HandleFunc("POST /portal/api/admin/apps/{env}/{id}/{action}", p.api(p.apiOperator(p.apiAdminAppAction)))
	m.HandleFunc("DELETE /portal/api/admin/apps/{env}/{id}", p.api(p.apiOperator(p.apiAdminAppRevoke)))
}

// apiOperator restricts an API route to operators.
func (p *Portal) apiOperator(h func(http.ResponseWriter, *http.Request, *Visitor)) func(http.ResponseWriter, *http.Request, *Visitor) {
	return func(w http.ResponseWriter, r *http.Request, v *Visitor) {
		if !v.Dev.Operator {
			writeError(w, http.StatusForbidden, "forbidden", "operators only")
			return
		}
		h(w, r, v)
	}
}

// logAction logs an identifier-only line of a credential action.
func (p *Portal) logAction(r *http.Request, action, id string) {
	p.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "portal: "+action, slog.String("id", id))
}
