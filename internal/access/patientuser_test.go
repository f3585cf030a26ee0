package access_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/access"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

// Fixtures of the patient-user and patient-write tests, next to the
// matrix's: an Observation about pb performed by pa (in both compartments,
// pb's record), and an Appointment of pa and pb.
var sharedFixtures = []string{
	obs("oshared", "laboratory", "Patient/pb", "Patient/pa"),
	appt("apshared", "Patient/pa", "Patient/pb"),
}

// appt is a booked Appointment with the actors.
func appt(id string, actors ...string) string {
	var ps []string
	for _, a := range actors {
		ps = append(ps, `{"actor":{"reference":"`+a+`"},"status":"accepted"}`)
	}
	idf := ""
	if id != "" {
		idf = `"id":"` + id + `",`
	}
	return `{"resourceType":"Appointment",` + idf + `"status":"booked","participant":[` + strings.Join(ps, ",") + `]}`
}

func patch(typ, id, body string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.Patch(ctx, typ, id, []byte(body), "")
	}
}

func condCreate(typ, body, ifNoneExist string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.Create(ctx, typ, []byte(body), ifNoneExist)
	}
}

// patientUsers are credentials whose user is the patient pa (FHIRUser
// Patient/pa), whatever their scopes say, next to the patient/ credential
// of the matrix and a staff user.
var patientUsers = map[string]*principal.Principal{
	// Finding 1: a patient user's token carrying user/ scopes.
	"pu-user-rs": {Method: "bearer", FHIRUser: "Patient/pa", Subject: "u-pa", Scopes: []string{"openid", "fhirUser", "user/*.rs"}, Patient: "pa"},
	// ... without a patient claim.
	"pu-user-cruds-nopatient": {Method: "bearer", FHIRUser: "Patient/pa", Subject: "u-pa", Scopes: []string{"user/*.cruds"}},
	// ... with system/ scopes and the admin scope.
	"pu-system": {Method: "bearer", FHIRUser: "Patient/pa", Subject: "u-pa", Scopes: []string{"system/*.rs", "system/lapis.admin"}, Patient: "pa"},
	// ... with another patient in context.
	"pu-mismatch": {Method: "bearer", FHIRUser: "Patient/pa", Subject: "u-pa", Scopes: []string{"patient/*.rs", "user/*.rs"}, Patient: "pb"},
	// ... with a malformed FHIRUser.
	"pu-malformed": {Method: "bearer", FHIRUser: "Patient/", Subject: "u-x", Scopes: []string{"user/*.rs"}},
	// A user who is neither a patient nor staff: user/ grants nothing.
	"related-user": {Method: "bearer", FHIRUser: "RelatedPerson/rp", Subject: "u-rp", Scopes: []string{"user/*.rs"}},
	// Staff keep user/ across patients.
	"practitioner": {Method: "bearer", FHIRUser: "Practitioner/dr", Subject: "u-dr", Scopes: []string{"user/*.cruds"}},
	// Finding 5: a patient-bound write credential (launch context or API
	// key), and a patient user writing through user/ scopes.
	"patient-w":  {Scopes: []string{"launch/patient", "patient/*.cruds"}, Patient: "pa"},
	"pu-user-w":  {Method: "bearer", FHIRUser: "Patient/pa", Subject: "u-pa", Scopes: []string{"user/*.cruds"}, Patient: "pa"},
	"patient-wo": {Scopes: []string{"patient/Observation.c", "patient/Appointment.c"}, Patient: "pa"},
}

