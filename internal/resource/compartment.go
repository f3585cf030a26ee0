package resource

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// PatientCompartmentURL is the canonical URL of the R4 Patient
// CompartmentDefinition, the one compartment the server searches.
const PatientCompartmentURL = "http://hl7.org/fhir/CompartmentDefinition/patient"

// patientCompartment returns the Patient compartment of Patient/id.
func (s *Service) patientCompartment(id string) *store.Compartment {
	return &store.Compartment{Type: "Patient", ID: id, Params: s.compParams}
}

// patientRecord returns Patient/id's record: its compartment and the
// patient-linked types outside it (Registry.PatientRecord: Device, Binary).
func (s *Service) patientRecord(id string) *store.Compartment {
	return &store.Compartment{Type: "Patient", ID: id, Params: s.recordParams}
}

// SearchCompartment runs a compartment search (R4 search.html#compartments,
// "GET [base]/Patient/[id]/[type]?parameters"): the search of typ as
// Search runs it, its matches restricted to the members of Patient/id's
// compartment (R4 CompartmentDefinition/patient: the resources of typ that
// reference Patient/id through one of typ's compartment parameters, and
// Patient/id itself when typ is Patient), under the caller's access
// filter like every search. typ "*" searches every type of the
// compartment (a system-level search, where _type may narrow the types).
// The page's links point at the compartment URL.
//
// compartment must be "Patient" (404 otherwise: the other compartments are
// not supported); a typ outside the compartment is a 400.
func (s *Service) SearchCompartment(ctx context.Context, compartment, id, typ string, params url.Values, strict bool) (*SearchPage, error) {
	if err := s.checkType(compartment); err != nil {
		return nil, err
	}
	if compartment != "Patient" {
		return nil, outcome.New(http.StatusNotFound, "not-supported", "compartment searches are supported in the Patient compartment only, not in %s", compartment)
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	comp := s.patientCompartment(id)
	op, searched := InteractionSearchType, typ
	if typ == "*" {
		op, searched = InteractionSearchSystem, ""
	} else {
		if err := s.checkType(typ); err != nil {
			return nil, err
		}
		if len(comp.Params[typ]) == 0 {
			return nil, outcome.BadRequest("%s is not in the Patient compartment (%s)", typ, PatientCompartmentURL)
		}
	}
	if err := s.access.Check(ctx, op, searched); err != nil {
		return nil, err
	}
	sc := &searchScope{compartment: comp, path: s.base + "/Patient/" + id + "/" + typ}
	p, err := s.scopedSearch(ctx, s.st, searched, params, strict, s.maxResp, sc)
	if errors.Is(err, errTooLarge) {
		return nil, s.pageTooLarge("search result page", "lower _count, select less with _elements or _summary, or drop _include/_revinclude")
	}
	if err != nil {
		return nil, s.internal(ctx, "compartment search", err)
	}
	return p, nil
}

// Everything runs Patient/id/$everything (R4
// patient-operation-everything.html): a page (searchset) of the Patient
// and every resource in its compartment (R4 CompartmentDefinition/patient)
// or linked to it outside the compartment (its Devices, through
// Device.patient, and Binaries, through Binary.securityContext) that the
// caller may search, oldest change first, paged by _count with next
// links. Parameters: _since (an instant: only resources changed at
// or after it), _type (resource types, comma-separated or repeated), _count
// (page size, bounded like a search's); the paging links add _offset and
// _snapshot. start and end (care dates) are not supported (400), nor is
// any other parameter. A page is cut short where the next resource would
// take it past the response size limit; its next link continues there.
// The resources a page's resources reference (through a reference search
// parameter) outside the patient's record — its Practitioners,
// Organizations, Locations, Medications… — follow on the same page as
// include entries, as far as the caller may read them ("any resource
// referenced from those", R4): with _type, only of the types it names
// (kept in the links), left out with a warning where a page of a single
// match fits the response size limit only without them. A resource of
// another patient's record is never added this way. An
// unknown or deleted Patient is 404 or 410 to a caller who may read it.
func (s *Service) Everything(ctx context.Context, id string, params url.Values) (*SearchPage, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := s.access.Check(ctx, InteractionSearchSystem, ""); err != nil {
		return nil, err
	}
	// The operation is on the Patient: unknown, outside the caller's
	// scopes or deleted, it answers as its read does (404, 410) to a
	// caller who may see Patients. To one who may not, that answer would
	// tell whether the Patient exists: it gets the compartment's page,
	// which says nothing either way. Asked of the filter, not of Check,
	// which notes a refusal for the request when it refuses.
	if s.access.Filter(ctx).MayShow("Patient") {
		if _, err := s.readVisible(ctx, s.st, "Patient", id); err != nil {
			var oe *outcome.Error
			if errors.As(err, &oe) {
				return nil, err
			}
			return nil, s.internal(ctx, "$everything", err)
		}
	}
	comp := s.patientRecord(id)
	sp := url.Values{}
	var since string
	var warnings []string
	var types []string // _type, when given
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := params[k]
		switch k {
		case "_since", "_count", "_offset", SnapshotParam:
			if len(vals) > 1 {
				return nil, outcome.BadRequest("parameter %s may appear only once", k)
			}
		}
		switch k {
		case "_since":
			since = fhirtime.QueryValue(vals[0])
			if _, err := fhirtime.Parse(since); err != nil {
				return nil, outcome.BadRequest("invalid value for _since: expected an instant (YYYY-MM-DDThh:mm:ss[.fff]Z or ±hh:mm)")
			}
			sp.Set("_lastUpdated", "ge"+since)
		case "_type":
			for _, v := range vals {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					if t == "" || !s.reg.IsResourceType(t) {
						return nil, outcome.BadRequest("invalid value for _type: %q is not a resource type", outcome.Truncate(t, 100))
					}
					if len(comp.Params[t]) == 0 {
						warnings = append(warnings, t+" is not in the Patient compartment nor linked to a patient: "+t+" resources are returned only as referenced by the other types' resources")
					}
					types = append(types, t)
				}
			}
		case "_count", "_offset", SnapshotParam:
			sp.Set(k, vals[0])
		case "start", "end":
			return nil, outcome.New(http.StatusBadRequest, "not-supported", "the $everything parameter %s (care dates) is not supported; use _since", k)
		default:
			return nil, outcome.New(http.StatusBadRequest, "not-supported", "unknown $everything parameter %q (supported: _since, _type, _count)", outcome.Truncate(k, 100))
		}
	}
	// The matches are the record's types (_type's of them); a type
	// outside the record comes only as referenced.
	if len(types) > 0 {
		var inRecord []string
		for _, t := range types {
			if len(comp.Params[t]) > 0 {
				inRecord = append(inRecord, t)
			}
		}
		if len(inRecord) == 0 {
			inRecord = types // no matches: the compartment search says so
		}
		sp.Set("_type", strings.Join(inRecord, ","))
	}
	sc := &searchScope{
		compartment: comp,
		// The record's own types come as matches: left out of the
		// includes in the statement, before the include limit counts.
		include: []store.Include{{SourceType: "*", Param: "*", NotTargetTypes: s.recordTypes}},
		keepIncluded: func(t string) bool {
			return len(comp.Params[t]) == 0 && (len(types) == 0 || slices.Contains(types, t))
		},
		path: s.base + "/Patient/" + id + "/$everything",
		links: func(v url.Values) {
			v.Del("_lastUpdated")
			if since != "" {
				v.Set("_since", since)
			}
			// The request's _type, with the types that come only as
			// referenced (the search's holds the record's alone).
			if len(types) > 0 {
				v.Set("_type", strings.Join(types, ","))
			}
		},
		warnings: warnings,
		fit:      true,
	}
	p, err := s.scopedSearch(ctx, s.st, "", sp, false, s.maxResp, sc)
	if errors.Is(err, errTooLarge) {
		return nil, s.pageTooLarge("$everything page", "a single resource of the compartment is larger than that limit")
	}
	if err != nil {
		return nil, s.internal(ctx, "$everything", err)
	}
	return p, nil
}

