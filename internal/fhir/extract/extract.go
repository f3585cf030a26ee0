// Package extract computes the search index rows (store.Index) of a
// resource at write time.
//
// Every search parameter expression of every resource type is compiled once,
// in New, into a small typed evaluator that walks the decoded JSON of a
// resource directly. The compiler understands the FHIRPath subset the R4
// search parameters use (paths, choice elements, ofType/as/is, where() on
// resolve() and on literals, unions, indexers, first(), exists(), not(),
// extension(), and/or/=/!=). An expression outside that subset is
// evaluated by the general FHIRPath engine github.com/gofhir/fhirpath
// instead (see Fallbacks); with the R4 definitions there are none.
//
// Values become rows according to the parameter type and the FHIR type of
// the value (FHIR R4 search.html). Conventions beyond the row doc comments
// in package store:
//   - token: a CodeableConcept.text that is not the display of one of its
//     codings gets its own row with empty System and Code (for :text);
//     every Identifier with a value and a coded type also gets a row under
//     store.OfTypeParam (for :of-type).
//   - reference: references to contained resources ("#id") and
//     identifier-only references are not indexed; a Resource (Bundle
//     composition/message) is not indexed either.
//   - composite: a group is emitted only when every component has a value.
//   - Values whose JSON shape contradicts their definition are skipped; a
//     panic while evaluating one parameter loses that parameter only.
package extract

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/store"
)

// Extractor computes the search index rows of a resource at write time. It
// is immutable after New and safe for concurrent use.
type Extractor struct {
	base      string
	t         *types
	plans     map[string]*typePlan
	fallbacks []Fallback
	dropped   []Fallback
	pool      sync.Pool // *state
	engine    fallbackEngine
	onPanic   func(code string, r any) // test hook: a recovered panic
	maxRows   int                      // store.MaxIndexRows, or a test's bound
}

// Fallback describes a search parameter expression the built-in compiler
// could not handle and which is evaluated by the general FHIRPath engine.
type Fallback struct {
	ResourceType string
	Code         string
	Expression   string
	Reason       string
}

type typePlan struct {
	root   int32
	params []*paramPlan
}

type paramPlan struct {
	code  string
	ptype string
	expr  string
	node  node         // compiled evaluator; nil when fb is set
	ctxs  []int32      // contexts the node's values may have
	fb    fallbackExpr // fallback evaluator
	comps []compPlan   // composite components
}

type compPlan struct {
	param string // "<code>$<n>"
	ptype string
	expr  string
	node  node
	ctxs  []int32
	fb    fallbackExpr // evaluated against the composite node's JSON
}

// skipParams are resource columns or parameters without stored values.
var skipParams = map[string]bool{"_id": true, "_lastUpdated": true}

// New compiles the search parameters of every resource type in reg.
// baseURL is this server's FHIR base ("http://localhost:8080/fhir"):
// absolute references starting with it are indexed as local Type/id.
func New(reg *definitions.Registry, baseURL string) (*Extractor, error) {
	if reg == nil {
		return nil, fmt.Errorf("extract: nil registry")
	}
	e := &Extractor{
		base:   strings.TrimRight(baseURL, "/"),
		t:      newTypes(reg),
		plans:  map[string]*typePlan{},
		engine: gofhirEngine{model: registryModel{reg}},
	}
	e.pool.New = func() any { return &state{buf: make([]item, 0, 256)} }
	for _, rt := range reg.ResourceTypes() {
		root, err := e.t.ctxForType(rt, nil)
		if err != nil {
			return nil, fmt.Errorf("extract: %s: %w", rt, err)
		}
		plan := &typePlan{root: root}
		c := &compiler{t: e.t, root: root}
		for _, sp := range reg.SearchParams(rt) {
			if skipParams[sp.Code] || sp.Expression == "" || sp.Type == "special" {
				continue
			}
			p, err := e.compileParam(c, rt, sp)
			if err != nil {
				return nil, fmt.Errorf("extract: %s.%s: %w", rt, sp.Code, err)
			}
			if p != nil {
				plan.params = append(plan.params, p)
			}
		}
		e.plans[rt] = plan
	}
	sort.Slice(e.fallbacks, func(i, j int) bool {
		a, b := e.fallbacks[i], e.fallbacks[j]
		if a.ResourceType != b.ResourceType {
			return a.ResourceType < b.ResourceType
		}
		return a.Code < b.Code
	})
	return e, nil
}

