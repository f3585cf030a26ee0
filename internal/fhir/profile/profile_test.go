package profile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

var (
	setsOnce sync.Once
	sets     map[string]*Set
	setsErr  error
)

func loadSets(t testing.TB) map[string]*Set {
	t.Helper()
	setsOnce.Do(func() { sets, setsErr = Load() })
	if setsErr != nil {
		t.Fatal(setsErr)
	}
	return sets
}

var (
	exMu    sync.Mutex
	exCache = map[string]map[string]map[string]any{}
)

// examples returns the example resources of an IG package (read once).
func examples(t *testing.T, file string) map[string]map[string]any {
	t.Helper()
	exMu.Lock()
	defer exMu.Unlock()
	if ex, ok := exCache[file]; ok {
		return ex
	}
	ex := readExamples(t, file)
	exCache[file] = ex
	return ex
}

func readExamples(t *testing.T, file string) map[string]map[string]any {
	b, err := os.ReadFile(shareddata.File(t, "data", "us-core-ig", file))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]map[string]any{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(h.Name, "/example/") || !strings.HasSuffix(h.Name, ".json") {
			continue
		}
		c, _ := io.ReadAll(tr)
		if r, err := decode(c); err == nil {
			out[h.Name] = r
		}
	}
}

// decode decodes a resource as the server does (numbers as json.Number).
func decode(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var r map[string]any
	return r, dec.Decode(&r)
}

// claimed returns the profiles of set s that r claims in meta.profile.
func claimed(s *Set, r map[string]any) []string {
	meta, _ := r["meta"].(map[string]any)
	ps, _ := meta["profile"].([]any)
	var out []string
	for _, p := range ps {
		if u, ok := p.(string); ok && s.Has(u) {
			out = append(out, u)
		}
	}
	return out
}

// TestIGExamples validates every example of the IG packages against the
// profiles it claims: none may break a rule.
func TestIGExamples(t *testing.T) {
	for version, file := range map[string]string{"6.1.0": "us_core_610.tgz", "7.0.0": "us_core_700.tgz"} {
		s := loadSets(t)[version]
		n := 0
		for name, r := range examples(t, file) {
			for _, p := range claimed(s, r) {
				n++
				issues, err := s.Validate(r, p)
				if err != nil {
					t.Errorf("%s %s: %v", version, name, err)
				}
				for _, is := range issues {
					t.Errorf("%s %s: %s", version, name, is)
				}
			}
		}
		t.Logf("%s: %d example validations", version, n)
		if n < 50 {
			t.Errorf("%s: only %d examples claim a profile", version, n)
		}
	}
}