// puReadCells: a patient user sees their own compartment only.
var puReadCells = []cell{
	{"pu-user-rs", "count patients", find("Patient", "_summary=count"), ok, ids("total:1"), nil},
	{"pu-user-rs", "search patients", find("Patient", ""), ok, ids("Patient/pa", "total:1"), nil},
	{"pu-user-rs", "search observations", find("Observation", ""), ok, ids("Observation/oal", "Observation/oav", "Observation/oshared", "total:3"), nil},
	{"pu-user-rs", "read other patient", read("Patient", "pb"), notFound, nil, nil},
	{"pu-user-rs", "read other's observation", read("Observation", "obl"), notFound, nil, nil},
	{"pu-user-rs", "read practitioner (shared type)", read("Practitioner", "dr"), ok, ids("Practitioner/dr"), nil},
	{"pu-user-rs", "search by other patient", find("Condition", "patient=pb"), ok, ids("total:0"), nil},
	{"pu-user-rs", "_has other patient", find("Patient", "_has:Observation:subject:_id=obl"), ok, ids("total:0"), nil},
	{"pu-user-rs", "system search", find("", "_type=Patient,Condition,Practitioner"), ok, ids("Condition/ca", "Condition/ca2", "Patient/pa", "Practitioner/dr", "total:4"), nil},
	{"pu-user-rs", "history system", history("Patient", ""), ok, ids("Patient/pa"), nil},
	{"pu-user-rs", "batch", bundle("batch", get("Patient/pb"), get("Patient/pa")), ok, ids("200 Patient/pa", "404 "), nil},
	{"pu-user-rs", "write refused (read scope)", create("Observation", obs("", "laboratory", "Patient/pa", "")), forbidden, nil, nil},
	{"pu-user-cruds-nopatient", "read own", read("Patient", "pa"), ok, ids("Patient/pa"), nil},
	{"pu-user-cruds-nopatient", "read other", read("Patient", "pb"), notFound, nil, nil},
	{"pu-user-cruds-nopatient", "search conditions", find("Condition", ""), ok, ids("Condition/ca", "Condition/ca2", "total:2"), nil},
	{"pu-system", "search patients", find("Patient", ""), ok, ids("Patient/pa", "total:1"), nil},
	{"pu-system", "read other's condition", read("Condition", "cb"), notFound, nil, nil},
	{"pu-system", "audit trail", find("AuditEvent", ""), forbidden, nil, nil},
	{"pu-mismatch", "read own", read("Patient", "pa"), forbidden, nil, nil},
	{"pu-mismatch", "read context patient", read("Patient", "pb"), forbidden, nil, nil},
	{"pu-mismatch", "search", find("Observation", ""), forbidden, nil, nil},
	{"pu-malformed", "search", find("Patient", ""), forbidden, nil, nil},
	{"related-user", "search", find("Patient", ""), forbidden, nil, nil},
	{"related-user", "read", read("Observation", "obl"), forbidden, nil, nil},
	{"practitioner", "read other", read("Observation", "obl"), ok, ids("Observation/obl"), nil},
	{"practitioner", "count patients", find("Patient", "_summary=count"), ok, ids("total:2"), nil},
	// Reads follow the R4 compartment: pa performed oshared, so pa sees it.
	{"patient-w", "read shared observation", read("Observation", "oshared"), ok, ids("Observation/oshared"), nil},
	{"patient-w", "read shared appointment", read("Appointment", "apshared"), ok, ids("Appointment/apshared"), nil},
}

