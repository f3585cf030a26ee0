package portal

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
)

// Activity pages and API: what an app (OAuth client) or API key of the
// developer's organisation did, from the environment's activity store.
//
//	GET /portal/activity?env=sandbox|production&client=ID[&range=24h|7d]
//	GET /portal/activity?env=...&key=ID[&range=...]
//	GET /portal/api/activity?env=...&client=ID|key=ID[&range=...]
//
// A credential another organisation owns, or that does not exist, is 404
// (the same answer for both).

// activityRecent is how many recent requests the page and API show.
const activityRecent = 50

// activityRoutes registers the activity page and its JSON equivalent.
func (p *Portal) activityRoutes() {
	p.mux.HandleFunc("GET /portal/activity", p.page(p.activityPage))
	p.mux.HandleFunc("GET /portal/api/activity", p.api(p.apiActivity))
}

// actRange is a time range of the activity views.
type actRange struct {
	Name  string        // "24h" or "7d"
	Label string        // "Last 24 hours"
	Span  time.Duration // the range
	Step  time.Duration // one bar
}

var actRanges = []actRange{
	{Name: "24h", Label: "Last 24 hours", Span: 24 * time.Hour, Step: 5 * time.Minute},
	{Name: "7d", Label: "Last 7 days", Span: 7 * 24 * time.Hour, Step: time.Hour},
}

// actRangeOf returns the range named s ("" is the first); ok false for
// an unknown name.
func actRangeOf(s string) (actRange, bool) {
	if s == "" {
		return actRanges[0], true
	}
	for _, r := range actRanges {
		if r.Name == s {
			return r, true
		}
	}
	return actRange{}, false
}

// actCredential is an app or API key of the visitor's organisations.
type actCredential struct {
	Env  *Env
	Kind string // "client" or "key"
	ID   string
	Name string
	// OrgID is the owning organisation.
	OrgID string
	// Client or Key is the credential.
	Client *api.OAuthClient
	Key    *api.APIKey
}

// errNoCredential is any credential the visitor may not see: unknown
// environment, id or kind, or another organisation's.
var errNoCredential = errors.New("portal: no such app or key")

// ownerOrg returns the id of the visitor's organisation whose owner
// string is owner, "" when none is.
func ownerOrg(v *Visitor, owner string) string {
	for i := range v.Orgs {
		if owner != "" && owner == v.Orgs[i].Owner() {
			return v.Orgs[i].ID
		}
	}
	return ""
}

// actCredentialOf loads the client clientID or the API key keyID (one of
// them) of the environment envName when an organisation of v owns it;
// otherwise errNoCredential.
func (p *Portal) actCredentialOf(ctx context.Context, v *Visitor, envName, clientID, keyID string) (*actCredential, error) {
	e := p.env(envName)
	if e == nil || e.Admin == nil || (clientID == "") == (keyID == "") || len(clientID) > 200 || len(keyID) > 200 {
		return nil, errNoCredential
	}
	c := &actCredential{Env: e}
	var owner string
	if clientID != "" {
		cl, err := e.Admin.OAuthClient(ctx, clientID)
		if err != nil {
			return nil, noCredential(err)
		}
		c.Kind, c.ID, c.Name, c.Client, owner = "client", cl.ID, cl.Name, cl, cl.Owner
	} else {
		k, err := e.Admin.APIKey(ctx, keyID)
		if err != nil {
			return nil, noCredential(err)
		}
		c.Kind, c.ID, c.Name, c.Key, owner = "key", k.ID, k.Name, k, k.Owner
	}
	if c.OrgID = ownerOrg(v, owner); c.OrgID == "" {
		return nil, errNoCredential
	}
	return c, nil
}

// noCredential is errNoCredential for the admin service's not found, else
// err.
func noCredential(err error) error {
	var nf *admin.NotFoundError
	if errors.As(err, &nf) {
		return errNoCredential
	}
	return err
}

// principal is how the FHIR API sees the credential, for its rate-limit
// class and own limit.
func (c *actCredential) principal() *principal.Principal {
	if c.Key != nil {
		return &principal.Principal{Method: "apikey", ClientID: c.Key.ID, Scopes: c.Key.Scopes, Patient: c.Key.Patient, TokenID: c.Key.ID}
	}
	return &principal.Principal{Method: "bearer", ClientID: c.Client.ID, Scopes: c.Client.Scopes}
}

// actSeriesPoint is one step of the JSON series.
type actSeriesPoint struct {
	Start  time.Time `json:"start"`
	Counts [4]int64  `json:"counts"`
}

// actError is an error group with its plain-language reason.
type actError struct {
	activity.ErrorGroup
	Reason string `json:"reason"`
}

