package profile

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/gofhir/fhirpath"
	"github.com/gofhir/fhirpath/eval"
	fptypes "github.com/gofhir/fhirpath/types"

	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
)

// invariant is one compiled constraint of a profile element.
type invariant struct {
	key, human string
	expr       *fhirpath.Expression
	// regex: the expression calls matches() or replaceMatches(), whose
	// shared regex cache in gofhir/fhirpath v1.4.0 writes an entry's
	// last-used time under its read lock (a data race between concurrent
	// evaluations): such invariants are evaluated one at a time.
	regex bool
}

// regexEval serializes the evaluation of invariants that use regular
// expressions (see invariant.regex).
var regexEval sync.Mutex

// InvariantCounts says how many of a set's error-severity invariants are
// evaluated and how many are not, by reason.
type InvariantCounts struct {
	// Evaluated is the number of distinct (key, expression) invariants
	// the set evaluates.
	Evaluated int
	// Uncompiled could not be compiled by the FHIRPath engine.
	Uncompiled int
	// NeedResolve use resolve() (reference resolution, which a write
	// alone cannot do) or htmlChecks() (narrative, which package validate
	// checks): not evaluated.
	NeedResolve int
	// Warnings are warning-severity invariants: never a refusal, so not
	// evaluated.
	Warnings int
}

// invariantCompiler compiles each distinct expression once across the
// profiles of a version and counts what it cannot evaluate.
type invariantCompiler struct {
	cache  map[string]*invariant // by key + expression
	counts InvariantCounts
	seen   map[string]bool
}

func newInvariantCompiler() *invariantCompiler {
	return &invariantCompiler{cache: map[string]*invariant{}, seen: map[string]bool{}}
}

// compile returns the evaluable error invariants of e.
func (ic *invariantCompiler) compile(e *wire.ProfileElem) []*invariant {
	var out []*invariant
	for _, c := range e.Constraints {
		id := c.Key + "\x00" + c.Expression
		first := !ic.seen[id]
		ic.seen[id] = true
		switch {
		case c.Severity != "error":
			if first {
				ic.counts.Warnings++
			}
			continue
		case strings.Contains(c.Expression, "resolve()") || strings.Contains(c.Expression, "htmlChecks()"):
			if first {
				ic.counts.NeedResolve++
			}
			continue
		}
		inv, ok := ic.cache[id]
		if !ok {
			x, err := fhirpath.Compile(c.Expression)
			if err == nil {
				inv = &invariant{key: c.Key, human: c.Human, expr: x, regex: strings.Contains(c.Expression, "atches(")}
				ic.counts.Evaluated++
			} else {
				ic.counts.Uncompiled++
			}
			ic.cache[id] = inv
		}
		if inv != nil {
			out = append(out, inv)
		}
	}
	return out
}

// nameSet is the set of names the invariants of a profile use. The
// FHIRPath engine reads a resource from its JSON text and looks for an
// absent element under every choice type name (about fifty scans of the
// text), so the resource it is given holds only the top-level elements
// whose names (or choice names: valueQuantity for value) occur in an
// expression: invariants cannot reach the others (none of US Core's uses
// children() or descendants(); a profile whose invariants do gets the
// whole resource).
type nameSet struct {
	all   bool
	names map[string]bool
}

// identRE matches FHIRPath identifiers (string literals removed first).
var (
	identRE  = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	stringRE = regexp.MustCompile(`'(?:[^'\\]|\\.)*'`)
)

func (ns *nameSet) addExpression(expr string) {
	if strings.Contains(expr, "children()") || strings.Contains(expr, "descendants()") {
		ns.all = true
	}
	if ns.names == nil {
		ns.names = map[string]bool{}
	}
	for _, id := range identRE.FindAllString(stringRE.ReplaceAllString(expr, "''"), -1) {
		ns.names[id] = true
	}
}

