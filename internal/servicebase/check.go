package servicebase

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/validate"
)

// Severities of a Problem: an error fails the certification test kit, a
// warning or info does not.
const (
	Error   = "error"
	Warning = "warning"
	Info    = "info"
)

// Problem is one rule a Bundle breaks.
type Problem struct {
	Severity string `json:"severity"`
	// Rule is the conformance.md §6 item: "retrieval", "bundle",
	// "endpoint", "endpoint-url", "organization".
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Severity + " [" + p.Rule + "] " + p.Message }

// Fetcher fetches {address}/metadata without credentials (with Accept:
// application/fhir+json) and returns the HTTP status and body.
type Fetcher func(address string) (status int, body []byte, err error)

// Check applies every rule of conformance.md §6 to a published Bundle: a
// valid R4 Bundle (by v) of Endpoints and Organizations, each Endpoint
// valid, referenced by an Organization and with an http(s) address whose
// /metadata (when fetch is set) answers 200 with a CapabilityStatement
// without credentials, each Organization valid, with an address, and
// endpoints in the Bundle (or a partOf Organization with them). It returns
// the problems found, errors first.
func Check(body []byte, v *validate.Validator, fetch Fetcher) []Problem {
	var ps []Problem
	add := func(sev, rule, format string, args ...any) {
		ps = append(ps, Problem{sev, rule, fmt.Sprintf(format, args...)})
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var bundle map[string]any
	if err := dec.Decode(&bundle); err != nil {
		add(Error, "bundle", "not valid JSON: %v", err)
		return ps
	}
	if bundle["resourceType"] != "Bundle" {
		add(Error, "bundle", "resourceType is %v, not Bundle", bundle["resourceType"])
		return ps
	}
	if v != nil {
		for _, is := range v.Validate(bundle) {
			add(Error, "bundle", "invalid R4 Bundle: %s: %s", is.Expression, is.Message)
		}
	}
	if bundle["type"] != "collection" {
		add(Warning, "bundle", "Bundle.type is %v; the published example uses collection", bundle["type"])
	}
	entries, _ := bundle["entry"].([]any)
	if len(entries) == 0 {
		add(Info, "bundle", "the Bundle has no entries")
		return sortProblems(ps)
	}
	var endpoints, orgs []map[string]any
	for i, e := range entries {
		em, _ := e.(map[string]any)
		res, _ := em["resource"].(map[string]any)
		if fu, _ := em["fullUrl"].(string); fu == "" {
			add(Warning, "bundle", "entry %d has no fullUrl", i)
		}
		switch res["resourceType"] {
		case "Endpoint":
			endpoints = append(endpoints, res)
		case "Organization":
			orgs = append(orgs, res)
		default:
			add(Warning, "bundle", "entry %d is a %v, neither Endpoint nor Organization", i, res["resourceType"])
		}
	}
	endpointIDs := map[string]bool{}
	var orgEndpointRefs []string
	orgByID := map[string]map[string]any{}
	for _, o := range orgs {
		id, _ := o["id"].(string)
		orgByID[id] = o
		for _, r := range refsOf(o["endpoint"]) {
			orgEndpointRefs = append(orgEndpointRefs, r)
		}
	}
	addresses := map[string]bool{}
	for _, ep := range endpoints {
		id, _ := ep["id"].(string)
		endpointIDs[id] = true
		for _, el := range []string{"status", "connectionType", "payloadType", "address"} {
			if isEmpty(ep[el]) {
				add(Error, "endpoint", "Endpoint/%s has no %s", id, el)
			}
		}
		referenced := false
		for _, r := range orgEndpointRefs {
			if id != "" && strings.Contains(r, id) {
				referenced = true
			}
		}
		if !referenced {
			add(Error, "endpoint", "Endpoint/%s is not referenced by any Organization.endpoint", id)
		}
		addr, _ := ep["address"].(string)
		if addr == "" {
			continue
		}
		if err := checkBase(addr); err != nil {
			add(Error, "endpoint-url", "Endpoint/%s: %v", id, err)
			continue
		}
		addresses[addr] = true
	}
	if fetch != nil {
		list := make([]string, 0, len(addresses))
		for a := range addresses {
			list = append(list, a)
		}
		sort.Strings(list)
		for _, a := range list {
			status, b, err := fetch(strings.TrimSuffix(a, "/") + "/metadata")
			var head struct {
				ResourceType string `json:"resourceType"`
			}
			switch {
			case err != nil:
				add(Error, "endpoint-url", "GET %s/metadata: %v", a, err)
			case status != 200:
				add(Error, "endpoint-url", "GET %s/metadata without credentials: status %d, want 200", a, status)
			case json.Unmarshal(b, &head) != nil || head.ResourceType != "CapabilityStatement":
				add(Error, "endpoint-url", "GET %s/metadata: not a CapabilityStatement", a)
			}
		}
	}
	if len(orgs) == 1 {
		add(Warning, "organization", "the Bundle holds only one Organization")
	}
	for _, o := range orgs {
		id, _ := o["id"].(string)
		if isEmpty(o["address"]) {
			add(Error, "organization", "Organization/%s has no address", id)
		}
		if o["active"] != true {
			add(Warning, "organization", "Organization/%s is not active: true", id)
		}
		if isEmpty(o["name"]) {
			add(Warning, "organization", "Organization/%s has no name", id)
		}
		if !hasNPI(o) {
			add(Warning, "organization", "Organization/%s has no NPI identifier (%s)", id, NPISystem)
		}
		refs := refsOf(o["endpoint"])
		ok := len(refs) > 0
		for _, r := range refs {
			if !endpointIDs[lastSegment(r)] {
				ok = false
				add(Error, "organization", "Organization/%s: endpoint %s is not an Endpoint of the Bundle", id, r)
			}
		}
		if !ok && len(refs) == 0 {
			parents := refsOf([]any{o["partOf"]})
			if len(parents) == 1 {
				if p := orgByID[lastSegment(parents[0])]; p != nil && len(refsOf(p["endpoint"])) > 0 {
					ok = true
				}
			}
			if !ok {
				add(Error, "organization", "Organization/%s has no endpoint and no partOf Organization of the Bundle with one", id)
			}
		}
	}
	return sortProblems(ps)
}

func sortProblems(ps []Problem) []Problem {
	rank := map[string]int{Error: 0, Warning: 1, Info: 2}
	sort.SliceStable(ps, func(i, j int) bool { return rank[ps[i].Severity] < rank[ps[j].Severity] })
	return ps
}

// Errors counts the problems of severity error.
func Errors(ps []Problem) int {
	n := 0
	for _, p := range ps {
		if p.Severity == Error {
			n++
		}
	}
	return n
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return strings.TrimSpace(x) == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// refsOf returns the reference strings of a Reference or a list of them.
func refsOf(v any) []string {
	var out []string
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	for _, r := range list {
		if m, ok := r.(map[string]any); ok {
			if s, _ := m["reference"].(string); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func lastSegment(ref string) string {
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

func hasNPI(o map[string]any) bool {
	ids, _ := o["identifier"].([]any)
	for _, id := range ids {
		if m, ok := id.(map[string]any); ok && m["system"] == NPISystem && !isEmpty(m["value"]) {
			return true
		}
	}
	return false
}
