package definitions

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

// testRegistry is the process's Registry (Load parses it once).
func testRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r
}

func TestLoad(t *testing.T) {
	r := testRegistry(t)
	if r.Version() != "4.0.1" {
		t.Errorf("Version = %q", r.Version())
	}
	rts := r.ResourceTypes()
	if len(rts) != 146 { // R4 4.0.1: 148 codes in resource-types minus Resource/DomainResource
		t.Errorf("got %d resource types", len(rts))
	}
	// Every code of the R4 resource-types value set is a known type.
	for _, c := range r.Element("CapabilityStatement.rest.resource.type").Binding.Codes {
		if c != "Resource" && c != "DomainResource" && !r.IsResourceType(c) {
			t.Errorf("resource-types code %s is not a resource type", c)
		}
	}
	if !slices.IsSorted(rts) {
		t.Error("ResourceTypes not sorted")
	}
	for _, n := range []string{"Patient", "Observation", "Bundle", "Binary", "Parameters", "Questionnaire"} {
		if !r.IsResourceType(n) {
			t.Errorf("IsResourceType(%s) = false", n)
		}
	}
	for _, n := range []string{"Resource", "DomainResource", "MetadataResource", "SubscriptionStatus", "CodeableConcept", "string", "", "patient"} {
		if r.IsResourceType(n) {
			t.Errorf("IsResourceType(%s) = true", n)
		}
		if slices.Contains(rts, n) {
			t.Errorf("ResourceTypes contains %s", n)
		}
	}
	for _, p := range []string{"string", "date", "dateTime", "boolean", "id", "code", "uri", "decimal", "integer", "positiveInt", "unsignedInt", "base64Binary", "instant", "time", "markdown", "oid", "uuid", "url", "canonical", "xhtml"} {
		if !r.IsPrimitive(p) {
			t.Errorf("IsPrimitive(%s) = false", p)
		}
	}
	for _, p := range []string{"CodeableConcept", "Patient", "String", ""} {
		if r.IsPrimitive(p) {
			t.Errorf("IsPrimitive(%s) = true", p)
		}
	}
	if r.PrimitiveRegex("date") == "" || r.PrimitiveRegex("xhtml") != "" {
		t.Error("PrimitiveRegex")
	}
	if r.TypeKind("Age") != "complex-type" || r.BaseType("Age") != "Quantity" || r.BaseType("Observation") != "DomainResource" {
		t.Error("TypeKind/BaseType")
	}
}

