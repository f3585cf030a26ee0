package definitions

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
)

//go:embed data/r4.json.gz
var r4Data []byte

// Registry holds the parsed R4 definitions. It is immutable after Load and
// safe for concurrent use.
type Registry struct {
	version       string
	kinds         map[string]string // type name -> "resource", "complex-type", "primitive-type"
	abstract      map[string]bool
	bases         map[string]string
	elements      map[string]*ElementDef
	children      map[string][]*ElementDef
	resourceTypes []string
	regex         map[string]string
	search        map[string][]*SearchParam
	searchIdx     map[string]map[string]*SearchParam
	compartment   map[string][]string
	usCore        []wire.USCoreVersion
}

// ElementDef describes one element of a resource or datatype definition.
type ElementDef struct {
	// Path is the definition path, e.g. "Observation.value[x]".
	Path string
	// Name is the last path segment without "[x]", e.g. "value".
	Name string
	// Min is the minimum cardinality.
	Min int
	// Max is the maximum cardinality; -1 means unbounded ("*").
	Max int
	// Types lists the allowed type codes ("CodeableConcept", "Reference",
	// "string", "BackboneElement", "Resource", ...). FHIRPath system types
	// are mapped to FHIR primitives: Resource.id (and <Resource>.id) is
	// "id", Element.id is "string", Extension.url is "uri".
	Types []string
	// TargetProfiles lists the allowed target resource types (short names)
	// of Reference and canonical types; "Resource" means any.
	TargetProfiles []string
	// Choice reports whether the path ends in "[x]".
	Choice bool
	// ContentRef is the path whose definition this element reuses
	// ("Questionnaire.item" for contentReference "#Questionnaire.item").
	ContentRef string
	// Binding is the terminology binding, nil if none.
	Binding *Binding
	// IsModifier reports whether the element is a modifier element.
	IsModifier bool
	// IsSummary reports whether the element is part of the summary view.
	IsSummary bool
}

// IsArray reports whether the element repeats (Max > 1 or unbounded) and is
// therefore represented as a JSON array.
func (e *ElementDef) IsArray() bool { return e.Max != 1 && e.Max != 0 }

// Binding is a terminology binding of an element.
type Binding struct {
	// Strength is "required", "extensible", "preferred" or "example".
	Strength string
	// ValueSet is the canonical URL of the bound value set (without the
	// "|version" suffix).
	ValueSet string
	// Codes holds every code of the value set for required bindings whose
	// value set can be fully enumerated from concept lists and complete code
	// systems (no filters); nil otherwise. Shared; do not modify.
	Codes []string
}

// HasCode reports whether code is one of b.Codes. It returns true when the
// value set is not enumerated (Codes is nil).
func (b *Binding) HasCode(code string) bool {
	if b == nil || b.Codes == nil {
		return true
	}
	for _, c := range b.Codes {
		if c == code {
			return true
		}
	}
	return false
}

// Load returns the embedded generated definitions, parsed on the first
// call: the Registry is immutable and safe for concurrent use, so every
// caller of a process (the production and sandbox environments of a
// server, each admin command run in a test process) shares the one parse
// instead of decoding the same embedded data again.
func Load() (*Registry, error) { return loadOnce() }

// loadOnce parses the definitions once per process (a Registry never
// changes after parse, so sharing it is not mutable state).
var loadOnce = sync.OnceValues(parse)

// parse parses the embedded generated definitions.
func parse() (*Registry, error) {
	zr, err := gzip.NewReader(bytes.NewReader(r4Data))
	if err != nil {
		return nil, fmt.Errorf("definitions: open embedded data: %w", err)
	}
	var wf wire.File
	if err := json.NewDecoder(zr).Decode(&wf); err != nil {
		return nil, fmt.Errorf("definitions: decode embedded data: %w", err)
	}
	var uc wire.USCore
	if err := json.Unmarshal(usCoreData, &uc); err != nil {
		return nil, fmt.Errorf("definitions: decode embedded US Core data: %w", err)
	}
	wf.SearchParams = append(wf.SearchParams, uc.SearchParams...)
	wf.SearchParams = append(wf.SearchParams, lapisSearchParams(wf.Types)...)
	r, err := build(&wf)
	if err != nil {
		return nil, err
	}
	r.usCore = uc.Versions
	return r, nil
}