// actBudget is the rate-limit budget in use.
type actBudget struct {
	// Limited is false when no rate limit applies.
	Limited bool `json:"limited"`
	// Limit is the limit in force ("100/s burst 200").
	Limit string `json:"limit,omitempty"`
	// Burst is the budget's size; Remaining what could be spent now.
	Burst     int `json:"burst,omitempty"`
	Remaining int `json:"remaining"`
	// ResetSeconds is how long until the budget is full again.
	ResetSeconds float64 `json:"reset_seconds"`
	// UsedPercent is the share of the budget in use.
	UsedPercent int `json:"used_percent"`
}

// actReport is what the activity page and API show.
type actReport struct {
	Cred     *actCredential
	Range    actRange
	From, To time.Time
	// Recorded is false when the environment records no activity.
	Recorded bool
	Series   []activity.Point
	Totals   activity.Totals
	Recent   []activity.Request
	Errors   []actError
	// Budget is nil when it could not be read.
	Budget *actBudget
}

// actReportOf gathers the report of c over rg.
func (p *Portal) actReportOf(ctx context.Context, c *actCredential, rg actRange) (*actReport, error) {
	now := p.cfg.Now().UTC()
	to := now.Truncate(rg.Step).Add(rg.Step)
	rep := &actReport{Cred: c, Range: rg, From: to.Add(-rg.Span), To: to, Totals: activity.Totals{ByStatus: map[int]int64{}, ByInteraction: map[string]int64{}}}
	if st := c.Env.Activity; st != nil {
		rep.Recorded = true
		creds := []string{c.ID}
		var err error
		if rep.Series, err = st.Series(ctx, creds, rep.From, rep.To, rg.Step); err != nil {
			return nil, err
		}
		if rep.Totals, err = st.Totals(ctx, creds, rep.From, rep.To); err != nil {
			return nil, err
		}
		if rep.Recent, err = st.Recent(ctx, creds, activityRecent); err != nil {
			return nil, err
		}
		groups, err := st.Errors(ctx, creds, rep.From)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			rep.Errors = append(rep.Errors, actError{ErrorGroup: g, Reason: CauseReason(g.Cause)})
		}
	}
	if c.Env.Budget == nil {
		rep.Budget = &actBudget{}
	} else if b, err := c.Env.Budget(ctx, c.principal()); err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "portal: rate-limit budget unavailable", slog.String("error", err.Error()))
	} else {
		rep.Budget = &actBudget{Limited: b.Limit.Enabled(), Remaining: b.Remaining, ResetSeconds: b.Reset.Seconds()}
		if rep.Budget.Limited {
			rep.Budget.Limit = b.Limit.String()
			rep.Budget.Burst = max(b.Limit.Burst, 1)
			rep.Budget.UsedPercent = min(max(100*(rep.Budget.Burst-b.Remaining)/rep.Budget.Burst, 0), 100)
		}
	}
	return rep, nil
}

// CauseReason is the plain-language reason of an activity error cause.
func CauseReason(cause string) string {
	switch cause {
	case string(httpx.CauseScope):
		return "Missing scope: no scope granted to the token or key allows this interaction on this resource type. Ask for the scope (and register it for the app), or call what your scopes cover."
	case string(httpx.CauseCompartment):
		return "Outside the patient's compartment: the token or key is bound to one patient and the request reached data of another, or data not linked to that patient."
	case string(httpx.CauseRateLimit):
		return "Rate limit: the credential spent its request budget. Wait for the Retry-After time, then slow down or spread your calls."
	case string(httpx.CauseConcurrency):
		return "Too many searches at once: the credential ran more concurrent searches than allowed. Wait for one to finish before starting the next."
	case string(httpx.CauseNetwork):
		return "Network rule: the caller's address is not on the credential's allow-list, or its user agent or browser origin is refused."
	case string(httpx.CauseCredential):
		return "Credential refused: the token or key was missing, invalid, expired, revoked or suspended, or belongs to the other environment. Get a new token."
	case activity.CauseForbidden:
		return "Forbidden for another reason than scopes, e.g. an operation this credential may not run."
	case activity.CauseNotFound:
		return "Not found: the resource does not exist (or was deleted) in this environment."
	case activity.CauseInvalidRequest:
		return "Invalid request: a parameter, header or body the server could not accept. The response's OperationOutcome says which."
	case activity.CauseNotSupported:
		return "Not supported: the method, media type or format is not supported on this route."
	case activity.CauseConflict:
		return "Conflict: a version precondition (If-Match) failed or the resource changed meanwhile."
	case activity.CauseTooLarge:
		return "Too large: the request body exceeded the server's limit."
	case activity.CauseServerError:
		return "Server error: the server could not complete the request. Try again later; it is not your app's fault."
	}
	return "Refused: see the response's OperationOutcome for the reason."
}

