package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/profile"
	"github.com/lapis-health/lapis/internal/fhir/validate"
)

// byCode are the code-based Observation profiles (conformance.md §5.3), by
// LOINC (or SNOMED) code.
var byCode = map[string][]string{
	"85354-9":   {"us-core-blood-pressure"},
	"39156-5":   {"us-core-bmi"},
	"8302-2":    {"us-core-body-height"},
	"8310-5":    {"us-core-body-temperature"},
	"29463-7":   {"us-core-body-weight"},
	"9843-4":    {"us-core-head-circumference"},
	"8289-1":    {"head-occipital-frontal-circumference-percentile"},
	"8867-4":    {"us-core-heart-rate"},
	"59408-5":   {"us-core-pulse-oximetry"},
	"2708-6":    {"us-core-pulse-oximetry"},
	"9279-1":    {"us-core-respiratory-rate"},
	"59576-9":   {"pediatric-bmi-for-age"},
	"77606-2":   {"pediatric-weight-for-height"},
	"72166-2":   {"us-core-smokingstatus"},
	"11367-0":   {"us-core-smokingstatus"},
	"11341-5":   {"us-core-observation-occupation"},
	"82810-3":   {"us-core-observation-pregnancystatus"},
	"86645-9":   {"us-core-observation-pregnancyintent"},
	"96607-7":   {"us-core-average-blood-pressure"},
	"95541-9":   {"us-core-care-experience-preference"},
	"75773-2":   {"us-core-treatment-intervention-preference"},
	"401201003": {"us-core-smokingstatus"},
	"782516008": {"us-core-smokingstatus"},
}

// clinicalResult are the categories of us-core-observation-clinical-result.
var clinicalResult = []string{"laboratory", "exam", "therapy", "imaging", "procedure", "vital-signs", "activity"}

// obsolete are US Core profiles of earlier versions the source data
// claims; they are replaced by the 6.1.0/7.0.0 profiles that fit.
var obsolete = []string{"us-core-condition", "us-core-observation-imaging", "us-core-observation-clinical-test",
	"us-core-observation-social-history", "us-core-observation-sdoh-assessment"}

// candidates returns the US Core profiles (short names) a resource fits by
// its type, code and category, as the certification suite sorts them.
func candidates(r res) []string {
	switch r["resourceType"] {
	case "Patient":
		return []string{"us-core-patient"}
	case "Observation":
		var out []string
		for _, c := range codes(r["code"]) {
			out = append(out, byCode[c]...)
		}
		cats := codes(r["category"])
		if slices.Contains(cats, "vital-signs") {
			out = append(out, "us-core-vital-signs")
		}
		if slices.Contains(cats, "laboratory") {
			out = append(out, "us-core-observation-lab")
		}
		if slices.Contains(cats, "survey") || slices.Contains(cats, "sdoh") {
			out = append(out, "us-core-observation-screening-assessment")
		}
		for _, c := range cats {
			if slices.Contains(clinicalResult, c) {
				out = append(out, "us-core-observation-clinical-result")
				break
			}
		}
		return out
	case "Condition":
		cats := codes(r["category"])
		var out []string
		if slices.Contains(cats, "encounter-diagnosis") {
			out = append(out, "us-core-condition-encounter-diagnosis")
		}
		if slices.Contains(cats, "problem-list-item") || slices.Contains(cats, "health-concern") {
			out = append(out, "us-core-condition-problems-health-concerns")
		}
		return out
	case "DiagnosticReport":
		if slices.Contains(codes(r["category"]), "LAB") {
			return []string{"us-core-diagnosticreport-lab"}
		}
		if isNote(r) {
			return []string{"us-core-diagnosticreport-note"}
		}
	case "AllergyIntolerance", "CarePlan", "CareTeam", "Coverage", "DocumentReference", "Encounter", "Goal", "Immunization",
		"MedicationDispense", "MedicationRequest", "Procedure", "ServiceRequest", "Organization", "Practitioner", "Location",
		"Medication", "RelatedPerson", "Specimen", "Provenance":
		return []string{"us-core-" + strings.ToLower(r["resourceType"].(string))}
	case "Device":
		return []string{"us-core-implantable-device"}
	}
	return nil
}

// claimer validates a resource against profiles of both versions.
type claimer struct {
	sets  []*profile.Set
	base  *validate.Validator
	skips map[string]int // profile -> resources that do not conform (not claimed)
	// verbose prints why a resource does not conform.
	verbose bool
}

func newClaimer() (*claimer, error) {
	reg, err := definitions.Load()
	if err != nil {
		return nil, err
	}
	sets, err := profile.Load()
	if err != nil {
		return nil, err
	}
	return &claimer{sets: []*profile.Set{sets["6.1.0"], sets["7.0.0"]}, base: validate.New(reg), skips: map[string]int{}}, nil
}

// conforms reports whether r validates against url in every version that
// has it (and some version has it).
func (c *claimer) conforms(r res, url string) bool {
	rt, err := roundTrip(r)
	if err != nil {
		return false
	}
	found := false
	for _, s := range c.sets {
		if !s.Has(url) {
			continue
		}
		found = true
		if issues, err := s.Validate(rt, url); err != nil || len(issues) > 0 {
			return false
		}
	}
	return found
}

// claimProfiles sets the US Core claims of r: obsolete US Core claims
// and versions (|7.0.0-ballot) are dropped, and every candidate profile r
// conforms to in both versions is claimed.
func (c *claimer) claimProfiles(r res) {
	var keep []any
	for _, p := range profiles(r) {
		p, _, _ = strings.Cut(p, "|")
		if slices.Contains(obsolete, strings.TrimPrefix(p, usCore)) || slices.Contains(keep, any(p)) {
			continue
		}
		keep = append(keep, p)
	}
	if meta := obj(r["meta"]); meta != nil {
		if len(keep) == 0 {
			delete(meta, "profile")
			if len(meta) == 0 {
				delete(r, "meta")
			}
		} else {
			meta["profile"] = keep
		}
	}
	for _, name := range candidates(r) {
		u := usCore + name
		if slices.Contains(keep, any(u)) {
			continue
		}
		if c.conforms(r, u) {
			claim(r, u)
		} else {
			c.skips[name]++
			if c.verbose {
				rt, _ := roundTrip(r)
				for _, s := range c.sets {
					if s.Has(u) {
						is, _ := s.Validate(rt, u)
						fmt.Fprintf(os.Stderr, "not claimed: %s/%s %s %s: %v\n", r["resourceType"], r["id"], s.Version(), name, is)
					}
				}
			}
		}
	}
}