// keep reports whether the top-level JSON key k is an element the
// expressions may name.
func (ns *nameSet) keep(k string) bool {
	if ns.all || k == "resourceType" {
		return true
	}
	k = strings.TrimPrefix(k, "_")
	if ns.names[k] {
		return true
	}
	// A choice element: the name up to its type suffix.
	for i := 1; i < len(k); i++ {
		if k[i] >= 'A' && k[i] <= 'Z' {
			return ns.names[k[:i]]
		}
	}
	return false
}

// prune returns the top-level elements of resource the expressions may
// name (resource itself when that is all of them).
func (ns *nameSet) prune(resource map[string]any) map[string]any {
	if ns == nil || ns.all {
		return resource
	}
	out := make(map[string]any, len(ns.names)+1)
	for k, v := range resource {
		if ns.keep(k) {
			out[k] = v
		}
	}
	return out
}

// Invariants reports how many of the set's invariants are evaluated and
// how many are skipped, by reason.
func (s *Set) Invariants() InvariantCounts { return s.invCounts }

// fpRoot is the FHIRPath evaluation context of one resource, built on
// first use (the resource is serialized once per validation, reduced to
// the top-level elements the profile's invariants name).
type fpRoot struct {
	resource map[string]any
	names    *nameSet
	model    *fpModel
	ctx      *eval.Context
	failed   bool
}

func (r *fpRoot) context() *eval.Context {
	if r.ctx == nil && !r.failed {
		b, err := marshalForFHIRPath(r.names.prune(r.resource))
		if err != nil {
			r.failed = true
			return nil
		}
		r.ctx = eval.NewContext(b)
		r.ctx.SetLimit("maxDepth", 100)
		r.ctx.SetLimit("maxCollectionSize", 10000)
		if r.model != nil {
			r.ctx.SetModel(r.model)
		}
	}
	return r.ctx
}

// invariants evaluates the invariants of e on each of its values; a value
// for which one is false breaks it. An expression that fails to evaluate
// or yields no boolean is not held against the resource.
func (v *run) invariants(e *wire.ProfileElem, invs []*invariant, vals []item) {
	ctx := v.root.context()
	if ctx == nil {
		return
	}
	for _, it := range vals {
		this := fpValue(e, it)
		if this == nil {
			continue
		}
		c := ctx.WithThis(fptypes.Collection{this})
		for _, inv := range invs {
			if !v.holds(inv, c) {
				v.add(e, "invariant", "%s: %s", inv.key, inv.human)
			}
		}
	}
}

// rootInvariants evaluates the invariants of the profile's root element
// on the resource.
func (v *run) rootInvariants() {
	invs := v.p.invariants[v.p.rootElem]
	if len(invs) == 0 {
		return
	}
	ctx := v.root.context()
	if ctx == nil {
		return
	}
	for _, inv := range invs {
		if !v.holds(inv, ctx) {
			v.add(v.p.rootElem, "invariant", "%s: %s", inv.key, inv.human)
		}
	}
}

// holds reports whether inv is not false in c (true, empty, or an
// evaluation error, which is counted; so is a panic of the engine, which
// must not fail the request).
func (v *run) holds(inv *invariant, c *eval.Context) (ok bool) {
	defer func() {
		if recover() != nil {
			v.evalErrors++
			ok = true
		}
	}()
	if inv.regex {
		regexEval.Lock()
		defer regexEval.Unlock()
	}
	col, err := inv.expr.EvaluateWithContext(c)
	if err != nil {
		v.evalErrors++
		return true
	}
	if len(col) != 1 {
		return true
	}
	b, ok := col[0].(fptypes.Boolean)
	return !ok || b.Bool()
}