// actActivityOf finds the credential q names (env, and client or key)
// among the visitor's, and its report over rg; errNoCredential when the
// visitor may not see it.
func (p *Portal) actActivityOf(ctx context.Context, v *Visitor, q url.Values, rg actRange) (*actCredential, *actReport, error) {
	c, err := p.actCredentialOf(ctx, v, q.Get("env"), q.Get("client"), q.Get("key"))
	if err != nil {
		return nil, nil, err
	}
	rep, err := p.actReportOf(ctx, c, rg)
	return c, rep, err
}

// actView is the activity template's data.
type actView struct {
	*actReport
	Ranges       []actRange
	Links        map[string]string // range name → URL
	Chart        template.HTML
	ChartTable   template.HTML
	StatusChart  template.HTML
	StatusTable  template.HTML
	Classes      [4]string
	SandboxApp   bool
	LaunchURL    string
	ActivityJSON string
}

func (p *Portal) activityPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	q := r.URL.Query()
	rg, ok := actRangeOf(q.Get("range"))
	if !ok {
		p.message(w, r, v, http.StatusBadRequest, "Unknown range", "Choose the last 24 hours (range=24h) or the last 7 days (range=7d).")
		return
	}
	c, rep, err := p.actActivityOf(r.Context(), v, q, rg)
	if errors.Is(err, errNoCredential) {
		p.message(w, r, v, http.StatusNotFound, "Not found", "There is no such app or key in your organisations.")
		return
	}
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	base := url.Values{"env": {c.Env.Name}}
	if c.Kind == "client" {
		base.Set("client", c.ID)
	} else {
		base.Set("key", c.ID)
	}
	view := actView{actReport: rep, Ranges: actRanges, Links: map[string]string{}, Classes: activity.Classes}
	for _, x := range actRanges {
		u := url.Values{}
		for k, vs := range base {
			u[k] = vs
		}
		u.Set("range", x.Name)
		view.Links[x.Name] = p.Path("/activity") + "?" + u.Encode()
	}
	view.ActivityJSON = p.Path("/api/activity") + "?" + base.Encode() + "&range=" + rg.Name
	stepName := "5-minute"
	if rg.Step == time.Hour {
		stepName = "hourly"
	}
	view.Chart = activity.Chart(rep.Series, activity.ChartOptions{ID: "requests", Title: "Requests of " + c.Name + ", " + rg.Label + " (" + stepName + " steps, UTC) by status class", Width: 720, Height: 220})
	view.ChartTable = activity.Table(rep.Series, "Requests per step with any request, latest 48 (UTC)", 48)
	view.StatusChart = activity.StatusChart(rep.Totals, activity.ChartOptions{ID: "statuses", Title: "Requests of " + c.Name + " by HTTP status, " + rg.Label, Width: 480, Height: 160})
	view.StatusTable = activity.StatusTable(rep.Totals, "Requests by HTTP status")
	if c.Client != nil && c.Env.Name == LaunchEnv && c.Client.Type != "backend" {
		view.SandboxApp = true
		view.LaunchURL = p.Path("/launch") + "?" + url.Values{"client": {c.ID}}.Encode()
	}
	nav := "apps"
	if c.Kind == "key" {
		nav = "keys"
	}
	p.render(w, r, http.StatusOK, "activity", pageData{Title: "Activity of " + c.Name, V: v, Nav: nav, Data: view}, nil)
}

func (p *Portal) apiActivity(w http.ResponseWriter, r *http.Request, v *Visitor) {
	q := r.URL.Query()
	rg, ok := actRangeOf(q.Get("range"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_request", "range must be 24h or 7d")
		return
	}
	if q.Get("env") == "" || (q.Get("client") == "") == (q.Get("key") == "") {
		writeError(w, http.StatusBadRequest, "invalid_request", "give env (sandbox or production) and either client or key")
		return
	}
	c, rep, err := p.actActivityOf(r.Context(), v, q, rg)
	if errors.Is(err, errNoCredential) {
		writeError(w, http.StatusNotFound, "not_found", "no such app or key in your organisations")
		return
	}
	if err != nil {
		p.apiInternal(w, r, err)
		return
	}
	series := make([]actSeriesPoint, len(rep.Series))
	for i, pt := range rep.Series {
		series[i] = actSeriesPoint{Start: pt.Start, Counts: pt.Counts}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"environment": c.Env.Name, "kind": c.Kind, "id": c.ID, "name": c.Name, "organization": c.OrgID,
		"range": rg.Name, "step_seconds": int(rg.Step.Seconds()), "from": rep.From, "to": rep.To,
		"recorded": rep.Recorded, "classes": activity.Classes, "series": series, "totals": rep.Totals,
		"recent": nonNil(rep.Recent), "errors": nonNil(rep.Errors), "rate_limit": rep.Budget,
	})
}
