package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

// Export levels.
const (
	levelSystem  = "system"
	levelPatient = "patient"
	levelGroup   = "group"
)

// maxParamsBytes bounds a kick-off's Parameters body.
const maxParamsBytes = 1 << 20

// maxPatients bounds the patients of a Group or patient parameter.
const maxPatients = 100000

// plan is what a job exports, decided at kick-off and stored with it.
type plan struct {
	Level string `json:"level"`
	// Patients, when set, restricts the Patient-compartment types and
	// the patient-linked ones (Device, Binary) to these patients' records
	// (Group members, the patient parameter).
	Patients []string `json:"patients,omitempty"`
	// Runs are the searches, grouped by type in output order.
	Runs []run `json:"runs"`
	// Provenance (includeAssociatedData=LatestProvenanceResources): for
	// each resource exported, the latest Provenance that targets it; no
	// other Provenance.
	Provenance bool `json:"provenance,omitempty"`
}

// run is one search of an export: a type and its query (the _typeFilter,
// _since/_until as _lastUpdated, _elements).
type run struct {
	Type  string `json:"type"`
	Query string `json:"query"`
	// Compartment: restrict to the plan's patients.
	Compartment bool `json:"compartment,omitempty"`
}

// acceptedFormats are the _outputFormat values of NDJSON.
var acceptedFormats = []string{"application/fhir+ndjson", "application/ndjson", "ndjson"}

// kickOffParams reads the parameters of a kick-off: the query string of a
// GET, or the Parameters body of a POST (whose query string must be
// empty). Values of repeated or comma-separated parameters are split
// (except _typeFilter, whose queries carry their own commas escaped).
func kickOffParams(r *http.Request) (map[string][]string, error) {
	out := map[string][]string{}
	add := func(name, v string) {
		if name == "_typeFilter" || name == "patient" {
			out[name] = append(out[name], v)
			return
		}
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out[name] = append(out[name], p)
			}
		}
	}
	if r.Method == http.MethodGet {
		q, err := resource.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, err
		}
		for k, vs := range q {
			for _, v := range vs {
				add(k, v)
			}
		}
		if _, ok := out["patient"]; ok {
			return nil, outcome.BadRequest("the patient parameter is accepted in a POST Parameters body only")
		}
		return out, nil
	}
	if r.URL.RawQuery != "" {
		return nil, outcome.BadRequest("a POST kick-off takes its parameters in a Parameters body, not in the query string")
	}
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxParamsBytes))
	if err != nil {
		return nil, outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "the Parameters body is larger than %d bytes", maxParamsBytes)
	}
	var body struct {
		ResourceType string                       `json:"resourceType"`
		Parameter    []map[string]json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.ResourceType != "Parameters" {
		return nil, outcome.BadRequest("the body must be a FHIR Parameters resource")
	}
	for _, p := range body.Parameter {
		var name string
		if err := json.Unmarshal(p["name"], &name); err != nil || name == "" {
			return nil, outcome.BadRequest("every parameter needs a name")
		}
		var v string
		for k, val := range p {
			switch {
			case k == "valueReference":
				var ref struct{ Reference string }
				if json.Unmarshal(val, &ref) != nil || ref.Reference == "" {
					return nil, outcome.BadRequest("parameter %s: valueReference needs a reference", name)
				}
				v = ref.Reference
			case strings.HasPrefix(k, "value"):
				if json.Unmarshal(val, &v) != nil {
					var b bool
					if json.Unmarshal(val, &b) != nil {
						return nil, outcome.BadRequest("parameter %s: unsupported value", name)
					}
					v = strconv.FormatBool(b)
				}
			}
		}
		if v == "" {
			return nil, outcome.BadRequest("parameter %s has no value", name)
		}
		add(name, v)
	}
	return out, nil
}

