package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	fhirprofile "github.com/lapis-health/lapis/internal/fhir/profile"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

type uscoreCmd struct {
	Coverage uscoreCoverageCmd `cmd:"" help:"Report, per US Core profile, the Must Support elements present and missing in the database."`
}

type uscoreCoverageCmd struct {
	dbFlags
	USCoreVersion   string `name:"us-core-version" env:"LAPIS_US_CORE_VERSION" default:"6.1.0" enum:"6.1.0,7.0.0" help:"US Core version whose profiles are reported: 6.1.0 or 7.0.0."`
	AllOfType       bool   `name:"all-of-type" help:"Count every resource of a profile's type, not only those that claim the profile in meta.profile."`
	RequireComplete bool   `name:"require-complete" help:"Exit 1 when a Must Support element of a profile is missing (after printing the report)."`
	JSON            bool   `name:"json" help:"Print the report as one JSON object on stdout."`
}

// patientCap bounds the distinct patients counted per element (the
// certification asks for two; the count stops at patientCap so memory does
// not grow with the database).
const patientCap = 1000

// coverageReport is the output of "lapis uscore coverage".
type coverageReport struct {
	USCoreVersion string             `json:"usCoreVersion"`
	AllOfType     bool               `json:"allOfType"`
	Complete      bool               `json:"complete"`
	Profiles      []*profileCoverage `json:"profiles"`
}

// profileCoverage is one profile's part of the report.
type profileCoverage struct {
	URL       string             `json:"url"`
	Type      string             `json:"type"`
	Resources int                `json:"resources"`
	Patients  int                `json:"patients"`
	Present   []*elementCoverage `json:"present"`
	Missing   []string           `json:"missing"`
	// Unchecked are the elements of slices whose members the report
	// cannot tell (see profile.Coverage), not found in another resource.
	Unchecked []string `json:"unchecked"`

	patients  map[string]bool
	elements  map[string]*elementCoverage
	unchecked map[string]bool
}

// elementCoverage is one Must Support element present in at least one
// resource: in how many resources and how many distinct patients (at most
// patientCap).
type elementCoverage struct {
	Element   string `json:"element"`
	Resources int    `json:"resources"`
	Patients  int    `json:"patients"`

	patients map[string]bool
}

