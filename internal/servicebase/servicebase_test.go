package servicebase

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/validate"
)

var (
	valOnce sync.Once
	val     *validate.Validator
)

func validator(t *testing.T) *validate.Validator {
	t.Helper()
	valOnce.Do(func() {
		reg, err := definitions.Load()
		if err != nil {
			t.Fatal(err)
		}
		val = validate.New(reg)
	})
	return val
}

const good = `{"organizations": [
 {"id": "acme", "name": "Acme Health", "npi": "1234567893",
  "address": {"line": ["1 Main St"], "city": "Springfield", "state": "MA", "postalCode": "01101"}},
 {"name": "Acme North", "npi": "1245319599", "partOf": "acme", "address": {"city": "Springfield", "state": "MA"}},
 {"name": "Other", "npi": "1679576722", "address": {"city": "Boston"}, "endpoints": [{"address": "https://other.example.org/r4/"}, {"address": "https://ehr.example.org/fhir"}]}]}`

func capOK(string) (int, []byte, error) {
	return 200, []byte(`{"resourceType":"CapabilityStatement"}`), nil
}

func TestBuildPassesEveryRule(t *testing.T) {
	f, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	b := Build(f, "https://ehr.example.org/fhir/", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var fetched []string
	ps := Check(b, validator(t), func(u string) (int, []byte, error) {
		fetched = append(fetched, u)
		return capOK(u)
	})
	if len(ps) != 0 {
		t.Fatalf("problems: %v\n%s", ps, b)
	}
	// The shared base is one Endpoint, referenced by two Organizations.
	if want := []string{"https://ehr.example.org/fhir/metadata", "https://other.example.org/r4/metadata"}; strings.Join(fetched, " ") != strings.Join(want, " ") {
		t.Errorf("fetched %v, want %v", fetched, want)
	}
	var bundle struct {
		Type, Timestamp string
		Entry           []struct {
			FullURL  string
			Resource map[string]any
		}
	}
	json.Unmarshal(b, &bundle)
	if bundle.Type != "collection" || bundle.Timestamp != "2026-01-02T03:04:05.000Z" || len(bundle.Entry) != 5 {
		t.Fatalf("bundle %s", b)
	}
	if again := Build(f, "https://ehr.example.org/fhir", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); string(again) != string(b) {
		t.Error("Build is not deterministic")
	}
}

func TestParseRejects(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":       `{`,
		"unknown field":  `{"organisations": []}`,
		"no name":        `{"organizations": [{"npi": "1234567893"}]}`,
		"bad NPI digit":  `{"organizations": [{"name": "a", "npi": "1234567890"}]}`,
		"short NPI":      `{"organizations": [{"name": "a", "npi": "12345"}]}`,
		"bad id":         `{"organizations": [{"name": "a", "id": "a b"}]}`,
		"duplicate id":   `{"organizations": [{"name": "a", "id": "x"}, {"name": "b", "id": "x"}]}`,
		"unknown partOf": `{"organizations": [{"name": "a", "partOf": "nope"}]}`,
		"ftp endpoint":   `{"organizations": [{"name": "a", "endpoints": [{"address": "ftp://x/fhir"}]}]}`,
		"relative":       `{"organizations": [{"name": "a", "endpoints": [{"address": "/fhir"}]}]}`,
		"query":          `{"organizations": [{"name": "a", "endpoints": [{"address": "https://x/fhir?a=b"}]}]}`,
		"credentials":    `{"organizations": [{"name": "a", "endpoints": [{"address": "https://u:p@x/fhir"}]}]}`,
	} {
		if _, err := Parse([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, []byte(`{"organizations": [`+strings.Repeat(" ", MaxFileBytes)+`]}`), 0o600)
	if _, err := Load(big); err == nil {
		t.Error("oversized file accepted")
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := BundleFor(filepath.Join(dir, "missing.json"), "x", "http://h/fhir", time.Now()); err == nil {
		t.Error("BundleFor: missing file accepted")
	}
}

func TestValidNPI(t *testing.T) {
	for npi, want := range map[string]bool{"1234567893": true, "1679576722": true, "1234567890": false, "123456789a": false, "": false, "12345678931": false} {
		if ValidNPI(npi) != want {
			t.Errorf("ValidNPI(%q) = %v", npi, !want)
		}
	}
}

// TestCheckFindsEveryRule gives Check one broken Bundle per rule.
func TestCheckFindsEveryRule(t *testing.T) {
	ep := func(id, extra string) string {
		return `{"fullUrl":"http://h/fhir/Endpoint/` + id + `","resource":{"resourceType":"Endpoint","id":"` + id + `","status":"active",
		"connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"hl7-fhir-rest"},
		"payloadType":[{"text":"any"}],"address":"http://h/fhir"` + extra + `}}`
	}
	org := func(id, extra string) string {
		return `{"fullUrl":"http://h/fhir/Organization/` + id + `","resource":{"resourceType":"Organization","id":"` + id + `","active":true,"name":"n",
		"identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}]` + extra + `}}`
	}
	addr := `,"address":[{"city":"c"}]`
	bundle := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`
	}
	okOrgs := []string{org("o1", addr+`,"endpoint":[{"reference":"Endpoint/e1"}]`), org("o2", addr+`,"endpoint":[{"reference":"Endpoint/e1"}]`)}
	for name, c := range map[string]struct {
		body  string
		fetch Fetcher
		want  string
	}{
		"not JSON":         {`{`, nil, "error [bundle] not valid JSON"},
		"not a Bundle":     {`{"resourceType":"Patient"}`, nil, "error [bundle] resourceType is Patient"},
		"invalid Bundle":   {`{"resourceType":"Bundle","type":"collection","bogus":1}`, nil, "error [bundle] invalid R4 Bundle"},
		"empty":            {`{"resourceType":"Bundle","type":"collection"}`, nil, "info [bundle] the Bundle has no entries"},
		"other type":       {bundle(append(okOrgs, ep("e1", ""), `{"fullUrl":"http://h/fhir/Patient/p","resource":{"resourceType":"Patient","id":"p"}}`)...), nil, "warning [bundle] entry 3 is a Patient"},
		"searchset":        {strings.Replace(bundle(append(okOrgs, ep("e1", ""))...), "collection", "searchset", 1), nil, "warning [bundle] Bundle.type is searchset"},
		"endpoint invalid": {bundle(append(okOrgs, strings.Replace(ep("e1", ""), `"status":"active",`, "", 1))...), nil, "Endpoint/e1 has no status"},
		"unreferenced":     {bundle(append(okOrgs, ep("e1", ""), ep("e2", ""))...), nil, "error [endpoint] Endpoint/e2 is not referenced"},
		"bad address":      {bundle(append(okOrgs, strings.Replace(ep("e1", ""), `"address":"http://h/fhir"`, `"address":"mailto:x@y"`, 1))...), nil, "error [endpoint-url] Endpoint/e1"},
		"metadata 401":     {bundle(append(okOrgs, ep("e1", ""))...), func(string) (int, []byte, error) { return 401, nil, nil }, "status 401, want 200"},
		"metadata not CS":  {bundle(append(okOrgs, ep("e1", ""))...), func(string) (int, []byte, error) { return 200, []byte(`{"resourceType":"Patient"}`), nil }, "not a CapabilityStatement"},
		"metadata down":    {bundle(append(okOrgs, ep("e1", ""))...), func(string) (int, []byte, error) { return 0, nil, errors.New("refused") }, "refused"},
		"org no address":   {bundle(okOrgs[0], org("o2", `,"endpoint":[{"reference":"Endpoint/e1"}]`), ep("e1", "")), nil, "error [organization] Organization/o2 has no address"},
		"org dangling":     {bundle(okOrgs[0], org("o2", addr+`,"endpoint":[{"reference":"Endpoint/zz"}]`), ep("e1", "")), nil, "endpoint Endpoint/zz is not an Endpoint of the Bundle"},
		"org no endpoint":  {bundle(okOrgs[0], org("o2", addr), ep("e1", "")), nil, "Organization/o2 has no endpoint and no partOf"},
		"partOf no ep":     {bundle(okOrgs[0], org("o2", addr), org("o3", addr+`,"partOf":{"reference":"Organization/o2"}`), ep("e1", "")), nil, "Organization/o3 has no endpoint and no partOf"},
		"one organization": {bundle(okOrgs[0], ep("e1", "")), nil, "warning [organization] the Bundle holds only one Organization"},
		"no NPI":           {bundle(okOrgs[0], strings.Replace(okOrgs[1], "us-npi", "other", 1), ep("e1", "")), nil, "warning [organization] Organization/o2 has no NPI"},
	} {
		ps := Check([]byte(c.body), validator(t), c.fetch)
		found := false
		for _, p := range ps {
			if strings.Contains(p.String(), c.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %v, want %q", name, ps, c.want)
		}
	}
	// partOf an Organization with endpoints is fine.
	if ps := Check([]byte(bundle(okOrgs[0], okOrgs[1], org("o3", addr+`,"partOf":{"reference":"Organization/o1"}`), ep("e1", ""))), validator(t), capOK); Errors(ps) != 0 {
		t.Errorf("partOf: %v", ps)
	}
}
