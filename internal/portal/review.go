package portal

// Production access: a sandbox app's organisation asks for it in
// production (review.Store.Submit with the sandbox client's registration);
// an operator approves — which creates the production client, owned by
// the organisation — or declines with a reason. Approval discards the
// secret the production client is created with: nobody sees it, and the
// developer issues the first production secret from the app's page
// (a rotation with no overlap), so no secret is ever stored to be
// collected later. Operators also suspend, resume and revoke any
// organisation's app in either environment.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/review"
)

func appEvent(desc string, v *Visitor, id string) audit.Event {
	return audit.Event{Kind: audit.KindAdmin, Action: "E", Description: desc + " " + id, Subject: "developer:" + v.Dev.ID}
}

// appRequests are the production access requests of a sandbox app, or
// the one that created a production app.
func (p *Portal) appRequests(ctx context.Context, org *developer.Membership, a *App) ([]review.Request, error) {
	all, err := p.reviews.List(ctx, review.Filter{OrgID: org.ID})
	if err != nil {
		return nil, err
	}
	out := []review.Request{}
	for _, rq := range all {
		if (a.Environment == EnvSandbox && rq.SandboxClientID == a.ID) || (a.Environment == EnvProduction && rq.ProductionClientID == a.ID) {
			out = append(out, rq)
		}
	}
	return out, nil
}

// requestProduction submits a production access request for a sandbox
// app.
func (p *Portal) requestProduction(r *http.Request, v *Visitor, org *developer.Membership, envName, id string) (*review.Request, error) {
	a, _, err := p.ownedApp(r.Context(), envName, id, org)
	if err != nil {
		return nil, err
	}
	if err := canIssue(v); err != nil {
		return nil, err
	}
	if envName != EnvSandbox {
		return nil, conflict("production access is requested for a sandbox app")
	}
	if p.env(EnvProduction) == nil {
		return nil, errNoEnv(EnvProduction)
	}
	reqs, err := p.appRequests(r.Context(), org, a)
	if err != nil {
		return nil, err
	}
	for _, rq := range reqs {
		if rq.Status != review.Declined {
			return nil, conflict("this app already has production access request " + rq.ID + " (" + rq.Status + ")")
		}
	}
	app := api.ClientRequest{Name: a.Name, Type: a.Type, RedirectURIs: a.RedirectURIs, LaunchURI: a.LaunchURI, Scopes: a.Scopes,
		JWKSURI: a.JWKSURI, Owner: org.Owner()}
	if a.JWKS != "" {
		app.JWKS = json.RawMessage(a.JWKS)
	}
	return p.reviews.Submit(r.Context(), review.Request{OrgID: org.ID, RequestedBy: "developer:" + v.Dev.ID, App: app, SandboxClientID: a.ID})
}

func (p *Portal) productionPost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	rq, err := p.requestProduction(r, v, org, r.PathValue("env"), r.PathValue("id"))
	if err != nil {
		return err
	}
	http.Redirect(w, r, p.Path("/apps/"+EnvSandbox+"/"+url.PathEscape(rq.SandboxClientID))+"?"+url.Values{"org": {org.ID},
		"notice": {"Production access requested; a decision is due by " + rq.DueAt.Format("2006-01-02") + "."}}.Encode(), http.StatusSeeOther)
	return nil
}

func (p *Portal) apiProduction(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	rq, err := p.requestProduction(r, v, org, r.PathValue("env"), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rq)
	return nil
}

// requests lists the organisation's production access requests
// (?status= filters).
func (p *Portal) requests(r *http.Request, org *developer.Membership) ([]review.Request, error) {
	return p.reviews.List(r.Context(), review.Filter{OrgID: org.ID, Status: r.URL.Query().Get("status")})
}

// approve approves a request: the production client is created (owner
// org:<id>) with the sandbox app's metadata; its secret is discarded.
func (p *Portal) approve(r *http.Request, v *Visitor, id string) (*review.Request, error) {
	prod := p.env(EnvProduction)
	if prod == nil {
		return nil, errNoEnv(EnvProduction)
	}
	ctx := actorCtx(r, v)
	rq, _, err := p.reviews.Approve(ctx, id, "developer:"+v.Dev.ID, func(ctx context.Context, app api.ClientRequest) (string, string, error) {
		reg, err := prod.Admin.CreateClient(ctx, app)
		if err != nil {
			return "", "", err
		}
		return reg.ClientID, "", nil
	})
	if err != nil {
		return nil, err
	}
	m, err := p.meta.get(ctx, EnvSandbox, rq.SandboxClientID)
	if err != nil {
		return nil, err
	}
	m.Env, m.ClientID, m.OrgID, m.CreatedAt = EnvProduction, rq.ProductionClientID, rq.OrgID, p.cfg.Now()
	if err := p.meta.put(ctx, m); err != nil {
		return nil, err
	}
	return rq, nil
}

