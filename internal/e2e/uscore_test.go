package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/servicebase"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// noAuthGet GETs url without any credential.
func noAuthGet(url string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestUSCoreServer runs the real server on SQLite (US Core 6.1.0) and
// PostgreSQL (7.0.0) with a service base URL file: the published Bundle
// passes every rule of conformance.md §6, each Endpoint's /metadata
// fetched without credentials; the CapabilityStatement claims the
// configured US Core version; `lapis reindex --json` runs beside the
// server; the US Core race parameter finds a patient.
func TestUSCoreServer(t *testing.T) {
	t.Parallel()
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	v := validate.New(reg)
	// A second organisation's FHIR base, elsewhere.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/r4/metadata" || r.Header.Get("Authorization") != "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"CapabilityStatement","status":"active","date":"2026-01-01","kind":"instance","fhirVersion":"4.0.1","format":["json"]}`)
	}))
	t.Cleanup(other.Close)
	file := filepath.Join(t.TempDir(), "sbu.json")
	conf := `{"organizations": [
	 {"id": "acme", "name": "Acme Health", "npi": "1234567893",
	  "address": {"line": ["1 Main St"], "city": "Springfield", "state": "MA", "postalCode": "01101", "country": "US"}},
	 {"name": "Acme Clinic North", "npi": "1245319599", "partOf": "acme",
	  "address": {"line": ["9 North Rd"], "city": "Springfield", "state": "MA", "postalCode": "01102"}},
	 {"name": "Other Practice", "npi": "1679576722",
	  "address": {"line": ["5 Elm St"], "city": "Boston", "state": "MA", "postalCode": "02110"},
	  "endpoints": [{"name": "Other Practice FHIR", "address": "` + other.URL + `/r4"}]}]}`
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ name, version, validation string }{{"sqlite", "6.1.0", "claimed"}, {"postgres", "7.0.0", "us-core"}} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			db := ""
			if d.name == "postgres" {
				db = pgtest.New(t)
			}
			s := lapistest.Start(t, lapistest.Options{Database: db, Args: []string{"--service-base-urls", file, "--us-core-version", d.version, "--profile-validation", d.validation}})
			in := &instance{Server: s, t: t, dataDir: s.DataDir, dbURL: s.Database, base: s.Base}

			// §6: public, a valid Bundle, every rule, /metadata of each
			// Endpoint without credentials.
			status, body, err := noAuthGet(s.Base + "/servicebaseurls")
			if err != nil || status != http.StatusOK {
				t.Fatalf("GET /servicebaseurls without credentials: %d %v %s", status, err, body)
			}
			if ps := servicebase.Check(body, v, noAuthGet); len(ps) != 0 {
				t.Fatalf("service base URL Bundle: %v", ps)
			}
			var b struct {
				Type  string
				Entry []struct {
					Resource struct{ ResourceType, Address string }
				}
			}
			json.Unmarshal(body, &b)
			var addrs []string
			for _, e := range b.Entry {
				if e.Resource.ResourceType == "Endpoint" {
					addrs = append(addrs, e.Resource.Address)
				}
			}
			slices.Sort(addrs)
			want := []string{other.URL + "/r4", s.Base}
			slices.Sort(want)
			if b.Type != "collection" || !slices.Equal(addrs, want) {
				t.Fatalf("Bundle type %s, Endpoints %v, want %v", b.Type, addrs, want)
			}
			if r := s.Do(t, "POST", "/servicebaseurls", strings.NewReader("{}"), "Content-Type", "application/fhir+json"); r.Status != http.StatusMethodNotAllowed {
				t.Errorf("POST /servicebaseurls: %d", r.Status)
			}
			// The CLI checks the published Bundle the same way.
			out, errOut, code := run(t, "servicebaseurls", "check", "--url", s.Base+"/servicebaseurls", "--fetch", "--json")
			var res struct{ Errors int }
			if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Errors != 0 {
				t.Fatalf("servicebaseurls check: %d %s %s", code, out, errOut)
			}
			if out, _, code := run(t, "servicebaseurls", "print", "--file", file, "--base-url", "https://ehr.example.org"); code != 0 || !strings.Contains(out, `"address":"https://ehr.example.org/fhir"`) {
				t.Fatalf("servicebaseurls print: %d %s", code, out)
			}
			// Without a file the default lacks an address: check fails.
			if _, _, code := run(t, "servicebaseurls", "check"); code != 1 {
				t.Errorf("servicebaseurls check of the default: exit %d, want 1", code)
			}

			// The CapabilityStatement claims the configured version.
			checkUSCoreCapability(t, in, d.version)

			// A US Core parameter beyond R4, then reindex beside the server.
			key, errOut, code := in.lapis("apikey", "create", "--name", "uscore", "--scope", "system/*.cruds", "--json")
			var k struct{ Key string }
			if code != 0 || json.Unmarshal([]byte(key), &k) != nil {
				t.Fatalf("apikey create: %s", errOut)
			}
			in.apiKey = k.Key
			checkProfileValidation(t, in, d.validation)
			in.do("PUT", "/Patient/race1", `{"resourceType":"Patient","id":"race1","identifier":[{"system":"urn:e2e","value":"r1"}],
			  "name":[{"family":"Racer"}],"gender":"female","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
			  "extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2028-9"}},{"url":"text","valueString":"Asian"}]}]}`).expect(t, http.StatusCreated)
			for _, q := range []string{"race=2028-9", "race=2106-3"} {
				r := in.do("GET", "/Patient?"+q, nil).expect(t, http.StatusOK)
				if got, want := len(ids(t, r.body, "match")), map[bool]int{true: 1, false: 0}[q == "race=2028-9"]; got != want {
					t.Errorf("%s: %d matches, want %d", q, got, want)
				}
			}
			// The Patients: Valid, race1, and Unclaimed where claimed mode let it in.
			out, errOut, code = in.lapis("reindex", "--type", "Patient", "--json")
			var ri map[string]int
			if code != 0 || json.Unmarshal([]byte(out), &ri) != nil || ri["reindexed"] != map[string]int{"claimed": 3, "us-core": 2}[d.validation] || len(ri) != 1 {
				t.Fatalf("reindex --json: %d %q %s", code, out, errOut)
			}
		})
	}
}

