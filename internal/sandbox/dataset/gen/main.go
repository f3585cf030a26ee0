// Command gen builds the sandbox dataset (../data/sandbox.json.gz) from the
// certification reference server's US Core patients and some Synthea
// patients of the shared data (../shared beside the module root), adding
// what they lack; see package dataset. Its output is deterministic: the
// same input gives the same bytes.
//
// Usage (from internal/sandbox/dataset, as go generate runs it):
//
//	go run ./gen -out data/sandbox.json.gz [-shared DIR] [-report]
//
// It refuses to write a dataset in which a resource does not validate
// (structurally and against the US Core 6.1.0 and 7.0.0 profiles it
// claims) or a Must Support element of a required profile is missing;
// -report prints the coverage per profile.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lapis-health/lapis/internal/sandbox/dataset"
	"github.com/lapis-health/lapis/internal/servicebase"
)

type res = map[string]any

// entry is one resource of the dataset.
type entry struct {
	typ, id string
	r       res
}

func (e *entry) ref() string { return e.typ + "/" + e.id }

// bundle is one transaction Bundle of the dataset, about one patient ("" for
// the shared one).
type bundle struct {
	patient string
	entries []*entry
}

// gen is the dataset being built.
type gen struct {
	shared  string
	bundles []*bundle
	ids     map[string]bool // Type/id of every resource so far
}

func main() {
	out := flag.String("out", "data/sandbox.json.gz", "output file")
	shared := flag.String("shared", "", "the shared data directory (default: ../shared beside the module root)")
	report := flag.Bool("report", false, "print the Must Support coverage per profile")
	flag.Parse()
	if err := run(*out, *shared, *report); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out, shared string, report bool) error {
	if shared == "" {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		shared = filepath.Join(root, "..", "shared")
	}
	g := &gen{shared: shared, ids: map[string]bool{}}
	ids := dataset.PatientIDs()
	if err := g.usCore("uscore_bundle_patient_85.json", ids[0], 0); err != nil {
		return err
	}
	if err := g.usCore("uscore_bundle_patient_355.json", ids[1], 1); err != nil {
		return err
	}
	for i, f := range syntheaFiles {
		if err := g.synthea(f, ids[2+i]); err != nil {
			return err
		}
	}
	c, err := newClaimer()
	if err != nil {
		return err
	}
	c.verbose = report
	for _, b := range g.bundles {
		g.supplement(b)
		g.binaries(b)
		for _, en := range b.entries {
			c.claimProfiles(en.r)
		}
	}
	if err := g.spread(c.sets); err != nil {
		return err
	}
	for _, b := range g.bundles {
		g.notes(b)
		for _, en := range b.entries {
			c.claimProfiles(en.r)
		}
		g.provenance(b)
	}
	g.sharedBundle()
	if report {
		fmt.Fprintf(os.Stderr, "not claimed (does not conform): %v\n", c.skips)
	}
	if err := g.check(report); err != nil {
		return err
	}
	return g.write(out)
}

// syntheaFiles are the Synthea patients of the dataset (two of the
// smallest bundles of ../shared/data/synthea with a CarePlan and a
// MedicationRequest).
var syntheaFiles = []string{
	"Edward_Gulgowski_43481611-2459-44f5-ab20-4b142dac160f.json",
	"Antonio_Castellanos_6d2eba67-5b4a-403f-a29f-e6da3f1ea963.json",
}

// moduleRoot walks up from the working directory to go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// readBundle decodes a Bundle file (numbers kept as written).
func readBundle(path string) (res, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc res
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return doc, nil
}

// usCore adds a reference patient's Bundle, repairing the invalid
// effectivePeriod.stop (wantRepairs of them must be found).
func (g *gen) usCore(name, patient string, wantRepairs int) error {
	doc, err := readBundle(filepath.Join(g.shared, "data", "uscore", name))
	if err != nil {
		return err
	}
	repaired := 0
	for _, en := range arr(doc["entry"]) {
		r := obj(obj(en)["resource"])
		// The reference file has one Observation with effectivePeriod.stop
		// (not an R4 element) for effectivePeriod.end: repaired here.
		if p := obj(r["effectivePeriod"]); p != nil && p["stop"] != nil {
			p["end"] = p["stop"]
			delete(p, "stop")
			repaired++
		}
	}
	if repaired != wantRepairs {
		return fmt.Errorf("%s: repaired %d effectivePeriod.stop, want %d", name, repaired, wantRepairs)
	}
	return g.convert(name, doc, patient, nil)
}

