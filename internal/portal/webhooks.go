package portal

// Webhooks of an organisation: endpoints (URL, events, signing secret
// shown once) and their recent deliveries. Events come from review
// decisions (onDecision) and suspensions (StatusHook).

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/webhook"
)

// EndpointView is an endpoint with its recent deliveries.
type EndpointView struct {
	webhook.Endpoint
	Deliveries []webhook.Delivery `json:"deliveries"`
}

func (p *Portal) ownedEndpoint(ctx context.Context, org *developer.Membership, id string) (*webhook.Endpoint, error) {
	eps, err := p.hooks.Endpoints(ctx, org.ID)
	if err != nil {
		return nil, err
	}
	for i := range eps {
		if eps[i].ID == id {
			return &eps[i], nil
		}
	}
	return nil, errNotFound
}

func (p *Portal) createEndpoint(r *http.Request, v *Visitor, org *developer.Membership, rawURL string, events []string) (*webhook.Endpoint, string, error) {
	if err := canIssue(v); err != nil {
		return nil, "", err
	}
	return p.hooks.CreateEndpoint(r.Context(), org.ID, strings.TrimSpace(rawURL), events)
}

type webhooksData struct {
	Org       *developer.Membership
	Endpoints []EndpointView
	Events    []string
	New       *webhook.Endpoint
	Secret    string
	URL       string
}

func (p *Portal) renderWebhooks(w http.ResponseWriter, r *http.Request, v *Visitor, status int, org *developer.Membership, d webhooksData, errMsg, notice string) {
	eps, err := p.hooks.Endpoints(r.Context(), org.ID)
	if err != nil {
		p.internalError(w, r, err)
		return
	}
	for _, ep := range eps {
		ds, err := p.hooks.Deliveries(r.Context(), org.ID, ep.ID)
		if err != nil {
			p.internalError(w, r, err)
			return
		}
		if len(ds) > 10 {
			ds = ds[:10]
		}
		d.Endpoints = append(d.Endpoints, EndpointView{Endpoint: ep, Deliveries: ds})
	}
	d.Org, d.Events = org, webhook.Events
	p.render(w, r, status, "webhooks", pageData{Title: "Webhooks", V: v, Nav: "org", Error: errMsg, Notice: notice, Data: d}, nil)
}

func (p *Portal) webhooksPage(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	p.renderWebhooks(w, r, v, http.StatusOK, org, webhooksData{}, "", r.URL.Query().Get("notice"))
	return nil
}

func (p *Portal) webhookCreatePost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	ep, secret, err := p.createEndpoint(r, v, org, r.PostForm.Get("url"), r.PostForm["event"])
	if err != nil {
		st, _, desc, ok := appStatus(err)
		if !ok {
			p.internalError(w, r, err)
			return nil
		}
		p.renderWebhooks(w, r, v, st, org, webhooksData{URL: r.PostForm.Get("url")}, capitalize(desc)+".", "")
		return nil
	}
	p.renderWebhooks(w, r, v, http.StatusCreated, org, webhooksData{New: ep, Secret: secret}, "", "")
	return nil
}

func (p *Portal) webhookDeletePost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	if err := p.hooks.DeleteEndpoint(r.Context(), org.ID, r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, p.Path("/webhooks")+"?"+url.Values{"org": {org.ID}, "notice": {"The endpoint was deleted."}}.Encode(), http.StatusSeeOther)
	return nil
}

// webhookEndpoints lists the organisation's webhook endpoints ([] when none).
func (p *Portal) webhookEndpoints(r *http.Request, org *developer.Membership) ([]webhook.Endpoint, error) {
	eps, err := p.hooks.Endpoints(r.Context(), org.ID)
	return nonNil(eps), err
}

func (p *Portal) apiWebhookCreate(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	var in struct {
		URL    string   `json:"url"`
		Events []string `json:"events"`
	}
	if !decode(w, r, &in) {
		return nil
	}
	ep, secret, err := p.createEndpoint(r, v, org, in.URL, in.Events)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"endpoint": ep, "secret": secret})
	return nil
}

func (p *Portal) apiWebhookDelete(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	if err := p.hooks.DeleteEndpoint(r.Context(), org.ID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (p *Portal) apiDeliveries(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	if _, err := p.ownedEndpoint(r.Context(), org, r.PathValue("id")); err != nil {
		return err
	}
	ds, err := p.hooks.Deliveries(r.Context(), org.ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ds)
	return nil
}
