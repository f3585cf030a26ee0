package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/profile"
	"github.com/lapis-health/lapis/internal/fhir/validate"
)

const usCore = "http://hl7.org/fhir/us/core/StructureDefinition/"

// notRequired are the US Core profiles the certification does not require
// (conformance.md §5.1: optional groups, and the profiles g10 skips).

var notRequired = []string{"us-core-practitionerrole", "us-core-questionnaireresponse", "us-core-simple-observation", "us-core-observation-sexual-orientation"}

// check validates every resource (structure, then every claimed profile of
// both versions) and requires every Must Support element of every profile
// (those the certification requires and the optional ones) to be present;
// with report it prints the coverage.
func (g *gen) check(report bool) error {
	reg, err := definitions.Load()
	if err != nil {
		return err
	}
	sets, err := profile.Load()
	if err != nil {
		return err
	}
	var problems []string
	for _, v := range []string{"6.1.0", "7.0.0"} {
		set := sets[v]
		// us-core: every claimed profile, and a resource of a US Core type
		// that claims none conforms to one of them.
		ck, err := profile.NewChecker(validate.New(reg), set, profile.ModeUSCore)
		if err != nil {
			return err
		}
		// profile -> element -> patients
		present := map[string]map[string]map[string]bool{}
		unchecked := map[string]map[string]bool{}
		instances := map[string]map[string]bool{}
		for _, b := range g.bundles {
			for _, en := range b.entries {
				r, err := serverCopy(en.r)
				if err != nil {
					return err
				}
				for _, is := range ck.Validate(r) {
					problems = append(problems, fmt.Sprintf("%s %s: %s: %s", v, en.ref(), is.Expression, is.Message))
				}
				pat := patientOf(r)
				for _, u := range profiles(r) {
					u, _, _ = strings.Cut(u, "|")
					if !set.Has(u) {
						continue
					}
					cov, err := set.Covered(r, u)
					if err != nil {
						return err
					}
					if present[u] == nil {
						present[u] = map[string]map[string]bool{}
						unchecked[u] = map[string]bool{}
						instances[u] = map[string]bool{}
					}
					instances[u][pat] = true
					for el := range cov.Present {
						if present[u][el] == nil {
							present[u][el] = map[string]bool{}
						}
						present[u][el][pat] = true
					}
					for el := range cov.Unchecked {
						unchecked[u][el] = true
					}
				}
			}
		}
		urls := set.Profiles("")
		sort.Strings(urls)
		for _, u := range urls {
			pats := len(instances[u])
			var missing, few, unch []string
			for _, el := range set.MustSupport(u) {
				switch n := len(present[u][el]); {
				case n == 0 && isUnchecked(unchecked[u], el):
					unch = append(unch, el)
				case n == 0:
					missing = append(missing, el)
				case n < 2 && instances[u][""] == false:
					few = append(few, el)
				}
			}
			if len(missing) > 0 {
				problems = append(problems, fmt.Sprintf("%s %s: missing %s", v, u, strings.Join(missing, ", ")))
			}
			if pats == 0 {
				problems = append(problems, fmt.Sprintf("%s %s: no instance", v, u))
			}
			if report {
				fmt.Fprintf(os.Stderr, "%s %s: %d patients; missing %v; in one patient %v; unchecked %v\n", v, strings.TrimPrefix(u, usCore), pats, missing, few, unch)
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
	return nil
}

// isUnchecked reports whether el is, or is below, an unchecked slice.
func isUnchecked(m map[string]bool, el string) bool {
	for s := range m {
		if el == s || strings.HasPrefix(el, s+".") {
			return true
		}
	}
	return false
}

// roundTrip re-decodes r as the server does (numbers as json.Number).
func roundTrip(r res) (res, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out res
	return out, dec.Decode(&out)
}

// serverCopy is r as the server stores it: decoded with json.Number, with
// meta.lastUpdated set.
func serverCopy(r res) (res, error) {
	out, err := roundTrip(r)
	if err != nil {
		return nil, err
	}
	meta := obj(out["meta"])
	if meta == nil {
		meta = res{}
		out["meta"] = meta
	}
	meta["lastUpdated"] = "2025-01-01T00:00:00Z"
	return out, nil
}
