package extract

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
)

func reflectPointer(m map[string]any) uintptr { return reflect.ValueOf(m).Pointer() }

// item is one value met while evaluating: a decoded JSON value
// (map[string]any, string, json.Number, bool) and its context id.
type item struct {
	v   any
	ctx int32
}

// span is a range of state.buf: the result collection of a node.
type span struct{ lo, hi int32 }

func (s span) len() int { return int(s.hi - s.lo) }

// state is the scratch space of one evaluation; buf[0] is the resource.
// Nodes append their results to buf and return the span they wrote, so an
// evaluation allocates nothing once buf has grown.
type state struct {
	buf []item
}

func (s *state) push(it item) { s.buf = append(s.buf, it) }
func (s *state) mark() int32  { return int32(len(s.buf)) }
func (s *state) since(lo int32) span {
	return span{lo, int32(len(s.buf))}
}

type node interface {
	eval(s *state, in span) span
}

type thisNode struct{}

func (thisNode) eval(_ *state, in span) span { return in }

type rootNode struct{}

func (rootNode) eval(_ *state, _ span) span { return span{0, 1} }

type emptyNode struct{}

func (emptyNode) eval(s *state, _ span) span { return s.since(s.mark()) }

type literalNode struct{ it item }

func (n *literalNode) eval(s *state, _ span) span {
	lo := s.mark()
	s.push(n.it)
	return s.since(lo)
}

type transition struct {
	in  int32
	key string
	out int32
}

// childNode navigates to a child element. When all transitions start from
// one context (the common case) the per-item test is a single compare.
type childNode struct {
	in    node
	trans []transition
}

func newChildNode(in node, trans []transition) *childNode {
	return &childNode{in: in, trans: trans}
}

func (n *childNode) eval(s *state, in span) span {
	src := n.in.eval(s, in)
	lo := s.mark()
	for i := src.lo; i < src.hi; i++ {
		it := s.buf[i]
		m, ok := it.v.(map[string]any)
		if !ok {
			continue
		}
		for k := range n.trans {
			t := &n.trans[k]
			if t.in != it.ctx {
				continue
			}
			v, ok := m[t.key]
			if !ok {
				continue
			}
			switch x := v.(type) {
			case []any:
				for _, e := range x {
					if e != nil {
						s.buf = append(s.buf, item{e, t.out})
					}
				}
			case nil:
			default:
				s.buf = append(s.buf, item{x, t.out})
			}
		}
	}
	return s.since(lo)
}

type typeFilterNode struct {
	in    node
	allow []int32
}

func (n *typeFilterNode) eval(s *state, in span) span {
	return s.filter(n.in.eval(s, in), func(it item) bool { return containsCtx(n.allow, it.ctx) })
}

// filter appends the items of src that keep accepts and returns them.
func (s *state) filter(src span, keep func(it item) bool) span {
	lo := s.mark()
	for i := src.lo; i < src.hi; i++ {
		if keep(s.buf[i]) {
			s.buf = append(s.buf, s.buf[i])
		}
	}
	return s.since(lo)
}

func containsCtx(s []int32, x int32) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// indexNode is [i], first() (i = 0) and last() (i = -1).
type indexNode struct {
	in node
	i  int
}

func (n *indexNode) eval(s *state, in span) span {
	src := n.in.eval(s, in)
	lo := s.mark()
	k := n.i
	if k < 0 {
		k = src.len() - 1
	}
	if k >= 0 && k < src.len() {
		s.buf = append(s.buf, s.buf[src.lo+int32(k)])
	}
	return s.since(lo)
}

// unionNode is "|": both operands, without duplicate values (compared by
// value for primitives and by identity for objects, which is what matters
// for indexing: the same element reached twice).
type unionNode struct{ a, b node }

func (n *unionNode) eval(s *state, in span) span {
	a := n.a.eval(s, in)
	b := n.b.eval(s, in)
	if b.len() == 0 {
		return a
	}
	if a.len() == 0 {
		return b
	}
	lo := s.mark()
	for i := a.lo; i < a.hi; i++ {
		s.appendDistinct(lo, s.buf[i])
	}
	for i := b.lo; i < b.hi; i++ {
		s.appendDistinct(lo, s.buf[i])
	}
	return s.since(lo)
}

// appendDistinct appends it unless buf[lo:] already holds the same value.
func (s *state) appendDistinct(lo int32, it item) {
	if int32(len(s.buf))-lo <= 64 {
		for _, x := range s.buf[lo:] {
			if sameValue(x.v, it.v) {
				return
			}
		}
	}
	s.buf = append(s.buf, it)
}

func sameValue(x, y any) bool {
	switch a := x.(type) {
	case map[string]any:
		b, ok := y.(map[string]any)
		return ok && len(a) == len(b) && len(a) > 0 && reflectPointer(a) == reflectPointer(b)
	case string:
		b, ok := y.(string)
		return ok && a == b
	case bool:
		b, ok := y.(bool)
		return ok && a == b
	case json.Number:
		b, ok := y.(json.Number)
		return ok && a == b
	}
	return false
}

// whereNode keeps the items for which cond evaluates to a single true.
type whereNode struct {
	in   node
	cond node
}