// buildPlan checks the parameters of a kick-off at level and decides the
// searches, under the caller's access (ctx): unknown parameters, types and
// search parameters are 400, types the caller may not search 403 when
// named (left out when not). group holds the Group's patients.
func (s *Service) buildPlan(ctx context.Context, level string, params map[string][]string, group []string, txTime time.Time) (*plan, error) {
	reg := s.svc.Registry()
	pl := &plan{Level: level}
	// The export reflects the data as of its transactionTime: a resource
	// changed later is left for the next export (_since=transactionTime),
	// and a job rewritten after a crash writes the same files.
	base := url.Values{"_lastUpdated": {"le" + fhirtime.FormatInstant(txTime)}}
	typeFilters := map[string][]string{}
	elements := map[string][]string{}
	var types []string
	provenance := false
	for name, vs := range params {
		switch name {
		case "_outputFormat":
			for _, v := range vs {
				// A '+' left unescaped in the query arrives as a space
				// (application/fhir+ndjson, as the spec writes it).
				if !slices.Contains(acceptedFormats, strings.ReplaceAll(v, " ", "+")) {
					return nil, outcome.BadRequest("_outputFormat %q is not supported (supported: %s)", v, strings.Join(acceptedFormats, ", "))
				}
			}
		case "_since", "_until":
			if len(vs) != 1 {
				return nil, outcome.BadRequest("%s takes one value", name)
			}
			// Checked here, not by the _lastUpdated search it becomes, so
			// that a refusal names the parameter and the value the client
			// sent, not "gt"+value.
			v := fhirtime.QueryValue(vs[0])
			if _, err := fhirtime.Parse(v); err != nil {
				return nil, outcome.BadRequest("%s: %q is not a valid instant (expected YYYY-MM-DDThh:mm:ss[.fff] with Z or ±hh:mm; a date YYYY[-MM[-DD]] is also accepted)",
					name, outcome.Truncate(v, 100))
			}
			prefix := "gt"
			if name == "_until" {
				prefix = "le"
			}
			base.Add("_lastUpdated", prefix+v)
		case "_type":
			for _, t := range vs {
				if !reg.IsResourceType(t) {
					return nil, outcome.BadRequest("_type: %q is not a resource type", t)
				}
				if !slices.Contains(types, t) {
					types = append(types, t)
				}
			}
		case "_typeFilter":
			for _, v := range vs {
				for _, q := range strings.Split(v, ",") {
					t, query, ok := strings.Cut(strings.TrimSpace(q), "?")
					if !ok || !reg.IsResourceType(t) {
						return nil, outcome.BadRequest("_typeFilter %q: expected TYPE?QUERY", q)
					}
					typeFilters[t] = append(typeFilters[t], query)
				}
			}
		case "_elements":
			for _, e := range vs {
				t, el, ok := strings.Cut(e, ".")
				if !ok {
					t, el = "", e
				} else if !reg.IsResourceType(t) {
					return nil, outcome.BadRequest("_elements: %q is not a resource type", t)
				}
				elements[t] = append(elements[t], el)
			}
		case "patient":
			if level == levelSystem {
				return nil, outcome.BadRequest("the patient parameter applies to Patient and Group exports only")
			}
			// Each patient once: a patient named twice would have its
			// record searched, and written, twice.
			var ids []string
			listed := make(map[string]bool, len(vs))
			for _, ref := range vs {
				id, ok := strings.CutPrefix(ref, "Patient/")
				if !ok || id == "" || strings.Contains(id, "/") {
					return nil, outcome.BadRequest("patient: %q is not a Patient reference", ref)
				}
				if !listed[id] {
					listed[id] = true
					ids = append(ids, id)
				}
			}
			if group != nil {
				// Bulk Data 2.0: patients who are not members of the group
				// SHOULD be an error, not an export that leaves them out.
				members := make(map[string]bool, len(group))
				for _, id := range group {
					members[id] = true
				}
				for _, id := range ids {
					if !members[id] {
						return nil, outcome.BadRequest("patient: Patient/%s is not a member of the Group (an active Patient member.entity)", id)
					}
				}
			}
			group = ids
		case "includeAssociatedData":
			for _, v := range vs {
				if v != "LatestProvenanceResources" {
					return nil, outcome.BadRequest("includeAssociatedData %q is not supported (supported: LatestProvenanceResources)", v)
				}
			}
			provenance = true
		default:
			return nil, outcome.BadRequest("parameter %q is not supported by $export", name)
		}
	}
	if len(group) > maxPatients {
		return nil, outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "an export may name at most %d patients", maxPatients)
	}
	if _, named := params["patient"]; named {
		if err := s.checkPatients(ctx, group); err != nil {
			return nil, err
		}
	}
	pl.Patients = group
	named := types != nil
	if !named {
		types = reg.ResourceTypes()
	}
	if provenance {
		// Bulk Data: "other Provenance resources will not be returned".
		types = slices.DeleteFunc(types, func(t string) bool { return t == "Provenance" })
		check := url.Values{"_count": {"0"}}
		if err := s.svc.Each(ctx, "Provenance", check, func(*store.Resource) error { return nil }); err != nil {
			return nil, err
		}
		pl.Provenance = true
	}
	for t := range typeFilters {
		if !slices.Contains(types, t) {
			return nil, outcome.BadRequest("_typeFilter names %s, which _type leaves out", t)
		}
	}
	for _, t := range types {
		queries := typeFilters[t]
		if len(queries) == 0 {
			queries = []string{""}
		}
		comp := pl.Patients != nil && len(reg.PatientRecord(t)) > 0
		var runs []run
		for _, q := range queries {
			v, err := resource.ParseQuery(q)
			if err != nil {
				return nil, err
			}
			for _, reserved := range []string{"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_contained", "_containedType"} {
				if v.Has(reserved) {
					return nil, outcome.BadRequest("_typeFilter %s?%s: %s is not allowed in an export", t, q, reserved)
				}
			}
			for k, vs := range base {
				v[k] = append(v[k], vs...)
			}
			if els := append(append([]string(nil), elements[""]...), elements[t]...); len(els) > 0 {
				v.Set("_elements", strings.Join(els, ","))
			}
			// The same search, strict, without reading a row: a bad or
			// unsupported parameter is a 400 here, never ignored. (Set
			// replaces _count in the copy only; Each copies its params.)
			check := maps.Clone(v)
			check.Set("_count", "0")
			if err := s.svc.Each(ctx, t, check, func(*store.Resource) error { return nil }); err != nil {
				var oe *outcome.Error
				if !named && errors.As(err, &oe) && oe.Status == http.StatusForbidden && typeFilters[t] == nil {
					runs = nil
					break // not searchable by this caller: left out
				}
				return nil, err
			}
			runs = append(runs, run{Type: t, Query: v.Encode(), Compartment: comp})
		}
		pl.Runs = append(pl.Runs, runs...)
	}
	return pl, nil
}

