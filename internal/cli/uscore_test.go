package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// loadUSCoreFiles imports the US Core reference Bundles (repaired by
// shareddata.USCoreBundles) with "lapis import" into the database of db.
func loadUSCoreFiles(t *testing.T, db []string) {
	t.Helper()
	src := t.TempDir()
	args := append([]string{"import", "--quiet"}, db...)
	for _, b := range shareddata.USCoreBundles(t) {
		f := filepath.Join(src, b.Name)
		if err := os.WriteFile(f, b.Body, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	if code, _, errs := run(args...); code != 0 {
		t.Fatalf("import: %d %s", code, errs)
	}
}

// testCoverage is the JSON report of "lapis uscore coverage --json".
type testCoverage struct {
	USCoreVersion string `json:"usCoreVersion"`
	AllOfType     bool   `json:"allOfType"`
	Complete      bool   `json:"complete"`
	Profiles      []struct {
		URL       string `json:"url"`
		Type      string `json:"type"`
		Resources int    `json:"resources"`
		Patients  int    `json:"patients"`
		Present   []struct {
			Element   string `json:"element"`
			Resources int    `json:"resources"`
			Patients  int    `json:"patients"`
		} `json:"present"`
		Missing   []string `json:"missing"`
		Unchecked []string `json:"unchecked"`
	} `json:"profiles"`
}

// coverageJSON runs the report with args and decodes its one JSON object.
func coverageJSON(t *testing.T, wantCode int, args ...string) testCoverage {
	t.Helper()
	code, out, errs := run(append([]string{"uscore", "coverage", "--json"}, args...)...)
	if code != wantCode {
		t.Fatalf("uscore coverage %v: exit %d, want %d: %s", args, code, wantCode, errs)
	}
	oneObject(t, out)
	var rep testCoverage
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// profile returns the report's entry for the US Core profile named name.
func (r testCoverage) profile(t *testing.T, name string) (present map[string]int, missing, unchecked []string, resources, patients int) {
	t.Helper()
	for _, p := range r.Profiles {
		if p.URL == "http://hl7.org/fhir/us/core/StructureDefinition/"+name {
			present = map[string]int{}
			for _, e := range p.Present {
				if e.Resources < 1 || e.Resources > p.Resources || e.Patients > p.Patients {
					t.Errorf("%s %s: %d resources, %d patients of %d, %d", name, e.Element, e.Resources, e.Patients, p.Resources, p.Patients)
				}
				present[e.Element] = e.Patients
			}
			return present, p.Missing, p.Unchecked, p.Resources, p.Patients
		}
	}
	t.Fatalf("profile %s not in the report", name)
	return
}

func TestUSCoreCoverage(t *testing.T) {
	t.Parallel()
	_, db, _ := databaseFlags(t, "sqlite")
	loadUSCoreFiles(t, db)

	rep := coverageJSON(t, 0, db...)
	if rep.USCoreVersion != "6.1.0" || rep.AllOfType || rep.Complete || len(rep.Profiles) < 40 {
		t.Fatalf("report header: %+v (%d profiles)", rep, len(rep.Profiles))
	}
	present, missing, _, n, pats := rep.profile(t, "us-core-patient")
	if n != 2 || pats != 2 || len(missing) != 0 || present["Patient.birthDate"] != 2 || present["Patient.name.family"] != 2 || present["Patient.communication.language"] != 2 {
		t.Errorf("us-core-patient: %d resources, %d patients, present %v, missing %v", n, pats, present, missing)
	}
	present, missing, unchecked, _, _ := rep.profile(t, "us-core-medicationrequest")
	if present["MedicationRequest.reported[x]:reportedBoolean"] != 1 || present["MedicationRequest.medication[x]"] != 2 ||
		!slices.Equal(missing, []string{"MedicationRequest.reported[x]:reportedReference"}) ||
		!slices.Equal(unchecked, []string{"MedicationRequest.category:us-core"}) {
		t.Errorf("us-core-medicationrequest: present %v, missing %v, unchecked %v", present, missing, unchecked)
	}
	present, missing, _, _, _ = rep.profile(t, "us-core-goal")
	if _, ok := present["Goal.target.due[x]"]; !ok || !slices.Equal(missing, []string{"Goal.start[x]", "Goal.start[x]:startDate"}) {
		t.Errorf("us-core-goal: present %v, missing %v", present, missing)
	}
	// A slice told by its required binding (Observation.category:us-core).
	present, _, _, _, _ = rep.profile(t, "us-core-observation-clinical-result")
	if present["Observation.category:us-core"] != 2 || present["Observation.value[x]:valueString"] != 1 {
		t.Errorf("us-core-observation-clinical-result: present %v", present)
	}
	_, missing, _, n, _ = rep.profile(t, "us-core-questionnaireresponse")
	if n != 0 || !slices.Contains(missing, "QuestionnaireResponse.status") {
		t.Errorf("us-core-questionnaireresponse: %d resources, missing %v", n, missing)
	}
	_, _, _, claimed, _ := rep.profile(t, "us-core-vital-signs")

	all := coverageJSON(t, 0, append(db, "--all-of-type", "--us-core-version", "7.0.0")...)
	if all.USCoreVersion != "7.0.0" || !all.AllOfType {
		t.Fatalf("report header: %+v", all)
	}
	if _, _, _, n, _ := all.profile(t, "us-core-vital-signs"); n <= claimed {
		t.Errorf("--all-of-type: %d vital-signs resources, want more than the %d claiming it", n, claimed)
	}
	all.profile(t, "us-core-average-blood-pressure") // a 7.0.0 profile

	// --require-complete: the report, then exit 1.
	coverageJSON(t, 1, append(db, "--require-complete")...)
	code, out, _ := run(append([]string{"uscore", "coverage"}, db...)...)
	for _, want := range []string{
		"http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient (Patient): 2 resources, 2 patients, 17/17 Must Support elements present",
		"  missing: MedicationRequest.reported[x]:reportedReference\n",
		"  not checked (slice discriminator not evaluated): MedicationRequest.category:us-core\n",
		"complete: false\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("text report (exit %d) lacks %q", code, want)
		}
	}
	if code, _, _ := run(append([]string{"uscore", "coverage", "--us-core-version", "5.0.1"}, db...)...); code != 2 {
		t.Errorf("unknown version: exit %d, want 2", code)
	}
}

// TestUSCoreCoveragePostgres is a smoke run of the report on PostgreSQL.
func TestUSCoreCoveragePostgres(t *testing.T) {
	t.Parallel()
	_, db, _ := databaseFlags(t, "postgres")
	loadUSCoreFiles(t, db)
	rep := coverageJSON(t, 0, db...)
	present, missing, _, n, pats := rep.profile(t, "us-core-patient")
	if n != 2 || pats != 2 || len(missing) != 0 || present["Patient.birthDate"] != 2 {
		t.Errorf("us-core-patient: %d resources, %d patients, present %v, missing %v", n, pats, present, missing)
	}
}
