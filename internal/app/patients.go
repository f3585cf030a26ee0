package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
)

// Patients implements oauth.PatientLister over the resource service:
// the authorization server's patient and encounter pickers.
type Patients struct {
	Service *resource.Service
}

// searchEntries runs a search and returns the resources of its matches.
func (f Patients) searchEntries(ctx context.Context, typ string, params url.Values) ([]map[string]any, error) {
	page, err := f.Service.Search(internalCaller(ctx), typ, params, false)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(page.Matches))
	for _, r := range page.Matches {
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// patientSummary condenses a Patient resource.
func patientSummary(p map[string]any) oauth.PatientSummary {
	ps := oauth.PatientSummary{ID: str(p, "id"), BirthDate: str(p, "birthDate"), Gender: str(p, "gender")}
	if names, _ := p["name"].([]any); len(names) > 0 {
		n, _ := names[0].(map[string]any)
		if t := str(n, "text"); t != "" {
			ps.Name = t
		} else {
			var parts []string
			if g, _ := n["given"].([]any); len(g) > 0 {
				for _, x := range g {
					if s, ok := x.(string); ok {
						parts = append(parts, s)
					}
				}
			}
			if f := str(n, "family"); f != "" {
				parts = append(parts, f)
			}
			ps.Name = strings.Join(parts, " ")
		}
	}
	if ps.Name == "" {
		ps.Name = "Patient/" + ps.ID
	}
	return ps
}

// SearchPatients implements oauth.PatientLister.
func (f Patients) SearchPatients(ctx context.Context, name string, limit int) ([]oauth.PatientSummary, error) {
	q := url.Values{"_count": {strconv.Itoa(limit)}}
	if name = strings.TrimSpace(name); name != "" {
		q.Set("name", name)
	}
	rs, err := f.searchEntries(ctx, "Patient", q)
	if err != nil {
		return nil, err
	}
	out := make([]oauth.PatientSummary, 0, len(rs))
	for _, r := range rs {
		out = append(out, patientSummary(r))
	}
	return out, nil
}

// Patient implements oauth.PatientLister.
func (f Patients) Patient(ctx context.Context, id string) (*oauth.PatientSummary, error) {
	if !resource.ValidID(id) {
		return nil, nil
	}
	res, err := f.Service.Read(internalCaller(ctx), "Patient", id)
	var oe *outcome.Error
	if errors.As(err, &oe) && (oe.Status == http.StatusNotFound || oe.Status == http.StatusGone) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(res.Body, &m); err != nil {
		return nil, err
	}
	ps := patientSummary(m)
	return &ps, nil
}

// Encounters implements oauth.PatientLister.
func (f Patients) Encounters(ctx context.Context, patientID string, limit int) ([]oauth.EncounterSummary, error) {
	rs, err := f.searchEntries(ctx, "Encounter", url.Values{"patient": {patientID}, "_sort": {"-date"}, "_count": {strconv.Itoa(limit)}})
	if err != nil {
		return nil, err
	}
	out := make([]oauth.EncounterSummary, 0, len(rs))
	for _, r := range rs {
		label := ""
		if p, _ := r["period"].(map[string]any); p != nil {
			label = str(p, "start")
		}
		if ts, _ := r["type"].([]any); len(ts) > 0 {
			t, _ := ts[0].(map[string]any)
			txt := str(t, "text")
			if cs, _ := t["coding"].([]any); txt == "" && len(cs) > 0 {
				c, _ := cs[0].(map[string]any)
				txt = str(c, "display")
			}
			if txt != "" {
				label = strings.TrimSpace(label + " " + txt)
			}
		}
		if label == "" {
			label = "Encounter/" + str(r, "id")
		}
		out = append(out, oauth.EncounterSummary{ID: str(r, "id"), Label: label})
	}
	return out, nil
}

// internalCaller marks ctx as the authorization server itself looking up
// patients and encounters for its pickers (the user has already been
// authenticated by it): read and search on those two types only.
func internalCaller(ctx context.Context) context.Context {
	return principal.NewContext(ctx, &principal.Principal{
		Method:   "internal",
		ClientID: "lapis-authorization-server",
		Scopes:   []string{"system/Patient.rs", "system/Encounter.rs"},
	})
}

// RecordExists implements oauth.RecordChecker for the resources logins
// and API keys point at: whether Patient/id or Practitioner/id is stored
// and not deleted.
func (f Patients) RecordExists(ctx context.Context, typ, id string) (bool, error) {
	if typ != "Patient" && typ != "Practitioner" {
		return false, fmt.Errorf("cannot check %s resources", typ)
	}
	if !resource.ValidID(id) {
		return false, nil
	}
	ctx = principal.NewContext(ctx, &principal.Principal{
		Method:   "internal",
		ClientID: "lapis-authorization-server",
		Scopes:   []string{"system/" + typ + ".r"},
	})
	_, err := f.Service.Read(ctx, typ, id)
	var oe *outcome.Error
	if errors.As(err, &oe) && (oe.Status == http.StatusNotFound || oe.Status == http.StatusGone) {
		return false, nil
	}
	return err == nil, err
}
