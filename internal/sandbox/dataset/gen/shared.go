package main

import (
	"fmt"
	"slices"

	"github.com/lapis-health/lapis/internal/sandbox/dataset"
)

// provenance gives b one US Core Provenance whose targets are every other
// resource of b: the reference patients' own Provenance (with its targets
// replaced), or a new one (author: the bundle's first Organization;
// transmitter: the sandbox practitioner on its behalf).
func (g *gen) provenance(b *bundle) {
	var prov *entry
	var targets []any
	org := ""
	for _, en := range b.entries {
		switch {
		case en.typ == "Provenance" && prov == nil:
			prov = en
		case en.typ == "Provenance", en.typ == "Binary":
		default:
			if org == "" && en.typ == "Organization" {
				org = en.ref()
			}
			if org == "" && en.typ == "Encounter" {
				org = str(en.r, "serviceProvider.reference")
			}
			targets = append(targets, res{"reference": en.ref()})
		}
	}
	if org == "" {
		org = "Organization/sandbox-organization"
	}
	id := "provenance-" + b.patient
	if b.patient == "" {
		id = "provenance-sandbox"
	}
	if prov == nil {
		prov = g.add(b, res{"resourceType": "Provenance", "id": id,
			"meta":     res{"profile": []any{usCore + "us-core-provenance"}},
			"recorded": "2024-01-15T10:00:00Z",
			"agent": []any{
				res{"type": cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"),
					"who": res{"reference": org}},
				res{"type": cc("http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type", "transmitter", "Transmitter"),
					"who":        res{"reference": "Practitioner/" + dataset.PractitionerID},
					"onBehalfOf": res{"reference": org}},
			}})
	}
	prov.r["target"] = targets
}

// sharedBundle adds the last Bundle: the sandbox practitioner, its
// organization, the Group of every patient and their Provenance.
func (g *gen) sharedBundle() {
	b := &bundle{}
	g.add(b, res{"resourceType": "Organization", "id": "sandbox-organization",
		"meta":       res{"profile": []any{usCore + "us-core-organization"}},
		"active":     true,
		"name":       "Lapis Sandbox Clinic",
		"identifier": []any{res{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}},
		"telecom":    []any{res{"system": "phone", "value": "555-555-0100", "use": "work"}},
		"address":    []any{address()},
	})
	g.add(b, res{"resourceType": "Practitioner", "id": dataset.PractitionerID,
		"meta":       res{"profile": []any{usCore + "us-core-practitioner"}},
		"identifier": []any{res{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9941339100"}},
		"active":     true,
		"name":       []any{res{"use": "official", "family": "Sandbox", "given": []any{"Sam"}, "prefix": []any{"Dr."}}},
		"telecom":    []any{res{"system": "email", "value": "sam.sandbox@example.org", "use": "work"}},
		"address":    []any{address()},
		"gender":     "unknown",
	})
	var members []any
	for _, id := range dataset.PatientIDs() {
		members = append(members, res{"entity": res{"reference": "Patient/" + id}})
	}
	g.add(b, res{"resourceType": "Group", "id": dataset.GroupID, "active": true, "type": "person", "actual": true,
		"name": "Lapis sandbox patients", "quantity": len(members), "member": members})
	g.provenance(b)
	g.bundles = append(g.bundles, b)
}

func address() res {
	return res{"use": "work", "line": []any{"100 Sandbox Way"}, "city": "Boston", "state": "MA", "postalCode": "02110", "country": "US"}
}

// cc is a CodeableConcept of one coding (its display also the text).
func cc(system, code, display string) res {
	c := res{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	out := res{"coding": []any{c}}
	if display != "" {
		out["text"] = display
	}
	return out
}

// notes gives every DiagnosticReport form a DocumentReference
// of the same patient with the same attachment URL (conformance.md §5.2,
// clinical notes), creating one where the patient has none.
func (g *gen) notes(b *bundle) {
	have := map[string]bool{}
	for _, en := range b.entries {
		if en.typ == "DocumentReference" {
			for _, c := range arr(en.r["content"]) {
				have[str(c, "attachment.url")] = true
			}
		}
	}
	n := 0
	for _, en := range slices.Clone(b.entries) {
		if en.typ != "DiagnosticReport" {
			continue
		}
		for _, f := range arr(en.r["presentedForm"]) {
			u := str(f, "url")
			if u == "" || have[u] {
				continue
			}
			have[u] = true
			n++
			att := res{"url": u}
			if ct := str(f, "contentType"); ct != "" {
				att["contentType"] = ct
			}
			date, _ := en.r["issued"].(string)
			if date == "" {
				date, _ = en.r["effectiveDateTime"].(string)
			}
			doc := res{"resourceType": "DocumentReference", "id": fmt.Sprintf("note-%s-%d", b.patient, n),
				"meta":       res{"profile": []any{usCore + "us-core-documentreference"}},
				"identifier": []any{res{"system": "urn:ietf:rfc:3986", "value": fmt.Sprintf("urn:uuid:sandbox-note-%s-%d", b.patient, n)}},
				"status":     "current",
				"type":       en.r["code"],
				"category":   []any{cc("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note")},
				"subject":    en.r["subject"],
				"content":    []any{res{"attachment": att, "format": res{"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient", "display": "mimeType Sufficient"}}},
			}
			if date != "" {
				doc["date"] = date
			}
			if p := arr(en.r["performer"]); len(p) > 0 {
				doc["author"] = []any{p[0]}
			}
			if enc := obj(en.r["encounter"]); enc != nil {
				doc["context"] = res{"encounter": []any{enc}}
			}
			g.add(b, doc)
		}
	}
}

// isNote reports whether a DiagnosticReport has a clinical-note category.
func isNote(r res) bool {
	for _, c := range codes(r["category"]) {
		if c == "LP29684-5" || c == "LP29708-2" || c == "LP7839-6" {
			return true
		}
	}
	return false
}