func TestElement(t *testing.T) {
	r := testRegistry(t)
	tests := []struct {
		path   string
		name   string
		min    int
		max    int
		types  []string
		choice bool
	}{
		{"Observation.code", "code", 1, 1, []string{"CodeableConcept"}, false},
		{"Observation.value[x]", "value", 0, 1, []string{"Quantity", "CodeableConcept", "string", "boolean", "integer", "Range", "Ratio", "SampledData", "time", "dateTime", "Period"}, true},
		{"Observation.component.code", "code", 1, 1, []string{"CodeableConcept"}, false},
		{"Observation.component", "component", 0, -1, []string{"BackboneElement"}, false},
		{"CodeableConcept.coding", "coding", 0, -1, []string{"Coding"}, false},
		{"HumanName.family", "family", 0, 1, []string{"string"}, false},
		{"Patient.contact.name", "name", 0, 1, []string{"HumanName"}, false},
		{"Observation.id", "id", 0, 1, []string{"id"}, false},
		{"Resource.id", "id", 0, 1, []string{"id"}, false},
		{"Observation.component.id", "id", 0, 1, []string{"string"}, false},
		{"Element.id", "id", 0, 1, []string{"string"}, false},
		{"Extension.url", "url", 1, 1, []string{"uri"}, false},
		{"Observation.contained", "contained", 0, -1, []string{"Resource"}, false},
		{"Narrative.div", "div", 1, 1, []string{"xhtml"}, false},
		{"Bundle.entry.resource", "resource", 0, 1, []string{"Resource"}, false},
		{"Bundle.entry.response.outcome", "outcome", 0, 1, []string{"Resource"}, false},
		{"date.extension", "extension", 0, -1, []string{"Extension"}, false},
	}
	for _, tt := range tests {
		e := r.Element(tt.path)
		if e == nil {
			t.Errorf("Element(%s) = nil", tt.path)
			continue
		}
		if e.Name != tt.name || e.Min != tt.min || e.Max != tt.max || e.Choice != tt.choice || !slices.Equal(e.Types, tt.types) {
			t.Errorf("Element(%s) = %+v", tt.path, *e)
		}
	}
	for _, p := range []string{"Observation.foo", "Observation.valueQuantity", "Observation.code.coding", "Foo.bar", "", ".", "Observation."} {
		if e := r.Element(p); e != nil {
			t.Errorf("Element(%q) = %+v, want nil", p, e)
		}
	}
	subj := r.Element("Observation.subject")
	if !slices.Equal(subj.TargetProfiles, []string{"Patient", "Group", "Device", "Location"}) {
		t.Errorf("Observation.subject targets = %v", subj.TargetProfiles)
	}
	if !subj.IsSummary || subj.IsModifier {
		t.Error("Observation.subject flags")
	}
	if st := r.Element("Observation.status"); st.Binding == nil || st.Binding.Strength != "required" ||
		st.Binding.ValueSet != "http://hl7.org/fhir/ValueSet/observation-status" ||
		!slices.Contains(st.Binding.Codes, "final") || !st.IsModifier || st.Binding.HasCode("bogus") || !st.Binding.HasCode("final") {
		t.Errorf("Observation.status = %+v %+v", st, st.Binding)
	}
	if g := r.Element("Patient.gender"); g.Binding == nil || !slices.Equal(g.Binding.Codes, []string{"male", "female", "other", "unknown"}) {
		t.Errorf("Patient.gender binding = %+v", g.Binding)
	}
	// mimetypes (BCP-13) cannot be enumerated.
	if ct := r.Element("Attachment.contentType"); ct.Binding == nil || ct.Binding.Codes != nil || !ct.Binding.HasCode("text/plain") {
		t.Errorf("Attachment.contentType binding = %+v", ct.Binding)
	}
	// Official R4, not Medplum's patched snapshot.
	if e := r.Element("DetectedIssue.status"); e.Binding.ValueSet != "http://hl7.org/fhir/ValueSet/observation-status" {
		t.Errorf("DetectedIssue.status binding = %v", e.Binding.ValueSet)
	}
	for _, p := range []string{"Meta.project", "Meta.author", "Meta.compartment", "ResearchStudy.label", "Binary.url"} {
		if r.Element(p) != nil {
			t.Errorf("non-R4 element %s present", p)
		}
	}
	if e := r.Element("EvidenceVariable.characteristic.definition[x]"); e == nil || e.Min != 1 {
		t.Errorf("EvidenceVariable.characteristic.definition[x] = %+v", e)
	}
	if e := r.Element("AuditEvent.source.observer"); slices.Contains(e.TargetProfiles, "Bot") {
		t.Errorf("AuditEvent.source.observer targets = %v", e.TargetProfiles)
	}
	// Content references.
	qi := r.Element("Questionnaire.item.item")
	if qi == nil || qi.ContentRef != "Questionnaire.item" {
		t.Fatalf("Questionnaire.item.item = %+v", qi)
	}
	if e := r.Element("Questionnaire.item.item.linkId"); e == nil || e.Path != "Questionnaire.item.linkId" {
		t.Errorf("Questionnaire.item.item.linkId = %+v", e)
	}
	if e := r.Element("Questionnaire.item.item.item.item.text"); e == nil || e.Path != "Questionnaire.item.text" {
		t.Errorf("deep content ref = %+v", e)
	}
}

