package oauth

import (
	"regexp"
	"slices"
	"strings"
)

// resourceScope is a parsed SMART resource scope: v1
// "patient/Observation.read" or v2 "patient/Observation.rs", optionally
// with a granular query "?category=system|code".
type resourceScope struct {
	context string // patient, user or system
	typ     string // resource type or "*"
	perms   string // normalized subset of "cruds"
	query   string
}

var (
	resourceScopeRE = regexp.MustCompile(`^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)(\?[^\s]+)?$`)
)

// parseResourceScope parses a SMART resource scope.
func parseResourceScope(s string) (resourceScope, bool) {
	m := resourceScopeRE.FindStringSubmatch(s)
	if m == nil || m[3] == "" {
		return resourceScope{}, false
	}
	rs := resourceScope{context: m[1], typ: m[2], query: strings.TrimPrefix(m[4], "?")}
	switch m[3] {
	case "read":
		rs.perms = "rs"
	case "write":
		rs.perms = "cud"
	case "*":
		rs.perms = "cruds"
	default:
		rs.perms = m[3]
	}
	return rs, true
}

// covers reports whether the registered scope reg allows the requested
// scope req: same context, same type (or a * registration), no more
// permissions, and the same query unless reg has none.
func (reg resourceScope) covers(req resourceScope) bool {
	if reg.context != req.context || (reg.typ != "*" && reg.typ != req.typ) {
		return false
	}
	for _, p := range req.perms {
		if !strings.ContainsRune(reg.perms, p) {
			return false
		}
	}
	return reg.query == "" || reg.query == req.query
}

// identityScopes are the non-resource scopes Lapis understands at
// /authorize.
var identityScopes = []string{"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"}

// allowedScopes filters the requested scopes to those the client may be
// granted at /authorize: identity and launch scopes it registered exactly,
// and patient/ or user/ resource scopes covered by a registered scope
// (system/ scopes are never granted to a user). Others are dropped (RFC
// 6749 §3.3 lets the server grant less than asked); duplicates too.
func allowedScopes(requested, registered []string) []string {
	var regRes []resourceScope
	for _, r := range registered {
		if rs, ok := parseResourceScope(r); ok {
			regRes = append(regRes, rs)
		}
	}
	var out []string
	for _, sc := range requested {
		if slices.Contains(out, sc) {
			continue
		}
		if slices.Contains(identityScopes, sc) {
			if slices.Contains(registered, sc) {
				out = append(out, sc)
			}
			continue
		}
		rs, ok := parseResourceScope(sc)
		if !ok || rs.context == "system" {
			continue
		}
		if slices.ContainsFunc(regRes, func(reg resourceScope) bool { return reg.covers(rs) }) {
			out = append(out, sc)
		}
	}
	return out
}

// staffUser reports whether fhirUser ("Practitioner/ID") names a member of
// staff, whose user/ scopes reach across patients.
func staffUser(fhirUser string) bool {
	return strings.HasPrefix(fhirUser, "Practitioner/") || strings.HasPrefix(fhirUser, "PractitionerRole/")
}

// scopesForUser bounds the scopes granted to a user by who the user is
// (fhirUser): a user/ scope means "what this user may see", so
//
//   - staff (Practitioner/…, PractitionerRole/…) keep their user/ scopes;
//   - for a patient ("Patient/ID") every user/ scope becomes the patient/
//     scope of the same type, permissions and restrictions: the patient's
//     own compartment, with the patient in context;
//   - any other user gets no user/ scope.
//
// system/ scopes are never granted to a user. The order is kept and
// duplicates are dropped. The resource server applies the same bound
// again from the token's fhirUser (access.Effective).
func scopesForUser(scopes []string, fhirUser string) []string {
	patient := strings.HasPrefix(fhirUser, "Patient/")
	staff := staffUser(fhirUser)
	out := make([]string, 0, len(scopes))
	for _, sc := range scopes {
		switch {
		case strings.HasPrefix(sc, "system/"):
			continue
		case strings.HasPrefix(sc, "user/") && !staff:
			if !patient {
				continue
			}
			sc = "patient/" + strings.TrimPrefix(sc, "user/")
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}

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
		rs, ok := parseResourceScope(sc)
		if !ok {
			continue
		}
		c := consentChoice{Scope: sc, Label: scopeLabel(rs)}
		if rs.query == "" && strings.ContainsAny(rs.perms, "rs") {
			for _, cat := range categories[rs.typ] {
				c.Categories = append(c.Categories, categoryChoice{Scope: sc + "?category=" + cat.Token, Label: cat.Label})
			}
		}
		out = append(out, c)
	}
	return out
}

// scopeLabel describes a resource scope for people.
func scopeLabel(rs resourceScope) string {
	typ := rs.typ
	if typ == "*" {
		typ = "All record types"
	}
	var verbs []string
	for _, p := range rs.perms {
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
	if rs.query != "" {
		l += " — only " + categoryLabel(rs.typ, rs.query)
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
