package dataset_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/jsonvalue"
	"github.com/lapis-health/lapis/internal/fhir/profile"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/sandbox/dataset"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
)

type res = map[string]any

// entry is one resource of the dataset with the patient Bundle it is in.
type entry struct {
	bundle int
	r      res
}

func (e entry) ref() string { return e.r["resourceType"].(string) + "/" + e.r["id"].(string) }

// resources decodes every resource of the dataset (numbers as
// json.Number, as the server decodes them), checking each entry is a PUT
// to Type/id.
func resources(t *testing.T) []entry {
	t.Helper()
	bundles, err := dataset.Bundles()
	if err != nil {
		t.Fatal(err)
	}
	if len(bundles) < 2 {
		t.Fatalf("%d bundles", len(bundles))
	}
	var out []entry
	for i, b := range bundles {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var doc struct {
			ResourceType, Type string
			Entry              []struct {
				Resource res
				Request  struct{ Method, URL string }
			}
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("bundle %d: %v", i, err)
		}
		if doc.ResourceType != "Bundle" || doc.Type != "transaction" {
			t.Fatalf("bundle %d: %s %s", i, doc.ResourceType, doc.Type)
		}
		for _, en := range doc.Entry {
			e := entry{bundle: i, r: en.Resource}
			if en.Request.Method != "PUT" || en.Request.URL != e.ref() {
				t.Errorf("bundle %d: %s %s for %s", i, en.Request.Method, en.Request.URL, e.ref())
			}
			out = append(out, e)
		}
	}
	return out
}

// TestValidates: every resource is structurally valid and conforms to
// every profile it claims, in US Core 6.1.0 and 7.0.0 (validation modes
// claimed and us-core).
func TestValidates(t *testing.T) {
	t.Parallel()
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	sets, err := profile.Load()
	if err != nil {
		t.Fatal(err)
	}
	all := resources(t)
	for _, v := range []string{"6.1.0", "7.0.0"} {
		claimed, err := profile.NewChecker(validate.New(reg), sets[v], profile.ModeClaimed)
		if err != nil {
			t.Fatal(err)
		}
		// us-core: also, a resource of a US Core type claiming no profile
		// conforms to one (the dataset loads in every validation mode).
		usCore, err := profile.NewChecker(validate.New(reg), sets[v], profile.ModeUSCore)
		if err != nil {
			t.Fatal(err)
		}
		claims := 0
		for _, e := range all {
			for _, is := range claimed.Validate(e.r) {
				t.Errorf("%s claimed %s: %s: %s", v, e.ref(), is.Expression, is.Message)
			}
			for _, is := range usCore.Validate(e.r) {
				t.Errorf("%s us-core %s: %s: %s", v, e.ref(), is.Expression, is.Message)
			}
			for _, p := range jsonvalue.At(e.r, "meta.profile") {
				if sets[v].Has(p.(string)) {
					claims++
				}
			}
		}
		if claims < len(all)/2 {
			t.Errorf("%s: only %d claims of US Core profiles in %d resources", v, claims, len(all))
		}
	}
	// The checker refuses a resource breaking its claimed profile: the
	// test would notice a broken dataset.
	ck, _ := profile.NewChecker(validate.New(reg), sets["6.1.0"], profile.ModeClaimed)
	for _, e := range all {
		if e.r["resourceType"] == "Patient" {
			bad := map[string]any{}
			for k, v := range e.r {
				if k != "name" {
					bad[k] = v
				}
			}
			if len(ck.Validate(bad)) == 0 {
				t.Errorf("%s without a name validates", e.ref())
			}
			break
		}
	}
}

