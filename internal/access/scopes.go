package access

import (
	"fmt"
	"strings"
)

// Perm is a set of SMART v2 permissions (the letters of "cruds").
type Perm uint8

// The SMART v2 permissions.
const (
	PermCreate Perm = 1 << iota // c
	PermRead                    // r
	PermUpdate                  // u
	PermDelete                  // d
	PermSearch                  // s
)

// PermAll is "cruds" (v1 "*").
const PermAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch

const permLetters = "cruds"

// String renders p as its v2 letters, in order ("rs").
func (p Perm) String() string {
	var sb strings.Builder
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			sb.WriteByte(permLetters[i])
		}
	}
	return sb.String()
}

// Scope contexts.
const (
	ContextPatient = "patient"
	ContextUser    = "user"
	ContextSystem  = "system"
)

// Param is one granular restriction of a scope ("category=sys|code"): the
// resource must match one of Values (comma-separated in the scope) of the
// search parameter Name.
type Param struct {
	Name   string
	Values []string
}

// Scope is one parsed SMART resource scope.
type Scope struct {
	// Raw is the scope as granted.
	Raw string
	// Context is "patient", "user" or "system".
	Context string
	// Type is a resource type name, or "*" for every type.
	Type string
	// Perms are the permissions granted (v1 read = rs, write = cud, * = cruds).
	Perms Perm
	// Params are the granular restrictions, all of which must hold (nil
	// for a resource-level scope).
	Params []Param
}

// Grants are the data-access scopes of a caller.
type Grants struct {
	// Scopes are the resource scopes, in the order granted.
	Scopes []Scope
	// Ignored are the scopes that grant no data access (openid, fhirUser,
	// launch, launch/patient, offline_access, online_access, profile,
	// system/lapis.admin, ...). They are kept for callers that act on
	// them elsewhere (e.g. the admin API).
	Ignored []string
}

// ParseScopes parses granted SMART scopes: v1 (patient/Observation.read,
// user/*.write, system/*.*), v2 (patient/Observation.rs, user/*.cruds, the
// letters in the order c, r, u, d, s), granular v2 scopes
// (patient/Observation.rs?category=http://…|laboratory, parameters joined
// by & must all hold, comma-separated values are alternatives) and system/
// scopes. Scopes granting no data access (see Grants.Ignored) are kept
// aside. A scope that looks like a resource scope but is malformed (unknown
// context, bad type name, bad or out-of-order permission letters, a
// granular restriction on a v1 permission, an empty parameter) is an error:
// the caller should refuse the credential rather than guess.
func ParseScopes(scopes []string) (*Grants, error) {
	g := &Grants{}
	for _, raw := range scopes {
		if raw == "" {
			continue
		}
		if nonResource(raw) {
			g.Ignored = append(g.Ignored, raw)
			continue
		}
		s, err := parseScope(raw)
		if err != nil {
			return nil, err
		}
		g.Scopes = append(g.Scopes, s)
	}
	return g, nil
}

// nonResource reports whether raw is a scope that grants no data access.
func nonResource(raw string) bool {
	switch raw {
	case "openid", "fhirUser", "profile", "email", "offline_access", "online_access", "launch":
		return true
	}
	if strings.HasPrefix(raw, "launch/") || strings.HasPrefix(raw, "system/lapis.") {
		return true
	}
	// Other OpenID Connect / non-FHIR scopes: a bare word without "/" or
	// ".". Anything with "." but no "/" (e.g. "*.*") is a malformed
	// resource scope and rejected by parseScope.
	return !strings.ContainsAny(raw, "/.")
}

func parseScope(raw string) (Scope, error) {
	bad := func(why string) (Scope, error) {
		return Scope{}, fmt.Errorf("access: malformed scope %q: %s", raw, why)
	}
	ctx, rest, ok := strings.Cut(raw, "/")
	if !ok {
		return bad("no context (patient/, user/ or system/)")
	}
	switch ctx {
	case ContextPatient, ContextUser, ContextSystem:
	default:
		return bad("unknown context " + ctx)
	}
	rest, query, granular := strings.Cut(rest, "?")
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok {
		return bad("no permissions")
	}
	if !validType(typ) {
		return bad("bad resource type")
	}
	s := Scope{Raw: raw, Context: ctx, Type: typ}
	switch perm {
	case "read":
		s.Perms = PermRead | PermSearch
	case "write":
		s.Perms = PermCreate | PermUpdate | PermDelete
	case "*":
		s.Perms = PermAll
	default:
		p, err := parseLetters(perm)
		if err != nil {
			return bad(err.Error())
		}
		s.Perms = p
	}
	if granular {
		if perm == "read" || perm == "write" || perm == "*" {
			return bad("granular restrictions need SMART v2 permissions")
		}
		if query == "" {
			return bad("empty restriction")
		}
		for part := range strings.SplitSeq(query, "&") {
			name, val, ok := strings.Cut(part, "=")
			if !ok || name == "" || val == "" || strings.ContainsAny(name, " ,:") {
				return bad("restriction must be name=value")
			}
			var vals []string
			for v := range strings.SplitSeq(val, ",") {
				if v == "" || strings.TrimSpace(v) != v {
					return bad("empty restriction value")
				}
				vals = append(vals, v)
			}
			s.Params = append(s.Params, Param{Name: name, Values: vals})
		}
	}
	return s, nil
}

// parseLetters parses v2 permission letters: a non-empty subsequence of
// "cruds".
func parseLetters(s string) (Perm, error) {
	if s == "" {
		return 0, fmt.Errorf("no permissions")
	}
	var p Perm
	next := 0
	for i := range len(s) {
		j := strings.IndexByte(permLetters[next:], s[i])
		if j < 0 {
			return 0, fmt.Errorf("permissions must be letters of cruds, in that order, each once")
		}
		next += j + 1
		p |= 1 << (next - 1)
	}
	return p, nil
}

// validType reports whether t is "*" or looks like a FHIR resource type
// name (whether it exists is the policy's business).
func validType(t string) bool {
	if t == "*" {
		return true
	}
	if t == "" || len(t) > 64 || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := range len(t) {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