// synthea adds a Synthea patient's Bundle without its claims.
func (g *gen) synthea(name, patient string) error {
	doc, err := readBundle(filepath.Join(g.shared, "data", "synthea", name))
	if err != nil {
		return err
	}
	for _, en := range arr(doc["entry"]) {
		repairNPIs(obj(obj(en)["resource"]))
	}
	if err := g.convert(name, doc, patient, map[string]bool{"Claim": true, "ExplanationOfBenefit": true}); err != nil {
		return err
	}
	// The 2019 Synthea output predates US Core's categories: a Condition
	// has none (Synthea records each at an encounter: an encounter
	// diagnosis, or a problem without one), a CarePlan lacks
	// assess-plan. They are added so that every resource conforms to a
	// US Core profile of its type (--profile-validation us-core).
	for _, en := range g.bundles[len(g.bundles)-1].entries {
		switch {
		case en.typ == "Condition" && en.r["category"] == nil:
			code, display := "problem-list-item", "Problem List Item"
			if en.r["encounter"] != nil {
				code, display = "encounter-diagnosis", "Encounter Diagnosis"
			}
			en.r["category"] = []any{cc("http://terminology.hl7.org/CodeSystem/condition-category", code, display)}
		case en.typ == "CarePlan" && !slices.Contains(codes(en.r["category"]), "assess-plan"):
			en.r["category"] = append(arr(en.r["category"]), res{"coding": []any{res{
				"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "code": "assess-plan"}}})
		}
	}
	return nil
}

// convert turns a transaction Bundle of POSTs with urn:uuid fullUrls into
// entries with fixed ids (the Patient's is patient; the others keep their
// id or the uuid of their fullUrl) whose references point to Type/id.
func (g *gen) convert(name string, doc res, patient string, drop map[string]bool) error {
	b := &bundle{patient: patient}
	refs := map[string]string{} // fullUrl -> Type/id
	for i, en := range arr(doc["entry"]) {
		e := obj(en)
		r := obj(e["resource"])
		typ, _ := r["resourceType"].(string)
		if typ == "" {
			return fmt.Errorf("%s entry %d: no resourceType", name, i)
		}
		if drop[typ] {
			continue
		}
		full, _ := e["fullUrl"].(string)
		id, _ := r["id"].(string)
		switch {
		case typ == "Patient":
			id = patient
		case id == "":
			id = strings.TrimPrefix(full, "urn:uuid:")
		}
		if id == "" || len(id) > 64 {
			return fmt.Errorf("%s entry %d: no usable id", name, i)
		}
		r["id"] = id
		en := &entry{typ: typ, id: id, r: r}
		if full != "" {
			refs[full] = en.ref()
		}
		if g.ids[en.ref()] {
			if shareable[typ] { // an earlier Bundle holds it already
				continue
			}
			return fmt.Errorf("%s: %s twice in the dataset", name, en.ref())
		}
		g.ids[en.ref()] = true
		b.entries = append(b.entries, en)
	}
	for _, en := range b.entries {
		rewrite(en.r, refs)
	}
	g.bundles = append(g.bundles, b)
	return nil
}

// shareable are the types of which two source Bundles may hold the same
// instance (the Synthea patients share their provider's Organization).
var shareable = map[string]bool{"Organization": true, "Practitioner": true, "Location": true}

// rewrite replaces every reference to a key of refs by its value; a
// reference to a dropped resource is left out (its element keeps the
// display).
func rewrite(v any, refs map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		if s, ok := x["reference"].(string); ok && strings.HasPrefix(s, "urn:uuid:") {
			if to, ok := refs[s]; ok {
				x["reference"] = to
			} else {
				delete(x, "reference")
			}
		}
		for _, c := range x {
			rewrite(c, refs)
		}
	case []any:
		for _, c := range x {
			rewrite(c, refs)
		}
	}
}

// add appends a new resource to b (its id must be new).
func (g *gen) add(b *bundle, r res) *entry {
	typ, _ := r["resourceType"].(string)
	id, _ := r["id"].(string)
	en := &entry{typ: typ, id: id, r: r}
	if g.ids[en.ref()] {
		panic("duplicate " + en.ref())
	}
	g.ids[en.ref()] = true
	b.entries = append(b.entries, en)
	return en
}

// binaries copies the inline data of DiagnosticReport.presentedForm and
// DocumentReference.content.attachment into Binary resources of the
// patient (one per distinct content, securityContext the patient) and
// points the attachments' url at them, so a report's form and its note
// share one URL.
func (g *gen) binaries(b *bundle) {
	made := map[string]bool{}
	for _, en := range slices.Clone(b.entries) {
		var atts []any
		switch en.typ {
		case "DiagnosticReport":
			atts = arr(en.r["presentedForm"])
		case "DocumentReference":
			for _, c := range arr(en.r["content"]) {
				atts = append(atts, obj(c)["attachment"])
			}
		}
		for _, a := range atts {
			att := obj(a)
			data, _ := att["data"].(string)
			if att == nil || data == "" {
				continue
			}
			ct, _ := att["contentType"].(string)
			sum := sha256.Sum256([]byte(b.patient + "\x00" + ct + "\x00" + data))
			id := "att-" + hex.EncodeToString(sum[:10])
			if !made[id] {
				made[id] = true
				bin := res{"resourceType": "Binary", "id": id, "data": data,
					"securityContext": res{"reference": "Patient/" + b.patient}}
				if ct != "" {
					bin["contentType"] = ct
				} else {
					bin["contentType"] = "text/plain"
				}
				g.add(b, bin)
			}
			// The data stays inline too, for apps that read it there.
			att["url"] = "Binary/" + id
		}
	}
}

// write stores the dataset, gzip-compressed (no timestamp: deterministic).
func (g *gen) write(out string) error {
	var f struct {
		Bundles []res `json:"bundles"`
	}
	for _, b := range g.bundles {
		var entries []any
		for _, en := range b.entries {
			entries = append(entries, res{"resource": en.r, "request": res{"method": "PUT", "url": en.ref()}})
		}
		f.Bundles = append(f.Bundles, res{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(raw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gen: %d bundles, %d resources, %d bytes (%d compressed)\n", len(g.bundles), len(g.ids), len(raw), buf.Len())
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// ---- JSON helpers ----

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func arr(v any) []any { a, _ := v.([]any); return a }

// str returns the string at a dotted path of objects ("" if none).
func str(v any, path string) string {
	for _, k := range strings.Split(path, ".") {
		v = obj(v)[k]
	}
	s, _ := v.(string)
	return s
}

// codes returns the codes of a CodeableConcept or of an array of them.
func codes(v any) []string {
	var out []string
	list := arr(v)
	if list == nil && v != nil {
		list = []any{v}
	}
	for _, cc := range list {
		for _, c := range arr(obj(cc)["coding"]) {
			if s, _ := obj(c)["code"].(string); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// profiles returns the profiles a resource claims.
func profiles(r res) []string {
	var out []string
	for _, p := range arr(obj(r["meta"])["profile"]) {
		if s, ok := p.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// claim adds profile url to r's meta.profile.
func claim(r res, urls ...string) {
	meta := obj(r["meta"])
	if meta == nil {
		meta = res{}
		r["meta"] = meta
	}
	ps := arr(meta["profile"])
	for _, u := range urls {
		if !slices.Contains(ps, any(u)) {
			ps = append(ps, u)
		}
	}
	meta["profile"] = ps
}

// patientOf returns the patient reference of r ("Patient/id"), or "".
func patientOf(r res) string {
	if r["resourceType"] == "Patient" {
		return "Patient/" + str(r, "id")
	}
	for _, k := range []string{"subject", "patient", "beneficiary"} {
		if s := str(r, k+".reference"); strings.HasPrefix(s, "Patient/") {
			return s
		}
	}
	return ""
}

// npiSystem is the NPI identifier system.
const npiSystem = "http://hl7.org/fhir/sid/us-npi"

// repairNPIs replaces each NPI identifier of r that is not a valid NPI
// (Synthea's data has practitioners with NPIs such as "100" and "240",
// which us-core-16 refuses) by a valid one made from it: 9, the old value
// zero-padded to 8 digits, and the Luhn check digit; the same input
// always gives the same NPI.
func repairNPIs(r map[string]any) {
	for _, id := range arr(r["identifier"]) {
		m := obj(id)
		v, _ := m["value"].(string)
		if m["system"] != npiSystem || servicebase.ValidNPI(v) {
			continue
		}
		digits := strings.Map(func(c rune) rune {
			if c >= '0' && c <= '9' {
				return c
			}
			return -1
		}, v)
		if len(digits) > 8 {
			digits = digits[len(digits)-8:]
		}
		base := "9" + strings.Repeat("0", 8-len(digits)) + digits
		for d := '0'; d <= '9'; d++ {
			if servicebase.ValidNPI(base + string(d)) {
				m["value"] = base + string(d)
				break
			}
		}
	}
}
