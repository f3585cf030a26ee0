package extract

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// The shared test data directories, relative to the repository.
var (
	syntheaDir = []string{"data", "synthea"}
	uscoreDir  = []string{"data", "uscore"}
)

// loadBundle reads a transaction Bundle and returns its resources decoded
// with UseNumber, with urn:uuid references rewritten to Type/id as a
// transaction would.
func loadBundle(t testing.TB, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("test data: %v", err)
	}
	var bundle struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var pairs []string
	for _, e := range bundle.Entry {
		var h struct{ ResourceType, ID string }
		json.Unmarshal(e.Resource, &h)
		if strings.HasPrefix(e.FullURL, "urn:uuid:") && h.ID != "" {
			pairs = append(pairs, `"`+e.FullURL+`"`, `"`+h.ResourceType+"/"+h.ID+`"`)
		}
	}
	r := strings.NewReplacer(pairs...)
	var out []map[string]any
	for _, e := range bundle.Entry {
		raw := e.Resource
		if len(pairs) > 0 {
			raw = []byte(r.Replace(string(raw)))
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

func bundleFiles(t testing.TB, dir []string, n int) []string {
	files := shareddata.Glob(t, "*.json", dir...)
	if n > 0 && len(files) > n {
		files = files[:n]
	}
	return files
}

// TestRealData extracts every resource of a few Synthea bundles and the US
// Core bundles without error and checks the rows of known resources.
func TestRealData(t *testing.T) {
	e := newTestExtractor(t)
	files := append(bundleFiles(t, syntheaDir, 5), bundleFiles(t, uscoreDir, 0)...)
	byID := map[string]map[string]any{}
	n := 0
	perType := map[string]int{}
	for _, f := range files {
		for _, r := range loadBundle(t, f) {
			rt, _ := r["resourceType"].(string)
			id, _ := r["id"].(string)
			idx, err := e.Extract(r)
			if err != nil {
				t.Errorf("%s %s/%s: %v", filepath.Base(f), rt, id, err)
				continue
			}
			if rows := len(idx.Strings) + len(idx.Tokens) + len(idx.References) + len(idx.Dates) + len(idx.Numbers) + len(idx.Quantities) + len(idx.URIs); rows == 0 && rt != "Group" {
				t.Errorf("%s/%s: no index rows", rt, id)
			}
			byID[rt+"/"+id] = r
			perType[rt]++
			n++
		}
	}
	t.Logf("extracted %d resources: %v", n, perType)

	check := func(ref string, params []string, want ...string) {
		t.Helper()
		r := byID[ref]
		if r == nil {
			t.Errorf("%s not found in test data", ref)
			return
		}
		idx, _ := e.Extract(r)
		got := rowsOf(idx, params...)
		sort.Strings(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s rows of %v:\ngot:\n  %s\nwant:\n  %s", ref, params, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	const pat = "Patient/018f428e-34f6-4707-8009-5ad742f901e7"
	obs := "Observation/af5597a6-304d-4c8f-b596-60d17d445714"
	check(obs, []string{"code", "category", "status"},
		`token code g0 http://loinc.org|8302-2 "body height"`,
		`token category g0 http://terminology.hl7.org/CodeSystem/observation-category|vital-signs "vital-signs"`,
		`token status g0 http://hl7.org/fhir/observation-status|final ""`)
	check(obs, []string{"patient", "subject", "encounter"},
		`reference patient g0 `+pat+` `+pat,
		`reference subject g0 `+pat+` `+pat,
		`reference encounter g0 Encounter/a87b575f-a10e-4079-9e9e-e378729e422d Encounter/a87b575f-a10e-4079-9e9e-e378729e422d`)
	check(obs, []string{"date"}, `date date g0 `+dateRange(ms("2011-10-14T23:37:54Z"), ms("2011-10-14T23:37:54.999Z")))
	check(obs, []string{"value-quantity", "code-value-quantity$1", "code-value-quantity$2"},
		`quantity value-quantity g0 176.35499866729558..176.35499866729558 http://unitsofmeasure.org|cm "cm"`,
		`token code-value-quantity$1 g1 http://loinc.org|8302-2 "body height"`,
		`quantity code-value-quantity$2 g1 176.35499866729558..176.35499866729558 http://unitsofmeasure.org|cm "cm"`)
	check(pat, []string{"name", "family", "given", "birthdate", "gender"},
		`string name g0 "koepp" "Koepp"`,
		`string name g0 "abdul" "Abdul"`,
		`string name g0 "mr." "Mr."`,
		`string family g0 "koepp" "Koepp"`,
		`string given g0 "abdul" "Abdul"`,
		`date birthdate g0 `+dateRange(ms("1956-08-03T00:00:00Z"), ms("1956-08-03T23:59:59.999Z")),
		`token gender g0 http://hl7.org/fhir/administrative-gender|male ""`)
	check(pat, []string{"identifier"},
		`token identifier g0 https://github.com/synthetichealth/synthea|e925b0f3-8006-43f6-aa31-94bd215e55e7 ""`,
		`token identifier g0 http://hospital.smarthealthit.org|e925b0f3-8006-43f6-aa31-94bd215e55e7 "medical record number"`,
		`token identifier g0 http://hl7.org/fhir/sid/us-ssn|999-22-1962 "social security number"`,
		`token identifier g0 urn:oid:2.16.840.1.113883.4.3.25|S99942380 "driver's license"`,
		`token identifier g0 http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber|X45815551X "passport number"`)
	check(pat, []string{"identifier:of-type"},
		`token identifier:of-type g0 http://terminology.hl7.org/CodeSystem/v2-0203|MR|e925b0f3-8006-43f6-aa31-94bd215e55e7 ""`,
		`token identifier:of-type g0 http://terminology.hl7.org/CodeSystem/v2-0203|SS|999-22-1962 ""`,
		`token identifier:of-type g0 http://terminology.hl7.org/CodeSystem/v2-0203|DL|S99942380 ""`,
		`token identifier:of-type g0 http://terminology.hl7.org/CodeSystem/v2-0203|PPN|X45815551X ""`)
	check("Encounter/abbc5979-3aca-43fe-91a6-8065b7e4a90f", []string{"date"},
		`date date g0 `+dateRange(ms("1991-06-07T23:37:54Z"), ms("1991-06-07T23:52:54.999Z")))
	// US Core: an Observation with components (pulse oximetry), a profile.
	uobs := "Observation/f7940ba2-3a51-4534-b269-8432e052bf12"
	check(uobs, []string{"_profile"}, `uri _profile g0 http://hl7.org/fhir/us/core/StructureDefinition/us-core-pulse-oximetry`)
	check(uobs, []string{"component-code-value-quantity$1", "component-code-value-quantity$2"},
		`token component-code-value-quantity$1 g1 http://loinc.org|3151-8 "inhaled oxygen flow rate"`,
		`quantity component-code-value-quantity$2 g1 6..6 http://unitsofmeasure.org|L/min "L/min"`,
		`token component-code-value-quantity$1 g2 http://loinc.org|3150-0 "inhaled oxygen concentration"`,
		`quantity component-code-value-quantity$2 g2 40..40 http://unitsofmeasure.org|% "%"`)
	check(uobs, []string{"date"}, `date date g0 `+dateRange(ms("1975-04-07T06:51:45Z"), ms("1975-04-07T06:51:45.999Z")))
}

// TestConcurrentExtract runs Extract from several goroutines (run with
// -race): the Extractor is shared by all import workers.
func TestConcurrentExtract(t *testing.T) {
	e := newTestExtractor(t)
	res := loadBundle(t, bundleFiles(t, syntheaDir, 1)[0])
	want := make([]string, len(res))
	for i, r := range res {
		idx, _ := e.Extract(r)
		want[i] = dumpIndex(idx)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, r := range res {
				idx, err := e.Extract(r)
				if err != nil || dumpIndex(idx) != want[i] {
					t.Errorf("resource %d: different result under concurrency (%v)", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