func build(wf *wire.File) (*Registry, error) {
	r := &Registry{
		version:     wf.FHIRVersion,
		kinds:       make(map[string]string, len(wf.Types)),
		abstract:    map[string]bool{},
		bases:       make(map[string]string, len(wf.Types)),
		elements:    make(map[string]*ElementDef, 8192),
		children:    make(map[string][]*ElementDef, 2048),
		regex:       wf.Regex,
		compartment: wf.Compartment,
	}
	if r.regex == nil {
		r.regex = map[string]string{}
	}
	bindings := map[string]map[string]*Binding{} // strength -> vs -> binding (shared)
	n := 0
	for i := range wf.Types {
		n += len(wf.Types[i].Elements)
	}
	defs := make([]ElementDef, 0, n) // one allocation for all elements
	for i := range wf.Types {
		t := &wf.Types[i]
		r.kinds[t.Name] = t.Kind
		r.bases[t.Name] = t.Base
		if t.Abstract {
			r.abstract[t.Name] = true
		}
		if t.Kind == "resource" && !t.Abstract {
			r.resourceTypes = append(r.resourceTypes, t.Name)
		}
		for j := range t.Elements {
			w := &t.Elements[j]
			name := w.Path
			if k := strings.LastIndexByte(name, '.'); k >= 0 {
				name = name[k+1:]
			}
			choice := strings.HasSuffix(name, "[x]")
			name = strings.TrimSuffix(name, "[x]")
			defs = append(defs, ElementDef{
				Path: w.Path, Name: name, Min: w.Min, Max: w.Max,
				Types: w.Types, TargetProfiles: w.Targets, Choice: choice,
				ContentRef: w.ContentRef, IsModifier: w.Modifier, IsSummary: w.Summary,
			})
			e := &defs[len(defs)-1]
			if w.BindStr != "" {
				m := bindings[w.BindStr]
				if m == nil {
					m = map[string]*Binding{}
					bindings[w.BindStr] = m
				}
				b := m[w.BindVS]
				if b == nil {
					b = &Binding{Strength: w.BindStr, ValueSet: w.BindVS}
					if w.BindStr == "required" {
						b.Codes = wf.ValueSets[w.BindVS]
					}
					m[w.BindVS] = b
				}
				e.Binding = b
			}
			if _, dup := r.elements[w.Path]; dup {
				return nil, fmt.Errorf("definitions: duplicate element %s", w.Path)
			}
			r.elements[w.Path] = e
			if k := strings.LastIndexByte(w.Path, '.'); k >= 0 {
				parent := w.Path[:k]
				r.children[parent] = append(r.children[parent], e)
			}
		}
	}
	sort.Strings(r.resourceTypes)
	if err := r.buildSearch(wf.SearchParams); err != nil {
		return nil, err
	}
	return r, nil
}

// Version returns the FHIR version of the definitions ("4.0.1").
func (r *Registry) Version() string { return r.version }

// ResourceTypes returns the sorted names of all concrete R4 resource types
// (abstract Resource and DomainResource are excluded). The caller may modify
// the returned slice.
func (r *Registry) ResourceTypes() []string {
	return append([]string(nil), r.resourceTypes...)
}

// IsResourceType reports whether name is a concrete R4 resource type.
func (r *Registry) IsResourceType(name string) bool {
	return r.kinds[name] == "resource" && !r.abstract[name]
}

// TypeKind returns "resource", "complex-type" or "primitive-type" for a
// known type name (including abstract ones such as "Resource", "Element",
// "BackboneElement"), or "" if unknown.
func (r *Registry) TypeKind(name string) string { return r.kinds[name] }

// BaseType returns the base type a type is derived from ("DomainResource"
// for "Observation", "Quantity" for "Age", "" for "Resource" and "Element").
func (r *Registry) BaseType(name string) string { return r.bases[name] }

// IsPrimitive reports whether typeName is a FHIR primitive type ("string",
// "date", "boolean", "xhtml", ...).
func (r *Registry) IsPrimitive(typeName string) bool { return r.kinds[typeName] == "primitive-type" }

// PrimitiveRegex returns the regular expression (unanchored, as published
// in the specification) that the lexical form of a primitive type's value
// must match, or "" if the type has none (e.g. "xhtml").
func (r *Registry) PrimitiveRegex(typeName string) string { return r.regex[typeName] }

