package access_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/access"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
)

const (
	base   = "http://localhost:8080"
	obsCat = "http://terminology.hl7.org/CodeSystem/observation-category"
	cndCat = "http://terminology.hl7.org/CodeSystem/condition-category"
)

func obs(id, cat, patient, performer string) string {
	perf := ""
	if performer != "" {
		perf = fmt.Sprintf(`,"performer":[{"reference":%q}]`, performer)
	}
	idf := ""
	if id != "" {
		idf = fmt.Sprintf(`"id":%q,`, id)
	}
	return fmt.Sprintf(`{"resourceType":"Observation",%s"status":"final","category":[{"coding":[{"system":%q,"code":%q}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2708-6"}]},"subject":{"reference":%q}%s}`,
		idf, obsCat, cat, patient, perf)
}

func cond(id, cat, patient string) string {
	return fmt.Sprintf(`{"resourceType":"Condition","id":%q,"category":[{"coding":[{"system":%q,"code":%q}]}],"code":{"text":"x"},"subject":{"reference":%q}}`,
		id, cndCat, cat, patient)
}

// fixtures: patients pa and pb; pa's observations oal (laboratory, by dr)
// and oav (vital-signs), pb's obl (laboratory); conditions ca
// (problem-list-item) and ca2 (encounter-diagnosis) of pa, cb of pb; an
// encounter ea of pa; practitioner dr (pa's GP); provenance prov of oal
// (outside the compartment); medication med, prescribed to pa by mra;
// devices dva of pa and dvb of pb; a binary bin; locations clinic and
// home (a patient's residence).
var fixtures = []string{
	`{"resourceType":"Practitioner","id":"dr","name":[{"family":"Smith"}]}`,
	`{"resourceType":"Patient","id":"pa","name":[{"family":"Alpha"}],"generalPractitioner":[{"reference":"Practitioner/dr"}]}`,
	`{"resourceType":"Patient","id":"pb","name":[{"family":"Beta"}]}`,
	obs("oal", "laboratory", "Patient/pa", "Practitioner/dr"),
	obs("oav", "vital-signs", "Patient/pa", ""),
	obs("obl", "laboratory", "Patient/pb", ""),
	cond("ca", "problem-list-item", "Patient/pa"),
	cond("ca2", "encounter-diagnosis", "Patient/pa"),
	cond("cb", "problem-list-item", "Patient/pb"),
	`{"resourceType":"Encounter","id":"ea","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/pa"}}`,
	`{"resourceType":"Provenance","id":"prov","target":[{"reference":"Observation/oal"}],"recorded":"2024-01-01T00:00:00Z","agent":[{"who":{"reference":"Practitioner/dr"}}]}`,
	`{"resourceType":"Medication","id":"med","code":{"text":"aspirin"}}`,
	`{"resourceType":"MedicationRequest","id":"mra","status":"active","intent":"order","medicationReference":{"reference":"Medication/med"},"subject":{"reference":"Patient/pa"}}`,
	`{"resourceType":"Device","id":"dva","patient":{"reference":"Patient/pa"}}`,
	`{"resourceType":"Device","id":"dvb","patient":{"reference":"Patient/pb"}}`,
	`{"resourceType":"Binary","id":"bin","contentType":"text/plain","data":"eA=="}`,
	`{"resourceType":"Location","id":"clinic","name":"Clinic"}`,
	`{"resourceType":"Location","id":"home","name":"Home","type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"PTRES"}]}]}`,
}

type env struct {
	admin, svc *resource.Service
	st         store.Store
}

// parallelDialects runs f as a parallel subtest on an env of each dialect.
func parallelDialects(t *testing.T, f func(t *testing.T, e *env)) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f(t, open(t, dialect))
		})
	}
}

func open(t *testing.T, dialect string) *env {
	t.Helper()
	a := apptest.Open(t, dialect, func(cfg *config.Config) { cfg.Server.BaseURL = base })
	cfg := a.Config
	ex, err := extract.New(a.Registry, cfg.FHIRBase())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := resource.New(resource.Config{
		Store: a.Store, Registry: a.Registry, Validator: validate.New(a.Registry), Indexer: ex,
		Parser:  search.NewParser(a.Registry, cfg.FHIRBase(), cfg.FHIR.MaxCount, cfg.FHIR.DefaultCount),
		BaseURL: cfg.FHIRBase(), Access: access.NewPolicy(a.Registry),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{admin: a.Service, svc: svc, st: a.Store}
	for _, f := range fixtures {
		var h struct{ ResourceType, ID string }
		json.Unmarshal([]byte(f), &h)
		if _, err := a.Service.Update(context.Background(), h.ResourceType, h.ID, []byte(f), ""); err != nil {
			t.Fatalf("loading %s/%s: %v", h.ResourceType, h.ID, err)
		}
	}
	return e
}

// op runs one interaction; it returns the result or the error.
type op func(ctx context.Context, s *resource.Service) (*resource.Result, error)

func read(typ, id string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) { return s.Read(ctx, typ, id) }
}

func vread(typ, id string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.VRead(ctx, typ, id, 1)
	}
}