// usCoreRequiredProfiles are the profiles the certification suite requires
// in supportedProfile (conformance.md §5.1), without the
// http://hl7.org/fhir/us/core/StructureDefinition/ prefix.
var usCoreRequiredProfiles = map[string][]string{
	"6.1.0": {"us-core-allergyintolerance", "us-core-careplan", "us-core-careteam", "us-core-condition-encounter-diagnosis",
		"us-core-condition-problems-health-concerns", "us-core-coverage", "us-core-implantable-device", "us-core-diagnosticreport-lab",
		"us-core-diagnosticreport-note", "us-core-documentreference", "us-core-encounter", "us-core-goal", "us-core-immunization",
		"us-core-medicationdispense", "us-core-medicationrequest", "us-core-observation-lab", "us-core-blood-pressure", "us-core-bmi",
		"us-core-head-circumference", "us-core-body-height", "us-core-body-weight", "us-core-body-temperature", "us-core-heart-rate",
		"pediatric-bmi-for-age", "head-occipital-frontal-circumference-percentile", "pediatric-weight-for-height", "us-core-pulse-oximetry",
		"us-core-respiratory-rate", "us-core-smokingstatus", "us-core-observation-clinical-result", "us-core-observation-occupation",
		"us-core-observation-pregnancyintent", "us-core-observation-pregnancystatus", "us-core-observation-screening-assessment",
		"us-core-organization", "us-core-patient", "us-core-practitioner", "us-core-procedure", "us-core-provenance",
		"us-core-relatedperson", "us-core-servicerequest", "us-core-specimen"},
	"7.0.0": {"us-core-location", "us-core-treatment-intervention-preference", "us-core-care-experience-preference", "us-core-average-blood-pressure"},
}