// EverythingParameters reads the Parameters resource of a POST
// Patient/[id]/$everything into the parameters Everything takes: _since
// (valueInstant or valueDateTime), _type (valueCode or valueString), _count
// (valueInteger or valuePositiveInt), start and end (refused by
// Everything).
func EverythingParameters(body []byte) (url.Values, error) {
	var p struct {
		ResourceType string                       `json:"resourceType"`
		Parameter    []map[string]json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, outcome.BadRequest("the body of $everything must be a Parameters resource")
	}
	out := url.Values{}
	for i, prm := range p.Parameter {
		var name string
		if err := json.Unmarshal(prm["name"], &name); err != nil || name == "" {
			return nil, outcome.BadRequest("Parameters.parameter[%d] has no name", i)
		}
		var val string
		found := false
		for k, raw := range prm {
			if !strings.HasPrefix(k, "value") {
				continue
			}
			if found {
				return nil, outcome.BadRequest("Parameters.parameter[%d] (%s) has more than one value", i, outcome.Truncate(name, 100))
			}
			found = true
			var str string
			var n json.Number
			switch {
			case json.Unmarshal(raw, &str) == nil:
				val = str
			case json.Unmarshal(raw, &n) == nil:
				val = n.String()
			default:
				return nil, outcome.BadRequest("Parameters.parameter[%d] (%s) must have a primitive value", i, outcome.Truncate(name, 100))
			}
		}
		if !found {
			return nil, outcome.BadRequest("Parameters.parameter[%d] (%s) has no value", i, outcome.Truncate(name, 100))
		}
		if name == "_count" {
			if _, err := strconv.Atoi(val); err != nil {
				return nil, outcome.BadRequest("Parameters.parameter[%d] (_count) must be an integer", i)
			}
		}
		out[name] = append(out[name], val)
	}
	return out, nil
}
