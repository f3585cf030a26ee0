package scope

import (
	"slices"
	"testing"
)

func TestAllowedScopes(t *testing.T) {
	reg := []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "user/Observation.read", "patient/Condition.rs?category=x|y"}
	req := []string{
		"openid", "openid", "profile", "launch/patient", "launch",
		"patient/Observation.read", "patient/Observation.rs", "patient/Observation.cruds", "patient/Observation.rs?category=a|b",
		"user/Observation.rs", "user/Observation.s", "user/Observation.write", "user/Patient.rs",
		"system/Patient.rs", "patient/observation.rs", "patient/Observation.sr", "bogus",
	}
	want := []string{"openid", "launch/patient", "patient/Observation.read", "patient/Observation.rs", "patient/Observation.rs?category=a|b", "user/Observation.rs", "user/Observation.s"}
	if got := AllowedScopes(req, reg); !slices.Equal(got, want) {
		t.Fatalf("allowed %q\nwant    %q", got, want)
	}
}
