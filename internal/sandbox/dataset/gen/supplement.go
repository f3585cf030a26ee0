package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/profile"
)

const (
	darCS    = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
	loinc    = "http://loinc.org"
	ucum     = "http://unitsofmeasure.org"
	asserted = "http://hl7.org/fhir/StructureDefinition/condition-assertedDate"
)

// unknown is the data-absent-reason CodeableConcept "unknown".
func unknown() res {
	return res{"coding": []any{res{"system": darCS, "code": "unknown", "display": "Unknown"}}, "text": "Unknown"}
}

// supplement adds to a reference patient's Bundle the Must Support
// elements no source resource holds (the cloning pass then spreads every
// element to a second patient).
func (g *gen) supplement(b *bundle) {
	if b.patient != "85" && b.patient != "355" {
		return
	}
	first := func(typ string, keep func(res) bool) *entry {
		for _, en := range b.entries {
			if en.typ == typ && (keep == nil || keep(en.r)) {
				return en
			}
		}
		return nil
	}
	hasCat := func(cat string) func(res) bool {
		return func(r res) bool { return slices.Contains(codes(r["category"]), cat) }
	}
	// Encounter.reasonReference: the first encounter's reason is a
	// condition of the patient.
	if enc, cond := first("Encounter", nil), first("Condition", nil); enc != nil && cond != nil {
		enc.r["reasonReference"] = []any{res{"reference": cond.ref()}}
	}
	// Condition asserted date (encounter diagnoses and problems).
	for _, cat := range []string{"encounter-diagnosis", "problem-list-item"} {
		if c := first("Condition", hasCat(cat)); c != nil {
			d, _ := c.r["recordedDate"].(string)
			if d == "" {
				d, _ = c.r["onsetDateTime"].(string)
			}
			has := false
			for _, x := range arr(c.r["extension"]) {
				has = has || str(x, "url") == asserted
			}
			if d != "" && !has {
				c.r["extension"] = append(arr(c.r["extension"]), res{"url": asserted, "valueDateTime": d})
			}
		}
	}
	g.questionnaireResponse(b)
	// A simple observation with a boolean value.
	if o := first("Observation", func(r res) bool {
		return slices.Contains(profiles(r), usCore+"us-core-simple-observation")
	}); o != nil {
		c := g.cloneAs(b, o, "boolean")
		for k := range c.r {
			if strings.HasPrefix(k, "value") {
				delete(c.r, k)
			}
		}
		c.r["valueBoolean"] = true
	}
	// Goal.startDate.
	for _, en := range b.entries {
		if en.typ == "Goal" && en.r["startDate"] == nil && en.r["startCodeableConcept"] == nil {
			en.r["startDate"] = "2020-01-15"
		}
	}
	// MedicationRequest.reportedReference: the first order was reported
	// by its requester.
	if mr := first("MedicationRequest", func(r res) bool { return r["requester"] != nil }); mr != nil {
		delete(mr.r, "reportedBoolean")
		mr.r["reportedReference"] = res{"reference": str(mr.r, "requester.reference")}
	}
	// A screening-assessment answer the patient declined, with a
	// data-absent-reason.
	if o := first("Observation", hasCat("survey")); o != nil {
		g.absent(b, o, "asked-declined", "Asked But Declined")
	}
	// Vital signs: for each vital-sign profile, an observation whose value
	// is unknown (data-absent-reason) with components (one measured, one
	// unknown); a blood pressure also gets a value (its mean arterial
	// pressure), value[x] being Must Support by inheritance.
	done := map[string]bool{}
	for _, en := range slices.Clone(b.entries) {
		if en.typ != "Observation" || !slices.Contains(codes(en.r["category"]), "vital-signs") {
			continue
		}
		cs := codes(en.r["code"])
		if len(cs) == 0 || byCode[cs[0]] == nil || done[cs[0]] {
			continue
		}
		done[cs[0]] = true
		if cs[0] == "85354-9" {
			bp := g.cloneAs(b, en, "map")
			bp.r["valueQuantity"] = res{"value": json.Number("93"), "unit": "mm[Hg]", "system": ucum, "code": "mm[Hg]"}
			bp.r["note"] = []any{res{"text": "Value: mean arterial pressure."}}
			continue
		}
		if cs[0] == "96607-7" { // average blood pressure: components are its systolic/diastolic
			continue
		}
		o := g.cloneAs(b, en, "absent")
		val := obj(o.r["valueQuantity"])
		delete(o.r, "valueQuantity")
		o.r["dataAbsentReason"] = unknown()
		// The components use the vital-signs code 8716-3 (obs-7: a
		// component with the observation's own code may not hold a value).
		comp := []any{res{"code": cc(loinc, "8716-3", "Vital signs"), "dataAbsentReason": unknown()}}
		if val != nil {
			comp = append([]any{res{"code": cc(loinc, "8716-3", "Vital signs"), "valueQuantity": val}}, comp...)
		}
		o.r["component"] = comp
	}
}