// TestContent checks the data requirements of conformance.md §5 that the
// coverage report does not: ids and references, the Group, the logins,
// Provenance, missing data, clinical notes and their attachments.
func TestContent(t *testing.T) {
	t.Parallel()
	all := resources(t)
	byRef := map[string]entry{}
	for _, e := range all {
		if _, dup := byRef[e.ref()]; dup {
			t.Errorf("%s twice", e.ref())
		}
		byRef[e.ref()] = e
	}
	// Every relative reference resolves inside the dataset.
	for _, e := range all {
		walk(e.r, func(k string, v any) {
			s, ok := v.(string)
			if k != "reference" || !ok || strings.HasPrefix(s, "#") {
				return
			}
			if _, ok := byRef[s]; !ok {
				t.Errorf("%s: reference %s does not resolve", e.ref(), s)
			}
		})
	}
	// Patients, Group, practitioner, logins.
	pats := dataset.PatientIDs()
	if len(pats) < 2 || pats[0] != "85" || pats[1] != "355" {
		t.Fatalf("patients %v", pats)
	}
	for _, id := range pats {
		if _, ok := byRef["Patient/"+id]; !ok {
			t.Errorf("Patient/%s not in the dataset", id)
		}
	}
	g, ok := byRef["Group/"+dataset.GroupID]
	if !ok {
		t.Fatal("no Group")
	}
	var members []string
	for _, m := range jsonvalue.At(g.r, "member.entity.reference") {
		members = append(members, strings.TrimPrefix(m.(string), "Patient/"))
	}
	if !slices.Equal(members, pats) {
		t.Errorf("Group members %v, want %v", members, pats)
	}
	logins := dataset.Logins()
	if len(logins) != len(pats)+1 || logins[len(logins)-1].FHIRUser != "Practitioner/"+dataset.PractitionerID {
		t.Errorf("logins %+v", logins)
	}
	users := map[string]bool{}
	for _, l := range logins {
		if err := oauth.ValidateAccount(l.Username, l.Password, l.FHIRUser); err != nil {
			t.Errorf("login %s: %v", l.Username, err)
		}
		if _, ok := byRef[l.FHIRUser]; !ok {
			t.Errorf("login %s: %s not in the dataset", l.Username, l.FHIRUser)
		}
		if users[l.Username] {
			t.Errorf("login %s twice", l.Username)
		}
		users[l.Username] = true
	}
	// Provenance: every resource except Provenance and Binary is a target
	// of a Provenance of its Bundle.
	targets := map[string]bool{} // bundle + " " + reference
	for _, e := range all {
		if e.r["resourceType"] == "Provenance" {
			for _, r := range jsonvalue.At(e.r, "target.reference") {
				targets[fmt.Sprint(e.bundle)+" "+r.(string)] = true
			}
		}
	}
	for _, e := range all {
		switch e.r["resourceType"] {
		case "Provenance", "Binary":
		default:
			if !targets[fmt.Sprint(e.bundle)+" "+e.ref()] {
				t.Errorf("%s has no Provenance", e.ref())
			}
		}
	}
	// Missing data: a data-absent-reason extension and an unknown coding.
	darExt, unknown := 0, 0
	for _, e := range all {
		walk(e.r, func(k string, v any) {
			m, _ := v.(map[string]any)
			if m == nil {
				return
			}
			if m["url"] == "http://hl7.org/fhir/StructureDefinition/data-absent-reason" {
				darExt++
			}
			if m["system"] == "http://terminology.hl7.org/CodeSystem/data-absent-reason" && m["code"] == "unknown" {
				unknown++
			}
		})
	}
	if darExt == 0 || unknown == 0 {
		t.Errorf("%d data-absent-reason extensions, %d unknown codings", darExt, unknown)
	}
	// Clinical notes: the DocumentReference types and DiagnosticReport
	// categories, every report form's URL also a note's attachment URL of
	// the same patient, and every Binary URL a Binary of that patient.
	docTypes, drCats := map[string]bool{}, map[string]bool{} // patient + " " + code
	docURLs := map[string]bool{}                             // patient + " " + url
	for _, e := range all {
		pat := patientOf(e.r)
		switch e.r["resourceType"] {
		case "DocumentReference":
			for _, c := range jsonvalue.At(e.r, "type.coding.code") {
				docTypes[pat+" "+c.(string)] = true
			}
			for _, u := range jsonvalue.At(e.r, "content.attachment.url") {
				docURLs[pat+" "+u.(string)] = true
				checkBinary(t, byRef, e, u.(string), pat)
			}
		case "DiagnosticReport":
			for _, c := range jsonvalue.At(e.r, "category.coding.code") {
				drCats[pat+" "+c.(string)] = true
			}
		}
	}
	for _, e := range all {
		if e.r["resourceType"] != "DiagnosticReport" {
			continue
		}
		for _, u := range jsonvalue.At(e.r, "presentedForm.url") {
			if !docURLs[patientOf(e.r)+" "+u.(string)] {
				t.Errorf("%s: form %s is no DocumentReference attachment of %s", e.ref(), u, patientOf(e.r))
			}
			checkBinary(t, byRef, e, u.(string), patientOf(e.r))
		}
	}
	// Each reference patient alone has every type and category.
	for _, p := range pats[:2] {
		for _, c := range []string{"11488-4", "18842-5", "34117-2", "28570-0", "11506-3", "18748-4", "11502-2", "11526-1"} {
			if !docTypes["Patient/"+p+" "+c] {
				t.Errorf("Patient/%s: no DocumentReference of type %s", p, c)
			}
		}
		for _, c := range []string{"LP29708-2", "LP7839-6", "LP29684-5", "LAB"} {
			if !drCats["Patient/"+p+" "+c] {
				t.Errorf("Patient/%s: no DiagnosticReport of category %s", p, c)
			}
		}
	}
}

// TestScreeningAssessment: for each reference patient, survey
// Observations carry the US Core categories sdoh, functional-status,
// disability-status and cognitive-status, and a problem or health-concern
// Condition the category sdoh (conformance.md §5.2).
func TestScreeningAssessment(t *testing.T) {
	t.Parallel()
	const usCat = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
	found := map[string]bool{}
	for _, e := range resources(t) {
		typ := e.r["resourceType"]
		if typ != "Observation" && typ != "Condition" {
			continue
		}
		var codes, usCore []string
		for _, c := range jsonvalue.At(e.r, "category.coding") {
			m := c.(map[string]any)
			code, _ := m["code"].(string)
			codes = append(codes, code)
			if m["system"] == usCat {
				usCore = append(usCore, code)
			}
		}
		if (typ == "Observation" && slices.Contains(codes, "survey")) ||
			(typ == "Condition" && (slices.Contains(codes, "problem-list-item") || slices.Contains(codes, "health-concern"))) {
			for _, c := range usCore {
				found[patientOf(e.r)+" "+typ.(string)+" "+c] = true
			}
		}
	}
	for _, p := range dataset.PatientIDs()[:2] {
		for _, c := range []string{"sdoh", "functional-status", "disability-status", "cognitive-status"} {
			if !found["Patient/"+p+" Observation "+c] {
				t.Errorf("Patient/%s: no survey Observation of category %s", p, c)
			}
		}
		if !found["Patient/"+p+" Condition sdoh"] {
			t.Errorf("Patient/%s: no problem or health concern of category sdoh", p)
		}
	}
}