// groupPatients returns the Patient members of Group/id, read under the
// caller's access (404 when the caller cannot see it).
func (s *Service) groupPatients(ctx context.Context, id string) ([]string, error) {
	res, err := s.svc.Read(ctx, "Group", id)
	if err != nil {
		return nil, err
	}
	var g struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
		} `json:"member"`
	}
	if err := json.Unmarshal(res.Resource.Body, &g); err != nil {
		return nil, err
	}
	ids := []string{}
	for _, m := range g.Member {
		ref := strings.TrimPrefix(m.Entity.Reference, s.base+"/")
		if id, ok := strings.CutPrefix(ref, "Patient/"); ok && id != "" && !m.Inactive && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// patientChunk is how many patients checkPatients looks up per search.
const patientChunk = 100

// checkPatients answers 404 naming the first of ids (the patient
// parameter of a kick-off) that is no Patient the caller may read: Bulk
// Data asks for an error rather than an export that silently leaves a
// patient out. A hidden Patient looks the same as a missing one. A caller
// who may not search Patients (system/Observation.rs) is not refused for
// it: whether a patient exists is not its to learn, and the export holds
// what it may see of the patients named, as it did before the check.
func (s *Service) checkPatients(ctx context.Context, ids []string) error {
	for chunk := range slices.Chunk(ids, patientChunk) {
		found := make(map[string]bool, len(chunk))
		q := url.Values{"_id": {strings.Join(chunk, ",")}, "_count": {strconv.Itoa(patientChunk)}}
		if err := s.svc.Each(ctx, "Patient", q, func(r *store.Resource) error {
			found[r.ID] = true
			return nil
		}); err != nil {
			var oe *outcome.Error
			if errors.As(err, &oe) && oe.Status == http.StatusForbidden {
				return nil
			}
			return err
		}
		for _, id := range chunk {
			if !found[id] {
				return outcome.New(http.StatusNotFound, "not-found", "patient: Patient/%s is not known", id)
			}
		}
	}
	return nil
}
