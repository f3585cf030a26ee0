// Package validate checks incoming FHIR R4 JSON resources against the base
// StructureDefinitions held by a definitions.Registry: known elements,
// cardinality, JSON shapes (arrays vs single values, no nulls or empty
// objects), choice types, primitive formats, primitive extensions
// ("_birthDate"), contained resources, Reference shapes and target types,
// required code bindings and narrative.
//
// It does not evaluate FHIRPath invariants or profiles.
package validate

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

// Issue is one problem found in a resource.
type Issue struct {
	// Severity is always "error".
	Severity string
	// Code is a FHIR issue-type code: "structure", "required", "value",
	// "invalid" or "code-invalid".
	Code string
	// Expression is the FHIRPath-like location of the problem, such as
	// "Observation.status" or "Patient.name[0].given[1]". Choice elements
	// use their JSON name ("Observation.valueQuantity.value").
	Expression string
	// Message describes the problem for API users.
	Message string
}

// Issue type codes used in Issue.Code.
const (
	CodeStructure   = "structure"
	CodeRequired    = "required"
	CodeValue       = "value"
	CodeInvalid     = "invalid"
	CodeCodeInvalid = "code-invalid"
)

// Validator validates resources. It is immutable after New and safe for
// concurrent use.
type Validator struct {
	reg       *definitions.Registry
	resources map[string]*node // concrete resource types
	nodes     map[string]*node // by definition path / type name (build cache)
	prims     map[string]primCheck
}

type kind uint8

const (
	kindPrimitive kind = iota
	kindComplex
	kindResource
	kindXhtml
)

// prop is one JSON property name allowed in an object.
type prop struct {
	name     string // JSON name: "valueQuantity", "birthDate"
	extName  string // "_" + name for primitives
	elem     *definitions.ElementDef
	typ      string // concrete type code
	kind     kind
	array    bool
	child    *node // complex/backbone children; for primitives: id/extension of "_x"
	prim     primCheck
	codes    map[string]struct{} // enumerated required binding (code type only)
	targets  map[string]struct{} // allowed relative reference targets; nil = any
	group    int                 // choice group index, -1 if not a choice
	isExt    bool                // this entry is the "_x" sibling
	valueRef *prop               // for "_x" entries: the value prop
}

type required struct {
	elem  *definitions.ElementDef
	names []string // JSON names (including "_" forms) satisfying it
}

type node struct {
	path      string
	props     map[string]*prop
	required  []required
	groups    [][]*prop // choice variants per group
	reference bool      // node of the Reference datatype
	narrative bool
}

