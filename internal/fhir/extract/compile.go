package extract

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

// Static typing of evaluation nodes. Every value produced while walking a
// resource carries a context id naming its FHIR type and the definition
// path under which its children are looked up. Contexts are interned once
// per Extractor at compile time.

type ctxKind uint8

const (
	ckComplex     ctxKind = iota // datatype or backbone element: children via path
	ckPrimitive                  // FHIR primitive (or a FHIRPath system value)
	ckResource                   // a concrete resource type
	ckAnyResource                // element of type Resource: type known only at run time
)

type ctxInfo struct {
	typ  string // FHIR type code: "CodeableConcept", "dateTime", "BackboneElement", "Observation"
	path string // definition path children are looked up under
	kind ctxKind
	// system is the code system implied by the required binding of a
	// "code" element (see codeSystem); "" otherwise.
	system string
}

type types struct {
	reg  *definitions.Registry
	ctxs []ctxInfo
	idx  map[ctxInfo]int32
}

func newTypes(reg *definitions.Registry) *types {
	t := &types{reg: reg, idx: map[ctxInfo]int32{}}
	// Well-known contexts for FHIRPath values created by the evaluator.
	t.intern(ctxInfo{typ: "boolean", path: "boolean", kind: ckPrimitive}) // ctxBoolean = 0
	t.intern(ctxInfo{typ: "string", path: "string", kind: ckPrimitive})   // ctxString = 1
	t.intern(ctxInfo{typ: "decimal", path: "decimal", kind: ckPrimitive}) // ctxDecimal = 2
	t.intern(ctxInfo{typ: "integer", path: "integer", kind: ckPrimitive}) // ctxInteger = 3
	return t
}

const (
	ctxBoolean int32 = 0
	ctxString  int32 = 1
	ctxDecimal int32 = 2
	ctxInteger int32 = 3
)

func (t *types) intern(c ctxInfo) int32 {
	if id, ok := t.idx[c]; ok {
		return id
	}
	id := int32(len(t.ctxs))
	t.ctxs = append(t.ctxs, c)
	t.idx[c] = id
	return id
}

// ctxForType returns the context of a value of FHIR type typ found at the
// element definition e (nil for a type reached otherwise).
func (t *types) ctxForType(typ string, e *definitions.ElementDef) (int32, error) {
	switch {
	case e != nil && e.ContentRef != "":
		return t.intern(ctxInfo{typ: "BackboneElement", path: e.ContentRef, kind: ckComplex}), nil
	case typ == "BackboneElement" || typ == "Element":
		if e == nil {
			return 0, fmt.Errorf("backbone element without definition")
		}
		return t.intern(ctxInfo{typ: typ, path: e.Path, kind: ckComplex}), nil
	case typ == "Resource" || typ == "DomainResource":
		return t.intern(ctxInfo{typ: "Resource", path: "Resource", kind: ckAnyResource}), nil
	case t.reg.IsPrimitive(typ):
		ci := ctxInfo{typ: typ, path: typ, kind: ckPrimitive}
		if typ == "code" && e != nil {
			ci.system = codeSystem(e.Binding)
		}
		return t.intern(ci), nil
	case t.reg.TypeKind(typ) == "complex-type":
		return t.intern(ctxInfo{typ: typ, path: typ, kind: ckComplex}), nil
	case t.reg.TypeKind(typ) == "resource":
		return t.intern(ctxInfo{typ: typ, path: typ, kind: ckResource}), nil
	case typ == "xhtml":
		return t.intern(ctxInfo{typ: typ, path: typ, kind: ckPrimitive}), nil
	}
	return 0, fmt.Errorf("unknown type %q", typ)
}

// element finds the definition of child name under context c.
func (t *types) element(c ctxInfo, name string) *definitions.ElementDef {
	for path := c.path; path != ""; {
		if e := t.reg.Element(path + "." + name); e != nil {
			return e
		}
		if e := t.reg.Element(path + "." + name + "[x]"); e != nil {
			return e
		}
		if c.kind == ckPrimitive {
			return nil
		}
		// Profiled datatypes (Age, SimpleQuantity) and resources inherit
		// elements from their base type.
		if strings.IndexByte(path, '.') >= 0 {
			return nil
		}
		path = t.reg.BaseType(path)
	}
	return nil
}

// isType reports whether context c is of type name or a subtype of it.
// name may carry a "FHIR." or "System." namespace.
func (t *types) isType(c ctxInfo, name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "FHIR."), "System.")
	if c.kind == ckAnyResource {
		return name == "Resource" || name == "DomainResource"
	}
	for typ, n := c.typ, 0; typ != "" && n < 10; typ, n = t.reg.BaseType(typ), n+1 {
		if strings.EqualFold(typ, name) {
			return true
		}
	}
	// FHIRPath system types match the FHIR primitives they map to.
	switch strings.ToLower(name) {
	case "string":
		return c.kind == ckPrimitive && isStringPrimitive(c.typ)
	case "datetime":
		return c.typ == "instant"
	case "integer":
		return c.typ == "positiveInt" || c.typ == "unsignedInt"
	}
	return false
}