func names(es []*ElementDef) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestChildren(t *testing.T) {
	r := testRegistry(t)
	obs := names(r.Children("Observation"))
	want := []string{"id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension", "identifier", "basedOn"}
	if len(obs) < 30 || !slices.Equal(obs[:len(want)], want) {
		t.Errorf("Children(Observation) = %v", obs)
	}
	if !slices.Contains(obs, "value") || !slices.Contains(obs, "component") {
		t.Errorf("Children(Observation) = %v", obs)
	}
	if got := names(r.Children("Observation.component")); !slices.Equal(got[:3], []string{"id", "extension", "modifierExtension"}) || !slices.Contains(got, "code") || !slices.Contains(got, "value") {
		t.Errorf("Children(Observation.component) = %v", got)
	}
	if got := names(r.Children("Quantity")); !slices.Equal(got, []string{"id", "extension", "value", "comparator", "unit", "system", "code"}) {
		t.Errorf("Children(Quantity) = %v", got)
	}
	if got := names(r.Children("Meta")); !slices.Equal(got, []string{"id", "extension", "versionId", "lastUpdated", "source", "profile", "security", "tag"}) {
		t.Errorf("Children(Meta) = %v", got)
	}
	if got := names(r.Children("Bundle")); !slices.Equal(got[:4], []string{"id", "meta", "implicitRules", "language"}) || slices.Contains(got, "text") {
		t.Errorf("Children(Bundle) = %v", got)
	}
	if got := names(r.Children("date")); !slices.Equal(got, []string{"id", "extension"}) {
		t.Errorf("Children(date) = %v", got)
	}
	if got := r.Children("Questionnaire.item.item"); len(got) == 0 || got[0].Path != "Questionnaire.item.id" {
		t.Errorf("Children(Questionnaire.item.item) = %v", names(got))
	}
	if got := names(r.Children("Observation.code")); !slices.Equal(got, []string{"id", "extension", "coding", "text"}) {
		t.Errorf("Children(Observation.code) = %v", got)
	}
	if r.Children("Observation.status") != nil || r.Children("Nope") != nil {
		t.Error("Children of primitive/unknown should be nil")
	}
	// Every element of every resource is reachable via Children.
	for _, rt := range r.ResourceTypes() {
		var walk func(string, int)
		walk = func(p string, depth int) {
			for _, c := range r.Children(p) {
				if r.Element(c.Path) != c {
					t.Errorf("Element(%s) mismatch", c.Path)
				}
				if len(c.Types) == 0 && c.ContentRef == "" {
					t.Errorf("%s has no type", c.Path)
				}
				if len(c.Types) == 1 && (c.Types[0] == "BackboneElement" || c.Types[0] == "Element") && depth < 10 {
					if len(r.Children(c.Path)) == 0 {
						t.Errorf("backbone %s has no children", c.Path)
					}
					walk(c.Path, depth+1)
				}
				for _, typ := range c.Types {
					if r.TypeKind(typ) == "" {
						t.Errorf("%s: unknown type %s", c.Path, typ)
					}
				}
			}
		}
		walk(rt, 0)
	}
}