// fpValue returns a JSON value of element e as a FHIRPath value of the
// element's type (a choice element's type from its JSON name), or nil
// when it has none (a primitive present only through its extensions).
func fpValue(e *wire.ProfileElem, it item) fptypes.Value {
	typ := ""
	if name := e.Path[strings.LastIndexByte(e.Path, '.')+1:]; strings.HasSuffix(name, "[x]") {
		t := strings.TrimPrefix(it.key, strings.TrimSuffix(name, "[x]"))
		if t != "" {
			typ = t
			if !isComplexTypeName(t) {
				typ = strings.ToLower(t[:1]) + t[1:]
			}
		}
	} else if len(e.Types) == 1 {
		typ = e.Types[0]
		if typ == "BackboneElement" || typ == "Element" {
			typ = e.Path // as the model names backbone elements
		}
	}
	switch x := it.val.(type) {
	case nil:
		return nil
	case map[string]any:
		b, err := marshalForFHIRPath(x)
		if err != nil {
			return nil
		}
		if typ == "" {
			return fptypes.NewObjectValue(b)
		}
		return fptypes.NewObjectValueWithType(b, typ)
	case string:
		switch typ {
		case "dateTime", "instant":
			if dt, err := fptypes.NewDateTime(x); err == nil {
				return dt
			}
		case "date":
			if d, err := fptypes.NewDate(x); err == nil {
				return d
			}
		case "time":
			if t, err := fptypes.NewTime(x); err == nil {
				return t
			}
		}
		if typ == "" {
			return fptypes.NewString(x)
		}
		return fptypes.NewStringWithFHIRType(x, typ)
	case bool:
		return fptypes.NewBoolean(x)
	case json.Number:
		if i, err := x.Int64(); err == nil && typ != "decimal" {
			return fptypes.NewInteger(i)
		}
		if d, err := fptypes.NewDecimal(x.String()); err == nil {
			return d
		}
	}
	return nil
}

// marshalForFHIRPath serializes a JSON value for the FHIRPath engine. The
// engine does not read the "_name" objects of primitives, so a primitive
// present only through them (a data-absent-reason extension on
// attachment.data) would not exist for it; such a primitive is given its
// "_name" object as its value, so that exists() is true and extension is
// reachable, as in the FHIRPath model of a primitive without a value.
func marshalForFHIRPath(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || !bytes.Contains(b, []byte(`"_`)) {
		return b, err
	}
	return json.Marshal(absentPrimitives(v))
}

// absentPrimitives returns v with each "_name" whose "name" is absent
// copied to "name" (a copy where anything changes; v is not modified).
func absentPrimitives(v any) any {
	switch x := v.(type) {
	case map[string]any:
		var out map[string]any
		set := func(k string, val any) {
			if out == nil {
				out = make(map[string]any, len(x)+1)
				for k2, v2 := range x {
					out[k2] = v2
				}
			}
			out[k] = val
		}
		for k, val := range x {
			if nv := absentPrimitives(val); !sameRef(nv, val) {
				set(k, nv)
			}
			if name, ok := strings.CutPrefix(k, "_"); ok && name != "" {
				if _, present := x[name]; !present {
					set(name, val)
				}
			}
		}
		if out == nil {
			return x
		}
		return out
	case []any:
		var out []any
		for i, val := range x {
			if nv := absentPrimitives(val); !sameRef(nv, val) {
				if out == nil {
					out = append([]any(nil), x...)
				}
				out[i] = nv
			}
		}
		if out == nil {
			return x
		}
		return out
	}
	return v
}

// sameRef reports whether two values from absentPrimitives are the same
// (unchanged) map or slice; other values are never replaced.
func sameRef(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		return ok && len(x) == len(y) && (len(x) == 0 || reflect.ValueOf(x).UnsafePointer() == reflect.ValueOf(y).UnsafePointer())
	case []any:
		y, ok := b.([]any)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
	}
	return true
}

// isComplexTypeName reports whether a choice type suffix names a complex
// type (Quantity) rather than a primitive (DateTime -> dateTime).
func isComplexTypeName(t string) bool {
	switch t {
	case "Boolean", "Integer", "Decimal", "String", "Uri", "Url", "Canonical", "Code", "Id", "Oid", "Uuid",
		"Markdown", "Base64Binary", "Instant", "Date", "DateTime", "Time", "PositiveInt", "UnsignedInt":
		return false
	}
	return true
}