func isStringPrimitive(typ string) bool {
	switch typ {
	case "string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid":
		return true
	}
	return false
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// compiler turns an AST into evaluator nodes, tracking static contexts.
type compiler struct {
	t        *types
	root     int32    // context of the resource (for %resource)
	warnings []string // unknown elements met (the branch is dropped)
}

// compiled is a node with the set of contexts its values may have.
type compiled struct {
	n    node
	ctxs []int32
}

var errEmpty = fmt.Errorf("expression is statically empty")

func (c *compiler) compile(a *ast, in []int32) (compiled, error) {
	switch a.kind {
	case astIdent:
		// A type name at the start of a path filters the focus by type
		// ("Observation.code", "Resource.meta.tag").
		if a.name != "" && a.name[0] >= 'A' && a.name[0] <= 'Z' {
			var keep []int32
			known := c.t.reg.TypeKind(a.name) != ""
			for _, x := range in {
				if c.t.isType(c.t.ctxs[x], a.name) {
					keep = append(keep, x)
				}
			}
			if known {
				if len(keep) == 0 {
					return compiled{}, errEmpty
				}
				if len(keep) == len(in) {
					return compiled{n: thisNode{}, ctxs: keep}, nil
				}
				return compiled{n: &typeFilterNode{in: thisNode{}, allow: keep}, ctxs: keep}, nil
			}
		}
		return c.member(thisNode{}, in, a.name)
	case astMember:
		l, err := c.compile(a.left, in)
		if err != nil {
			return compiled{}, err
		}
		return c.member(l.n, l.ctxs, a.name)
	case astCall:
		return c.call(a, in)
	case astIndex:
		l, err := c.compile(a.left, in)
		if err != nil {
			return compiled{}, err
		}
		if a.args[0].kind != astNumber {
			return compiled{}, fmt.Errorf("non-literal indexer")
		}
		var n int
		if _, err := fmt.Sscanf(a.args[0].name, "%d", &n); err != nil || n < 0 {
			return compiled{}, fmt.Errorf("bad indexer %q", a.args[0].name)
		}
		return compiled{n: &indexNode{in: l.n, i: n}, ctxs: l.ctxs}, nil
	case astString:
		return compiled{n: &literalNode{it: item{v: a.name, ctx: ctxString}}, ctxs: []int32{ctxString}}, nil
	case astNumber:
		ctx := ctxInteger
		if strings.IndexByte(a.name, '.') >= 0 {
			ctx = ctxDecimal
		}
		return compiled{n: &literalNode{it: item{v: json.Number(a.name), ctx: ctx}}, ctxs: []int32{ctx}}, nil
	case astBool:
		return compiled{n: &literalNode{it: item{v: a.name == "true", ctx: ctxBoolean}}, ctxs: []int32{ctxBoolean}}, nil
	case astVar:
		switch a.name {
		case "$this":
			return compiled{n: thisNode{}, ctxs: in}, nil
		case "%resource", "%rootResource", "%context":
			return compiled{n: rootNode{}, ctxs: []int32{c.root}}, nil
		}
		return compiled{}, fmt.Errorf("unsupported variable %s", a.name)
	case astBinary:
		return c.binary(a, in)
	}
	return compiled{}, fmt.Errorf("unsupported expression %s", a)
}

// member compiles navigation to child name from values of contexts in.
func (c *compiler) member(left node, in []int32, name string) (compiled, error) {
	var trans []transition
	var outs []int32
	for _, x := range in {
		ci := c.t.ctxs[x]
		if ci.kind == ckAnyResource {
			return compiled{}, fmt.Errorf("navigation %q below an element of type Resource", name)
		}
		if ci.kind == ckPrimitive {
			continue // primitives have no children we index (extensions live in _name)
		}
		e := c.t.element(ci, name)
		if e == nil {
			continue
		}
		if e.Choice {
			for _, typ := range e.Types {
				out, err := c.t.ctxForType(typ, e)
				if err != nil {
					return compiled{}, fmt.Errorf("%s: %w", e.Path, err)
				}
				trans = append(trans, transition{in: x, key: name + upperFirst(typ), out: out})
				outs = appendUnique(outs, out)
			}
			continue
		}
		typ := ""
		if len(e.Types) > 0 {
			typ = e.Types[0]
		}
		if len(e.Types) > 1 {
			return compiled{}, fmt.Errorf("%s: several types on a non-choice element", e.Path)
		}
		if typ == "" && e.ContentRef == "" {
			return compiled{}, fmt.Errorf("%s: element without type", e.Path)
		}
		out, err := c.t.ctxForType(typ, e)
		if err != nil {
			return compiled{}, fmt.Errorf("%s: %w", e.Path, err)
		}
		trans = append(trans, transition{in: x, key: name, out: out})
		outs = appendUnique(outs, out)
	}
	if len(trans) == 0 {
		var names []string
		for _, x := range in {
			names = append(names, c.t.ctxs[x].path)
		}
		// Not an element of these types (an expression written for
		// another FHIR version): statically empty, like a FHIRPath engine
		// would evaluate it on valid data.
		c.warnings = append(c.warnings, fmt.Sprintf("unknown element %q on %s", name, strings.Join(names, ",")))
		return compiled{}, errEmpty
	}
	return compiled{n: newChildNode(left, trans), ctxs: outs}, nil
}

func appendUnique(s []int32, x int32) []int32 {
	for _, y := range s {
		if y == x {
			return s
		}
	}
	return append(s, x)
}

// ofType restricts a compiled node to the contexts of type name.
func (c *compiler) ofType(l compiled, name string) (compiled, error) {
	var keep []int32
	for _, x := range l.ctxs {
		if c.t.ctxs[x].kind == ckAnyResource {
			return compiled{}, fmt.Errorf("type test on an element of type Resource")
		}
		if c.t.isType(c.t.ctxs[x], name) {
			keep = append(keep, x)
		}
	}
	if len(keep) == 0 {
		return compiled{}, errEmpty
	}
	if len(keep) == len(l.ctxs) {
		return compiled{n: l.n, ctxs: keep}, nil
	}
	// Prune the transitions of a child step directly: valueQuantity only.
	if ch, ok := l.n.(*childNode); ok {
		var trans []transition
		for _, t := range ch.trans {
			for _, k := range keep {
				if t.out == k {
					trans = append(trans, t)
					break
				}
			}
		}
		return compiled{n: newChildNode(ch.in, trans), ctxs: keep}, nil
	}
	return compiled{n: &typeFilterNode{in: l.n, allow: keep}, ctxs: keep}, nil
}

func (c *compiler) call(a *ast, in []int32) (compiled, error) {
	var l compiled
	if a.left != nil {
		var err error
		if l, err = c.compile(a.left, in); err != nil {
			return compiled{}, err
		}
	} else {
		l = compiled{n: thisNode{}, ctxs: in}
	}
	nargs := len(a.args)
	argc := func(n int) error {
		if nargs != n {
			return fmt.Errorf("%s() takes %d arguments", a.name, n)
		}
		return nil
	}
	switch a.name {
	case "ofType", "as":
		if err := argc(1); err != nil {
			return compiled{}, err
		}
		t := a.args[0]
		if t.kind != astIdent && t.kind != astTypeSpec && !(t.kind == astMember && t.left.kind == astIdent) {
			return compiled{}, fmt.Errorf("%s() needs a type name", a.name)
		}
		name := t.name
		if t.kind == astMember {
			name = t.left.name + "." + t.name
		}
		return c.ofType(l, name)
	case "where":
		if err := argc(1); err != nil {
			return compiled{}, err
		}
		// where(resolve() is X [or resolve() is Y ...])
		if types, ok := resolveIsTypes(a.args[0]); ok {
			for _, x := range l.ctxs {
				if ct := c.t.ctxs[x].typ; ct != "Reference" {
					return compiled{}, fmt.Errorf("resolve() on %s", ct)
				}
			}
			return compiled{n: &whereResolveNode{in: l.n, types: types}, ctxs: l.ctxs}, nil
		}
		cond, err := c.compileEach(a.args[0], l.ctxs)
		if err != nil {
			return compiled{}, err
		}
		return compiled{n: &whereNode{in: l.n, cond: cond.n}, ctxs: l.ctxs}, nil
	case "exists":
		if nargs > 1 {
			return compiled{}, fmt.Errorf("exists() takes at most 1 argument")
		}
		if nargs == 1 {
			cond, err := c.compileEach(a.args[0], l.ctxs)
			if err != nil {
				return compiled{}, err
			}
			l = compiled{n: &whereNode{in: l.n, cond: cond.n}, ctxs: l.ctxs}
		}
		return compiled{n: &countTestNode{in: l.n, empty: false}, ctxs: []int32{ctxBoolean}}, nil
	case "empty":
		if err := argc(0); err != nil {
			return compiled{}, err
		}
		return compiled{n: &countTestNode{in: l.n, empty: true}, ctxs: []int32{ctxBoolean}}, nil
	case "not":
		if err := argc(0); err != nil {
			return compiled{}, err
		}
		return compiled{n: &notNode{in: l.n}, ctxs: []int32{ctxBoolean}}, nil
	case "first":
		if err := argc(0); err != nil {
			return compiled{}, err
		}
		return compiled{n: &indexNode{in: l.n, i: 0}, ctxs: l.ctxs}, nil
	case "last":
		if err := argc(0); err != nil {
			return compiled{}, err
		}
		return compiled{n: &indexNode{in: l.n, i: -1}, ctxs: l.ctxs}, nil
	case "extension":
		if err := argc(1); err != nil {
			return compiled{}, err
		}
		if a.args[0].kind != astString {
			return compiled{}, fmt.Errorf("extension() needs a literal url")
		}
		ext, err := c.member(l.n, l.ctxs, "extension")
		if err != nil {
			return compiled{}, err
		}
		return compiled{n: &extensionNode{in: ext.n, url: a.args[0].name}, ctxs: ext.ctxs}, nil
	}
	return compiled{}, fmt.Errorf("unsupported function %s()", a.name)
}

// compileEach compiles a per-item condition (the argument of where()).
func (c *compiler) compileEach(a *ast, in []int32) (compiled, error) {
	cond, err := c.compile(a, in)
	if err == errEmpty {
		return compiled{n: emptyNode{}, ctxs: nil}, nil
	}
	return cond, err
}

// resolveIsTypes matches "resolve() is X" (optionally or-ed together).
func resolveIsTypes(a *ast) ([]string, bool) {
	if a.kind == astBinary && a.name == "or" {
		l, ok1 := resolveIsTypes(a.left)
		r, ok2 := resolveIsTypes(a.right)
		return append(l, r...), ok1 && ok2
	}
	if a.kind == astBinary && a.name == "is" && a.left.kind == astCall && a.left.name == "resolve" && a.left.left == nil && len(a.left.args) == 0 {
		return []string{strings.TrimPrefix(a.right.name, "FHIR.")}, true
	}
	// resolve().is(X) is not used by R4; leave it to the fallback.
	return nil, false
}

func (c *compiler) binary(a *ast, in []int32) (compiled, error) {
	switch a.name {
	case "|":
		l, errL := c.compile(a.left, in)
		r, errR := c.compile(a.right, in)
		switch {
		case errL == errEmpty && errR == errEmpty:
			return compiled{}, errEmpty
		case errL == errEmpty && errR == nil:
			return r, nil
		case errR == errEmpty && errL == nil:
			return l, nil
		case errL != nil:
			return compiled{}, errL
		case errR != nil:
			return compiled{}, errR
		}
		outs := append([]int32(nil), l.ctxs...)
		for _, x := range r.ctxs {
			outs = appendUnique(outs, x)
		}
		return compiled{n: &unionNode{a: l.n, b: r.n}, ctxs: outs}, nil
	case "as":
		l, err := c.compile(a.left, in)
		if err != nil {
			return compiled{}, err
		}
		return c.ofType(l, a.right.name)
	case "is":
		l, err := c.compile(a.left, in)
		if err == errEmpty {
			return compiled{n: emptyNode{}}, nil
		}
		if err != nil {
			return compiled{}, err
		}
		var allow []int32
		for _, x := range l.ctxs {
			if c.t.ctxs[x].kind == ckAnyResource {
				return compiled{}, fmt.Errorf("type test on an element of type Resource")
			}
			if c.t.isType(c.t.ctxs[x], a.right.name) {
				allow = append(allow, x)
			}
		}
		return compiled{n: &isNode{in: l.n, allow: allow}, ctxs: []int32{ctxBoolean}}, nil
	case "=", "!=", "and", "or":
		l, errL := c.compile(a.left, in)
		if errL == errEmpty {
			l, errL = compiled{n: emptyNode{}}, nil
		}
		r, errR := c.compile(a.right, in)
		if errR == errEmpty {
			r, errR = compiled{n: emptyNode{}}, nil
		}
		if errL != nil {
			return compiled{}, errL
		}
		if errR != nil {
			return compiled{}, errR
		}
		var n node
		switch a.name {
		case "=":
			n = &eqNode{a: l.n, b: r.n}
		case "!=":
			n = &eqNode{a: l.n, b: r.n, neg: true}
		case "and":
			n = &logicNode{a: l.n, b: r.n, and: true}
		case "or":
			n = &logicNode{a: l.n, b: r.n}
		}
		return compiled{n: n, ctxs: []int32{ctxBoolean}}, nil
	}
	return compiled{}, fmt.Errorf("unsupported operator %s", a.name)
}