// example returns a copy of one IG example.
func example(t *testing.T, file, name string) map[string]any {
	t.Helper()
	r := examples(t, file)["package/example/"+name]
	if r == nil {
		t.Fatalf("no example %s", name)
	}
	b, _ := json.Marshal(r)
	c, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRefusals breaks one rule of each kind in a valid example and checks
// the issue names the profile, the element and the rule.
func TestRefusals(t *testing.T) {
	const uc = "http://hl7.org/fhir/us/core/StructureDefinition/"
	cases := []struct {
		name, example, profile string
		edit                   func(r map[string]any)
		element, rule          string
	}{
		{"cardinality min", "Patient-example.json", "us-core-patient",
			func(r map[string]any) { delete(r, "gender") }, "Patient.gender", "cardinality"},
		{"slice max", "Patient-example.json", "us-core-patient",
			func(r map[string]any) {
				exts := r["extension"].([]any)
				for _, e := range exts {
					if strings.HasSuffix(e.(map[string]any)["url"].(string), "us-core-race") {
						r["extension"] = append(exts, e)
						break
					}
				}
			}, "Patient.extension:race", "slice"},
		{"binding", "Patient-example.json", "us-core-patient",
			func(r map[string]any) { r["gender"] = "robot" }, "Patient.gender", "binding"},
		{"fixed", "Observation-weight.json", "us-core-body-weight",
			func(r map[string]any) { r["valueQuantity"].(map[string]any)["system"] = "http://example.org/units" },
			"Observation.value[x]:valueQuantity.system", "fixed"},
		{"pattern", "Observation-weight.json", "us-core-body-weight",
			func(r map[string]any) {
				r["code"] = map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8302-2"}}}
			}, "Observation.code", "pattern"},
		{"slice min (category)", "Observation-weight.json", "us-core-body-weight",
			func(r map[string]any) { delete(r, "category") }, "Observation.category:VSCat", "slice"},
		{"slice min (component)", "Observation-blood-pressure.json", "us-core-blood-pressure",
			func(r map[string]any) { r["component"] = r["component"].([]any)[1:] }, "Observation.component:systolic", "slice"},
		{"nested cardinality", "Observation-blood-pressure.json", "us-core-blood-pressure",
			func(r map[string]any) {
				delete(r["component"].([]any)[0].(map[string]any)["valueQuantity"].(map[string]any), "value")
			}, "Observation.component:systolic.value[x].value", "cardinality"},
		// FHIRPath invariants: on the resource, on an element, on a
		// slice's members, on a typed choice value.
		{"invariant us-core-7 (resource)", "Procedure-rehab.json", "us-core-procedure",
			func(r map[string]any) { delete(r, "performedDateTime") }, "Procedure", "invariant"},
		{"invariant us-core-6 (element)", "Patient-example.json", "us-core-patient",
			func(r map[string]any) {
				r["name"] = []any{map[string]any{"text": "no parts"}}
			}, "Patient.name", "invariant"},
		{"invariant us-core-16 (slice)", "Organization-acme-lab.json", "us-core-organization",
			func(r map[string]any) {
				r["identifier"].([]any)[0].(map[string]any)["value"] = "12345"
			}, "Organization.identifier:NPI", "invariant"},
		{"invariant us-core-17 (slice, NPI check digit)", "Organization-acme-lab.json", "us-core-organization",
			func(r map[string]any) {
				r["identifier"].([]any)[0].(map[string]any)["value"] = "1144221848"
			}, "Organization.identifier:NPI", "invariant"},
		{"invariant us-core-1 (typed choice)", "Observation-serum-calcium.json", "us-core-observation-lab",
			func(r map[string]any) {
				delete(r, "effectivePeriod")
				r["effectiveDateTime"] = "2024-05"
			}, "Observation.effective[x]", "invariant"},
		{"invariant obs-6 (base resource rule)", "Observation-serum-calcium.json", "us-core-observation-lab",
			func(r map[string]any) {
				r["dataAbsentReason"] = map[string]any{"text": "unknown"}
			}, "Observation", "invariant"},
	}
	s := loadSets(t)["6.1.0"]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := example(t, "us_core_610.tgz", c.example)
			if issues, _ := s.Validate(r, uc+c.profile); len(issues) != 0 {
				t.Fatalf("unbroken example: %v", issues)
			}
			c.edit(r)
			issues, err := s.Validate(r, uc+c.profile)
			if err != nil {
				t.Fatal(err)
			}
			for _, is := range issues {
				if is.Element == c.element && is.Rule == c.rule && is.Profile == uc+c.profile && is.Message != "" {
					if c.rule == "invariant" && !strings.Contains(is.Message, "-") {
						t.Errorf("invariant message without its key: %s", is.Message)
					}
					t.Logf("%s", is)
					return
				}
			}
			t.Errorf("want %s %s, got %v", c.element, c.rule, issues)
		})
	}
	if _, err := s.Validate(map[string]any{"resourceType": "Patient"}, uc+"us-core-observation-lab"); err == nil {
		t.Error("a Patient validated against an Observation profile")
	}
	if _, err := s.Validate(map[string]any{"resourceType": "Patient"}, uc+"nope"); err == nil {
		t.Error("unknown profile accepted")
	}
}

// referenceResources returns the resources of the certification reference
// server's patients (../shared/data/uscore), with the one invalid element
// of uscore_bundle_patient_355.json (effectivePeriod.stop) repaired in
// memory.
func referenceResources(t testing.TB) []map[string]any {
	t.Helper()
	return bundleResources(t, shareddata.Glob(t, "uscore_bundle_*.json", "data", "uscore"))
}

// bundleResources returns the entries' resources of Bundle files, decoded
// as the server decodes them, with effectivePeriod.stop repaired to end.
func bundleResources(t testing.TB, files []string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var bundle struct {
			Entry []struct{ Resource map[string]any }
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&bundle); err != nil {
			t.Fatal(err)
		}
		for _, e := range bundle.Entry {
			if p, ok := e.Resource["effectivePeriod"].(map[string]any); ok && p["stop"] != nil {
				p["end"] = p["stop"]
				delete(p, "stop")
			}
			out = append(out, e.Resource)
		}
	}
	return out
}

// TestReferenceData validates the reference patients' resources against
// the profiles they claim, in both versions.
func TestReferenceData(t *testing.T) {
	rs := referenceResources(t)
	for _, version := range []string{"6.1.0", "7.0.0"} {
		s := loadSets(t)[version]
		n := 0
		for _, r := range rs {
			for _, p := range claimed(s, r) {
				n++
				issues, err := s.Validate(r, p)
				if err != nil {
					t.Errorf("%s %s/%v: %v", version, r["resourceType"], r["id"], err)
				}
				for _, is := range issues {
					t.Errorf("%s %s/%v: %s", version, r["resourceType"], r["id"], is)
				}
			}
		}
		t.Logf("%s: %d validations", version, n)
	}
}

