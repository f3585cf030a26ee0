package scope

import (
	"slices"
	"testing"
)

// TestScopesForUser: user/ scopes are for staff; a patient's become the
// patient/ scopes of the same type, permissions and restrictions; other
// users get none; system/ never goes to a user.
func TestScopesForUser(t *testing.T) {
	in := []string{"openid", "fhirUser", "launch/patient", "offline_access", "user/*.rs", "patient/*.rs", "user/Observation.rs?category=a|b",
		"user/Condition.read", "system/*.rs", "system/lapis.admin", "patient/Patient.r"}
	for _, c := range []struct {
		user string
		want []string
	}{
		{"Practitioner/dr", []string{"openid", "fhirUser", "launch/patient", "offline_access", "user/*.rs", "patient/*.rs", "user/Observation.rs?category=a|b", "user/Condition.read", "patient/Patient.r"}},
		{"PractitionerRole/pr", []string{"openid", "fhirUser", "launch/patient", "offline_access", "user/*.rs", "patient/*.rs", "user/Observation.rs?category=a|b", "user/Condition.read", "patient/Patient.r"}},
		{"Patient/p1", []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/Observation.rs?category=a|b", "patient/Condition.read", "patient/Patient.r"}},
		{"RelatedPerson/rp", []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/Patient.r"}},
		{"", []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/Patient.r"}},
	} {
		if got := ScopesForUser(in, c.user); !slices.Equal(got, c.want) {
			t.Errorf("%q:\n got  %q\n want %q", c.user, got, c.want)
		}
	}
}
