package extract

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/gofhir/fhirpath"
	fptypes "github.com/gofhir/fhirpath/types"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

// The general FHIRPath engine, used only for expressions the compiler in
// compile.go does not support. It is kept behind this narrow interface.

type fallbackEngine interface {
	compile(expr string) (fallbackExpr, error)
}

type fallbackExpr interface {
	// eval evaluates against a resource (or element) serialized as JSON.
	eval(js []byte) ([]fbValue, error)
}

// fbValue is a result of the fallback engine as decoded JSON plus the type
// name the engine reports ("" when unknown).
type fbValue struct {
	v   any
	typ string
}

type gofhirEngine struct {
	model fhirpath.Model // nil: the engine's built-in heuristics
}

type gofhirExpr struct {
	x     *fhirpath.Expression
	model fhirpath.Model
}

func (g gofhirEngine) compile(expr string) (fallbackExpr, error) {
	x, err := fhirpath.Compile(expr)
	if err != nil {
		return nil, err
	}
	return &gofhirExpr{x: x, model: g.model}, nil
}

// stubResolver makes resolve() return a stub resource of the referenced
// type, which is all "resolve() is X" needs.
type stubResolver struct{}

func (stubResolver) Resolve(_ context.Context, ref string) ([]byte, error) {
	typ, id, ok := splitReference(ref)
	if !ok {
		return nil, errNoResolve
	}
	return []byte(`{"resourceType":"` + typ + `","id":"` + id + `"}`), nil
}

type resolveError struct{}

func (resolveError) Error() string { return "unresolvable reference" }

var errNoResolve error = resolveError{}

func (g *gofhirExpr) eval(js []byte) ([]fbValue, error) {
	opts := []fhirpath.EvalOption{fhirpath.WithResolver(stubResolver{})}
	if g.model != nil {
		opts = append(opts, fhirpath.WithModel(g.model))
	}
	col, err := g.x.EvaluateWithOptions(js, opts...)
	if err != nil {
		return nil, err
	}
	out := make([]fbValue, 0, len(col))
	for _, v := range col {
		switch x := v.(type) {
		case *fptypes.ObjectValue:
			d := json.NewDecoder(bytes.NewReader(x.Data()))
			d.UseNumber()
			var m any
			if d.Decode(&m) == nil {
				out = append(out, fbValue{m, x.Type()})
			}
		case fptypes.String:
			out = append(out, fbValue{x.Value(), fhirTypeName(x.Type())})
		case fptypes.Boolean:
			out = append(out, fbValue{x.Bool(), "boolean"})
		case fptypes.Integer:
			out = append(out, fbValue{json.Number(x.String()), "integer"})
		case fptypes.Decimal:
			out = append(out, fbValue{json.Number(x.String()), "decimal"})
		case fptypes.Date:
			out = append(out, fbValue{x.String(), "date"})
		case fptypes.DateTime:
			out = append(out, fbValue{strings.TrimPrefix(x.String(), "@"), "dateTime"})
		default:
			out = append(out, fbValue{v.String(), ""})
		}
	}
	return out, nil
}

// fhirTypeName maps a FHIRPath system type name to a FHIR type name.
func fhirTypeName(t string) string {
	switch t {
	case "String":
		return "string"
	case "Boolean":
		return "boolean"
	}
	if t != "" && t[0] >= 'A' && t[0] <= 'Z' && !strings.Contains(t, ".") {
		// gofhir reports FHIR string subtypes as "Oid", "Url", "Uuid", "Id".
		switch t {
		case "Oid", "Url", "Uuid", "Id", "Uri", "Code", "Canonical", "Markdown":
			return strings.ToLower(t[:1]) + t[1:]
		}
	}
	return t
}

// guessType returns the FHIR type of a fallback value: the engine's type
// when it is a known complex type, else a guess from the JSON shape.
func guessType(ptype, typ string, v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return typ
	}
	switch typ {
	case "Coding", "CodeableConcept", "Identifier", "Reference", "Quantity", "Period", "Range",
		"HumanName", "Address", "ContactPoint", "Money", "Timing", "Age", "Duration", "SimpleQuantity":
		return typ
	}
	has := func(k string) bool { _, ok := m[k]; return ok }
	switch {
	case has("resourceType"):
		return "Resource"
	case has("coding"):
		return "CodeableConcept"
	case has("reference"):
		return "Reference"
	case has("currency"):
		return "Money"
	case has("low") || has("high"):
		return "Range"
	case has("start") || has("end"):
		return "Period"
	case has("family") || has("given"):
		return "HumanName"
	case has("line") || has("city") || has("postalCode") || has("country") || has("state"):
		return "Address"
	case has("event") || has("repeat"):
		return "Timing"
	case has("value") && (has("unit") || has("comparator") || (has("code") && ptype == "quantity")):
		return "Quantity"
	case has("value") && has("system") && ptype == "token":
		switch str(m, "system") {
		case "phone", "fax", "email", "pager", "url", "sms", "other":
			return "ContactPoint"
		}
		return "Identifier"
	case has("value") && (has("use") || has("type") || has("assigner")):
		return "Identifier"
	case has("code") || has("system") || has("display"):
		return "Coding"
	case has("value") && ptype == "quantity":
		return "Quantity"
	case has("identifier") && ptype == "reference":
		return "Reference"
	case has("text") && ptype == "token":
		return "CodeableConcept"
	}
	return typ
}

// registryModel exposes the definitions to the FHIRPath engine so that it
// resolves choice elements and types like the compiler does.
type registryModel struct{ reg *definitions.Registry }

func (m registryModel) ChoiceTypes(path string) []string {
	if e := m.reg.Element(path + "[x]"); e != nil && e.Choice {
		return e.Types
	}
	return nil
}

func (m registryModel) TypeOf(path string) string {
	if e := m.reg.Element(path); e != nil && len(e.Types) == 1 {
		return e.Types[0]
	}
	return ""
}

func (m registryModel) ReferenceTargets(path string) []string {
	if e := m.reg.Element(path); e != nil {
		return e.TargetProfiles
	}
	return nil
}

func (m registryModel) ParentType(t string) string { return m.reg.BaseType(t) }

func (m registryModel) IsSubtype(child, parent string) bool {
	for t, n := child, 0; t != "" && n < 10; t, n = m.reg.BaseType(t), n+1 {
		if t == parent {
			return true
		}
	}
	return false
}

func (m registryModel) ResolvePath(path string) string {
	if e := m.reg.Element(path); e != nil {
		if e.ContentRef != "" {
			return e.ContentRef
		}
		return e.Path
	}
	return path
}

func (m registryModel) IsResource(t string) bool { return m.reg.IsResourceType(t) }