type reviewsData struct {
	Pending, Decided []review.Request
	Now              time.Time
	// Orgs names the requests' organisations; People the addresses of
	// their requesting developers and deciding operators, by
	// "developer:ID" ("" when gone).
	Orgs, People map[string]string
}

// names looks up the organisation names of rqs, and the addresses of
// their requesters and deciders.
func (p *Portal) names(ctx context.Context, rqs []review.Request) (orgs, people map[string]string) {
	orgs, people = map[string]string{}, map[string]string{}
	for _, rq := range rqs {
		if _, ok := orgs[rq.OrgID]; !ok {
			if o, err := p.dev.Org(ctx, rq.OrgID); err == nil {
				orgs[rq.OrgID] = o.Name
			} else {
				orgs[rq.OrgID] = ""
			}
		}
		for _, who := range []string{rq.RequestedBy, rq.DecidedBy} {
			if _, ok := people[who]; ok || who == "" {
				continue
			}
			people[who] = ""
			if id, ok := strings.CutPrefix(who, "developer:"); ok {
				if d, err := p.dev.Developer(ctx, id); err == nil {
					people[who] = d.Email
				}
			}
		}
	}
	return orgs, people
}

func (p *Portal) adminReviewsPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	pending, err := p.reviews.Pending(r.Context())
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	all, err := p.reviews.List(r.Context(), review.Filter{})
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	var decided []review.Request
	for _, rq := range all {
		if rq.Status != review.Pending && len(decided) < 50 {
			decided = append(decided, rq)
		}
	}
	orgs, people := p.names(r.Context(), append(slices.Clip(pending), decided...))
	p.render(w, r, http.StatusOK, "adminreviews", pageData{Title: "Production access reviews", V: v, Nav: "admin", Notice: r.URL.Query().Get("notice"),
		Data: reviewsData{Pending: pending, Decided: decided, Now: p.cfg.Now(), Orgs: orgs, People: people}}, nil)
}

func (p *Portal) adminReviewPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	id := r.PathValue("id")
	var notice string
	switch r.PathValue("action") {
	case "approve":
		rq, err := p.approve(r, v, id)
		if err != nil {
			p.pageFail(w, r, v, err)
			return
		}
		notice = "Approved: production client " + rq.ProductionClientID + " created."
	case "decline":
		if _, err := p.reviews.Decline(r.Context(), id, "developer:"+v.Dev.ID, r.PostForm.Get("reason")); err != nil {
			p.pageFail(w, r, v, err)
			return
		}
		notice = "Declined."
	default:
		p.pageFail(w, r, v, errNotFound)
		return
	}
	http.Redirect(w, r, p.Path("/admin/reviews")+"?"+url.Values{"notice": {notice}}.Encode(), http.StatusSeeOther)
}

func (p *Portal) apiAdminReviews(w http.ResponseWriter, r *http.Request, _ *Visitor) {
	l, err := p.reviews.List(r.Context(), review.Filter{Status: r.URL.Query().Get("status")})
	if err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (p *Portal) apiAdminApprove(w http.ResponseWriter, r *http.Request, v *Visitor) {
	rq, err := p.approve(r, v, r.PathValue("id"))
	if err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rq)
}

// declineBody is the body of a decline: the reason the developer is shown.
type declineBody struct {
	Reason string `json:"reason"`
}

func (p *Portal) apiAdminDecline(w http.ResponseWriter, r *http.Request, v *Visitor, in declineBody) {
	rq, err := p.reviews.Decline(r.Context(), r.PathValue("id"), "developer:"+v.Dev.ID, in.Reason)
	if err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rq)
}

