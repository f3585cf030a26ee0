// Package access decides what an authenticated caller may do on the FHIR
// API: it turns the caller's SMART scopes (v1, v2, granular, system/) and
// launch context into the resource.Access decisions and the
// store.AccessFilter pushed down into search SQL.
package access

import (
	"strings"

	"github.com/lapis-health/lapis/internal/principal"
)

// methodBearer is principal.Principal.Method for OAuth access tokens.
const methodBearer = "bearer"

// hasUserScope reports whether scopes hold a user/ scope.
func hasUserScope(scopes []string) bool {
	for _, s := range scopes {
		if strings.HasPrefix(s, ContextUser+"/") {
			return true
		}
	}
	return false
}

// staffUser reports whether FHIRUser names a member of staff, for whom
// user/ scopes mean what they say across patients.
func staffUser(fhirUser string) bool {
	return strings.HasPrefix(fhirUser, "Practitioner/") || strings.HasPrefix(fhirUser, "PractitionerRole/")
}

// Effective returns the scopes and the patient in context that decide what
// p may do, bounded by the user the credential acts for (FHIRUser), so a
// token issued with more than its user may have cannot widen access:
//
//   - a patient user ("Patient/ID") is limited to their own compartment
//     whatever the credential carries: user/ and system/ resource scopes
//     count as the patient/ scopes of the same type and permissions, the
//     patient in context is ID, and system/lapis.* scopes are dropped. A
//     credential with another patient in context, or a malformed
//     FHIRUser, grants nothing (ok is false);
//   - staff (Practitioner/…, PractitionerRole/…) and callers without a
//     user (backend clients, API keys, Basic) keep their scopes, except
//     that a credential without a fhirUser has no user for its user/
//     scopes (client_credentials tokens, API keys and Basic clients act
//     for no user): they grant nothing;
//   - any other user (RelatedPerson/…, Person/…) keeps only its patient/
//     scopes (with the patient in context): user/ and system/ grant
//     nothing.
func Effective(p *principal.Principal) (scopes []string, patient string, ok bool) {
	if staffUser(p.FHIRUser) || p.FHIRUser == "" && !hasUserScope(p.Scopes) {
		return p.Scopes, p.Patient, true
	}
	if p.FHIRUser == "" {
		out := make([]string, 0, len(p.Scopes))
		for _, s := range p.Scopes {
			if !strings.HasPrefix(s, ContextUser+"/") {
				out = append(out, s)
			}
		}
		return out, p.Patient, true
	}
	id, isPatient := p.PatientUser()
	if isPatient {
		if id == "" || (p.Patient != "" && p.Patient != id) {
			return nil, "", false
		}
		patient = id
	} else {
		patient = p.Patient
	}
	out := make([]string, 0, len(p.Scopes))
	for _, s := range p.Scopes {
		switch {
		case strings.HasPrefix(s, "system/lapis."):
			continue
		case strings.HasPrefix(s, ContextUser+"/"), strings.HasPrefix(s, ContextSystem+"/"):
			if !isPatient {
				continue
			}
			_, rest, _ := strings.Cut(s, "/")
			s = ContextPatient + "/" + rest
		}
		out = append(out, s)
	}
	return out, patient, true
}
