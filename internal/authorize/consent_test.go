package authorize

import (
	"slices"
	"testing"
)

func TestGrantedScopes(t *testing.T) {
	req := []string{"launch", "launch/patient", "openid", "offline_access", "patient/Observation.rs", "patient/Patient.rs", "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"}
	vital := "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
	ticked := []string{vital, "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item", "user/*.cruds", "patient/Patient.rs?category=x"}
	got := grantedScopes(req, ticked, false, true)
	want := []string{"launch/patient", "openid", vital, "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"}
	if !slices.Equal(got, want) {
		t.Fatalf("granted %q\nwant    %q", got, want)
	}
	if got := grantedScopes(req, []string{"offline_access"}, true, true); !slices.Equal(got, []string{"launch", "launch/patient", "openid", "offline_access"}) {
		t.Fatalf("ehr %q", got)
	}
}