// absent adds a copy of o whose value is absent for reason code.
func (g *gen) absent(b *bundle, o *entry, code, display string) {
	c := g.cloneAs(b, o, "absent")
	for k := range c.r {
		if strings.HasPrefix(k, "value") {
			delete(c.r, k)
		}
	}
	delete(c.r, "hasMember")
	c.r["dataAbsentReason"] = res{"coding": []any{res{"system": darCS, "code": code, "display": display}}, "text": display}
}

// cloneAs adds to b a deep copy of en with id en.id+"-"+suffix.
func (g *gen) cloneAs(b *bundle, en *entry, suffix string) *entry {
	r := deepCopy(en.r).(res)
	r["id"] = trimID(en.id + "-" + suffix)
	return g.add(b, r)
}

func trimID(id string) string {
	if len(id) > 64 {
		id = id[len(id)-64:]
		id = strings.TrimLeft(id, "-.")
	}
	return id
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, c := range x {
			m[k] = deepCopy(c)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, c := range x {
			a[i] = deepCopy(c)
		}
		return a
	default:
		return v
	}
}

// ---- spreading every element to a second patient ----

// coverage is, per profile and Must Support element, the first resource
// of each patient holding it.
type coverage map[string]map[string]map[string]*entry

// cover computes the coverage of the dataset for set.
func (g *gen) cover(set *profile.Set) (coverage, error) {
	out := coverage{}
	for _, b := range g.bundles {
		for _, en := range b.entries {
			r, err := serverCopy(en.r)
			if err != nil {
				return nil, err
			}
			pat := patientOf(r)
			for _, u := range profiles(r) {
				if !set.Has(u) {
					continue
				}
				cov, err := set.Covered(r, u)
				if err != nil {
					return nil, err
				}
				if out[u] == nil {
					out[u] = map[string]map[string]*entry{}
				}
				for el := range cov.Present {
					if out[u][el] == nil {
						out[u][el] = map[string]*entry{}
					}
					if out[u][el][pat] == nil {
						out[u][el][pat] = en
					}
				}
			}
		}
	}
	return out, nil
}

// spread clones, for every Must Support element of a patient's resource
// found in one patient only, a resource holding it into a reference
// patient that lacks it (85 or 355), with its references to the source
// patient's own resources pointed at the target's (or cloned too).
func (g *gen) spread(sets []*profile.Set) error {
	byRef := map[string]*entry{}
	bundleOf := map[string]*bundle{}
	for _, b := range g.bundles {
		for _, en := range b.entries {
			byRef[en.ref()] = en
			bundleOf[en.ref()] = b
		}
	}
	target := map[string]*bundle{}
	for _, b := range g.bundles {
		if b.patient == "85" || b.patient == "355" {
			target[b.patient] = b
		}
	}
	s := &spreader{g: g, byRef: byRef, bundleOf: bundleOf, cloned: map[string]string{}}
	for _, set := range sets {
		cov, err := g.cover(set)
		if err != nil {
			return err
		}
		var urls []string
		for u := range cov {
			urls = append(urls, u)
		}
		slices.Sort(urls)
		for _, u := range urls {
			for _, el := range set.MustSupport(u) {
				pats := cov[u][el]
				if len(pats) != 1 {
					continue
				}
				for pat, en := range pats {
					if pat == "" {
						continue
					}
					to := target["85"]
					if pat == "Patient/85" {
						to = target["355"]
					}
					s.clone(en, strings.TrimPrefix(pat, "Patient/"), to)
				}
			}
		}
	}
	// Every clinical-note type and report category, and every screening
	// and assessment category, for each reference patient
	// (conformance.md §5.2, clinical notes, screening and assessment).
	for _, pair := range [][2]string{{"85", "355"}, {"355", "85"}} {
		from, to := target[pair[0]], target[pair[1]]
		for _, w := range perPatient {
			if has(to, w.typ, w.field, w.code) {
				continue
			}
			for _, en := range from.entries {
				if en.typ == w.typ && slices.Contains(codes(en.r[w.field]), w.code) {
					s.clone(en, from.patient, to)
					break
				}
			}
		}
	}
	return nil
}

// want is a code a field of a resource type must hold in some resource of
// each reference patient.
type want struct{ typ, field, code string }

// perPatient are the codes the certification looks for in each patient's
// data: the clinical-note DocumentReference types and DiagnosticReport
// categories, and the US Core screening and assessment categories.
var perPatient = func() []want {
	var out []want
	for _, c := range []string{"11488-4", "18842-5", "34117-2", "28570-0", "11506-3", "18748-4", "11502-2", "11526-1"} {
		out = append(out, want{"DocumentReference", "type", c})
	}
	for _, c := range []string{"LP29684-5", "LP29708-2", "LP7839-6"} {
		out = append(out, want{"DiagnosticReport", "category", c})
	}
	for _, c := range []string{"sdoh", "functional-status", "disability-status", "cognitive-status"} {
		out = append(out, want{"Observation", "category", c})
	}
	return append(out, want{"Condition", "category", "sdoh"})
}()