func (n *whereNode) eval(s *state, in span) span {
	src := n.in.eval(s, in)
	// Evaluate conditions first (they append scratch values), collecting
	// kept indexes, then copy the kept items contiguously.
	keep := make([]int32, 0, 4)
	for i := src.lo; i < src.hi; i++ {
		mark := s.mark()
		r := n.cond.eval(s, span{i, i + 1})
		if r.len() == 1 {
			if b, ok := s.buf[r.lo].v.(bool); ok && b {
				keep = append(keep, i)
			}
		}
		s.buf = s.buf[:mark]
	}
	lo := s.mark()
	for _, i := range keep {
		s.buf = append(s.buf, s.buf[i])
	}
	return s.since(lo)
}

// whereResolveNode is where(resolve() is X): references whose target type
// (from the reference string or Reference.type) is one of types.
type whereResolveNode struct {
	in    node
	types []string
}

func (n *whereResolveNode) eval(s *state, in span) span {
	return s.filter(n.in.eval(s, in), func(it item) bool {
		m, ok := it.v.(map[string]any)
		return ok && slices.Contains(n.types, referenceTargetType(m))
	})
}

// referenceTargetType returns the resource type a Reference points at, from
// its reference string or, failing that, its type element.
func referenceTargetType(m map[string]any) string {
	if ref, ok := m["reference"].(string); ok {
		if typ, _, ok := splitReference(ref); ok {
			return typ
		}
	}
	if t, ok := m["type"].(string); ok {
		return t
	}
	return ""
}

type extensionNode struct {
	in  node
	url string
}

func (n *extensionNode) eval(s *state, in span) span {
	return s.filter(n.in.eval(s, in), func(it item) bool {
		m, ok := it.v.(map[string]any)
		u, _ := m["url"].(string)
		return ok && u == n.url
	})
}

// countTestNode is exists() (empty=false) and empty() (empty=true).
type countTestNode struct {
	in    node
	empty bool
}

func (n *countTestNode) eval(s *state, in span) span {
	src := n.in.eval(s, in)
	lo := s.mark()
	s.push(item{(src.len() == 0) == n.empty, ctxBoolean})
	return s.since(lo)
}

type notNode struct{ in node }

func (n *notNode) eval(s *state, in span) span {
	src := n.in.eval(s, in)
	lo := s.mark()
	if src.len() == 1 {
		if b, ok := s.buf[src.lo].v.(bool); ok {
			s.push(item{!b, ctxBoolean})
		}
	}
	return s.since(lo)
}

type isNode struct {
	in    node
	allow []int32
}

func (n *isNode) eval(s *state, in span) span {
	src := n.in.eval(s, in)
	lo := s.mark()
	if src.len() == 1 {
		s.push(item{containsCtx(n.allow, s.buf[src.lo].ctx), ctxBoolean})
	}
	return s.since(lo)
}

// eqNode is = and != (neg). Empty operands give an empty result.
type eqNode struct {
	a, b node
	neg  bool
}

func (n *eqNode) eval(s *state, in span) span {
	a := n.a.eval(s, in)
	b := n.b.eval(s, in)
	lo := s.mark()
	if a.len() == 0 || b.len() == 0 {
		return s.since(lo)
	}
	eq := a.len() == b.len()
	for k := int32(0); eq && k < int32(a.len()); k++ {
		eq = valuesEqual(s.buf[a.lo+k].v, s.buf[b.lo+k].v)
	}
	s.push(item{eq != n.neg, ctxBoolean})
	return s.since(lo)
}

func valuesEqual(x, y any) bool {
	switch a := x.(type) {
	case string:
		b, ok := y.(string)
		return ok && a == b
	case bool:
		b, ok := y.(bool)
		return ok && a == b
	case json.Number:
		fa, ok1 := toFloat(a)
		fb, ok2 := toFloat(y)
		return ok1 && ok2 && fa == fb
	case float64:
		fb, ok := toFloat(y)
		return ok && a == fb
	}
	return false
}

// logicNode is three-valued and/or.
type logicNode struct {
	a, b node
	and  bool
}

func (n *logicNode) eval(s *state, in span) span {
	av := boolOf(s, n.a.eval(s, in))
	bv := boolOf(s, n.b.eval(s, in))
	lo := s.mark()
	// 0 = false, 1 = true, 2 = empty
	var r int
	if n.and {
		switch {
		case av == 0 || bv == 0:
			r = 0
		case av == 1 && bv == 1:
			r = 1
		default:
			r = 2
		}
	} else {
		switch {
		case av == 1 || bv == 1:
			r = 1
		case av == 0 && bv == 0:
			r = 0
		default:
			r = 2
		}
	}
	if r != 2 {
		s.push(item{r == 1, ctxBoolean})
	}
	return s.since(lo)
}

// boolOf converts a result to FHIRPath's singleton boolean: 0 false,
// 1 true, 2 empty. A single non-boolean value counts as true.
func boolOf(s *state, sp span) int {
	switch sp.len() {
	case 0:
		return 2
	case 1:
		if b, ok := s.buf[sp.lo].v.(bool); ok {
			if b {
				return 1
			}
			return 0
		}
		return 1
	}
	return 2
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}