// New builds a Validator for the definitions in reg, precomputing the
// allowed properties of every resource, backbone element and datatype.
func New(reg *definitions.Registry) *Validator {
	v := &Validator{
		reg:       reg,
		resources: map[string]*node{},
		nodes:     map[string]*node{},
		prims:     buildPrimChecks(reg),
	}
	for _, rt := range reg.ResourceTypes() {
		v.resources[rt] = v.node(rt)
	}
	return v
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// node returns the compiled node for a type name or backbone path.
func (v *Validator) node(path string) *node {
	if n, ok := v.nodes[path]; ok {
		return n
	}
	n := &node{path: path, props: map[string]*prop{}, reference: path == "Reference", narrative: path == "Narrative"}
	v.nodes[path] = n // before recursion: types are recursive (Extension)
	for _, e := range v.reg.Children(path) {
		if e.Max == 0 {
			continue
		}
		group := -1
		if e.Choice && len(e.Types) > 0 {
			group = len(n.groups)
			n.groups = append(n.groups, nil)
		}
		var req *required
		if e.Min > 0 {
			n.required = append(n.required, required{elem: e})
			req = &n.required[len(n.required)-1]
		}
		types := e.Types
		if len(types) == 0 && e.ContentRef != "" {
			types = []string{""}
		}
		for _, t := range types {
			name := e.Name
			if e.Choice {
				name += capitalize(t)
			}
			p := &prop{name: name, elem: e, typ: t, array: e.IsArray(), group: group}
			switch {
			case t == "":
				p.kind = kindComplex
				p.child = v.node(e.ContentRef)
			case t == "xhtml":
				p.kind = kindXhtml
			case v.reg.IsPrimitive(t):
				p.kind = kindPrimitive
				p.prim = v.prims[t]
				p.child = v.node(t)
				p.extName = "_" + name
				if t == "code" && e.Binding != nil && e.Binding.Strength == "required" && e.Binding.Codes != nil {
					p.codes = make(map[string]struct{}, len(e.Binding.Codes))
					for _, c := range e.Binding.Codes {
						p.codes[c] = struct{}{}
					}
				}
			case t == "Resource":
				p.kind = kindResource
			case t == "BackboneElement" || t == "Element":
				p.kind = kindComplex
				p.child = v.node(e.Path)
			default:
				p.kind = kindComplex
				p.child = v.node(t)
			}
			if t == "Reference" && len(e.TargetProfiles) > 0 {
				p.targets = map[string]struct{}{}
				for _, tp := range e.TargetProfiles {
					if tp == "Resource" || !v.reg.IsResourceType(tp) {
						p.targets = nil
						break
					}
					p.targets[tp] = struct{}{}
				}
			}
			n.props[name] = p
			if req != nil {
				req.names = append(req.names, name)
			}
			if group >= 0 {
				n.groups[group] = append(n.groups[group], p)
			}
			if p.kind == kindPrimitive {
				ep := *p
				ep.isExt = true
				ep.valueRef = p
				n.props[p.extName] = &ep
				if req != nil {
					req.names = append(req.names, p.extName)
				}
			}
		}
	}
	return n
}

// seg is one segment of the current location: an element name and, for
// array items, the index (-1 otherwise).
type seg struct {
	name  string
	index int
}

// state is the per-call validation state. The current location is kept as
// a stack and only rendered to a string when an issue is reported.
type state struct {
	issues []Issue
	path   []seg
}

func (s *state) push(name string) { s.path = append(s.path, seg{name: name, index: -1}) }
func (s *state) pop()             { s.path = s.path[:len(s.path)-1] }
func (s *state) setIndex(i int)   { s.path[len(s.path)-1].index = i }

func (s *state) location() string {
	b := make([]byte, 0, 64)
	for _, sg := range s.path {
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, sg.name...)
		if sg.index >= 0 {
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(sg.index), 10)
			b = append(b, ']')
		}
	}
	return string(b)
}

// add reports an issue at the current location.
func (s *state) add(code string, format string, args ...any) {
	s.issues = append(s.issues, Issue{Severity: "error", Code: code, Expression: s.location(), Message: fmt.Sprintf(format, args...)})
}

// addAt reports an issue at child element name of the current location.
func (s *state) addAt(name, code string, format string, args ...any) {
	s.push(name)
	s.add(code, format, args...)
	s.pop()
}

// Validate checks a resource decoded from JSON (use a json.Decoder with
// UseNumber so that numbers are json.Number; float64 is accepted too) and
// returns every problem found, ordered by location. An empty result means
// the resource is valid.
func (v *Validator) Validate(resource map[string]any) []Issue {
	var s state
	var buf [16]seg
	s.path = buf[:0]
	v.validateResource(&s, resource)
	if len(s.issues) > 1 {
		sort.SliceStable(s.issues, func(i, j int) bool { return s.issues[i].Expression < s.issues[j].Expression })
	}
	return s.issues
}

// validateResource validates a resource object at the current location
// (the root if the path is empty).
func (v *Validator) validateResource(s *state, obj map[string]any) {
	root := len(s.path) == 0
	if root {
		s.push("Resource")
		defer s.pop()
	}
	rtv, ok := obj["resourceType"]
	if !ok {
		s.add(CodeRequired, "Missing \"resourceType\": every resource must state its type")
		return
	}
	rt, ok := rtv.(string)
	if !ok {
		s.add(CodeStructure, "\"resourceType\" must be a string")
		return
	}
	n := v.resources[rt]
	if n == nil {
		s.add(CodeInvalid, "Unknown resource type %q", rt)
		return
	}
	if root {
		s.path[0].name = rt
	}
	v.validateObject(s, n, obj, true)
}

