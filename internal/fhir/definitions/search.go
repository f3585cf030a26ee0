package definitions

import (
	"fmt"
	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
	"sort"
	"strings"
)

// SearchParam is a search parameter as it applies to one resource type.
type SearchParam struct {
	// Code is the name used in the URL ("code", "_lastUpdated").
	Code string
	// Type is one of number, date, string, token, reference, composite,
	// quantity, uri, special.
	Type string
	// URL is the canonical URL of the SearchParameter.
	URL string
	// Description is the human-readable description.
	Description string
	// Expression is the FHIRPath expression restricted to the top-level
	// "|" branches that apply to this resource type ("Observation.code");
	// parameters defined on Resource/DomainResource are re-rooted on the
	// type ("Observation.meta.tag"). Empty for parameters without an
	// expression (_text, _content, _query).
	Expression string
	// Targets lists the resource types a reference parameter may point to.
	Targets []string
	// Components lists the parts of a composite parameter.
	Components []Component
	// Base lists the resource types the SearchParameter is defined on.
	Base []string
	// MultipleOr reports whether multiple comma-separated values are
	// allowed (true unless the definition says otherwise).
	MultipleOr bool
	// MultipleAnd reports whether the parameter may repeat (true unless the
	// definition says otherwise).
	MultipleAnd bool
	// Comparators lists the allowed prefixes (eq, ne, gt, ...) if the
	// definition restricts them; nil means no restriction is declared.
	Comparators []string
	// Modifiers lists the allowed modifiers if declared; nil otherwise.
	Modifiers []string
}

// Component is one part of a composite search parameter.
type Component struct {
	// Definition is the code of the component's SearchParameter ("code").
	Definition string
	// DefinitionURL is the canonical URL of the component's SearchParameter.
	DefinitionURL string
	// Type is the component's search parameter type ("token", "quantity").
	Type string
	// Expression is the FHIRPath expression, relative to the composite's
	// expression ("value.ofType(Quantity)").
	Expression string
}

// SearchParams returns every search parameter applicable to resourceType,
// including those defined on Resource and DomainResource (_id,
// _lastUpdated, _tag, _profile, _security, _source, _text, _content,
// _query), sorted by Code. It returns nil for unknown types. The result is
// shared; do not modify it.
func (r *Registry) SearchParams(resourceType string) []*SearchParam {
	return r.search[resourceType]
}

// SearchParam returns the search parameter code of resourceType, or nil.
func (r *Registry) SearchParam(resourceType, code string) *SearchParam {
	return r.searchIdx[resourceType][code]
}

func (r *Registry) buildSearch(wsps []wire.SearchParam) error {
	byURL := make(map[string]*wire.SearchParam, len(wsps))
	for i := range wsps {
		byURL[wsps[i].URL] = &wsps[i]
	}
	r.search = make(map[string][]*SearchParam, len(r.resourceTypes)+2)
	r.searchIdx = make(map[string]map[string]*SearchParam, len(r.resourceTypes)+2)
	add := func(typ string, sp *SearchParam) error {
		idx := r.searchIdx[typ]
		if idx == nil {
			idx = map[string]*SearchParam{}
			r.searchIdx[typ] = idx
		}
		if prev, dup := idx[sp.Code]; dup {
			return fmt.Errorf("definitions: duplicate search parameter %s for %s (%s, %s)", sp.Code, typ, prev.URL, sp.URL)
		}
		idx[sp.Code] = sp
		r.search[typ] = append(r.search[typ], sp)
		return nil
	}
	for i := range wsps {
		w := &wsps[i]
		var comps []Component
		for _, c := range w.Components {
			comp := Component{DefinitionURL: c.Definition, Expression: c.Expression}
			if d := byURL[c.Definition]; d != nil {
				comp.Definition, comp.Type = d.Code, d.Type
			} else {
				return fmt.Errorf("definitions: search parameter %s: unknown component %s", w.URL, c.Definition)
			}
			comps = append(comps, comp)
		}
		branches := splitUnion(w.Expression)
		for _, base := range w.Base {
			var types []string
			switch base {
			case "Resource":
				types = append([]string{"Resource", "DomainResource"}, r.resourceTypes...)
			case "DomainResource":
				types = append(types, "DomainResource")
				for _, t := range r.resourceTypes {
					if r.bases[t] == "DomainResource" {
						types = append(types, t)
					}
				}
			default:
				if r.kinds[base] != "resource" {
					return fmt.Errorf("definitions: search parameter %s: unknown base %s", w.URL, base)
				}
				types = []string{base}
			}
			for _, t := range types {
				sp := &SearchParam{
					Code: w.Code, Type: w.Type, URL: w.URL, Description: w.Description,
					Expression: expressionFor(branches, base, t, len(w.Base) == 1),
					Targets:    w.Targets, Components: comps, Base: w.Base,
					MultipleOr:  w.MultipleOr == nil || *w.MultipleOr,
					MultipleAnd: w.MultipleAnd == nil || *w.MultipleAnd,
					Comparators: w.Comparators, Modifiers: w.Modifiers,
				}
				if err := add(t, sp); err != nil {
					return err
				}
			}
		}
	}
	for _, l := range r.search {
		sort.Slice(l, func(i, j int) bool { return l[i].Code < l[j].Code })
	}
	return nil
}

// expressionFor selects the branches of a union expression that apply to
// typ. base is the SearchParameter base the type was reached through
// (Resource/DomainResource branches are re-rooted on typ).
func expressionFor(branches []string, base, typ string, singleBase bool) string {
	var sel []string
	for _, b := range branches {
		switch {
		case base != typ && (base == "Resource" || base == "DomainResource"):
			if rest, ok := cutRoot(b, base); ok {
				sel = append(sel, rest.reroot(typ))
			}
		default:
			if _, ok := cutRoot(b, typ); ok {
				sel = append(sel, b)
			} else if singleBase && isRelative(b) {
				// e.g. InsurancePlan-name: "name | alias"
				sel = append(sel, typ+"."+b)
			}
		}
	}
	return strings.Join(sel, " | ")
}

type rooted struct {
	paren bool   // branch starts with "("
	rest  string // text after the root type name
}

func (r rooted) reroot(typ string) string {
	if r.paren {
		return "(" + typ + r.rest
	}
	return typ + r.rest
}

// cutRoot reports whether branch b is rooted at type typ: "Typ", "Typ.x",
// "(Typ.x as T)", "Typ.x.where(...)".
func cutRoot(b, typ string) (rooted, bool) {
	var r rooted
	if strings.HasPrefix(b, "(") {
		r.paren = true
		b = b[1:]
	}
	if !strings.HasPrefix(b, typ) {
		return r, false
	}
	rest := b[len(typ):]
	if rest != "" && !strings.ContainsRune(". )", rune(rest[0])) {
		return r, false
	}
	r.rest = rest
	return r, true
}

// isRelative reports whether a branch starts with a lower-case identifier,
// i.e. is relative to the resource ("name").
func isRelative(b string) bool {
	b = strings.TrimLeft(b, "(")
	return b != "" && b[0] >= 'a' && b[0] <= 'z'
}

// splitUnion splits a FHIRPath expression at its top-level "|" operators
// (outside parentheses, brackets, braces and string literals) and trims
// the parts.
func splitUnion(expr string) []string {
	if strings.TrimSpace(expr) == "" {
		return nil
	}
	var out []string
	depth := 0
	start := 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '\'', '"', '`':
			for i++; i < len(expr) && expr[i] != c; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case '|':
			if depth == 0 {
				out = append(out, strings.TrimSpace(expr[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(expr[start:]))
}
