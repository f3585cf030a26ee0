package authorize

import (
	"slices"
	"strings"

	"github.com/lapis-health/lapis/internal/oauth"
)

// category is a category sub-scope offered on the consent page.
type category struct {
	Token string // system|code
	Label string
}

// Category sub-scopes offered for Condition and Observation (US Core 6/7,
// conformance.md §2.9).
var categories = map[string][]category{
	"Condition": {
		{"http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis", "Encounter diagnoses"},
		{"http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item", "Problem list"},
		{"http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern", "Health concerns"},
	},
	"Observation": {
		{"http://terminology.hl7.org/CodeSystem/observation-category|laboratory", "Laboratory results"},
		{"http://terminology.hl7.org/CodeSystem/observation-category|vital-signs", "Vital signs"},
		{"http://terminology.hl7.org/CodeSystem/observation-category|social-history", "Social history"},
		{"http://terminology.hl7.org/CodeSystem/observation-category|survey", "Surveys"},
		{"http://terminology.hl7.org/CodeSystem/observation-category|procedure", "Clinical tests"},
		{"http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh", "Social determinants of health (SDOH)"},
	},
}

// consentChoice is one resource scope on the consent page, with its
// category sub-scopes for Condition and Observation.
type consentChoice struct {
	Scope      string
	Label      string
	Categories []categoryChoice
}

// categoryChoice is a category sub-scope of a consent choice.
type categoryChoice struct {
	Scope string
	Label string
}

// consentChoices lists the resource scopes among scopes, each with the
// category sub-scopes the user may pick instead (resource-level Condition
// and Observation read scopes only).
func consentChoices(scopes []string) []consentChoice {
	var out []consentChoice
	for _, sc := range scopes {
		rs, ok := oauth.ParseResourceScope(sc)
		if !ok {
			continue
		}
		c := consentChoice{Scope: sc, Label: scopeLabel(rs)}
		if rs.Query == "" && strings.ContainsAny(rs.Perms, "rs") {
			for _, cat := range categories[rs.Type] {
				c.Categories = append(c.Categories, categoryChoice{Scope: sc + "?category=" + cat.Token, Label: cat.Label})
			}
		}
		out = append(out, c)
	}
	return out
}

// scopeLabel describes a resource scope for people.
func scopeLabel(rs oauth.ResourceScope) string {
	typ := rs.Type
	if typ == "*" {
		typ = "All record types"
	}
	var verbs []string
	for _, p := range rs.Perms {
		switch p {
		case 'c':
			verbs = append(verbs, "create")
		case 'r':
			verbs = append(verbs, "read")
		case 'u':
			verbs = append(verbs, "update")
		case 'd':
			verbs = append(verbs, "delete")
		case 's':
			verbs = append(verbs, "search")
		}
	}
	l := typ + " (" + strings.Join(verbs, ", ") + ")"
	if rs.Query != "" {
		l += " — only " + categoryLabel(rs.Type, rs.Query)
	}
	return l
}

// categoryLabel names a granular query for people.
func categoryLabel(typ, query string) string {
	if tok, ok := strings.CutPrefix(query, "category="); ok {
		for _, c := range categories[typ] {
			if c.Token == tok {
				return c.Label
			}
		}
	}
	return query
}

// grantedScopes computes the scopes granted from the user's ticks: the
// identity and launch scopes of the request that apply (fixed, given
// context), then every ticked resource scope or category sub-scope that the
// consent page offered, then offline_access if ticked. Anything else in
// ticked is ignored. The order follows the request.
func grantedScopes(requested []string, ticked []string, ehr, hasPatient bool) []string {
	var out []string
	for _, sc := range requested {
		switch sc {
		case "openid", "fhirUser", "profile", "online_access":
			out = append(out, sc)
		case "launch":
			if ehr {
				out = append(out, sc)
			}
		case "launch/patient":
			if hasPatient {
				out = append(out, sc)
			}
		case "launch/encounter":
			if ehr {
				out = append(out, sc)
			}
		}
	}
	for _, c := range consentChoices(requested) {
		if slices.Contains(ticked, c.Scope) {
			out = append(out, c.Scope)
		}
		for _, cat := range c.Categories {
			if slices.Contains(ticked, cat.Scope) && !slices.Contains(out, cat.Scope) {
				out = append(out, cat.Scope)
			}
		}
	}
	if slices.Contains(requested, "offline_access") && slices.Contains(ticked, "offline_access") {
		out = append(out, "offline_access")
	}
	return out
}
