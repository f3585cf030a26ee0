// Package scope parses SMART scopes and bounds them by client
// registration and by user: the scope policy shared by /authorize, the
// token endpoint grants and the consent page.
package scope

import (
	"regexp"
	"slices"
	"strings"
)

// ResourceScope is a parsed SMART resource scope: v1
// "patient/Observation.read" or v2 "patient/Observation.rs", optionally
// with a granular query "?category=system|code".
type ResourceScope struct {
	Context string // patient, user or system
	Type    string // resource type or "*"
	Perms   string // normalized subset of "cruds"
	Query   string // the granular query without "?", or ""
}

var (
	ResourceScopeRE = regexp.MustCompile(`^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)(\?[^\s]+)?$`)
)

// ParseResourceScope parses a SMART resource scope.
func ParseResourceScope(s string) (ResourceScope, bool) {
	m := ResourceScopeRE.FindStringSubmatch(s)
	if m == nil || m[3] == "" {
		return ResourceScope{}, false
	}
	rs := ResourceScope{Context: m[1], Type: m[2], Query: strings.TrimPrefix(m[4], "?")}
	switch m[3] {
	case "read":
		rs.Perms = "rs"
	case "write":
		rs.Perms = "cud"
	case "*":
		rs.Perms = "cruds"
	default:
		rs.Perms = m[3]
	}
	return rs, true
}

// Covers reports whether the registered scope reg allows the requested
// scope req: same context, same type (or a * registration), no more
// permissions, and the same query unless reg has none.
func (reg ResourceScope) Covers(req ResourceScope) bool {
	if reg.Context != req.Context || (reg.Type != "*" && reg.Type != req.Type) {
		return false
	}
	for _, p := range req.Perms {
		if !strings.ContainsRune(reg.Perms, p) {
			return false
		}
	}
	return reg.Query == "" || reg.Query == req.Query
}

// identityScopes are the non-resource scopes Lapis understands at
// /authorize.
var identityScopes = []string{"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"}

// AllowedScopes filters the requested scopes to those the client may be
// granted at /authorize: identity and launch scopes it registered exactly,
// and patient/ or user/ resource scopes covered by a registered scope
// (system/ scopes are never granted to a user). Others are dropped (RFC
// 6749 §3.3 lets the server grant less than asked); duplicates too.
func AllowedScopes(requested, registered []string) []string {
	var regRes []ResourceScope
	for _, r := range registered {
		if rs, ok := ParseResourceScope(r); ok {
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
		rs, ok := ParseResourceScope(sc)
		if !ok || rs.Context == "system" {
			continue
		}
		if slices.ContainsFunc(regRes, func(reg ResourceScope) bool { return reg.Covers(rs) }) {
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

// ScopesForUser bounds the scopes granted to a user by who the user is
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
func ScopesForUser(scopes []string, fhirUser string) []string {
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
