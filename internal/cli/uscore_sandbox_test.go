package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/sandbox/dataset"
)

// notRequired are the US Core profiles the certification does not require
// (conformance.md §5.1: optional groups and profiles g10 skips).
var notRequired = []string{"us-core-practitionerrole", "us-core-questionnaireresponse", "us-core-simple-observation", "us-core-observation-sexual-orientation"}

// patientless are the profiles of resources about no patient.
var patientless = []string{"us-core-location", "us-core-medication", "us-core-organization", "us-core-practitioner", "us-core-provenance"}

// TestUSCoreCoverageSandbox imports the sandbox dataset with "lapis
// import" and asserts on "lapis uscore coverage" (JSON and text, both US
// Core versions, SQLite and PostgreSQL): every Must Support element of
// every required profile is present, in at least two patients for the
// profiles of resources about patients; --require-complete exits 0.
func TestUSCoreCoverageSandbox(t *testing.T) {
	t.Parallel()
	bundles, err := dataset.Bundles()
	if err != nil {
		t.Fatal(err)
	}
	databases(t, func(t *testing.T, _ string, db []string, _ string) {
		src := t.TempDir()
		args := append([]string{"import", "--quiet"}, db...)
		for i, b := range bundles {
			f := filepath.Join(src, fmt.Sprintf("sandbox-%02d.json", i))
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, f)
		}
		if code, _, errs := run(args...); code != 0 {
			t.Fatalf("import: %d %s", code, errs)
		}
		for _, v := range []string{"6.1.0", "7.0.0"} {
			rep := coverageJSON(t, 0, append(db, "--us-core-version", v, "--require-complete")...)
			if rep.USCoreVersion != v || !rep.Complete {
				t.Errorf("%s: version %s, complete %t", v, rep.USCoreVersion, rep.Complete)
			}
			required := 0
			for _, p := range rep.Profiles {
				name := strings.TrimPrefix(p.URL, "http://hl7.org/fhir/us/core/StructureDefinition/")
				if slices.Contains(notRequired, name) {
					continue
				}
				required++
				if len(p.Missing) > 0 || p.Resources == 0 {
					t.Errorf("%s %s: %d resources, missing %v", v, name, p.Resources, p.Missing)
				}
				if slices.Contains(patientless, name) {
					continue
				}
				if p.Patients < 2 {
					t.Errorf("%s %s: %d patients", v, name, p.Patients)
				}
				for _, e := range p.Present {
					if e.Patients < 2 {
						t.Errorf("%s %s: %s in %d patient(s)", v, name, e.Element, e.Patients)
					}
				}
				// Only slices whose discriminator the checker does
				// not evaluate may stay unchecked.
				for _, u := range p.Unchecked {
					if !strings.Contains(u, ":") {
						t.Errorf("%s %s: unchecked %s is not a slice", v, name, u)
					}
				}
			}
			if want := map[string]int{"6.1.0": 45, "7.0.0": 48}[v]; required != want {
				t.Errorf("%s: %d required profiles in the report, want %d", v, required, want)
			}
			code, out, _ := run(append([]string{"uscore", "coverage", "--us-core-version", v}, db...)...)
			if code != 0 || !strings.HasSuffix(out, "complete: true\n") || strings.Contains(out, "  missing: ") {
				t.Errorf("%s text report (exit %d): %s", v, code, out)
			}
		}
	})
}