// BenchmarkValidateReference validates every claimed profile of the
// reference patients' resources and reports the cost per validation.
func BenchmarkValidateReference(b *testing.B) {
	s := loadSets(b)["6.1.0"]
	var rs []map[string]any
	var ps []string
	for _, r := range referenceResources(b) {
		for _, p := range claimed(s, r) {
			rs, ps = append(rs, r), append(ps, p)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range rs {
			if _, err := s.Validate(rs[j], ps[j]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(rs)), "µs/validation")
}

func TestMatchesNumbers(t *testing.T) {
	if !matches(map[string]any{"a": []any{json.Number("3.0"), "x"}, "b": true}, map[string]any{"a": []any{json.Number("3")}}) {
		t.Error("pattern with a number")
	}
}

// TestChecker: structural issues first; claimed checks only claimed
// profiles; us-core also requires an unclaiming resource of a US Core type
// to conform to one of its profiles.
func TestChecker(t *testing.T) {
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	base := validate.New(reg)
	s := loadSets(t)["6.1.0"]
	if _, err := NewChecker(base, s, "strict"); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := NewChecker(base, nil, ModeClaimed); err == nil {
		t.Error("no profiles accepted")
	}
	good := example(t, "us_core_610.tgz", "Patient-example.json")
	bad := example(t, "us_core_610.tgz", "Patient-example.json")
	delete(bad, "gender")
	unclaimed := map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": "X"}}}
	structural := map[string]any{"resourceType": "Patient", "bogus": true}
	for _, c := range []struct {
		mode string
		res  map[string]any
		want string // "" = no issue
	}{
		{ModeOff, bad, ""},
		{ModeOff, structural, "bogus"},
		{ModeClaimed, good, ""},
		{ModeClaimed, bad, "profile http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient, element Patient.gender, rule cardinality"},
		{ModeClaimed, unclaimed, ""},
		{ModeClaimed, structural, "bogus"},
		{ModeUSCore, good, ""},
		{ModeUSCore, unclaimed, "conforms to no US Core 6.1.0 profile of Patient"},
		{ModeUSCore, map[string]any{"resourceType": "Basic", "code": map[string]any{"text": "x"}}, ""},
	} {
		ch, err := NewChecker(base, s, c.mode)
		if err != nil {
			t.Fatal(err)
		}
		issues := ch.Validate(c.res)
		if c.want == "" && len(issues) != 0 || c.want != "" && (len(issues) == 0 || !strings.Contains(issues[0].Message+issues[0].Expression, c.want)) {
			t.Errorf("%s %v: %v, want %q", c.mode, c.res["resourceType"], issues, c.want)
		}
	}
}

// BenchmarkChecker measures the validation of writes with profile
// validation off (structure only) and claimed, on the reference patients
// (every resource claims US Core profiles) and on Synthea bundles (none
// claims any), per resource.
func BenchmarkChecker(b *testing.B) {
	reg, err := definitions.Load()
	if err != nil {
		b.Fatal(err)
	}
	base := validate.New(reg)
	s := loadSets(b)["6.1.0"]
	synthea := shareddata.Glob(b, "*.json", "data", "synthea")
	data := map[string][]map[string]any{
		"reference": referenceResources(b),
		"synthea":   bundleResources(b, synthea[:min(5, len(synthea))]),
	}
	for _, name := range []string{"reference", "synthea"} {
		for _, mode := range []string{ModeOff, ModeClaimed} {
			ch, _ := NewChecker(base, s, mode)
			rs := data[name]
			b.Run(name+"/"+mode, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					for _, r := range rs {
						ch.Validate(r)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(rs)), "µs/resource")
			})
		}
	}
}

// TestInvariantsCompile checks the FHIRPath engine compiles the US Core
// invariants (us-core-*) of both versions and reports what is skipped.
func TestInvariantsCompile(t *testing.T) {
	for _, version := range []string{"6.1.0", "7.0.0"} {
		s := loadSets(t)[version]
		n := s.Invariants()
		t.Logf("%s invariants: %+v", version, n)
		if n.Evaluated < 40 {
			t.Errorf("%s: only %d invariants evaluated", version, n.Evaluated)
		}
		if n.Uncompiled != 0 {
			t.Errorf("%s: %d invariants do not compile", version, n.Uncompiled)
		}
		// Every US Core invariant of error severity is evaluated.
		for _, p := range s.profiles {
			for _, e := range p.elements {
				for _, c := range e.Constraints {
					if !strings.HasPrefix(c.Key, "us-core-") || c.Severity != "error" {
						continue
					}
					found := false
					for _, inv := range p.invariants[e] {
						found = found || inv.key == c.Key
					}
					if !found {
						t.Errorf("%s %s %s: %s not evaluated", version, p.url, e.ID, c.Key)
					}
				}
			}
		}
	}
}