func TestSearchParams(t *testing.T) {
	r := testRegistry(t)
	obs := r.SearchParams("Observation")
	if len(obs) < 35 || len(obs) > 60 {
		t.Errorf("Observation has %d search params", len(obs))
	}
	if !slices.IsSortedFunc(obs, func(a, b *SearchParam) int { return strings.Compare(a.Code, b.Code) }) {
		t.Error("not sorted")
	}
	var codes []string
	for _, sp := range obs {
		codes = append(codes, sp.Code)
	}
	for _, c := range []string{"code", "patient", "date", "category", "_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text", "_content", "_query", "code-value-quantity", "value-quantity", "subject"} {
		if !slices.Contains(codes, c) {
			t.Errorf("Observation lacks %s (have %v)", c, codes)
		}
	}
	check := func(typ, code, ptype, expr string) *SearchParam {
		t.Helper()
		sp := r.SearchParam(typ, code)
		if sp == nil {
			t.Fatalf("SearchParam(%s, %s) = nil", typ, code)
		}
		if sp.Type != ptype || sp.Expression != expr {
			t.Errorf("SearchParam(%s, %s) = type %q expr %q; want %q %q", typ, code, sp.Type, sp.Expression, ptype, expr)
		}
		return sp
	}
	check("Observation", "code", "token", "Observation.code")
	check("Observation", "_lastUpdated", "date", "Observation.meta.lastUpdated")
	check("Observation", "_tag", "token", "Observation.meta.tag")
	check("Observation", "_id", "token", "Observation.id")
	check("Observation", "_text", "string", "")
	check("Patient", "_id", "token", "Patient.id")
	check("Bundle", "_id", "token", "Bundle.id")
	check("Observation", "date", "date", "Observation.effective")
	check("Observation", "value-quantity", "quantity", "(Observation.value.ofType(Quantity)) | (Observation.value.ofType(SampledData))")
	check("Condition", "code", "token", "Condition.code")
	check("InsurancePlan", "name", "string", "InsurancePlan.name | InsurancePlan.alias")
	pat := check("Observation", "patient", "reference", "Observation.subject.where(resolve() is Patient)")
	if !slices.Equal(pat.Targets, []string{"Patient"}) {
		t.Errorf("patient targets %v", pat.Targets)
	}
	cvq := check("Observation", "code-value-quantity", "composite", "Observation")
	if len(cvq.Components) != 2 || cvq.Components[0].Definition != "code" || cvq.Components[0].Type != "token" ||
		cvq.Components[1].Definition != "value-quantity" || cvq.Components[1].Type != "quantity" ||
		cvq.Components[1].Expression != "value.ofType(Quantity)" || cvq.MultipleOr {
		t.Errorf("code-value-quantity = %+v", cvq)
	}
	if r.SearchParam("Observation", "nope") != nil || r.SearchParam("Nope", "_id") != nil || r.SearchParams("Nope") != nil {
		t.Error("unknown lookups should be nil")
	}
	if sp := r.SearchParam("Bundle", "_text"); sp != nil {
		t.Error("Bundle is not a DomainResource")
	}
	if sp := r.SearchParam("Resource", "_id"); sp == nil || sp.Expression != "Resource.id" {
		t.Errorf("Resource _id = %+v", sp)
	}
	// Every parameter with an expression has a non-empty split for each type.
	noExpr := map[string]bool{"_text": true, "_content": true, "_query": true}
	for _, rt := range r.ResourceTypes() {
		sps := r.SearchParams(rt)
		if len(sps) < 5 {
			t.Errorf("%s has %d search params", rt, len(sps))
		}
		for _, sp := range sps {
			if sp.Expression == "" && !noExpr[sp.Code] {
				t.Errorf("%s.%s: empty expression", rt, sp.Code)
			}
			for _, b := range splitUnion(sp.Expression) {
				if !strings.HasPrefix(strings.TrimLeft(b, "("), rt) {
					t.Errorf("%s.%s: branch %q not rooted at type", rt, sp.Code, b)
				}
			}
			if sp.Type == "composite" && len(sp.Components) < 2 {
				t.Errorf("%s.%s: composite with %d components", rt, sp.Code, len(sp.Components))
			}
			for _, c := range sp.Components {
				if c.Definition == "" || c.Type == "" || c.Expression == "" {
					t.Errorf("%s.%s: bad component %+v", rt, sp.Code, c)
				}
			}
		}
	}
}