func find(typ, query string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		v, err := url.ParseQuery(query)
		if err != nil {
			panic(err)
		}
		p, err := s.Search(ctx, typ, v, true)
		if err != nil {
			return nil, err
		}
		return &resource.Result{Status: http.StatusOK, Body: p.JSON()}, nil
	}
}

func history(typ, id string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		p, err := s.History(ctx, typ, id, url.Values{}, true)
		if err != nil {
			return nil, err
		}
		return &resource.Result{Status: http.StatusOK, Body: p.JSON()}, nil
	}
}

func create(typ, body string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.Create(ctx, typ, []byte(body), "")
	}
}

func update(typ, id, body string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.Update(ctx, typ, id, []byte(body), "")
	}
}

func condUpdate(typ, criteria, body string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.ConditionalUpdate(ctx, typ, criteria, []byte(body), "")
	}
}

func del(typ, id string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.Delete(ctx, typ, id, "")
	}
}

func bundle(typ string, entries ...string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		b := `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
		return s.Bundle(ctx, []byte(b), resource.ReturnMinimal)
	}
}

func get(u string) string { return `{"request":{"method":"GET","url":"` + u + `"}}` }
func post(typ, body string) string {
	return `{"fullUrl":"urn:uuid:0b9f2f0e-0000-4000-8000-000000000001","resource":` + body + `,"request":{"method":"POST","url":"` + typ + `"}}`
}
func put(u, body string) string {
	return `{"resource":` + body + `,"request":{"method":"PUT","url":"` + u + `"}}`
}

// outcomeOf runs o and renders its outcome: the status, and for a Bundle
// the sorted entries ("Type/id" for matches and history, "+Type/id" for
// included resources, "total:N", and for batch/transaction responses the
// entry statuses and ids), for a resource its "Type/id".
func outcomeOf(t *testing.T, ctx context.Context, s *resource.Service, o op) (int, []string) {
	t.Helper()
	res, err := o(ctx, s)
	if err != nil {
		var oe *outcome.Error
		if !errors.As(err, &oe) {
			t.Fatalf("not an outcome: %v", err)
		}
		for _, is := range oe.Issues {
			for _, leak := range []string{"sql", "SQL", "rid", "select", "store"} {
				if strings.Contains(is.Diagnostics, leak) {
					t.Errorf("diagnostics reveal internals: %q", is.Diagnostics)
				}
			}
		}
		return oe.Status, nil
	}
	out := []string{}
	if res.Resource != nil && len(res.Body) > 0 && !strings.Contains(string(res.Body[:min(60, len(res.Body))]), `"Bundle"`) {
		return res.Status, []string{res.Resource.Type + "/" + res.Resource.ID}
	}
	if len(res.Body) == 0 {
		return res.Status, out
	}
	var b struct {
		ResourceType string
		Type         string
		Total        *int
		Entry        []struct {
			Resource struct{ ResourceType, ID string }
			Search   struct{ Mode string }
			Response struct{ Status, Location string }
		}
	}
	if err := json.Unmarshal(res.Body, &b); err != nil || b.ResourceType != "Bundle" {
		return res.Status, []string{res.Resource.Type + "/" + res.Resource.ID}
	}
	for _, e := range b.Entry {
		switch {
		case b.Type == "history":
			out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
		case e.Response.Status != "":
			loc := e.Response.Location
			if e.Resource.ID != "" {
				loc = e.Resource.ResourceType + "/" + e.Resource.ID
			}
			if i := strings.Index(loc, "/_history"); i >= 0 {
				loc = loc[:i]
			}
			loc = strings.TrimPrefix(loc, base+"/fhir/")
			// Server-assigned ids vary: keep the type.
			if parts := strings.Split(loc, "/"); len(parts) == 2 && len(parts[1]) > 20 {
				loc = parts[0] + "/new"
			}
			out = append(out, strings.Fields(e.Response.Status)[0]+" "+loc)
		case e.Search.Mode == "include":
			out = append(out, "+"+e.Resource.ResourceType+"/"+e.Resource.ID)
		default:
			out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
		}
	}
	if b.Type == "searchset" && b.Total != nil {
		out = append(out, fmt.Sprintf("total:%d", *b.Total))
	}
	sort.Strings(out)
	return res.Status, out
}

// principals of the matrix.
var principals = map[string]*principal.Principal{
	"anonymous":         nil,
	"openid":            {Scopes: []string{"openid", "fhirUser", "launch/patient"}, Patient: "pa"},
	"patient":           {Scopes: []string{"launch/patient", "patient/*.cruds"}, Patient: "pa"},
	"patient-v1":        {Scopes: []string{"patient/*.read"}, Patient: "pa"},
	"patient-nocontext": {Scopes: []string{"patient/*.cruds"}},
	// patient/ scopes without a patient beside a system/ scope: the
	// patient/ ones grant nothing, not even the shared types.
	"patient-nocontext-system": {Scopes: []string{"patient/*.rs", "patient/Practitioner.rs", "system/Observation.rs"}},
	"limited":                  {Scopes: []string{"patient/Patient.rs", "patient/Observation.rs"}, Patient: "pa"},
	"limited-location":         {Scopes: []string{"patient/Location.rs"}, Patient: "pa"},
	"granular": {Scopes: []string{"patient/Patient.rs",
		"patient/Observation.rs?category=" + obsCat + "|laboratory",
		"patient/Condition.rs?category=" + cndCat + "|problem-list-item"}, Patient: "pa"},
	// Read without search: Observations can be read and included, never
	// matched by a search.
	"read-not-search": {Scopes: []string{"patient/Patient.rs", "patient/Observation.r"}, Patient: "pa"},
	// Granular search narrower than read.
	"search-narrower": {Scopes: []string{"patient/Patient.rs", "patient/Observation.r",
		"patient/Observation.s?category=" + obsCat + "|laboratory"}, Patient: "pa"},
	"mixed":       {Scopes: []string{"user/Practitioner.rs", "patient/Patient.rs", "patient/Observation.rs"}, Patient: "pa", FHIRUser: "Practitioner/dr"},
	"user":        {Scopes: []string{"user/*.cruds"}, FHIRUser: "Practitioner/dr"},
	"user-v1":     {Scopes: []string{"user/*.*"}, FHIRUser: "Practitioner/dr"},
	"system-read": {Scopes: []string{"system/*.rs"}},
}

type cell struct {
	who    string
	name   string
	op     op
	status int
	ids    []string
	// untouched: resources that must still be at version 1 afterwards.
	untouched []string
}

func ids(s ...string) []string { return s }

const (
	ok        = http.StatusOK
	created   = http.StatusCreated
	noContent = http.StatusNoContent
	unauth    = http.StatusUnauthorized
	forbidden = http.StatusForbidden
	notFound  = http.StatusNotFound
)

// readCells do not change the data.
var readCells = []cell{
	// No credential, no data scope.
	{"anonymous", "read", read("Patient", "pa"), unauth, nil, nil},
	{"anonymous", "search", find("Observation", ""), unauth, nil, nil},
	{"anonymous", "system search", find("", ""), unauth, nil, nil},
	{"anonymous", "history", history("", ""), unauth, nil, nil},
	{"anonymous", "transaction", bundle("transaction", get("Patient/pa")), unauth, nil, nil},
	{"openid", "read", read("Patient", "pa"), forbidden, nil, nil},
	{"openid", "search", find("Observation", "patient=pa"), forbidden, nil, nil},
	{"openid", "batch", bundle("batch", get("Patient/pa")), forbidden, nil, nil},

	// patient/*.cruds for pa.
	{"patient", "read own", read("Patient", "pa"), ok, ids("Patient/pa"), nil},
	{"patient", "vread own", vread("Observation", "oal"), ok, ids("Observation/oal"), nil},
	{"patient", "read other patient", read("Patient", "pb"), notFound, nil, nil},
	{"patient", "read other's observation", read("Observation", "obl"), notFound, nil, nil},
	{"patient", "vread other's observation", vread("Observation", "obl"), notFound, nil, nil},
	{"patient", "read practitioner (shared type)", read("Practitioner", "dr"), ok, ids("Practitioner/dr"), nil},
	{"patient", "search practitioners (shared type)", find("Practitioner", "name=smith"), ok, ids("Practitioner/dr", "total:1"), nil},
	{"patient", "read medication (shared type)", read("Medication", "med"), ok, ids("Medication/med"), nil},
	{"patient", "read own device", read("Device", "dva"), ok, ids("Device/dva"), nil},
	{"patient", "read other's device", read("Device", "dvb"), notFound, nil, nil},
	{"patient", "search devices", find("Device", ""), ok, ids("Device/dva", "total:1"), nil},
	{"patient", "read binary (outside compartment)", read("Binary", "bin"), notFound, nil, nil},
	{"patient", "read location (shared type)", read("Location", "clinic"), ok, ids("Location/clinic"), nil},
	{"patient", "read a residence (not shared)", read("Location", "home"), notFound, nil, nil},
	{"patient", "search locations", find("Location", ""), ok, ids("Location/clinic", "total:1"), nil},
	{"limited-location", "search locations", find("Location", ""), ok, ids("Location/clinic", "total:1"), nil},
	{"limited-location", "read a residence (not shared)", read("Location", "home"), notFound, nil, nil},
	{"patient", "read provenance (outside compartment)", read("Provenance", "prov"), notFound, nil, nil},
	{"patient", "search observations", find("Observation", ""), ok, ids("Observation/oal", "Observation/oav", "total:2"), nil},
	{"patient", "search other's observations", find("Observation", "patient=pb"), ok, ids("total:0"), nil},
	{"patient", "search patients", find("Patient", ""), ok, ids("Patient/pa", "total:1"), nil},
	{"patient", "search _id other", find("Patient", "_id=pb"), ok, ids("total:0"), nil},
	{"patient", "system search", find("", "_type=Patient,Observation,Practitioner"), ok, ids("Observation/oal", "Observation/oav", "Patient/pa", "Practitioner/dr", "total:4"), nil},
	{"patient", "paging count", find("Observation", "_count=1"), ok, ids("Observation/oal", "total:2"), nil},
	{"patient", "_include practitioner", find("Observation", "_include=Observation:performer"), ok, ids("+Practitioner/dr", "Observation/oal", "Observation/oav", "total:2"), nil},
	{"patient", "_include:iterate", find("Observation", "_id=oal&_include=Observation:subject&_include:iterate=Patient:general-practitioner"), ok, ids("+Patient/pa", "+Practitioner/dr", "Observation/oal", "total:1"), nil},
	{"patient", "_include medication", find("MedicationRequest", "_include=MedicationRequest:medication"), ok, ids("+Medication/med", "MedicationRequest/mra", "total:1"), nil},
	{"patient", "_revinclude provenance", find("Observation", "_revinclude=Provenance:target"), ok, ids("Observation/oal", "Observation/oav", "total:2"), nil},
	{"patient", "_revinclude observations", find("Patient", "_revinclude=Observation:subject"), ok, ids("+Observation/oal", "+Observation/oav", "Patient/pa", "total:1"), nil},
	{"patient", "chain to practitioner", find("Observation", "performer:Practitioner.name=smith"), ok, ids("Observation/oal", "total:1"), nil},
	{"patient", "chain to patient", find("Observation", "subject:Patient.name=alpha"), ok, ids("Observation/oal", "Observation/oav", "total:2"), nil},
	{"patient", "chain to other patient", find("Observation", "subject:Patient.name=beta"), ok, ids("total:0"), nil},
	{"patient", "_has other's observation", find("Patient", "_has:Observation:subject:_id=obl"), ok, ids("total:0"), nil},
	{"patient", "_has provenance", find("Observation", "_has:Provenance:target:agent=Practitioner/dr"), ok, ids("total:0"), nil},
	{"patient", "_has own condition", find("Patient", "_has:Condition:subject:_id=ca"), ok, ids("Patient/pa", "total:1"), nil},
	{"patient", "history own", history("Observation", "oal"), ok, ids("Observation/oal"), nil},
	{"patient", "history other's", history("Observation", "obl"), notFound, nil, nil},
	{"patient", "history type", history("Observation", ""), ok, ids("Observation/oal", "Observation/oav"), nil},
	{"patient", "history system", history("", ""), ok, ids("Condition/ca", "Condition/ca2", "Device/dva", "Encounter/ea", "Location/clinic", "Medication/med", "MedicationRequest/mra",
		"Observation/oal", "Observation/oav", "Patient/pa", "Practitioner/dr"), nil},
	{"patient", "batch reads", bundle("batch", get("Observation/oal"), get("Observation/obl"), get("Practitioner/dr"), get("Binary/bin"), get("Observation?patient=pb")),
		ok, ids("200 Bundle/new", "200 Observation/oal", "200 Practitioner/dr", "404 ", "404 "), nil},

	// patient/*.read (v1).
	{"patient-v1", "read own", read("Patient", "pa"), ok, ids("Patient/pa"), nil},
	{"patient-v1", "search", find("Condition", "patient=pa"), ok, ids("Condition/ca", "Condition/ca2", "total:2"), nil},
	{"patient-v1", "read other", read("Condition", "cb"), notFound, nil, nil},

	// patient/ scopes without a patient in context.
	{"patient-nocontext", "read", read("Patient", "pa"), forbidden, nil, nil},
	{"patient-nocontext", "search", find("Observation", ""), forbidden, nil, nil},
	{"patient-nocontext", "history", history("", ""), forbidden, nil, nil},
	{"patient-nocontext-system", "read practitioner", read("Practitioner", "dr"), forbidden, nil, nil},
	{"patient-nocontext-system", "_include practitioner", find("Observation", "_include=Observation:performer"), ok,
		ids("Observation/oal", "Observation/oav", "Observation/obl", "total:3"), nil},
	{"patient-nocontext-system", "chain to practitioner", find("Observation", "performer:Practitioner.name=smith"), ok, ids("total:0"), nil},
	{"patient-nocontext-system", "_include medication", find("MedicationRequest", "_include=MedicationRequest:medication"), forbidden, nil, nil},

	// Limited: Patient and Observation only (conformance §2.9 limited access).
	{"limited", "Patient?_id", find("Patient", "_id=pa"), ok, ids("Patient/pa", "total:1"), nil},
	{"limited", "Observation?patient&code", find("Observation", "patient=pa&code=2708-6"), ok, ids("Observation/oal", "Observation/oav", "total:2"), nil},
	{"limited", "Condition?patient denied", find("Condition", "patient=pa"), forbidden, nil, nil},
	{"limited", "Encounter?patient denied", find("Encounter", "patient=pa"), forbidden, nil, nil},
	{"limited", "read condition", read("Condition", "ca"), forbidden, nil, nil},
	{"limited", "history condition", history("Condition", "ca"), forbidden, nil, nil},
	{"limited", "_revinclude condition", find("Patient", "_revinclude=Condition:subject&_revinclude=Observation:subject"), ok, ids("+Observation/oal", "+Observation/oav", "Patient/pa", "total:1"), nil},
	{"limited", "_has condition", find("Patient", "_has:Condition:subject:_id=ca"), ok, ids("total:0"), nil},
	{"limited", "chain to encounter", find("Observation", "encounter:Encounter.status=finished"), ok, ids("total:0"), nil},
	{"limited", "system search", find("", ""), ok, ids("Observation/oal", "Observation/oav", "Patient/pa", "total:3"), nil},
	{"limited", "system history", history("", ""), ok, ids("Observation/oal", "Observation/oav", "Patient/pa"), nil},
	{"limited", "batch", bundle("batch", get("Observation/oal"), get("Condition/ca")), ok, ids("200 Observation/oal", "403 "), nil},

	// r without s: reads and includes, never search matches.
	{"read-not-search", "read", read("Observation", "oal"), ok, ids("Observation/oal"), nil},
	{"read-not-search", "search type", find("Observation", "patient=pa"), forbidden, nil, nil},
	{"read-not-search", "system search", find("", ""), ok, ids("Patient/pa", "total:1"), nil},
	{"read-not-search", "system search _type", find("", "_type=Observation,Patient"), ok, ids("Patient/pa", "total:1"), nil},
	{"read-not-search", "_revinclude", find("Patient", "_revinclude=Observation:subject"), ok, ids("+Observation/oal", "+Observation/oav", "Patient/pa", "total:1"), nil},
	{"search-narrower", "read other category", read("Observation", "oav"), ok, ids("Observation/oav"), nil},
	{"search-narrower", "search", find("Observation", "patient=pa"), ok, ids("Observation/oal", "total:1"), nil},
	{"search-narrower", "search vital", find("Observation", "category=vital-signs"), ok, ids("total:0"), nil},
	{"search-narrower", "system search", find("", ""), ok, ids("Observation/oal", "Patient/pa", "total:2"), nil},
	{"search-narrower", "_revinclude", find("Patient", "_revinclude=Observation:subject"), ok, ids("+Observation/oal", "+Observation/oav", "Patient/pa", "total:1"), nil},
	// Type and system history list resources like a search: they need s,
	// and a granular s narrower than r narrows them (instance history
	// needs r only).
	{"search-narrower", "history type", history("Observation", ""), ok, ids("Observation/oal"), nil},
	{"search-narrower", "history system", history("", ""), ok, ids("Observation/oal", "Patient/pa"), nil},
	{"search-narrower", "history instance other category", history("Observation", "oav"), ok, ids("Observation/oav"), nil},
	{"read-not-search", "history type", history("Observation", ""), forbidden, nil, nil},
	{"read-not-search", "history system", history("", ""), ok, ids("Patient/pa"), nil},

	// Granular (conformance §2.9 fine-grained): laboratory observations and
	// problem-list conditions of pa.
	{"granular", "Observation?patient", find("Observation", "patient=pa"), ok, ids("Observation/oal", "total:1"), nil},
	{"granular", "Observation?patient&category", find("Observation", "patient=pa&category=laboratory"), ok, ids("Observation/oal", "total:1"), nil},
	{"granular", "Observation?patient&category other", find("Observation", "patient=pa&category=vital-signs"), ok, ids("total:0"), nil},
	{"granular", "Observation?patient&code", find("Observation", "patient=pa&code=http://loinc.org|2708-6"), ok, ids("Observation/oal", "total:1"), nil},
	{"granular", "Condition?patient", find("Condition", "patient=pa"), ok, ids("Condition/ca", "total:1"), nil},
	{"granular", "Condition?patient&category", find("Condition", "patient=pa&category=encounter-diagnosis"), ok, ids("total:0"), nil},
	{"granular", "read granted", read("Observation", "oal"), ok, ids("Observation/oal"), nil},
	{"granular", "read other category", read("Observation", "oav"), notFound, nil, nil},
	{"granular", "read other category condition", read("Condition", "ca2"), notFound, nil, nil},
	{"granular", "read other patient's lab", read("Observation", "obl"), notFound, nil, nil},
	{"granular", "_revinclude", find("Patient", "_revinclude=Observation:subject&_revinclude=Condition:subject"), ok, ids("+Condition/ca", "+Observation/oal", "Patient/pa", "total:1"), nil},
	{"granular", "_has other category", find("Patient", "_has:Observation:subject:category=vital-signs"), ok, ids("total:0"), nil},
	{"granular", "history other category", history("Observation", "oav"), notFound, nil, nil},
	{"granular", "history type", history("Observation", ""), ok, ids("Observation/oal"), nil},
	{"granular", "system search", find("", ""), ok, ids("Condition/ca", "Observation/oal", "Patient/pa", "total:3"), nil},

	// Mixed: user/Practitioner next to patient/ Observation and Patient.
	{"mixed", "read practitioner", read("Practitioner", "dr"), ok, ids("Practitioner/dr"), nil},
	{"mixed", "search practitioners", find("Practitioner", ""), ok, ids("Practitioner/dr", "total:1"), nil},
	{"mixed", "read other's observation", read("Observation", "obl"), notFound, nil, nil},
	{"mixed", "_include practitioner", find("Observation", "_include=Observation:performer"), ok, ids("+Practitioner/dr", "Observation/oal", "Observation/oav", "total:2"), nil},
	{"mixed", "_include:iterate", find("Observation", "_include=Observation:subject&_include:iterate=Patient:general-practitioner"), ok, ids("+Patient/pa", "+Practitioner/dr", "Observation/oal", "Observation/oav", "total:2"), nil},
	{"mixed", "chain to practitioner", find("Observation", "performer:Practitioner.name=smith"), ok, ids("Observation/oal", "total:1"), nil},
	{"mixed", "_revinclude from practitioner", find("Practitioner", "_revinclude=Observation:performer&_revinclude=Provenance:agent"), ok, ids("+Observation/oal", "Practitioner/dr", "total:1"), nil},
	{"mixed", "_has from practitioner", find("Practitioner", "_has:Observation:performer:subject=Patient/pb"), ok, ids("total:0"), nil},
	{"mixed", "condition denied", find("Condition", ""), forbidden, nil, nil},

	// user/ and system/: no compartment.
	{"user", "read other", read("Observation", "obl"), ok, ids("Observation/obl"), nil},
	{"user", "search", find("Observation", "category=laboratory"), ok, ids("Observation/oal", "Observation/obl", "total:2"), nil},
	{"user", "_revinclude provenance", find("Observation", "_id=oal&_revinclude=Provenance:target"), ok, ids("+Provenance/prov", "Observation/oal", "total:1"), nil},
	{"user", "_has", find("Patient", "_has:Observation:subject:_id=obl"), ok, ids("Patient/pb", "total:1"), nil},
	{"user-v1", "read", read("Provenance", "prov"), ok, ids("Provenance/prov"), nil},
	{"system-read", "read", read("Condition", "cb"), ok, ids("Condition/cb"), nil},
	{"system-read", "search", find("Condition", "category=problem-list-item"), ok, ids("Condition/ca", "Condition/cb", "total:2"), nil},
	{"system-read", "history", history("Patient", "pb"), ok, ids("Patient/pb"), nil},
}

// writeCells run after readCells, in order, on the same data.
var writeCells = []cell{
	{"anonymous", "create", create("Observation", obs("", "laboratory", "Patient/pa", "")), unauth, nil, nil},
	{"openid", "create", create("Observation", obs("", "laboratory", "Patient/pa", "")), forbidden, nil, nil},
	{"system-read", "create", create("Observation", obs("", "laboratory", "Patient/pa", "")), forbidden, nil, nil},
	{"system-read", "update", update("Observation", "obl", obs("obl", "laboratory", "Patient/pb", "")), forbidden, nil, ids("Observation/obl")},
	{"system-read", "delete", del("Observation", "obl"), forbidden, nil, ids("Observation/obl")},
	{"patient-v1", "create", create("Observation", obs("", "laboratory", "Patient/pa", "")), forbidden, nil, nil},
	{"limited", "create", create("Observation", obs("", "laboratory", "Patient/pa", "")), forbidden, nil, nil},
	{"limited", "transaction", bundle("transaction", post("Observation", obs("", "laboratory", "Patient/pa", ""))), forbidden, nil, nil},
	{"patient-nocontext", "create", create("Observation", obs("", "laboratory", "Patient/pa", "")), forbidden, nil, nil},
	// patient/*.cruds: writes inside the compartment only.
	{"patient", "create for other patient", create("Observation", obs("", "laboratory", "Patient/pb", "")), forbidden, nil, nil},
	{"patient", "update other's", update("Observation", "obl", obs("obl", "laboratory", "Patient/pa", "")), notFound, nil, ids("Observation/obl")},
	{"patient", "move own out", update("Observation", "oav", obs("oav", "vital-signs", "Patient/pb", "")), forbidden, nil, ids("Observation/oav")},
	{"patient", "delete other's", del("Observation", "obl"), notFound, nil, ids("Observation/obl")},
	{"patient", "delete practitioner", del("Practitioner", "dr"), forbidden, nil, ids("Practitioner/dr")},
	// Shared types are readable through patient/ scopes, never writable:
	// 403, since the caller may read them (404 only for what it cannot).
	{"patient", "update practitioner", update("Practitioner", "dr", `{"resourceType":"Practitioner","id":"dr"}`), forbidden, nil, ids("Practitioner/dr")},
	{"patient", "update medication", update("Medication", "med", `{"resourceType":"Medication","id":"med"}`), forbidden, nil, ids("Medication/med")},
	{"patient", "create medication", create("Medication", `{"resourceType":"Medication","code":{"text":"x"}}`), forbidden, nil, nil},
	{"patient", "update other's device", update("Device", "dvb", `{"resourceType":"Device","id":"dvb","patient":{"reference":"Patient/pa"}}`), notFound, nil, ids("Device/dvb")},
	{"patient", "conditional update by other's id", condUpdate("Observation", "_id=obl", obs("", "laboratory", "Patient/pb", "")), forbidden, nil, ids("Observation/obl")},
	{"patient", "conditional update by other's subject", condUpdate("Observation", "subject=Patient/pb", obs("", "laboratory", "Patient/pb", "")), forbidden, nil, ids("Observation/obl")},
	{"patient", "transaction into other", bundle("transaction", put("Observation/obl", obs("obl", "laboratory", "Patient/pa", ""))), notFound, nil, ids("Observation/obl")},
	{"patient", "transaction create for other", bundle("transaction", post("Observation", obs("", "laboratory", "Patient/pb", ""))), forbidden, nil, nil},
	// Several creates are stored together (store.Creator), then each is checked.
	{"patient", "transaction creates own and for other", bundle("transaction", post("Observation", obs("", "laboratory", "Patient/pa", "")),
		`{"resource":`+obs("", "laboratory", "Patient/pa", "")+`,"request":{"method":"POST","url":"Observation"}}`,
		`{"resource":`+obs("", "laboratory", "Patient/pb", "")+`,"request":{"method":"POST","url":"Observation"}}`), forbidden, nil, nil},
	{"patient", "transaction conditional on other", bundle("transaction", `{"resource":`+obs("", "laboratory", "Patient/pb", "")+`,"request":{"method":"PUT","url":"Observation?_id=obl"}}`), forbidden, nil, ids("Observation/obl")},
	{"patient", "create own", create("Observation", obs("", "laboratory", "Patient/pa", "")), created, nil, nil},
	{"patient", "update own", update("Observation", "oal", obs("oal", "laboratory", "Patient/pa", "Practitioner/dr")), ok, ids("Observation/oal"), nil},
	{"patient", "transaction own", bundle("transaction", put("Observation/oal", obs("oal", "laboratory", "Patient/pa", "Practitioner/dr"))), ok, ids("200 Observation/oal"), nil},
	{"granular", "update denied", update("Observation", "oal", obs("oal", "laboratory", "Patient/pa", "Practitioner/dr")), forbidden, nil, nil},
	{"user", "update other", update("Observation", "obl", obs("obl", "laboratory", "Patient/pb", "")), ok, ids("Observation/obl"), nil},
	{"patient", "delete own", del("Observation", "oav"), noContent, ids(), nil},
}

func TestMatrix(t *testing.T) {
	parallelDialects(t, func(t *testing.T, e *env) {
		run := func(t *testing.T, cells []cell) {
			for _, c := range cells {
				t.Run(c.who+"/"+c.name, func(t *testing.T) {
					ctx := context.Background()
					if p := principals[c.who]; p != nil {
						ctx = principal.NewContext(ctx, p)
					} else if _, known := principals[c.who]; !known {
						t.Fatalf("unknown principal %s", c.who)
					}
					status, got := outcomeOf(t, ctx, e.svc, c.op)
					e.check(t, status, got, c.status, c.ids, c.untouched)
				})
			}
		}
		run(t, readCells)
		run(t, writeCells)
	})
}

// TestDeletedStatus: a deleted resource answers 410 to a caller granted its
// whole type, and 404 (it cannot be placed in or out of a compartment or a
// category any more) to one whose grant on the type is restricted.
func TestDeletedStatus(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			e := open(t, dialect)
			if _, err := e.admin.Delete(context.Background(), "Observation", "oal", ""); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				scopes   []string
				patient  string
				fhirUser string
				want     int
			}{
				{[]string{"system/*.rs"}, "", "", http.StatusGone},
				{[]string{"system/Observation.rs"}, "", "", http.StatusGone},
				{[]string{"user/Observation.rs", "user/Patient.rs"}, "", "Practitioner/dr", http.StatusGone},
				{[]string{"patient/Observation.rs"}, "pa", "", notFound},
				{[]string{"system/Observation.rs?category=" + obsCat + "|laboratory"}, "", "", notFound},
			} {
				ctx := principal.NewContext(context.Background(), &principal.Principal{Scopes: c.scopes, Patient: c.patient, FHIRUser: c.fhirUser})
				if status, _ := outcomeOf(t, ctx, e.svc, read("Observation", "oal")); status != c.want {
					t.Errorf("%v: status %d, want %d", c.scopes, status, c.want)
				}
			}
		})
	}
}

// check fails t unless an interaction answered wantStatus with the ids
// wantIDs (nil: any) and left the untouched resources (Type/id) at their
// first version.
func (e *env) check(t *testing.T, status int, got []string, wantStatus int, wantIDs, untouched []string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d (%v)", status, wantStatus, got)
	}
	if wantIDs != nil && !slices.Equal(got, wantIDs) {
		t.Errorf("got %q\nwant %q", got, wantIDs)
	}
	for _, ref := range untouched {
		typ, id, _ := strings.Cut(ref, "/")
		r, err := e.st.Read(context.Background(), typ, id)
		if err != nil || r.VersionID != 1 || r.Deleted {
			t.Errorf("%s changed: %+v %v", ref, r, err)
		}
	}
}
