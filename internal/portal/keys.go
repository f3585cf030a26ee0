package portal

// API keys of an organisation (owner "org:<id>") in either environment:
// named and scoped (system scopes; patient-bound keys only in the
// sandbox, for a sandbox patient), shown once, rotated with a grace
// period, suspended, resumed and revoked. Production keys need an
// approved production access request of the organisation.

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/review"
	"github.com/lapis-health/lapis/internal/sandbox/dataset"
)

// Key is an API key as the portal shows it.
type Key struct {
	api.APIKey
	Environment string `json:"environment"`
}

// KeyInput is the body of POST /portal/api/orgs/{org}/keys.
type KeyInput struct {
	// Environment is "sandbox" (default) or "production".
	Environment string   `json:"environment"`
	Name        string   `json:"name"`
	Scopes      []string `json:"scopes"`
	// Patient binds patient/ scopes to a sandbox patient (sandbox only).
	Patient   string        `json:"patient,omitempty"`
	ExpiresIn *api.Duration `json:"expires_in,omitempty"`
}

// NewKey is the answer of a key's creation or rotation: Key.Key is shown
// only here.
type NewKey struct {
	api.NewAPIKey
	Environment string `json:"environment"`
}

// keyScopeOptions are the scopes the key form offers.
var keyScopeOptions = []string{"system/*.rs", "system/*.cruds", "system/Patient.rs", "system/Observation.rs", "system/Condition.rs", "system/Encounter.rs",
	"patient/*.rs", "patient/*.cruds", "patient/Observation.rs"}

func (p *Portal) hasProduction(ctx context.Context, orgID string) (bool, error) {
	l, err := p.reviews.List(ctx, review.Filter{OrgID: orgID, Status: review.Approved})
	return len(l) > 0, err
}

func (p *Portal) orgKeys(ctx context.Context, org *developer.Membership) ([]Key, error) {
	return listOwned(ctx, p, org, func(ctx context.Context, e *Env, owner string) ([]api.APIKey, error) {
		return e.Admin.APIKeys(ctx, api.APIKeyFilter{Owner: owner})
	}, func(name string, k api.APIKey) (Key, error) { return Key{APIKey: k, Environment: name}, nil })
}

// ownedKey returns env's key id when org owns it, else errNotFound.
func (p *Portal) ownedKey(ctx context.Context, envName, id string, org *developer.Membership) (*Key, *Env, error) {
	k, e, err := owned(ctx, p, envName, id, org, (*admin.Service).APIKey, func(k *api.APIKey) string { return k.Owner })
	if err != nil {
		return nil, nil, err
	}
	return &Key{APIKey: *k, Environment: envName}, e, nil
}

func (p *Portal) createKey(r *http.Request, v *Visitor, org *developer.Membership, in KeyInput) (*NewKey, error) {
	if err := canIssue(v); err != nil {
		return nil, err
	}
	if in.Environment == "" {
		in.Environment = EnvSandbox
	}
	e := p.env(in.Environment)
	if e == nil {
		return nil, invalidf("environment must be one of " + strings.Join(p.envNames(), ", "))
	}
	var scopes []string
	for _, s := range in.Scopes {
		scopes = append(scopes, strings.Fields(s)...)
	}
	if len(scopes) == 0 {
		return nil, invalidf("scopes: choose at least one scope")
	}
	patientScoped := slices.ContainsFunc(scopes, func(s string) bool { return strings.HasPrefix(s, "patient/") })
	if in.Environment == EnvProduction {
		if in.Patient != "" || patientScoped {
			return nil, invalidf("patient-bound keys exist only in the sandbox; production keys take system scopes")
		}
		ok, err := p.hasProduction(r.Context(), org.ID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &appError{http.StatusForbidden, "no_production_access", "production keys need an approved production access request of your organisation"}
		}
	}
	if patientScoped && in.Patient == "" {
		return nil, invalidf("patient: choose the sandbox patient the patient/ scopes are bound to")
	}
	k, err := e.Admin.CreateAPIKey(actorCtx(r, v), api.APIKeyRequest{Name: in.Name, Scopes: scopes, Patient: in.Patient, ExpiresIn: in.ExpiresIn, Owner: org.Owner()})
	if err != nil {
		return nil, err
	}
	return &NewKey{NewAPIKey: *k, Environment: in.Environment}, nil
}

