package access

import (
	"slices"
	"testing"
)

func TestParseScopes(t *testing.T) {
	const lab = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
	ok := []struct {
		scope  string
		ctx    string
		typ    string
		perms  string
		params []Param
	}{
		{"patient/Observation.read", "patient", "Observation", "rs", nil},
		{"user/*.write", "user", "*", "cud", nil},
		{"user/*.*", "user", "*", "cruds", nil},
		{"patient/*.*", "patient", "*", "cruds", nil},
		{"system/Patient.read", "system", "Patient", "rs", nil},
		{"patient/Observation.rs", "patient", "Observation", "rs", nil},
		{"user/Practitioner.cruds", "user", "Practitioner", "cruds", nil},
		{"system/*.r", "system", "*", "r", nil},
		{"patient/Condition.cud", "patient", "Condition", "cud", nil},
		{"patient/Observation.s", "patient", "Observation", "s", nil},
		{"patient/Observation.rs?category=" + lab, "patient", "Observation", "rs", []Param{{"category", []string{lab}}}},
		{"user/Condition.rs?category=a,b&code=x", "user", "Condition", "rs", []Param{{"category", []string{"a", "b"}}, {"code", []string{"x"}}}},
	}
	for _, c := range ok {
		g, err := ParseScopes([]string{c.scope})
		if err != nil {
			t.Errorf("%s: %v", c.scope, err)
			continue
		}
		if len(g.Scopes) != 1 {
			t.Errorf("%s: %d scopes", c.scope, len(g.Scopes))
			continue
		}
		s := g.Scopes[0]
		if s.Context != c.ctx || s.Type != c.typ || s.Perms.String() != c.perms || s.Raw != c.scope ||
			!slices.EqualFunc(s.Params, c.params, func(a, b Param) bool { return a.Name == b.Name && slices.Equal(a.Values, b.Values) }) {
			t.Errorf("%s: got %+v (perms %s)", c.scope, s, s.Perms)
		}
	}

	ignored := []string{"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
		"offline_access", "online_access", "system/lapis.admin", ""}
	g, err := ParseScopes(ignored)
	if err != nil || len(g.Scopes) != 0 || len(g.Ignored) != len(ignored)-1 {
		t.Errorf("non-resource scopes: %+v %v", g, err)
	}

	bad := []string{
		"*.*", "Observation.read", "patient/Observation", "patient/Observation.", "patient/Observation.sr",
		"patient/Observation.rr", "patient/Observation.x", "patient/Observation.readwrite", "admin/Observation.read",
		"patient/observation.read", "patient/.read", "patient/Obs-ervation.rs", "patient/Observation.read?category=x",
		"patient/Observation.*?category=x", "patient/Observation.rs?", "patient/Observation.rs?category",
		"patient/Observation.rs?category=", "patient/Observation.rs?=x", "patient/Observation.rs?category=a,,b",
		"patient/Observation.rs?category=a&", "/Observation.rs", "patient/Observation.dc",
	}
	for _, s := range bad {
		if _, err := ParseScopes([]string{"openid", s}); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestPermString(t *testing.T) {
	if PermAll.String() != "cruds" || (PermRead|PermSearch).String() != "rs" {
		t.Fatal(PermAll.String())
	}
}
