package fhirapi

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/profile"
)

var (
	usCoreOnce sync.Once
	usCoreSet  *profile.Set
	usCoreErr  error
)

// withProfiles makes the service validate with a US Core 6.1.0 profile
// checker in mode (the profiles loaded on first use, as the app does).
func withProfiles(t testing.TB, mode string, allowLower bool) envOption {
	_, val, _ := shared(t)
	ch, err := profile.New(val, profile.Options{Mode: mode, AllowLower: allowLower, Load: func() (*profile.Set, error) {
		usCoreOnce.Do(func() {
			sets, err := profile.Load()
			usCoreSet, usCoreErr = sets["6.1.0"], err
		})
		return usCoreSet, usCoreErr
	}})
	if err != nil {
		t.Fatal(err)
	}
	return func(_ *Config, rc *resourceConfig) { rc.Validator = ch }
}

const (
	claimPatient = `"meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]}`
	// noGender claims us-core-patient and lacks its required gender.
	noGender  = `{"resourceType":"Patient",` + claimPatient + `,"identifier":[{"system":"urn:t","value":"1"}],"name":[{"family":"NoGender"}]}`
	goodPat   = `{"resourceType":"Patient",` + claimPatient + `,"identifier":[{"system":"urn:t","value":"2"}],"name":[{"family":"Good"}],"gender":"female"}`
	unclaimed = `{"resourceType":"Patient","name":[{"family":"Unclaimed"}]}`
)

// withID returns a Patient body with an id.
func withID(body, id string) string {
	return strings.Replace(body, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1)
}

// refusedForGender checks a 400 names the profile, the element and the rule.
func refusedForGender(t *testing.T, r *resp) {
	t.Helper()
	refusedWith(t, r, http.StatusBadRequest)
}

// refusedWith is refusedForGender with another status (422: a patch whose
// result is invalid).
func refusedWith(t *testing.T, r *resp, code int) {
	t.Helper()
	r.expect(t, code)
	if b := string(r.body); !strings.Contains(b, "us-core-patient") || !strings.Contains(b, "Patient.gender") || !strings.Contains(b, "cardinality") {
		t.Errorf("refusal does not name profile, element and rule: %s", b)
	}
}

// TestRequestProfileValidation: a write's X-Lapis-Profile-Validation
// header makes validation stricter than the server's mode (create,
// update, conditional update, patch, transaction and batch entries),
// never looser unless the operator allows it; a bad value is a 400;
// reads ignore the header.
func TestRequestProfileValidation(t *testing.T) {
	t.Parallel()
	const hdr = profile.Header + ": "
	t.Run("server off, request stricter", func(t *testing.T) {
		e := newEnv(t, withProfiles(t, profile.ModeOff, false))
		// No header: the server's mode (off) lets the invalid claim in.
		e.do("POST", "/fhir/Patient", noGender).expect(t, http.StatusCreated)
		// create
		refusedForGender(t, e.do("POST", "/fhir/Patient", noGender, hdr+"claimed"))
		e.do("POST", "/fhir/Patient", goodPat, hdr+"claimed").expect(t, http.StatusCreated)
		e.do("POST", "/fhir/Patient", unclaimed, hdr+"claimed").expect(t, http.StatusCreated)
		e.do("POST", "/fhir/Patient", unclaimed, hdr+"US-Core").expect(t, http.StatusBadRequest)
		// update and conditional update
		e.do("PUT", "/fhir/Patient/p1", withID(goodPat, "p1")).expect(t, http.StatusCreated)
		refusedForGender(t, e.do("PUT", "/fhir/Patient/p1", withID(noGender, "p1"), hdr+"claimed"))
		refusedForGender(t, e.do("PUT", "/fhir/Patient?identifier=urn:t|none", noGender, hdr+"claimed"))
		// patch
		r := e.do("PATCH", "/fhir/Patient/p1", `[{"op":"remove","path":"/gender"}]`, "Content-Type: application/json-patch+json", hdr+"claimed")
		refusedWith(t, r, http.StatusUnprocessableEntity)
		e.do("PATCH", "/fhir/Patient/p1", `[{"op":"replace","path":"/gender","value":"male"}]`, "Content-Type: application/json-patch+json", hdr+"claimed").expect(t, http.StatusOK)
		// transaction: the invalid entry rolls the whole Bundle back.
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":` + goodPat + `,"request":{"method":"POST","url":"Patient"}},
			{"resource":` + noGender + `,"request":{"method":"POST","url":"Patient"}},
			{"resource":` + withID(noGender, "p2") + `,"request":{"method":"PUT","url":"Patient/p2"}}]}`
		refusedForGender(t, e.do("POST", "/fhir", tx, hdr+"claimed"))
		e.do("POST", "/fhir", tx).expect(t, http.StatusOK)
		// batch: each entry on its own.
		batch := `{"resourceType":"Bundle","type":"batch","entry":[
			{"resource":` + goodPat + `,"request":{"method":"POST","url":"Patient"}},
			{"resource":` + noGender + `,"request":{"method":"POST","url":"Patient"}},
			{"resource":` + withID(noGender, "p3") + `,"request":{"method":"PUT","url":"Patient/p3"}}]}`
		b := e.do("POST", "/fhir", batch, hdr+"claimed").expect(t, http.StatusOK).json(t)
		var statuses []string
		for _, en := range entries(b) {
			statuses = append(statuses, get(en, "response", "status").(string))
		}
		if len(statuses) != 3 || !strings.HasPrefix(statuses[0], "201") || !strings.HasPrefix(statuses[1], "400") || !strings.HasPrefix(statuses[2], "400") {
			t.Errorf("batch statuses %v, want 201, 400, 400", statuses)
		}
		if s := string(e.do("POST", "/fhir", batch, hdr+"claimed").body); !strings.Contains(s, "Patient.gender") {
			t.Errorf("batch entry outcome does not name the element: %s", s)
		}
		// A value the server does not know is a 400 that says what is accepted.
		r = e.do("POST", "/fhir/Patient", goodPat, hdr+"strict").expect(t, http.StatusBadRequest)
		if !strings.Contains(string(r.body), "off, claimed, us-core") {
			t.Errorf("bad header value: %s", r.body)
		}
		// Reads ignore it.
		e.do("GET", "/fhir/Patient/p1", "", hdr+"strict").expect(t, http.StatusOK)
	})
	t.Run("server claimed, request looser", func(t *testing.T) {
		e := newEnv(t, withProfiles(t, profile.ModeClaimed, false))
		refusedForGender(t, e.do("POST", "/fhir/Patient", noGender))
		refusedForGender(t, e.do("POST", "/fhir/Patient", noGender, hdr+"off"))
		refusedForGender(t, e.do("PUT", "/fhir/Patient/q1", withID(noGender, "q1"), hdr+"off"))
		e.do("POST", "/fhir/Patient", unclaimed, hdr+"off").expect(t, http.StatusCreated)
		e.do("POST", "/fhir/Patient", unclaimed, hdr+"us-core").expect(t, http.StatusBadRequest)
	})
	t.Run("server claimed, lowering allowed", func(t *testing.T) {
		e := newEnv(t, withProfiles(t, profile.ModeClaimed, true))
		refusedForGender(t, e.do("POST", "/fhir/Patient", noGender))
		e.do("POST", "/fhir/Patient", noGender, hdr+"off").expect(t, http.StatusCreated)
		e.do("PUT", "/fhir/Patient/q1", withID(noGender, "q1"), hdr+"off").expect(t, http.StatusCreated)
	})
}