// keyAction rotates (grace), suspends, resumes or revokes a key.
func (p *Portal) keyAction(r *http.Request, v *Visitor, org *developer.Membership, envName, id, action string, grace time.Duration) (*NewKey, error) {
	_, e, err := p.ownedKey(r.Context(), envName, id, org)
	if err != nil {
		return nil, err
	}
	ctx := actorCtx(r, v)
	switch action {
	case "rotate":
		if err := canIssue(v); err != nil {
			return nil, err
		}
		if grace < 0 || grace > 30*24*time.Hour {
			return nil, invalidf("grace must be between 0 and 30 days")
		}
		g := api.Duration(grace)
		k, err := e.Admin.RotateAPIKey(ctx, id, api.RotateRequest{Grace: &g})
		if err != nil {
			return nil, err
		}
		return &NewKey{NewAPIKey: *k, Environment: envName}, nil
	case "suspend":
		_, err = e.Admin.SuspendAPIKey(ctx, id, "suspended by developer:"+v.Dev.ID)
	case "resume":
		_, err = e.Admin.ResumeAPIKey(ctx, id)
	case "revoke":
		err = e.Admin.RevokeAPIKey(ctx, id)
	default:
		return nil, errNotFound
	}
	return nil, err
}

type keysData struct {
	Org        *developer.Membership
	Keys       []Key
	Envs       []string
	Options    []string
	Patients   []string
	Production bool
	New        *NewKey
	In         KeyInput
}

func (p *Portal) renderKeys(w http.ResponseWriter, r *http.Request, v *Visitor, status int, org *developer.Membership, d keysData, errMsg, notice string) {
	var err error
	if d.Keys, err = p.orgKeys(r.Context(), org); err != nil {
		p.internalError(w, r, err)
		return
	}
	if d.Production, err = p.hasProduction(r.Context(), org.ID); err != nil {
		p.internalError(w, r, err)
		return
	}
	d.Org, d.Envs, d.Options, d.Patients = org, p.envNames(), keyScopeOptions, dataset.PatientIDs()
	p.render(w, r, status, "keys", pageData{Title: "API keys", V: v, Nav: "keys", Error: errMsg, Notice: notice, Data: d}, nil)
}

func (p *Portal) keysPage(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	p.renderKeys(w, r, v, http.StatusOK, org, keysData{}, "", r.URL.Query().Get("notice"))
	return nil
}

func (p *Portal) keyCreatePost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	f := r.PostForm
	in := KeyInput{Environment: f.Get("environment"), Name: f.Get("name"), Scopes: append(slices.Clone(f["scope"]), lines(f.Get("extra_scopes"))...),
		Patient: strings.TrimSpace(f.Get("patient"))}
	k, err := p.createKey(r, v, org, in)
	if err != nil {
		st, _, desc, ok := appStatus(err)
		if !ok {
			p.internalError(w, r, err)
			return nil
		}
		p.renderKeys(w, r, v, st, org, keysData{In: in}, capitalize(desc)+".", "")
		return nil
	}
	p.record(r, appEvent("developer created API key", v, k.ID))
	p.renderKeys(w, r, v, http.StatusCreated, org, keysData{New: k}, "", "")
	return nil
}

// graces are the rotation grace periods the key page offers.
var graces = overlaps

func (p *Portal) keyActionPost(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	action := r.PathValue("action")
	var grace time.Duration
	if action == "rotate" {
		g, ok := graces[r.PostForm.Get("grace")]
		if !ok {
			return invalidf("choose a grace period")
		}
		grace = g
	}
	k, err := p.keyAction(r, v, org, r.PathValue("env"), r.PathValue("id"), action, grace)
	if err != nil {
		return err
	}
	if k != nil {
		p.record(r, appEvent("developer rotated API key", v, k.ID))
		p.renderKeys(w, r, v, http.StatusOK, org, keysData{New: k}, "", "")
		return nil
	}
	http.Redirect(w, r, p.Path("/keys")+"?"+url.Values{"org": {org.ID}, "notice": {"Key " + r.PathValue("id") + ": " + action + " done."}}.Encode(), http.StatusSeeOther)
	return nil
}

func (p *Portal) apiKeyCreate(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	var in KeyInput
	if !decode(w, r, &in) {
		return nil
	}
	k, err := p.createKey(r, v, org, in)
	if err != nil {
		return err
	}
	p.record(r, appEvent("developer created API key", v, k.ID))
	writeJSON(w, http.StatusCreated, k)
	return nil
}

func (p *Portal) apiKeyAction(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	var in struct {
		Grace *api.Duration `json:"grace"`
	}
	if r.ContentLength != 0 && !decode(w, r, &in) {
		return nil
	}
	grace := api.DefaultGrace
	if in.Grace != nil {
		grace = time.Duration(*in.Grace)
	}
	action := r.PathValue("action")
	if action == "revoke" {
		action = "" // DELETE revokes
	}
	k, err := p.keyAction(r, v, org, r.PathValue("env"), r.PathValue("id"), action, grace)
	if err != nil {
		return err
	}
	if k != nil {
		writeJSON(w, http.StatusOK, k)
		return nil
	}
	key, _, err := p.ownedKey(r.Context(), r.PathValue("env"), r.PathValue("id"), org)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, key)
	return nil
}

func (p *Portal) apiKeyRevoke(w http.ResponseWriter, r *http.Request, v *Visitor, org *developer.Membership) error {
	if _, err := p.keyAction(r, v, org, r.PathValue("env"), r.PathValue("id"), "revoke", 0); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