func (c *uscoreCoverageCmd) Run(e *env) error {
	sets, err := fhirprofile.Load()
	if err != nil {
		return err
	}
	set := sets[c.USCoreVersion]
	if set == nil {
		return usagef("unknown US Core version %q", c.USCoreVersion)
	}
	a, _, err := openApp(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer a.Close()
	rep, err := coverage(e, a.Service, set, c.AllOfType)
	if err != nil {
		return err
	}
	if c.JSON {
		err = json.NewEncoder(e.stdout).Encode(rep)
	} else {
		err = rep.print(e.stdout)
	}
	if err != nil {
		return err
	}
	if c.RequireComplete && !rep.Complete {
		return errors.New("some Must Support elements are missing (see the report)")
	}
	return nil
}

// coverage streams the resources of every type US Core profiles and
// accumulates, per profile, the Must Support elements they hold.
func coverage(e *env, svc *resource.Service, set *fhirprofile.Set, allOfType bool) (*coverageReport, error) {
	urls := set.Profiles("")
	slices.Sort(urls)
	byType := map[string][]*profileCoverage{}
	var types []string
	rep := &coverageReport{USCoreVersion: set.Version(), AllOfType: allOfType, Complete: true}
	for _, u := range urls {
		p := &profileCoverage{URL: u, Type: set.Type(u), Present: []*elementCoverage{}, Missing: []string{}, Unchecked: []string{},
			patients: map[string]bool{}, elements: map[string]*elementCoverage{}, unchecked: map[string]bool{}}
		rep.Profiles = append(rep.Profiles, p)
		if byType[p.Type] == nil {
			types = append(types, p.Type)
		}
		byType[p.Type] = append(byType[p.Type], p)
	}
	slices.Sort(types)
	for _, typ := range types {
		err := svc.Each(e.ctx, typ, nil, func(r *store.Resource) error {
			res, err := resource.DecodeJSON(r.Body)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", typ, r.ID, err)
			}
			claimed := claimedProfiles(res)
			pat := patientOf(res)
			for _, p := range byType[typ] {
				if !allOfType && !claimed[p.URL] {
					continue
				}
				cov, err := set.Covered(res, p.URL)
				if err != nil {
					return err
				}
				p.add(cov, pat)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, p := range rep.Profiles {
		p.Patients = len(p.patients)
		for _, el := range set.MustSupport(p.URL) {
			switch ec := p.elements[el]; {
			case ec != nil:
				ec.Patients = len(ec.patients)
				p.Present = append(p.Present, ec)
			case p.isUnchecked(el):
				p.Unchecked = append(p.Unchecked, el)
			default:
				p.Missing = append(p.Missing, el)
				rep.Complete = false
			}
		}
	}
	return rep, nil
}

// add counts one resource of patient pat ("" if none) with its coverage.
func (p *profileCoverage) add(cov fhirprofile.Coverage, pat string) {
	p.Resources++
	addPatient(p.patients, pat)
	for el := range cov.Unchecked {
		p.unchecked[el] = true
	}
	for el := range cov.Present {
		ec := p.elements[el]
		if ec == nil {
			ec = &elementCoverage{Element: el, patients: map[string]bool{}}
			p.elements[el] = ec
		}
		ec.Resources++
		addPatient(ec.patients, pat)
	}
}

// isUnchecked reports whether el is, or is below, a slice whose members
// could not be told in some resource.
func (p *profileCoverage) isUnchecked(el string) bool {
	for s := range p.unchecked {
		if el == s || strings.HasPrefix(el, s+".") {
			return true
		}
	}
	return false
}

func addPatient(m map[string]bool, pat string) {
	if pat != "" && len(m) < patientCap {
		m[pat] = true
	}
}

// claimedProfiles returns the canonical URLs (without |version) a
// resource claims in meta.profile.
func claimedProfiles(res map[string]any) map[string]bool {
	out := map[string]bool{}
	meta, _ := res["meta"].(map[string]any)
	ps, _ := meta["profile"].([]any)
	for _, p := range ps {
		if s, ok := p.(string); ok {
			s, _, _ = strings.Cut(s, "|")
			out[s] = true
		}
	}
	return out
}

// patientOf returns the patient a resource is about ("Patient/id"): a
// Patient itself, or the Patient its subject, patient or beneficiary
// references; "" when none.
func patientOf(res map[string]any) string {
	if res["resourceType"] == "Patient" {
		id, _ := res["id"].(string)
		return "Patient/" + id
	}
	for _, k := range []string{"subject", "patient", "beneficiary"} {
		ref, _ := res[k].(map[string]any)
		if s, _ := ref["reference"].(string); strings.HasPrefix(s, "Patient/") {
			return s
		}
	}
	return ""
}

// print writes the report as text: a line per profile, then its present
// elements (with their patient counts), the missing and unchecked ones,
// and the present ones found in fewer than two patients (for profiles of
// resources about patients).
func (r *coverageReport) print(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "US Core %s Must Support coverage (%s)\n", r.USCoreVersion,
		map[bool]string{true: "every resource of each profile's type", false: "resources claiming each profile"}[r.AllOfType])
	for _, p := range r.Profiles {
		fmt.Fprintf(&b, "%s (%s): %d resources, %d patients, %d/%d Must Support elements present\n",
			p.URL, p.Type, p.Resources, p.Patients, len(p.Present), len(p.Present)+len(p.Missing))
		var present, few []string
		for _, ec := range p.Present {
			present = append(present, fmt.Sprintf("%s (%d)", ec.Element, ec.Patients))
			if ec.Patients < 2 && p.Patients > 0 {
				few = append(few, ec.Element)
			}
		}
		if len(present) > 0 {
			fmt.Fprintf(&b, "  present (patients): %s\n", strings.Join(present, ", "))
		}
		if len(p.Missing) > 0 {
			fmt.Fprintf(&b, "  missing: %s\n", strings.Join(p.Missing, ", "))
		}
		if len(p.Unchecked) > 0 {
			fmt.Fprintf(&b, "  not checked (slice discriminator not evaluated): %s\n", strings.Join(p.Unchecked, ", "))
		}
		if len(few) > 0 {
			fmt.Fprintf(&b, "  in fewer than 2 patients: %s\n", strings.Join(few, ", "))
		}
	}
	fmt.Fprintf(&b, "complete: %t\n", r.Complete)
	_, err := io.WriteString(w, b.String())
	return err
}