// Element returns the definition at a definition path such as
// "Observation.code", "Observation.value[x]", "CodeableConcept.coding" or
// "Patient.contact.name", or nil if unknown. Paths below an element with a
// content reference are followed ("Questionnaire.item.item.linkId" returns
// the definition of "Questionnaire.item.linkId").
func (r *Registry) Element(path string) *ElementDef {
	if e, ok := r.elements[path]; ok {
		return e
	}
	// Follow content references: find the longest known prefix.
	for i := len(path) - 1; i > 0; i-- {
		if path[i] != '.' {
			continue
		}
		e := r.elements[path[:i]]
		if e == nil {
			continue
		}
		if e.ContentRef == "" || e.ContentRef == path[:i] {
			return nil
		}
		return r.Element(e.ContentRef + path[i:])
	}
	return nil
}

// Children returns the direct child elements of a type or backbone path
// ("Observation", "Observation.component", "Quantity") in definition order,
// including the inherited id/meta/implicitRules/language/text/contained/
// extension/modifierExtension elements. For an element with a content
// reference the referenced element's children are returned, and for an
// element of a single complex datatype ("Observation.code") the datatype's
// children. The result is shared; do not modify it.
func (r *Registry) Children(path string) []*ElementDef {
	if c, ok := r.children[path]; ok {
		return c
	}
	e := r.Element(path)
	if e == nil {
		return nil
	}
	if e.Path != path {
		return r.Children(e.Path)
	}
	if e.ContentRef != "" && e.ContentRef != path {
		return r.Children(e.ContentRef)
	}
	if len(e.Types) == 1 && r.kinds[e.Types[0]] == "complex-type" {
		return r.children[e.Types[0]]
	}
	return nil
}

// PatientCompartment returns the search parameter codes that link a
// resource of the given type to the Patient compartment (e.g. Observation ->
// ["subject", "performer"]), or nil if the type is not in the compartment.
// The Patient resource itself yields ["link"]. The result is shared; do not
// modify it.
func (r *Registry) PatientCompartment(resourceType string) []string {
	return r.compartment[resourceType]
}

// patientLinked are the types outside the R4 Patient CompartmentDefinition
// whose resources belong to one patient through a search parameter: a
// Device implanted in a patient (US Core Implantable Device, searched as
// Device?patient=… by the certification suites), and a Binary whose
// securityContext is the Patient (R4 Binary.securityContext: the resource
// whose access rules the Binary follows; a clinical note's attachment or a
// report's presentedForm). A Binary without one, or whose securityContext
// is another type (a DocumentReference…), belongs to no patient's record.
var patientLinked = map[string][]string{"Device": {"patient"}, "Binary": {"security-context"}}

// binarySecurityContextURL is the canonical URL of the search parameter
// Binary security-context (a reference over Binary.securityContext), which
// Lapis defines since neither R4 nor R5 defines a search parameter on
// Binary; its code follows R4's hyphenated naming of camel-case elements
// (general-practitioner, based-on).
const binarySecurityContextURL = "https://lapis-health.github.io/fhir/SearchParameter/Binary-security-context"

// lapisSearchParams are the SearchParameters Lapis defines beyond R4 and
// US Core, loaded with them: Binary security-context, which makes a
// Binary part of its patient's record (patientLinked). Its targets are
// every resource type, as R4 lists them for a Reference(Any) element.
func lapisSearchParams(types []wire.Type) []wire.SearchParam {
	var targets []string
	for i := range types {
		if types[i].Kind == "resource" && !types[i].Abstract {
			targets = append(targets, types[i].Name)
		}
	}
	sort.Strings(targets)
	return []wire.SearchParam{{
		Code: "security-context", Type: "reference", URL: binarySecurityContextURL,
		Description: "The resource whose access rules apply to the Binary (Binary.securityContext)",
		Expression:  "Binary.securityContext", Base: []string{"Binary"}, Targets: targets,
	}}
}

// PatientRecord returns the search parameter codes that make a resource
// of the given type part of one patient's record: PatientCompartment's for
// a type of the compartment, else those of a patient-linked type outside
// it (Device -> ["patient"], Binary -> ["security-context"]), else nil.
// Lapis holds the linked types to the patient's access rules, exports
// them with the patient's record and lists them in $everything. The result
// is shared; do not modify it.
func (r *Registry) PatientRecord(resourceType string) []string {
	if ps := r.compartment[resourceType]; len(ps) > 0 {
		return ps
	}
	return patientLinked[resourceType]
}