// fpModel answers the FHIRPath engine's type questions from the profiles'
// snapshots, which list every element of a resource and its backbone
// elements. Without it the engine looks for an absent element under every
// choice type name it knows (about fifty scans of the JSON text): with it,
// an element of a known resource or backbone path that is not a choice is
// looked for once, and a choice under its own types. Paths the snapshots
// do not list (inside data types) keep the engine's own resolution.
type fpModel struct {
	choices   map[string][]string // "Observation.value" -> its types
	types     map[string]string   // "Observation.code" -> "CodeableConcept"; a backbone element -> its own path
	resources map[string]bool
}

// notAChoice is the one "type" looked for under a known element that is not
// a choice: no JSON name ends with it, so the lookup finds nothing.
var notAChoice = []string{"\x00"}

func newFPModel() *fpModel {
	return &fpModel{choices: map[string][]string{}, types: map[string]string{}, resources: map[string]bool{}}
}

// add records the elements of one profile.
func (m *fpModel) add(p *compiled) {
	m.resources[p.typ] = true
	for _, e := range p.elements {
		if e.Path == p.typ {
			continue
		}
		if base, ok := strings.CutSuffix(e.Path, "[x]"); ok {
			for _, t := range e.Types {
				if !slices.Contains(m.choices[base], t) {
					m.choices[base] = append(m.choices[base], t)
				}
			}
			continue
		}
		if _, seen := m.types[e.Path]; seen || len(e.Types) != 1 {
			if len(e.Types) != 1 {
				m.types[e.Path] = ""
			}
			continue
		}
		t := e.Types[0]
		if t == "BackboneElement" || t == "Element" {
			t = e.Path
		}
		m.types[e.Path] = t
	}
}

// ChoiceTypes implements the engine's model.
func (m *fpModel) ChoiceTypes(path string) []string {
	if ts, ok := m.choices[path]; ok {
		return ts
	}
	if _, ok := m.types[path]; ok {
		return notAChoice
	}
	if t, _, ok := strings.Cut(path, "."); ok && choiceFree[t] {
		return notAChoice
	}
	return nil
}

// choiceFree are the data types without choice elements that invariants
// navigate (others, such as Extension, Annotation or Dosage, keep the
// engine's own resolution).
var choiceFree = map[string]bool{"Address": true, "Attachment": true, "CodeableConcept": true, "Coding": true,
	"ContactPoint": true, "HumanName": true, "Identifier": true, "Meta": true, "Narrative": true, "Period": true,
	"Quantity": true, "Range": true, "Ratio": true, "Reference": true}

// TypeOf implements the engine's model.
func (m *fpModel) TypeOf(path string) string { return m.types[path] }

// ReferenceTargets implements the engine's model.
func (m *fpModel) ReferenceTargets(string) []string { return nil }

// ParentType implements the engine's model.
func (m *fpModel) ParentType(t string) string {
	switch {
	case quantityKinds[t]:
		return "Quantity"
	case t == "DomainResource":
		return "Resource"
	case m.resources[t]:
		return "DomainResource"
	}
	return ""
}

// IsSubtype implements the engine's model.
func (m *fpModel) IsSubtype(child, parent string) bool {
	for t, n := child, 0; t != "" && n < 4; t, n = m.ParentType(t), n+1 {
		if t == parent {
			return true
		}
	}
	return false
}

// ResolvePath implements the engine's model.
func (m *fpModel) ResolvePath(path string) string { return path }

// IsResource implements the engine's model.
func (m *fpModel) IsResource(t string) bool {
	return m.resources[t] || t == "Resource" || t == "DomainResource"
}

// quantityKinds are the specializations of Quantity.
var quantityKinds = map[string]bool{"Age": true, "Count": true, "Distance": true, "Duration": true,
	"MoneyQuantity": true, "SimpleQuantity": true}