// puWriteCells: writes in pa's context must leave every other patient's
// record alone. They run in order, on the same data.
var puWriteCells = []cell{
	// A patient user's user/ write scope is pa's compartment.
	{"pu-user-w", "create for other patient", create("Observation", obs("", "laboratory", "Patient/pb", "")), forbidden, nil, nil},
	{"pu-user-w", "update other's", update("Observation", "obl", obs("obl", "laboratory", "Patient/pa", "")), notFound, nil, ids("Observation/obl")},
	{"pu-user-w", "delete other's", del("Observation", "obl"), notFound, nil, ids("Observation/obl")},
	{"pu-user-w", "update practitioner", update("Practitioner", "dr", `{"resourceType":"Practitioner","id":"dr"}`), forbidden, nil, ids("Practitioner/dr")},
	{"pu-user-cruds-nopatient", "create for other patient", create("Condition", cond("", "problem-list-item", "Patient/pb")), forbidden, nil, nil},

	// Create into another patient's record through a second link.
	{"patient-w", "create other's, performed by self", create("Observation", obs("", "laboratory", "Patient/pb", "Patient/pa")), forbidden, nil, nil},
	{"patient-w", "create own, performed by other", create("Observation", obs("", "laboratory", "Patient/pa", "Patient/pb")), forbidden, nil, nil},
	{"pu-user-w", "create other's, performed by self", create("Observation", obs("", "laboratory", "Patient/pb", "Patient/pa")), forbidden, nil, nil},
	{"patient-wo", "write-only: create other's, performed by self", create("Observation", obs("", "laboratory", "Patient/pb", "Patient/pa")), forbidden, nil, nil},
	{"patient-w", "appointment with other", create("Appointment", appt("", "Patient/pa", "Patient/pb")), forbidden, nil, nil},
	{"patient-wo", "write-only: appointment with other", create("Appointment", appt("", "Patient/pa", "Patient/pb")), forbidden, nil, nil},
	{"patient-w", "appointment of other alone", create("Appointment", appt("", "Patient/pb", "Practitioner/dr")), forbidden, nil, nil},
	{"patient-w", "conditional create", condCreate("Observation", obs("", "laboratory", "Patient/pb", "Patient/pa"), "code=nothing-matches"), forbidden, nil, nil},
	{"patient-w", "conditional update as create", condUpdate("Observation", "_id=newobs", obs("newobs", "laboratory", "Patient/pb", "Patient/pa")), forbidden, nil, nil},
	{"patient-w", "new patient linking to self", create("Patient", `{"resourceType":"Patient","link":[{"other":{"reference":"Patient/pa"},"type":"seealso"}]}`), forbidden, nil, nil},
	{"patient-w", "own record linking to other", update("Patient", "pa", `{"resourceType":"Patient","id":"pa","name":[{"family":"Alpha"}],"link":[{"other":{"reference":"Patient/pb"},"type":"seealso"}]}`), forbidden, nil, ids("Patient/pa")},

	// Update, patch and delete: the current version must be pa's alone too
	// (403: pa may read what it shares with pb, but not change it).
	{"patient-w", "update shared into own", update("Observation", "oshared", obs("oshared", "laboratory", "Patient/pa", "")), forbidden, nil, ids("Observation/oshared")},
	{"patient-w", "update shared, unchanged", update("Observation", "oshared", obs("oshared", "laboratory", "Patient/pb", "Patient/pa")), forbidden, nil, ids("Observation/oshared")},
	{"patient-w", "patch shared", patch("Observation", "oshared", `[{"op":"replace","path":"/status","value":"amended"}]`), forbidden, nil, ids("Observation/oshared")},
	{"patient-w", "delete shared", del("Observation", "oshared"), forbidden, nil, ids("Observation/oshared")},
	{"patient-w", "update shared appointment", update("Appointment", "apshared", appt("apshared", "Patient/pa")), forbidden, nil, ids("Appointment/apshared")},
	{"patient-w", "delete shared appointment", del("Appointment", "apshared"), forbidden, nil, ids("Appointment/apshared")},
	{"patient-w", "conditional update of shared", condUpdate("Observation", "_id=oshared", obs("oshared", "laboratory", "Patient/pa", "")), forbidden, nil, ids("Observation/oshared")},
	{"patient-w", "update own adding other", update("Observation", "oav", obs("oav", "vital-signs", "Patient/pa", "Patient/pb")), forbidden, nil, ids("Observation/oav")},
	{"patient-w", "patch own adding other", patch("Observation", "oav", `[{"op":"add","path":"/performer","value":[{"reference":"Patient/pb"}]}]`), forbidden, nil, ids("Observation/oav")},

	// Bundles: every entry is held to the same rule.
	{"patient-w", "transaction create", bundle("transaction", post("Observation", obs("", "laboratory", "Patient/pb", "Patient/pa"))), forbidden, nil, nil},
	{"patient-w", "transaction update shared", bundle("transaction", put("Observation/oshared", obs("oshared", "laboratory", "Patient/pa", ""))), forbidden, nil, ids("Observation/oshared")},
	{"patient-w", "transaction mixed", bundle("transaction", post("Observation", obs("", "laboratory", "Patient/pa", "")), put("Appointment/apshared", appt("apshared", "Patient/pa", "Patient/pb"))), forbidden, nil, ids("Appointment/apshared")},
	{"patient-w", "batch", bundle("batch", post("Observation", obs("", "laboratory", "Patient/pb", "Patient/pa")), put("Observation/oshared", obs("oshared", "laboratory", "Patient/pa", ""))),
		ok, ids("403 ", "403 "), ids("Observation/oshared")},

	// What stays allowed: the patient's own resources, performed by them
	// or by staff, about a non-patient subject, or with no other patient.
	{"patient-w", "create own, performed by self", create("Observation", obs("", "laboratory", "Patient/pa", "Patient/pa")), created, nil, nil},
	{"patient-w", "create own, performed by staff", create("Observation", obs("", "laboratory", "Patient/pa", "Practitioner/dr")), created, nil, nil},
	{"patient-w", "create about a group, performed by self", create("Observation", obs("", "laboratory", "Group/g", "Patient/pa")), created, nil, nil},
	{"patient-w", "own appointment", create("Appointment", appt("", "Patient/pa", "Practitioner/dr")), created, nil, nil},
	{"patient-wo", "write-only: own appointment", create("Appointment", appt("", "Patient/pa", "Practitioner/dr")), created, nil, nil},
	{"patient-w", "update own record", update("Patient", "pa", `{"resourceType":"Patient","id":"pa","name":[{"family":"Alpha"}],"gender":"female"}`), ok, ids("Patient/pa"), nil},
	{"patient-w", "patch own", patch("Observation", "oav", `[{"op":"replace","path":"/status","value":"amended"}]`), ok, ids("Observation/oav"), nil},
	{"pu-user-w", "create own", create("Observation", obs("", "laboratory", "Patient/pa", "")), created, nil, nil},
	{"patient-w", "transaction own", bundle("transaction", post("Observation", obs("", "laboratory", "Patient/pa", "Patient/pa"))), ok, ids("201 Observation/new"), nil},
	// Staff may write what links several patients.
	{"practitioner", "update shared", update("Observation", "oshared", obs("oshared", "laboratory", "Patient/pb", "Patient/pa")), ok, ids("Observation/oshared"), nil},
	{"practitioner", "appointment with two patients", create("Appointment", appt("", "Patient/pa", "Patient/pb")), created, nil, nil},
}