// TestRequestMode: a request's mode applies when stricter than the
// Checker's, a looser one only with AllowLower; header values parse
// case-insensitively and unknown ones are refused; with the server's mode
// off the profiles load only when a request first asks for validation.
func TestRequestMode(t *testing.T) {
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	base := validate.New(reg)
	for _, c := range []struct {
		server, requested string
		lower             bool
		want              string
	}{
		{ModeOff, "", false, ModeOff},
		{ModeOff, ModeClaimed, false, ModeClaimed},
		{ModeOff, ModeUSCore, false, ModeUSCore},
		{ModeClaimed, ModeOff, false, ModeClaimed},
		{ModeClaimed, ModeUSCore, false, ModeUSCore},
		{ModeUSCore, ModeClaimed, false, ModeUSCore},
		{ModeUSCore, ModeOff, true, ModeOff},
		{ModeClaimed, "bogus", true, ModeClaimed},
	} {
		ch, err := New(base, Options{Mode: c.server, Set: loadSets(t)["6.1.0"], AllowLower: c.lower})
		if err != nil {
			t.Fatal(err)
		}
		if got := ch.Effective(c.requested); got != c.want {
			t.Errorf("server %s, request %q, lower %v: %s, want %s", c.server, c.requested, c.lower, got, c.want)
		}
	}
	for in, want := range map[string]string{"claimed": ModeClaimed, " US-Core ": ModeUSCore, "OFF": ModeOff} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("strict"); err == nil || !strings.Contains(err.Error(), Header) {
		t.Errorf("ParseMode(strict): %v", err)
	}
	loads := 0
	ch, err := New(base, Options{Mode: ModeOff, Load: func() (*Set, error) { loads++; return loadSets(t)["6.1.0"], nil }})
	if err != nil {
		t.Fatal(err)
	}
	bad := example(t, "us_core_610.tgz", "Patient-example.json")
	delete(bad, "gender")
	if issues := ch.Validate(bad); len(issues) != 0 || loads != 0 {
		t.Errorf("mode off: %v, %d loads", issues, loads)
	}
	ctx := WithMode(t.Context(), ModeClaimed)
	for range 2 {
		if issues := ch.ValidateContext(ctx, bad); len(issues) != 1 || !strings.Contains(issues[0].Message, "Patient.gender") {
			t.Errorf("request claimed: %v", issues)
		}
	}
	if loads != 1 {
		t.Errorf("%d loads, want 1", loads)
	}
}

// TestConcurrentValidation validates the IG examples from several
// goroutines at once (compiled expressions, the model and the name sets
// are shared; run with -race).
func TestConcurrentValidation(t *testing.T) {
	s := loadSets(t)["7.0.0"]
	ex := examples(t, "us_core_700.tgz")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name, r := range ex {
				for _, p := range claimed(s, r) {
					if issues, _ := s.Validate(r, p); len(issues) != 0 {
						t.Errorf("%s: %v", name, issues)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestAbsentPrimitive: an attachment without url or data breaks us-core-6;
// data present only through its extensions (_data with a
// data-absent-reason) counts as present, as in FHIRPath's model.
func TestAbsentPrimitive(t *testing.T) {
	const p = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-documentreference"
	s := loadSets(t)["6.1.0"]
	for _, c := range []struct {
		attachment map[string]any
		refused    bool
	}{
		{map[string]any{"contentType": "text/plain"}, true},
		{map[string]any{"contentType": "text/plain", "_data": map[string]any{"extension": []any{
			map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "error"}}}}, false},
	} {
		r := example(t, "us_core_610.tgz", "DocumentReference-episode-summary.json")
		r["content"].([]any)[0].(map[string]any)["attachment"] = c.attachment
		issues, err := s.Validate(r, p)
		if err != nil {
			t.Fatal(err)
		}
		refused := false
		for _, is := range issues {
			refused = refused || (is.Rule == "invariant" && strings.Contains(is.Message, "us-core-6"))
		}
		if refused != c.refused || (!c.refused && len(issues) != 0) {
			t.Errorf("%v: %v", c.attachment, issues)
		}
	}
}

// TestConcurrentRegexInvariants: invariants that call matches() (the NPI
// rules us-core-16/17 of Practitioner and Organization) evaluated from
// many goroutines at once: no data race (run with -race) and the same
// verdicts.
func TestConcurrentRegexInvariants(t *testing.T) {
	s := loadSets(t)["7.0.0"]
	var rs []map[string]any
	for _, r := range examples(t, "us_core_700.tgz") {
		if typ := r["resourceType"]; typ == "Practitioner" || typ == "Organization" {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		t.Fatal("no Practitioner or Organization example")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				for _, r := range rs {
					for _, p := range claimed(s, r) {
						if issues, _ := s.Validate(r, p); len(issues) != 0 {
							t.Errorf("%v: %v", r["id"], issues)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}