// checkUSCoreCapability checks the CapabilityStatement served without
// credentials against conformance.md §5.1 for version.
func checkUSCoreCapability(t *testing.T, in *instance, version string) {
	t.Helper()
	status, body, err := noAuthGet(in.base + "/metadata")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /metadata: %d %v", status, err)
	}
	var cs struct {
		Instantiates []string
		Rest         []struct {
			Resource []struct {
				Type             string
				SupportedProfile []string
				SearchInclude    []string
				SearchRevInclude []string
				SearchParam      []struct {
					Name, Definition string
					Extension        []struct{ URL, ValueCode string }
				}
				Extension []struct {
					URL       string
					Extension []struct{ URL, ValueCode, ValueString string }
				}
			}
		}
	}
	if err := json.Unmarshal(body, &cs); err != nil || len(cs.Rest) != 1 {
		t.Fatalf("CapabilityStatement: %v", err)
	}
	if !slices.Contains(cs.Instantiates, "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server") ||
		!slices.Contains(cs.Instantiates, "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server|"+version) {
		t.Errorf("instantiates = %v", cs.Instantiates)
	}
	profiles := map[string]bool{}
	type param struct{ definition, expectation string }
	params := map[string]param{}
	combos := map[string]string{}
	for _, r := range cs.Rest[0].Resource {
		for _, p := range r.SupportedProfile {
			p, _, _ = strings.Cut(p, "|")
			profiles[strings.TrimPrefix(p, "http://hl7.org/fhir/us/core/StructureDefinition/")] = true
		}
		for _, p := range r.SearchParam {
			exp := ""
			for _, e := range p.Extension {
				exp = e.ValueCode
			}
			params[r.Type+"."+p.Name] = param{p.Definition, exp}
		}
		for _, e := range r.Extension {
			var req []string
			exp := ""
			for _, x := range e.Extension {
				if x.URL == "required" {
					req = append(req, x.ValueString)
				} else {
					exp = x.ValueCode
				}
			}
			combos[r.Type+"?"+strings.Join(req, "&")] = exp
		}
		if r.Type == "MedicationRequest" && !slices.Contains(r.SearchInclude, "MedicationRequest:medication") {
			t.Errorf("MedicationRequest searchInclude = %v", r.SearchInclude)
		}
		if r.Type == "Observation" && !slices.Contains(r.SearchRevInclude, "Provenance:target") {
			t.Errorf("Observation searchRevInclude = %v", r.SearchRevInclude)
		}
	}
	want := usCoreRequiredProfiles["6.1.0"]
	if version == "7.0.0" {
		want = append(want, usCoreRequiredProfiles["7.0.0"]...)
	}
	for _, p := range want {
		if !profiles[p] {
			t.Errorf("%s: supportedProfile lacks %s", version, p)
		}
	}
	for key, w := range map[string]param{
		"Patient.race":            {"http://hl7.org/fhir/us/core/SearchParameter/us-core-race", ""},
		"Patient.gender-identity": {"http://hl7.org/fhir/us/core/SearchParameter/us-core-patient-gender-identity", ""},
		"Patient.name":            {"http://hl7.org/fhir/us/core/SearchParameter/us-core-patient-name", "SHALL"},
		"Observation.date":        {"http://hl7.org/fhir/us/core/SearchParameter/us-core-observation-date", "MAY"},
	} {
		if got := params[key]; got != w {
			t.Errorf("%s: searchParam %+v, want %+v", key, got, w)
		}
	}
	for key, w := range map[string]string{"Patient?birthdate&name": "SHALL", "Observation?patient&category&date": "SHALL", "Observation?patient&code&date": "SHOULD"} {
		if combos[key] != w {
			t.Errorf("combination %s: %q, want %s", key, combos[key], w)
		}
	}
}

// checkProfileValidation writes US Core Patients under --profile-validation
// mode: a claimed profile's rule broken is a 400 naming the profile, the
// element and the rule; in us-core mode a Patient that claims nothing must
// conform too.
func checkProfileValidation(t *testing.T, in *instance, mode string) {
	t.Helper()
	const claim = `"meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},`
	valid := `"identifier":[{"system":"urn:e2e","value":"v1"}],"name":[{"family":"Valid"}],"gender":"male"`
	in.do("POST", "/Patient", `{"resourceType":"Patient",`+claim+valid+`}`).expect(t, http.StatusCreated)
	r := in.do("POST", "/Patient", `{"resourceType":"Patient",`+claim+`"identifier":[{"system":"urn:e2e","value":"v2"}],"name":[{"family":"NoGender"}]}`).expect(t, http.StatusBadRequest)
	r.outcome(t)
	if msg := string(r.raw); !strings.Contains(msg, "us-core-patient") || !strings.Contains(msg, "Patient.gender") || !strings.Contains(msg, "cardinality") {
		t.Errorf("refusal does not name the profile, element and rule: %s", msg)
	}
	unclaimed := in.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"Unclaimed"}]}`)
	want := map[string]int{"claimed": http.StatusCreated, "us-core": http.StatusBadRequest}[mode]
	unclaimed.expect(t, want)
	// Per request (X-Lapis-Profile-Validation): stricter applies, to a
	// create and to a transaction's entries; looser does not.
	const hdr = "X-Lapis-Profile-Validation"
	in.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"Unclaimed2"}]}`, hdr, "us-core").expect(t, http.StatusBadRequest)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Unclaimed3"}]},"request":{"method":"POST","url":"Patient"}}]}`
	in.do("POST", "", tx, hdr, "us-core").expect(t, http.StatusBadRequest)
	in.do("POST", "/Patient", `{"resourceType":"Patient",`+claim+`"identifier":[{"system":"urn:e2e","value":"v3"}],"name":[{"family":"NoGender"}]}`, hdr, "off").expect(t, http.StatusBadRequest)
	in.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"X"}]}`, hdr, "strict").expect(t, http.StatusBadRequest)
}