// compileParam compiles one parameter; nil means the expression can never
// produce a value for this type.
func (e *Extractor) compileParam(c *compiler, rt string, sp *definitions.SearchParam) (*paramPlan, error) {
	p := &paramPlan{code: sp.Code, ptype: sp.Type, expr: sp.Expression}
	root := []int32{c.root}
	c.warnings = c.warnings[:0]
	cp, err := compileExpr(c, sp.Expression, root)
	defer func() {
		for _, w := range c.warnings {
			e.dropped = append(e.dropped, Fallback{rt, sp.Code, sp.Expression, w})
		}
	}()
	switch {
	case err == errEmpty:
		return nil, nil
	case err != nil:
		fb, ferr := e.engine.compile(sp.Expression)
		if ferr != nil {
			return nil, fmt.Errorf("compile %q: %v; fallback: %w", sp.Expression, err, ferr)
		}
		p.fb = fb
		e.fallbacks = append(e.fallbacks, Fallback{rt, sp.Code, sp.Expression, err.Error()})
	default:
		p.node, p.ctxs = cp.n, cp.ctxs
	}
	if sp.Type != "composite" {
		return p, nil
	}
	for n, comp := range sp.Components {
		cpl := compPlan{param: fmt.Sprintf("%s$%d", sp.Code, n+1), ptype: comp.Type, expr: comp.Expression}
		var ccp compiled
		var cerr error
		if p.node != nil {
			ccp, cerr = compileExpr(c, comp.Expression, cp.ctxs)
		} else {
			cerr = fmt.Errorf("composite evaluated by the fallback")
		}
		switch {
		case cerr == errEmpty:
			cpl.node = emptyNode{}
		case cerr != nil:
			if p.node != nil {
				// The composite node is walked by our evaluator but this
				// component is not: evaluate the whole composite with the
				// fallback so that both agree on the nodes.
				fb, ferr := e.engine.compile(sp.Expression)
				if ferr != nil {
					return nil, fmt.Errorf("compile %q: %w", sp.Expression, ferr)
				}
				p.node, p.fb = nil, fb
				e.fallbacks = append(e.fallbacks, Fallback{rt, sp.Code, sp.Expression, "component " + comp.Expression + ": " + cerr.Error()})
				p.comps = nil
				return e.fallbackComponents(p, sp)
			}
			fb, ferr := e.engine.compile(comp.Expression)
			if ferr != nil {
				return nil, fmt.Errorf("compile component %q: %w", comp.Expression, ferr)
			}
			cpl.fb = fb
		default:
			cpl.node, cpl.ctxs = ccp.n, ccp.ctxs
		}
		p.comps = append(p.comps, cpl)
	}
	return p, nil
}

func (e *Extractor) fallbackComponents(p *paramPlan, sp *definitions.SearchParam) (*paramPlan, error) {
	for n, comp := range sp.Components {
		fb, err := e.engine.compile(comp.Expression)
		if err != nil {
			return nil, fmt.Errorf("compile component %q: %w", comp.Expression, err)
		}
		p.comps = append(p.comps, compPlan{param: fmt.Sprintf("%s$%d", sp.Code, n+1), ptype: comp.Type, expr: comp.Expression, fb: fb})
	}
	return p, nil
}

func compileExpr(c *compiler, expr string, in []int32) (compiled, error) {
	a, err := parseFHIRPath(expr)
	if err != nil {
		return compiled{}, fmt.Errorf("parse: %w", err)
	}
	return c.compile(a, in)
}

// Dropped lists the expression branches that name elements unknown to the
// definitions (they can never match valid data and are not evaluated).
func (e *Extractor) Dropped() []Fallback { return append([]Fallback(nil), e.dropped...) }

// Fallbacks lists the search parameters evaluated by the general FHIRPath
// engine because the built-in compiler does not support their expression.
func (e *Extractor) Fallbacks() []Fallback { return append([]Fallback(nil), e.fallbacks...) }

// Extract returns the index rows for every search parameter of the
// resource's type. resource is decoded JSON (encoding/json with UseNumber).
// A value that cannot be indexed is skipped; the error is non-nil only when
// the resource has no known resourceType.
func (e *Extractor) Extract(resource map[string]any) (store.Index, error) {
	var idx store.Index
	rt, _ := resource["resourceType"].(string)
	plan := e.plans[rt]
	if plan == nil {
		return idx, fmt.Errorf("extract: unknown resource type %q", rt)
	}
	s := e.pool.Get().(*state)
	var js []byte // resource JSON for fallback expressions, made on demand
	maxRows := e.maxRows
	if maxRows <= 0 {
		maxRows = store.MaxIndexRows
	}
	var tooMany error
	for _, p := range plan.params {
		s.buf = append(s.buf[:0], item{resource, plan.root})
		e.param(s, &idx, p, resource, &js, maxRows)
		if n := indexLens(&idx).total(); n > maxRows {
			tooMany = fmt.Errorf("%w: more than %d (parameter %s and those before it)", store.ErrTooManyIndexRows, maxRows, p.code)
			idx = store.Index{}
			break
		}
	}
	if cap(s.buf) <= 1<<16 {
		// Drop the references into this resource before pooling.
		clear(s.buf[:cap(s.buf)])
		s.buf = s.buf[:0]
		e.pool.Put(s)
	}
	if tooMany != nil {
		return idx, tooMany
	}
	return idx, nil
}