func TestSplitUnion(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"A.b", []string{"A.b"}},
		{"A.b | C.d", []string{"A.b", "C.d"}},
		{"(A.b as X) | A.c.where(x = 'a|b') | A.d.where((e | f).exists())", []string{"(A.b as X)", "A.c.where(x = 'a|b')", "A.d.where((e | f).exists())"}},
		{`A.b.where(x = 'it\'s|') | B`, []string{`A.b.where(x = 'it\'s|')`, "B"}},
	}
	for _, tt := range tests {
		if got := splitUnion(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("splitUnion(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPatientCompartment(t *testing.T) {
	r := testRegistry(t)
	if got := r.PatientCompartment("Observation"); !slices.Equal(got, []string{"subject", "performer"}) {
		t.Errorf("Observation = %v", got)
	}
	if got := r.PatientCompartment("Patient"); !slices.Equal(got, []string{"link"}) {
		t.Errorf("Patient = %v", got)
	}
	if got := r.PatientCompartment("Binary"); got != nil {
		t.Errorf("Binary = %v", got)
	}
	// Every compartment param is a real search param of that type.
	for _, rt := range r.ResourceTypes() {
		for _, p := range r.PatientCompartment(rt) {
			if p == "{def}" {
				continue
			}
			if r.SearchParam(rt, p) == nil {
				t.Errorf("%s compartment param %s is not a search param", rt, p)
			}
		}
	}
}

// TestPatientRecord: a patient's record is its compartment's types with
// their parameters, Device through Device.patient and Binary through
// Binary.securityContext; every parameter is a real search parameter of
// its type.
func TestPatientRecord(t *testing.T) {
	r := testRegistry(t)
	if got := r.PatientRecord("Observation"); !slices.Equal(got, r.PatientCompartment("Observation")) {
		t.Errorf("Observation = %v", got)
	}
	if got := r.PatientRecord("Device"); !slices.Equal(got, []string{"patient"}) || r.PatientCompartment("Device") != nil {
		t.Errorf("Device = %v (compartment %v)", got, r.PatientCompartment("Device"))
	}
	if got := r.PatientRecord("Binary"); !slices.Equal(got, []string{"security-context"}) || r.PatientCompartment("Binary") != nil {
		t.Errorf("Binary = %v (compartment %v)", got, r.PatientCompartment("Binary"))
	}
	for _, typ := range []string{"Bundle", "Practitioner", "Organization"} {
		if got := r.PatientRecord(typ); got != nil {
			t.Errorf("%s = %v", typ, got)
		}
	}
	for _, rt := range r.ResourceTypes() {
		for _, p := range r.PatientRecord(rt) {
			if p != "{def}" && r.SearchParam(rt, p) == nil {
				t.Errorf("%s record param %s is not a search param", rt, p)
			}
		}
	}
}

// TestBinarySecurityContext: Lapis's search parameter over
// Binary.securityContext, a reference that may point to any resource type.
func TestBinarySecurityContext(t *testing.T) {
	r := testRegistry(t)
	sp := r.SearchParam("Binary", "security-context")
	if sp == nil {
		t.Fatal("Binary has no security-context parameter")
	}
	if sp.Type != "reference" || sp.Expression != "Binary.securityContext" || sp.URL != binarySecurityContextURL ||
		!slices.Equal(sp.Base, []string{"Binary"}) || !sp.MultipleOr || !sp.MultipleAnd {
		t.Errorf("security-context = %+v", sp)
	}
	if !slices.Equal(sp.Targets, r.ResourceTypes()) {
		t.Errorf("targets = %v, want every resource type", sp.Targets)
	}
	if r.SearchParam("DocumentReference", "security-context") != nil {
		t.Error("security-context is defined beyond Binary")
	}
}

func TestConcurrentUse(t *testing.T) {
	r := testRegistry(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, rt := range r.ResourceTypes() {
				_ = r.Children(rt)
				_ = r.SearchParams(rt)
				_ = r.Element(rt + ".id")
			}
		}()
	}
	wg.Wait()
}

// BenchmarkLoad measures the parse Load does once per process.
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkElement(b *testing.B) {
	r := testRegistry(b)
	for b.Loop() {
		_ = r.Element("Observation.component.code")
	}
}

// TestUSCoreLoaded checks that the US Core SearchParameters beyond R4 are
// registered beside the R4 ones and that each version's server
// CapabilityStatement extract is present.
func TestUSCoreLoaded(t *testing.T) {
	r := testRegistry(t)
	for _, c := range []struct{ typ, code, url string }{
		{"Patient", "race", "http://hl7.org/fhir/us/core/SearchParameter/us-core-race"},
		{"Patient", "ethnicity", "http://hl7.org/fhir/us/core/SearchParameter/us-core-ethnicity"},
		{"Patient", "gender-identity", "http://hl7.org/fhir/us/core/SearchParameter/us-core-patient-gender-identity"},
		{"Condition", "asserted-date", "http://hl7.org/fhir/us/core/SearchParameter/us-core-condition-asserted-date"},
		{"Encounter", "discharge-disposition", "http://hl7.org/fhir/us/core/SearchParameter/us-core-encounter-discharge-disposition"},
		{"CareTeam", "role", "http://hl7.org/fhir/us/core/SearchParameter/us-core-careteam-role"},
		{"Goal", "description", "http://hl7.org/fhir/us/core/SearchParameter/us-core-goal-description"},
		{"Patient", "gender", "http://hl7.org/fhir/SearchParameter/individual-gender"}, // R4 kept
	} {
		sp := r.SearchParam(c.typ, c.code)
		if sp == nil || sp.URL != c.url {
			t.Errorf("%s.%s = %+v, want %s", c.typ, c.code, sp, c.url)
		}
	}
	if got := r.USCoreVersions(); len(got) != 2 || got[0] != "6.1.0" || got[1] != "7.0.0" {
		t.Fatalf("versions = %v", got)
	}
	if r.USCoreServer("5.0.1") != nil {
		t.Error("unknown version has resources")
	}
	for _, v := range r.USCoreVersions() {
		var patient *USCoreResource
		for i, res := range r.USCoreServer(v) {
			if res.Type == "Patient" {
				patient = &r.USCoreServer(v)[i]
			}
		}
		if patient == nil || len(patient.Profiles) == 0 || len(patient.Combinations) == 0 {
			t.Errorf("%s: Patient = %+v", v, patient)
		}
	}
}