// TestPatientUserAndWrites: a patient user is limited to their own
// compartment whatever their token's scopes (finding 1), and a write in a
// patient's context may not reach another patient's record (finding 5), on
// both dialects.
func TestPatientUserAndWrites(t *testing.T) {
	parallelDialects(t, func(t *testing.T, e *env) {
		for _, f := range sharedFixtures {
			typ, id := fixtureRef(f)
			if _, err := e.admin.Update(context.Background(), typ, id, []byte(f), ""); err != nil {
				t.Fatalf("loading %s/%s: %v", typ, id, err)
			}
		}
		counts := func() map[string]int {
			out := map[string]int{}
			for _, typ := range []string{"Observation", "Appointment", "Patient", "Condition"} {
				r, err := e.st.Search(context.Background(), &store.Query{Type: typ, Count: 1})
				if err != nil {
					t.Fatal(err)
				}
				out[typ] = r.Total
			}
			return out
		}
		run := func(t *testing.T, cells []cell) {
			for _, c := range cells {
				t.Run(c.who+"/"+c.name, func(t *testing.T) {
					p, known := patientUsers[c.who]
					if !known {
						t.Fatalf("unknown principal %s", c.who)
					}
					before := counts()
					status, got := outcomeOf(t, principal.NewContext(context.Background(), p), e.svc, c.op)
					e.check(t, status, got, c.status, c.ids, c.untouched)
					// A refusal (and the batch, whose entries are all
					// refused) creates nothing.
					if status >= http.StatusBadRequest || c.name == "batch" {
						if after := counts(); !maps.Equal(before, after) {
							t.Errorf("resources created: %v -> %v", before, after)
						}
					}
				})
			}
		}
		run(t, puReadCells)
		run(t, puWriteCells)
	})
}