// validateObject validates the properties of a JSON object against node n.
func (v *Validator) validateObject(s *state, n *node, obj map[string]any, isResource bool) {
	if len(obj) == 0 {
		s.add(CodeStructure, "Empty objects are not allowed; omit the element instead")
		return
	}
	// Choice variants seen so far (objects rarely have more than a few).
	var seenBuf [4]choiceSeen
	seen := seenBuf[:0]
	for key, val := range obj {
		p := n.props[key]
		if p == nil {
			if isResource && key == "resourceType" {
				continue
			}
			v.unknown(s, n, key)
			continue
		}
		if p.group >= 0 {
			variant := p
			if p.isExt {
				variant = p.valueRef
			}
			known := false
			for i := range seen {
				if seen[i].group != p.group {
					continue
				}
				known = true
				if seen[i].variant != variant && !seen[i].reported {
					seen[i].reported = true
					v.choiceConflict(s, n, p, obj)
				}
				break
			}
			if !known {
				seen = append(seen, choiceSeen{group: p.group, variant: variant})
			}
		}
		if p.isExt {
			s.push(p.valueRef.name)
			v.validatePrimitiveExt(s, p.valueRef, val, obj)
		} else {
			s.push(key)
			v.validateProp(s, p, val, obj)
		}
		s.pop()
	}
	for i := range n.required {
		r := &n.required[i]
		found := false
		for _, name := range r.names {
			if _, ok := obj[name]; ok {
				found = true
				break
			}
		}
		if !found {
			name := r.elem.Name
			if r.elem.Choice {
				name += "[x]"
			}
			s.addAt(name, CodeRequired, "Missing required element %q", name)
		}
	}
	if n.reference {
		if ref, ok := obj["reference"].(string); ok && ref != "" {
			v.checkReference(s, ref)
		}
	}
}

func (v *Validator) unknown(s *state, n *node, key string) {
	// Help with misspelled choice types: "valueFoo" for value[x].
	for _, g := range n.groups {
		base := g[0].elem.Name
		if strings.HasPrefix(key, base) && len(key) > len(base) && key[len(base)] >= 'A' && key[len(base)] <= 'Z' {
			names := make([]string, 0, len(g))
			for _, p := range g {
				names = append(names, p.name)
			}
			s.addAt(key, CodeStructure, "Unknown element %q: %s[x] must be one of %s", key, base, strings.Join(names, ", "))
			return
		}
	}
	if strings.HasPrefix(key, "_") {
		if p := n.props[key[1:]]; p != nil {
			s.addAt(key, CodeStructure, "Unknown element %q: only primitive elements may have a \"_\" sibling, and %q is not primitive", key, key[1:])
			return
		}
	}
	s.addAt(key, CodeStructure, "Unknown element %q", key)
}

type choiceSeen struct {
	group    int
	variant  *prop
	reported bool
}

func (v *Validator) choiceConflict(s *state, n *node, p *prop, obj map[string]any) {
	var present []string
	for _, q := range n.groups[p.group] {
		_, ok := obj[q.name]
		if !ok && q.extName != "" {
			_, ok = obj[q.extName]
		}
		if ok {
			present = append(present, q.name)
		}
	}
	sort.Strings(present)
	s.addAt(p.elem.Name+"[x]", CodeStructure, "Only one of %s may be present (found %s)", p.elem.Name+"[x]", strings.Join(present, " and "))
}

func kindOf(val any) string {
	switch val.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", val)
}

// validateProp validates the value of property p.
func (v *Validator) validateProp(s *state, p *prop, val any, obj map[string]any) {
	if val == nil {
		s.add(CodeStructure, "null is not allowed; omit the element instead")
		return
	}
	arr, ok := s.checkShape(p, p.name, "value", val)
	if !ok {
		return
	}
	if p.array {
		if p.elem.Max > 1 && len(arr) > p.elem.Max {
			s.add(CodeStructure, "Element %q allows at most %d values, found %d", p.name, p.elem.Max, len(arr))
		}
		var extArr []any
		if p.kind == kindPrimitive {
			if ev, ok := obj[p.extName]; ok {
				extArr, _ = ev.([]any)
				if extArr != nil && len(extArr) != len(arr) {
					s.add(CodeStructure, "Arrays %q and %q must have the same length (%d and %d)", p.name, p.extName, len(arr), len(extArr))
				}
			}
		}
		for i, item := range arr {
			if item == nil && p.kind == kindPrimitive && i < len(extArr) && extArr[i] != nil {
				continue // value supplied only as extension
			}
			s.setIndex(i)
			v.validateValue(s, p, item)
		}
		s.setIndex(-1)
		return
	}
	v.validateValue(s, p, val)
}