// checkBinary checks that a Binary/ URL of e names a Binary of patient.
func checkBinary(t *testing.T, byRef map[string]entry, e entry, u, patient string) {
	t.Helper()
	if !strings.HasPrefix(u, "Binary/") {
		return
	}
	b, ok := byRef[u]
	if !ok {
		t.Errorf("%s: %s not in the dataset", e.ref(), u)
		return
	}
	if got := jsonvalue.At(b.r, "securityContext.reference"); len(got) != 1 || got[0] != patient || b.r["data"] == nil {
		t.Errorf("%s: securityContext %v, want %s", u, got, patient)
	}
}

func patientOf(r res) string {
	if r["resourceType"] == "Patient" {
		return "Patient/" + r["id"].(string)
	}
	for _, k := range []string{"subject", "patient", "beneficiary"} {
		if s := jsonvalue.At(r, k+".reference"); len(s) == 1 {
			if ref, _ := s[0].(string); strings.HasPrefix(ref, "Patient/") {
				return ref
			}
		}
	}
	return ""
}

// walk calls fn for every key and value below v.
func walk(v any, fn func(k string, v any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			fn(k, c)
			walk(c, fn)
		}
	case []any:
		for _, c := range x {
			fn("", c)
			walk(c, fn)
		}
	}
}

// TestLoad loads the dataset as transactions through the service with
// profile validation on, on SQLite and PostgreSQL; loading it again
// changes nothing (an update that changes nothing keeps its version) and
// makes no second copy. Each US Core
// version and validation mode is loaded once (TestValidates checks every
// resource against all four combinations without a database).
func TestLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ dialect, version, mode string }{
		{"sqlite", "7.0.0", profile.ModeUSCore}, {"postgres", "6.1.0", profile.ModeClaimed},
	} {
		t.Run(tc.dialect+"-"+tc.version+"-"+tc.mode, func(t *testing.T) {
			t.Parallel()
			a := apptest.Open(t, tc.dialect, func(cfg *config.Config) {
				cfg.Server.BaseURL = "http://localhost:8080"
				cfg.FHIR.USCoreVersion = tc.version
				cfg.FHIR.ProfileValidation = tc.mode
			})
			bundles, err := dataset.Bundles()
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for round := 0; round < 2; round++ {
				for i, b := range bundles {
					if _, err := a.Service.Bundle(ctx, b, 0); err != nil {
						t.Fatalf("round %d, bundle %d: %v", round, i, err)
					}
				}
			}
			n := 0
			if err := a.Service.Each(ctx, "Patient", nil, func(r *store.Resource) error {
				n++
				if r.VersionID != 1 {
					t.Errorf("Patient/%s: version %d after two loads of the same data", r.ID, r.VersionID)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != len(dataset.PatientIDs()) {
				t.Errorf("%d patients, want %d", n, len(dataset.PatientIDs()))
			}
			// Every Binary is in its patient's record (through its
			// securityContext), which a patient's token reads and exports.
			binaries := map[string]int{}
			for _, e := range resources(t) {
				if e.r["resourceType"] == "Binary" {
					ref, _ := e.r["securityContext"].(res)["reference"].(string)
					binaries[strings.TrimPrefix(ref, "Patient/")]++
				}
			}
			for _, id := range dataset.PatientIDs() {
				n := 0
				if err := a.Service.EachOfPatient(ctx, id, "Binary", nil, func(*store.Resource) error { n++; return nil }); err != nil {
					t.Fatal(err)
				}
				if n != binaries[id] {
					t.Errorf("Patient/%s: %d Binaries in the record, want %d", id, n, binaries[id])
				}
			}
			if len(binaries) == 0 {
				t.Error("no Binary in the dataset")
			}
			// Validation is on: a Patient breaking its claimed profile is
			// refused.
			bad := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/85"},` +
				`"resource":{"resourceType":"Patient","id":"85","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},"gender":"female"}}]}`
			if _, err := a.Service.Bundle(ctx, []byte(bad), 0); err == nil || !strings.Contains(err.Error(), "us-core-patient") {
				t.Errorf("a Patient without identifier and name: %v", err)
			}
			g, err := a.Service.Read(ctx, "Group", dataset.GroupID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(g.Body, []byte(`"Patient/355"`)) {
				t.Errorf("Group: %s", g.Body)
			}
		})
	}
}