func fixtureRef(body string) (typ, id string) {
	_, rest, _ := strings.Cut(body, `"resourceType":"`)
	typ, _, _ = strings.Cut(rest, `"`)
	_, rest, _ = strings.Cut(body, `"id":"`)
	id, _, _ = strings.Cut(rest, `"`)
	return typ, id
}

// TestEffective: the scopes and patient in context that decide what a
// caller may do, by who the user is.
func TestEffective(t *testing.T) {
	for _, c := range []struct {
		name    string
		p       principal.Principal
		scopes  []string
		patient string
		ok      bool
	}{
		{"practitioner", principal.Principal{Method: "bearer", FHIRUser: "Practitioner/dr", Scopes: []string{"user/*.rs", "patient/*.rs"}, Patient: "pb"},
			[]string{"user/*.rs", "patient/*.rs"}, "pb", true},
		{"patient", principal.Principal{Method: "bearer", FHIRUser: "Patient/pa", Scopes: []string{"openid", "user/*.rs", "system/Observation.rs?category=a|b", "system/lapis.admin", "patient/Condition.r"}},
			[]string{"openid", "patient/*.rs", "patient/Observation.rs?category=a|b", "patient/Condition.r"}, "pa", true},
		{"patient, own context", principal.Principal{Method: "bearer", FHIRUser: "Patient/pa", Scopes: []string{"user/*.rs"}, Patient: "pa"}, []string{"patient/*.rs"}, "pa", true},
		{"patient, other context", principal.Principal{Method: "bearer", FHIRUser: "Patient/pa", Scopes: []string{"patient/*.rs"}, Patient: "pb"}, nil, "", false},
		{"patient, no id", principal.Principal{Method: "bearer", FHIRUser: "Patient/", Scopes: []string{"user/*.rs"}}, nil, "", false},
		{"patient, path", principal.Principal{Method: "bearer", FHIRUser: "Patient/pa/_history/1", Scopes: []string{"user/*.rs"}}, nil, "", false},
		{"related person", principal.Principal{Method: "bearer", FHIRUser: "RelatedPerson/rp", Scopes: []string{"user/*.rs", "patient/*.rs", "system/*.rs"}, Patient: "pa"},
			[]string{"patient/*.rs"}, "pa", true},
		{"access token without a user", principal.Principal{Method: "bearer", Scopes: []string{"user/*.rs", "system/*.rs"}}, []string{"system/*.rs"}, "", true},
		{"backend token", principal.Principal{Method: "bearer", Scopes: []string{"system/*.rs"}}, []string{"system/*.rs"}, "", true},
		{"api key", principal.Principal{Method: "apikey", Scopes: []string{"patient/*.rs"}, Patient: "pa"}, []string{"patient/*.rs"}, "pa", true},
		{"basic client", principal.Principal{Method: "basic", Scopes: []string{"user/*.rs", "system/Patient.rs"}}, []string{"system/Patient.rs"}, "", true},
		{"api key with a user/ scope", principal.Principal{Method: "apikey", Scopes: []string{"user/*.rs"}}, []string{}, "", true},
	} {
		scopes, patient, ok := access.Effective(&c.p)
		if !slices.Equal(scopes, c.scopes) || patient != c.patient || ok != c.ok {
			t.Errorf("%s: %q %q %v, want %q %q %v", c.name, scopes, patient, ok, c.scopes, c.patient, c.ok)
		}
	}
}
