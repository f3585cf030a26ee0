package fhirapi

// USCoreServer is the canonical URL of the US Core server
// CapabilityStatement.
const USCoreServer = "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"

const (
	extExpectation = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation"
	extCombination = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-search-parameter-combination"
)

// usCore adds to the generated CapabilityStatement cs what the US Core
// server CapabilityStatement of version asks and this server supports:
// instantiates (the canonical alone, which the certification suite looks
// for, and with |version), the US Core profiles of each resource type in
// supportedProfile, the US Core definition and SHALL/SHOULD/MAY
// expectation of each search parameter it lists, and its search parameter
// combinations. Nothing is claimed for a parameter the server does not
// index.
func (a *API) usCore(cs map[string]any, version string) {
	uc := a.reg.USCoreServer(version)
	if uc == nil {
		return
	}
	cs["instantiates"] = []any{USCoreServer, USCoreServer + "|" + version}
	rest := cs["rest"].([]any)[0].(map[string]any)
	byType := map[string]map[string]any{}
	for _, r := range rest["resource"].([]any) {
		m := r.(map[string]any)
		byType[m["type"].(string)] = m
	}
	for _, u := range uc {
		r := byType[u.Type]
		if r == nil {
			continue
		}
		if len(u.Profiles) > 0 {
			profiles := make([]any, len(u.Profiles))
			for i, p := range u.Profiles {
				profiles[i] = p
			}
			r["supportedProfile"] = profiles
		}
		params, _ := r["searchParam"].([]any)
		supported := map[string]map[string]any{}
		for _, p := range params {
			pm := p.(map[string]any)
			supported[pm["name"].(string)] = pm
		}
		for _, s := range u.Search {
			pm := supported[s.Name]
			if pm == nil {
				continue
			}
			pm["definition"] = s.Definition
			if s.Expectation != "" {
				pm["extension"] = []any{map[string]any{"url": extExpectation, "valueCode": s.Expectation}}
			}
		}
		var exts []any
		for _, c := range u.Combinations {
			parts := []any{map[string]any{"url": extExpectation, "valueCode": c.Expectation}}
			ok := true
			for _, name := range c.Required {
				if supported[name] == nil {
					ok = false
				}
				parts = append(parts, map[string]any{"url": "required", "valueString": name})
			}
			if ok {
				exts = append(exts, map[string]any{"url": extCombination, "extension": parts})
			}
		}
		if len(exts) > 0 {
			r["extension"] = exts
		}
	}
}
