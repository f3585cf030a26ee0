package fhirapi

import (
	"net/http"
	"sort"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/resource"
)

// capabilityStatement generates the CapabilityStatement from what the
// server supports (R4 capabilitystatement.html), applies the
// CapabilityHook and returns its JSON.
func (a *API) capabilityStatement() []byte {
	types := a.reg.ResourceTypes()
	// Reverse includes: for each target type, the reference parameters of
	// other types that may point to it.
	revInc := map[string][]string{}
	var resources []any
	for _, t := range types {
		var params []any
		var includes []string
		for _, sp := range a.reg.SearchParams(t) {
			if sp.Expression == "" && sp.Code != "_id" && sp.Code != "_lastUpdated" {
				continue // _text, _content, _query, ...: not supported
			}
			p := map[string]any{"name": sp.Code, "type": sp.Type}
			if sp.URL != "" {
				p["definition"] = sp.URL
			}
			params = append(params, p)
			if sp.Type == "reference" {
				includes = append(includes, t+":"+sp.Code)
				targets := sp.Targets
				for _, target := range targets {
					revInc[target] = append(revInc[target], t+":"+sp.Code)
				}
			}
		}
		interactions := []any{}
		for _, code := range []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"} {
			interactions = append(interactions, map[string]any{"code": code})
		}
		r := map[string]any{
			"type":              t,
			"profile":           "http://hl7.org/fhir/StructureDefinition/" + t,
			"interaction":       interactions,
			"versioning":        "versioned",
			"readHistory":       true,
			"updateCreate":      true,
			"conditionalCreate": true,
			"conditionalRead":   "not-supported",
			"conditionalUpdate": true,
			"conditionalDelete": "single",
			"referencePolicy":   []any{"literal", "local"},
		}
		if len(includes) > 0 {
			sort.Strings(includes)
			r["searchInclude"] = append([]string{"*"}, includes...)
		}
		if len(params) > 0 {
			r["searchParam"] = params
		}
		if t == "Patient" {
			r["operation"] = []any{map[string]any{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}}
		}
		resources = append(resources, r)
	}
	for _, r := range resources {
		m := r.(map[string]any)
		if list := revInc[m["type"].(string)]; len(list) > 0 {
			sort.Strings(list)
			m["searchRevInclude"] = dedupe(list)
		}
	}
	name := a.cfg.SoftwareName
	if name == "" {
		name = "Lapis"
	}
	software := map[string]any{"name": name}
	if a.cfg.SoftwareVersion != "" {
		software["version"] = a.cfg.SoftwareVersion
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         fhirtime.FormatInstant(time.Now()),
		"publisher":    name,
		"kind":         "instance",
		"software":     software,
		"implementation": map[string]any{
			"description": name + " FHIR R4 server",
			"url":         a.base,
		},
		"fhirVersion": "4.0.1",
		"format":      []any{"json", "application/fhir+json", "application/json"},
		"patchFormat": []any{"application/json-patch+json"},
		"rest": []any{map[string]any{
			"mode":     "server",
			"resource": resources,
			"interaction": []any{
				map[string]any{"code": "transaction"},
				map[string]any{"code": "batch"},
				map[string]any{"code": "search-system"},
				map[string]any{"code": "history-system"},
			},
			"compartment": []any{resource.PatientCompartmentURL},
			"searchParam": []any{
				map[string]any{"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
				map[string]any{"name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
				map[string]any{"name": "_type", "type": "token"},
			},
		}},
	}
	a.usCore(cs, a.cfg.USCoreVersion)
	if a.cfg.CapabilityHook != nil {
		a.cfg.CapabilityHook(cs)
	}
	return marshal(cs)
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// public serves a public document (GET /metadata, /servicebaseurls, and
// CORS preflight) without authentication, with
// Access-Control-Allow-Origin: *.
func (a *API) public(w http.ResponseWriter, r *http.Request, body []byte) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Accept, Authorization, Content-Type, Prefer")
		h.Set("Access-Control-Max-Age", "86400")
		h.Set("Allow", "GET, HEAD, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		a.writeError(w, r, outcome.New(http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed on %s", r.Method, r.URL.Path))
		return
	}
	if err := negotiate(r); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeBody(w, r, http.StatusOK, body)
}