// allApps lists every organisation-owned app of every environment.
func (p *Portal) allApps(ctx context.Context) ([]App, error) {
	out := []App{}
	for _, name := range p.envNames() {
		cs, err := p.env(name).Admin.Clients(ctx, api.ClientFilter{})
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if !strings.HasPrefix(c.Owner, "org:") {
				continue
			}
			a, err := p.appOf(ctx, name, c)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// operatorApp performs an operator action on env's organisation-owned
// client id: suspend (with reason), resume or revoke (delete).
func (p *Portal) operatorApp(r *http.Request, v *Visitor, envName, id, action, reason string) error {
	e := p.env(envName)
	if e == nil {
		return errNotFound
	}
	c, err := e.Admin.OAuthClient(r.Context(), id)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(c.Owner, "org:") {
		return errNotFound // operators manage portal apps here; others with the admin CLI/API
	}
	ctx := actorCtx(r, v)
	switch action {
	case "suspend":
		_, err = e.Admin.SuspendClient(ctx, id, reason)
	case "resume":
		_, err = e.Admin.ResumeClient(ctx, id)
	case "revoke":
		if err = e.Admin.DeleteClient(ctx, id); err == nil {
			err = p.meta.remove(ctx, envName, id)
		}
	default:
		return errNotFound
	}
	return err
}

func (p *Portal) adminAppsPage(w http.ResponseWriter, r *http.Request, v *Visitor) {
	apps, err := p.allApps(r.Context())
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "adminapps", pageData{Title: "All apps", V: v, Nav: "admin", Notice: r.URL.Query().Get("notice"), Data: pageApps(apps, r.URL.Query())}, nil)
}

// adminAppsPerPage bounds the operators' list of all apps per page (the
// page stays far under 100 KB however many apps there are).
const adminAppsPerPage = 50

// appsPage is one page of the operators' list of apps.
type appsPage struct {
	Apps        []App
	Q           string // the filter (name, client id or owner contains it)
	Page, Pages int    // 1-based
	Total       int
	Prev, Next  string // query strings of the neighbouring pages ("" at the ends)
}

// pageApps filters apps by q's "q" (case-insensitive, in name, id or
// owner) and cuts page "page" of adminAppsPerPage.
func pageApps(apps []App, q url.Values) appsPage {
	filter := strings.ToLower(strings.TrimSpace(q.Get("q")))
	if len(filter) > 200 {
		filter = filter[:200]
	}
	var kept []App
	for _, a := range apps {
		if filter == "" || strings.Contains(strings.ToLower(a.Name), filter) || strings.Contains(strings.ToLower(a.ID), filter) || strings.Contains(strings.ToLower(a.Owner), filter) {
			kept = append(kept, a)
		}
	}
	pg := appsPage{Q: filter, Total: len(kept), Pages: max(1, (len(kept)+adminAppsPerPage-1)/adminAppsPerPage)}
	pg.Page, _ = strconv.Atoi(q.Get("page"))
	pg.Page = min(max(pg.Page, 1), pg.Pages)
	from := (pg.Page - 1) * adminAppsPerPage
	pg.Apps = kept[from:min(from+adminAppsPerPage, len(kept))]
	link := func(n int) string {
		v := url.Values{"page": {strconv.Itoa(n)}}
		if filter != "" {
			v.Set("q", filter)
		}
		return v.Encode()
	}
	if pg.Page > 1 {
		pg.Prev = link(pg.Page - 1)
	}
	if pg.Page < pg.Pages {
		pg.Next = link(pg.Page + 1)
	}
	return pg
}

func (p *Portal) adminAppPost(w http.ResponseWriter, r *http.Request, v *Visitor) {
	action := r.PathValue("action")
	if err := p.operatorApp(r, v, r.PathValue("env"), r.PathValue("id"), action, r.PostForm.Get("reason")); err != nil {
		p.pageFail(w, r, v, err)
		return
	}
	http.Redirect(w, r, p.Path("/admin/apps")+"?"+url.Values{"notice": {"Done: " + action + " " + r.PathValue("id") + "."}}.Encode(), http.StatusSeeOther)
}

func (p *Portal) apiAdminApps(w http.ResponseWriter, r *http.Request, _ *Visitor) {
	apps, err := p.allApps(r.Context())
	if err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, apps)
}

func (p *Portal) apiAdminAppAction(w http.ResponseWriter, r *http.Request, v *Visitor) {
	var in struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !decode(w, r, &in) {
		return
	}
	action := r.PathValue("action")
	if action != "suspend" && action != "resume" {
		writeError(w, http.StatusNotFound, "not_found", "no such API route")
		return
	}
	if err := p.operatorApp(r, v, r.PathValue("env"), r.PathValue("id"), action, in.Reason); err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	c, err := p.env(r.PathValue("env")).Admin.OAuthClient(r.Context(), r.PathValue("id"))
	if err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	a, err := p.appOf(r.Context(), r.PathValue("env"), *c)
	if err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (p *Portal) apiAdminAppRevoke(w http.ResponseWriter, r *http.Request, v *Visitor) {
	if err := p.operatorApp(r, v, r.PathValue("env"), r.PathValue("id"), "revoke", ""); err != nil {
		p.apiAppFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