// checkShape reports val unless it has p's cardinality: an array of at
// least one item when p repeats, a single value (a single object, for
// the "_x" of a primitive) when it does not. name is the element's name
// and single what one value of it is. It returns the items of an array
// and whether val has the right shape.
func (s *state) checkShape(p *prop, name, single string, val any) ([]any, bool) {
	arr, isArr := val.([]any)
	switch {
	case p.array && !isArr:
		s.add(CodeStructure, "Element %q must be an array", name)
	case p.array && len(arr) == 0:
		s.add(CodeStructure, "Empty arrays are not allowed; omit the element instead")
	case !p.array && isArr:
		s.add(CodeStructure, "Element %q must be a single %s, not an array", name, single)
	default:
		return arr, true
	}
	return nil, false
}

// validatePrimitiveExt validates "_x" (given the value prop p).
func (v *Validator) validatePrimitiveExt(s *state, p *prop, val any, obj map[string]any) {
	if val == nil {
		s.add(CodeStructure, "null is not allowed for %q; omit the element instead", p.extName)
		return
	}
	arr, ok := s.checkShape(p, p.extName, "object", val)
	if !ok {
		return
	}
	if p.array {
		values, hasValues := obj[p.name].([]any)
		for i, item := range arr {
			s.setIndex(i)
			if item == nil {
				if !hasValues || i >= len(values) {
					s.add(CodeStructure, "Entry %d of %q is null and has no matching value in %q", i, p.extName, p.name)
				}
				continue
			}
			v.validateElementObject(s, p, item)
		}
		s.setIndex(-1)
		return
	}
	v.validateElementObject(s, p, val)
}

func (v *Validator) validateElementObject(s *state, p *prop, val any) {
	m, ok := val.(map[string]any)
	if !ok {
		s.add(CodeStructure, "%q must contain objects with \"id\" and/or \"extension\", found %s", p.extName, kindOf(val))
		return
	}
	v.validateObject(s, p.child, m, false)
}

// validateValue validates one (non-array) value of p.
func (v *Validator) validateValue(s *state, p *prop, val any) {
	switch p.kind {
	case kindPrimitive:
		v.validatePrimitive(s, p, val)
	case kindXhtml:
		str, ok := val.(string)
		if !ok {
			s.add(CodeValue, "The narrative must be a string of XHTML, found %s", kindOf(val))
			return
		}
		if !strings.HasPrefix(str, "<div") || len(str) < 5 || !(str[4] == '>' || str[4] == ' ' || str[4] == '\t' || str[4] == '\n' || str[4] == '\r' || str[4] == '/') {
			s.add(CodeValue, "The narrative must be an XHTML <div> element (the string must start with \"<div\")")
		} else if msg := checkNarrative(str); msg != "" {
			s.add(CodeValue, "%s", capitalize(msg))
		}
	case kindResource:
		m, ok := val.(map[string]any)
		if !ok {
			if val == nil {
				s.add(CodeStructure, "null is not allowed; omit the element instead")
				return
			}
			s.add(CodeStructure, "Expected a resource (JSON object), found %s", kindOf(val))
			return
		}
		if len(m) == 0 {
			s.add(CodeStructure, "Empty objects are not allowed; omit the element instead")
			return
		}
		v.validateResource(s, m)
	case kindComplex:
		m, ok := val.(map[string]any)
		if !ok {
			if val == nil {
				s.add(CodeStructure, "null is not allowed; omit the element instead")
				return
			}
			s.add(CodeStructure, "Element %q must be a JSON object, found %s", p.name, kindOf(val))
			return
		}
		v.validateObject(s, p.child, m, false)
		if p.child.reference && p.targets != nil {
			if ref, ok := m["reference"].(string); ok {
				v.checkTarget(s, p, ref)
			}
		}
	}
}

func (v *Validator) validatePrimitive(s *state, p *prop, val any) {
	if val == nil {
		s.add(CodeStructure, "null is not allowed; omit the element instead")
		return
	}
	if p.prim == nil {
		return
	}
	if msg := p.prim(val); msg != "" {
		s.add(CodeValue, "%s", msg)
		return
	}
	if p.codes != nil {
		code := val.(string)
		if _, ok := p.codes[code]; !ok {
			s.add(CodeCodeInvalid, "%q is not a valid code for %s; allowed: %s", code, p.elem.Path, allowedCodes(p.elem.Binding))
		}
	}
}

func allowedCodes(b *definitions.Binding) string {
	const max = 20
	if len(b.Codes) > max {
		return fmt.Sprintf("%s, ... (%d codes in total, see %s)", strings.Join(b.Codes[:max], ", "), len(b.Codes), b.ValueSet)
	}
	return strings.Join(b.Codes, ", ")
}
