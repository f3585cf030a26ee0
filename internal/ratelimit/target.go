package ratelimit

import (
	"net/url"
	"slices"
	"strings"
)

// maxPatientsPerRequest bounds how many distinct patients one request is
// charged to (a search may name several with commas).
const maxPatientsPerRequest = 10

// maxIDLength is the longest FHIR id (R4: 64 characters); longer values
// cannot name a patient and are ignored.
const maxIDLength = 64

// targetPatients returns the ids of the patients a request targets: the
// Patient/{id} of its path, Patient?_id=…, and the patient=/subject=
// search parameters of its query (and of a form-encoded _search body).
// At most maxPatientsPerRequest distinct ids, in order of appearance.
func targetPatients(segs []string, params url.Values) []string {
	var ids []string
	add := func(id string) {
		if !validID(id) || slices.Contains(ids, id) || len(ids) >= maxPatientsPerRequest {
			return
		}
		ids = append(ids, id)
	}
	if len(segs) >= 2 && segs[0] == "Patient" && !strings.HasPrefix(segs[1], "_") && !strings.HasPrefix(segs[1], "$") {
		add(segs[1])
	}
	if len(segs) >= 1 && segs[0] == "Patient" {
		for _, v := range params["_id"] {
			for id := range strings.SplitSeq(v, ",") {
				add(id)
			}
		}
	}
	// The search parameters whose value names a patient: "patient" (and
	// a :Patient modifier) take an id or a Patient reference, a plain
	// "subject" only a Patient reference.
	for _, p := range [...]struct {
		name string
		bare bool
	}{{"patient", true}, {"patient:Patient", true}, {"subject", false}, {"subject:Patient", true}} {
		name, bare := p.name, p.bare
		for _, v := range params[name] {
			for ref := range strings.SplitSeq(v, ",") {
				if id, ok := patientRef(ref, bare); ok {
					add(id)
				}
			}
		}
	}
	return ids
}

// patientRef extracts the id of "Patient/ID", "…/Patient/ID" (an
// absolute reference) or, when bare is true, "ID".
func patientRef(ref string, bare bool) (string, bool) {
	ref = strings.TrimSpace(ref)
	if i := strings.LastIndex(ref, "Patient/"); i >= 0 && (i == 0 || ref[i-1] == '/') {
		id := ref[i+len("Patient/"):]
		if j := strings.IndexByte(id, '/'); j >= 0 { // Patient/ID/_history/V
			id = id[:j]
		}
		return id, true
	}
	if bare && !strings.ContainsAny(ref, "/:|") {
		return ref, true
	}
	return "", false
}

// validID reports whether s is a possible FHIR id: [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if s == "" || len(s) > maxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