// has reports whether b holds a resource of typ whose field has code.
func has(b *bundle, typ, field, code string) bool {
	for _, en := range b.entries {
		if en.typ == typ && slices.Contains(codes(en.r[field]), code) {
			return true
		}
	}
	return false
}

type spreader struct {
	g        *gen
	byRef    map[string]*entry
	bundleOf map[string]*bundle
	cloned   map[string]string // source ref + " " + target patient -> clone ref
}

// clone copies en (of patient from) into bundle to, once.
func (s *spreader) clone(en *entry, from string, to *bundle) string {
	key := en.ref() + " " + to.patient
	if ref, ok := s.cloned[key]; ok {
		return ref
	}
	r := deepCopy(en.r).(res)
	r["id"] = trimID(en.id + "-" + to.patient)
	ref := en.typ + "/" + r["id"].(string)
	s.cloned[key] = ref
	s.retarget(r, from, to)
	c := s.g.add(to, r)
	s.byRef[ref] = c
	s.bundleOf[ref] = to
	return ref
}

// retarget points the references of r to the source patient and its own
// resources at the target patient: the target's first resource of the
// same type, or a clone.
func (s *spreader) retarget(v any, from string, to *bundle) {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["reference"].(string); ok {
			switch src := s.byRef[ref]; {
			case ref == "Patient/"+from:
				x["reference"] = "Patient/" + to.patient
			case src != nil && src.typ != "Patient" && s.bundleOf[ref].patient == from && patientOf(src.r) != "":
				x["reference"] = s.sameType(src, from, to)
			case src != nil && (src.typ == "Media" || src.typ == "Binary") && s.bundleOf[ref].patient == from:
				x["reference"] = s.clone(src, from, to)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(x)) { // sorted: clones in a fixed order
			c := x[k]
			if k == "url" && strings.HasPrefix(fmt.Sprint(c), "Binary/") {
				if src := s.byRef[c.(string)]; src != nil && s.bundleOf[src.ref()].patient == from {
					x[k] = s.clone(src, from, to)
				}
				continue
			}
			s.retarget(c, from, to)
		}
	case []any:
		for _, c := range x {
			s.retarget(c, from, to)
		}
	}
}

// sameType returns a reference to the target's first resource of src's
// type (and, for an Observation, code), cloning src when there is none.
func (s *spreader) sameType(src *entry, from string, to *bundle) string {
	for _, en := range to.entries {
		if en.typ == src.typ && (en.typ != "Observation" || slices.Equal(codes(en.r["code"]), codes(src.r["code"]))) {
			return en.ref()
		}
	}
	return s.clone(src, from, to)
}

// questionnaireResponse adds a completed questionnaire (a US Core
// QuestionnaireResponse with every Must Support element).
func (g *gen) questionnaireResponse(b *bundle) {
	const q = "http://example.org/fhir/Questionnaire/sandbox-wellbeing"
	g.add(b, res{"resourceType": "QuestionnaireResponse", "id": "wellbeing-" + b.patient,
		"meta":          res{"profile": []any{usCore + "us-core-questionnaireresponse"}},
		"identifier":    res{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:5a1d0000-0000-4000-8000-0000000" + fmt.Sprintf("%05s", b.patient)},
		"questionnaire": q,
		"_questionnaire": res{"extension": []any{
			res{"url": "http://hl7.org/fhir/StructureDefinition/display", "valueString": "Sandbox wellbeing questionnaire"},
			res{"url": usCore + "us-core-extension-questionnaire-uri", "valueUri": q},
		}},
		"status":   "completed",
		"subject":  res{"reference": "Patient/" + b.patient},
		"authored": "2023-03-14T09:30:00Z",
		"author":   res{"reference": "Patient/" + b.patient},
		"item": []any{
			res{"linkId": "1", "text": "Hours of sleep per night", "answer": []any{res{"valueDecimal": json.Number("7.5")}}},
			res{"linkId": "2", "text": "What helps you relax?", "answer": []any{res{"valueString": "Walking"}}},
			res{"linkId": "3", "text": "Do you exercise?", "answer": []any{res{
				"valueCoding": res{"system": "http://terminology.hl7.org/CodeSystem/v2-0136", "code": "Y", "display": "Yes"},
				"item":        []any{res{"linkId": "3.1", "text": "Which exercise?", "answer": []any{res{"valueString": "Cycling"}}}},
			}}},
			res{"linkId": "4", "text": "Contact", "item": []any{
				res{"linkId": "4.1", "text": "Preferred contact time", "answer": []any{res{"valueString": "Mornings"}}},
			}},
		},
	})
}