// param evaluates one parameter; a panic on odd input loses only this
// parameter's rows.
func (e *Extractor) param(s *state, idx *store.Index, p *paramPlan, resource map[string]any, js *[]byte, maxRows int) {
	mark := indexLens(idx)
	defer func() {
		if r := recover(); r != nil {
			mark.truncate(idx)
			if e.onPanic != nil {
				e.onPanic(p.code, r)
			}
		}
	}()
	em := emitter{idx: idx, param: p.code, base: e.base}
	if p.node == nil {
		if p.comps == nil {
			e.emitFallback(&em, p.ptype, p.fb, resource, js)
			return
		}
		for _, v := range e.fallbackEval(p.fb, resource, js) {
			m, ok := v.v.(map[string]any)
			if !ok {
				continue
			}
			var sub []byte
			em.compositeGroup(p.comps, func(c *compPlan, cem emitter) {
				e.emitFallback(&cem, c.ptype, c.fb, m, &sub)
			})
		}
		return
	}
	res := p.node.eval(s, span{0, 1})
	if p.comps == nil {
		for i := res.lo; i < res.hi; i++ {
			// Past the bound, stop: Extract refuses the resource.
			if (i-res.lo)&1023 == 1023 && indexLens(idx).total() > maxRows {
				return
			}
			e.emitItem(&em, p.ptype, s.buf[i])
		}
		return
	}
	// Composite: one group per matched node, with every component.
	for k := res.lo; k < res.hi; k++ {
		em.compositeGroup(p.comps, func(c *compPlan, cem emitter) {
			if c.node != nil {
				mark := s.mark()
				r := c.node.eval(s, span{k, k + 1})
				for i := r.lo; i < r.hi; i++ {
					e.emitItem(&cem, c.ptype, s.buf[i])
				}
				s.buf = s.buf[:mark]
			} else if m, ok := s.buf[k].v.(map[string]any); ok {
				var sub []byte
				e.emitFallback(&cem, c.ptype, c.fb, m, &sub)
			}
		})
	}
}

// emitFallback emits the values of the fallback expression fb on m for a
// parameter of type ptype.
func (e *Extractor) emitFallback(em *emitter, ptype string, fb fallbackExpr, m map[string]any, js *[]byte) {
	for _, v := range e.fallbackEval(fb, m, js) {
		em.emit(ptype, guessType(ptype, v.typ, v.v), v.v)
	}
}

// compositeGroup emits one group of a composite parameter: each component
// through emit, with an emitter of its own in the next group. A group in
// which a component emits nothing is taken back whole.
func (em *emitter) compositeGroup(comps []compPlan, emit func(c *compPlan, cem emitter)) {
	em.group++
	before := indexLens(em.idx)
	for i := range comps {
		c := &comps[i]
		n := indexLens(em.idx)
		emit(c, emitter{idx: em.idx, param: c.param, group: em.group, base: em.base})
		if indexLens(em.idx) == n {
			before.truncate(em.idx)
			em.group--
			return
		}
	}
}

// emitItem converts one evaluated value, skipping values whose JSON shape
// contradicts their definition (an object where a primitive belongs or
// the reverse): validation normally rejects those.
func (e *Extractor) emitItem(em *emitter, ptype string, it item) {
	ci := &e.t.ctxs[it.ctx]
	_, isObj := it.v.(map[string]any)
	if isObj != (ci.kind != ckPrimitive) {
		return
	}
	if ci.system != "" && ptype == "token" {
		// A code bound (required) to a value set of one code system:
		// index that system so that system|code searches match.
		if code, ok := it.v.(string); ok {
			if code != "" {
				em.tokRow(ci.system, code, "")
			}
			return
		}
	}
	em.emit(ptype, ci.typ, it.v)
}

func (e *Extractor) fallbackEval(fb fallbackExpr, resource map[string]any, js *[]byte) []fbValue {
	if *js == nil {
		b, err := json.Marshal(resource)
		if err != nil {
			return nil
		}
		*js = b
	}
	vals, err := fb.eval(*js)
	if err != nil {
		return nil
	}
	return vals
}

type lens [7]int

// total is the number of rows.
func (l lens) total() int {
	n := 0
	for _, v := range l {
		n += v
	}
	return n
}

func indexLens(x *store.Index) lens {
	return lens{len(x.Strings), len(x.Tokens), len(x.References), len(x.Dates), len(x.Numbers), len(x.Quantities), len(x.URIs)}
}

func (l lens) truncate(x *store.Index) {
	x.Strings = x.Strings[:l[0]]
	x.Tokens = x.Tokens[:l[1]]
	x.References = x.References[:l[2]]
	x.Dates = x.Dates[:l[3]]
	x.Numbers = x.Numbers[:l[4]]
	x.Quantities = x.Quantities[:l[5]]
	x.URIs = x.URIs[:l[6]]
}
