package extract

import (
	"encoding/json"
	"hash/fnv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

// synthesize builds a resource of type rt with (nearly) every element
// filled in from the definitions, so that every search parameter
// expression finds something. variant rotates the choice types, reference
// targets and codes used.
func synthesize(reg *definitions.Registry, rt string, variant int) map[string]any {
	g := &synth{reg: reg, variant: variant}
	m := g.object(rt, 0)
	m["resourceType"] = rt
	m["id"] = "synth-" + strings.ToLower(rt)
	return m
}

type synth struct {
	reg     *definitions.Registry
	variant int
}

const synthDepth = 6

func hashOf(s string) int {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int(h.Sum32() & 0x7fffffff)
}

func (g *synth) object(path string, depth int) map[string]any {
	m := map[string]any{}
	if depth > synthDepth {
		return m
	}
	for _, e := range g.reg.Children(path) {
		switch e.Name {
		case "id", "extension", "modifierExtension", "contained", "implicitRules":
			continue
		}
		if e.Max == 0 || (len(e.Types) == 0 && e.ContentRef == "") {
			continue
		}
		typ := ""
		key := e.Name
		if len(e.Types) > 0 {
			k := (g.variant + hashOf(e.Path)) % len(e.Types)
			typ = e.Types[k]
		}
		if e.Choice {
			key = e.Name + upperFirst(typ)
		}
		v := g.value(e, typ, depth+1)
		if v == nil {
			continue
		}
		if e.IsArray() {
			m[key] = []any{v}
		} else {
			m[key] = v
		}
	}
	return m
}

func (g *synth) value(e *definitions.ElementDef, typ string, depth int) any {
	if e.ContentRef != "" {
		if depth > 3 {
			return nil
		}
		return g.object(e.ContentRef, depth)
	}
	switch typ {
	case "boolean":
		return g.variant%2 == 0
	case "integer", "positiveInt", "unsignedInt":
		return json.Number("3")
	case "decimal":
		return json.Number("1.5")
	case "date":
		return "2020-01-02"
	case "dateTime", "instant":
		return "2020-01-02T03:04:05Z"
	case "time":
		return "10:00:00"
	case "code":
		if e.Binding != nil && len(e.Binding.Codes) > 0 {
			return e.Binding.Codes[(g.variant+hashOf(e.Path))%len(e.Binding.Codes)]
		}
		return "code-" + e.Name
	case "uri", "url":
		return "http://example.org/" + e.Name
	case "canonical":
		return "http://example.org/canonical/" + e.Name + "|1.0"
	case "id":
		return "id-" + e.Name
	case "oid":
		return "urn:oid:1.2.3.4"
	case "uuid":
		return "urn:uuid:8d7a3e48-2b3e-4f5a-9a5c-1f2e3d4c5b6a"
	case "string", "markdown":
		return "Text " + e.Name
	case "base64Binary":
		return "AAAA"
	case "xhtml":
		return `<div xmlns="http://www.w3.org/1999/xhtml">x</div>`
	case "Reference":
		target := "Patient"
		if n := len(e.TargetProfiles); n > 0 {
			target = e.TargetProfiles[(g.variant+hashOf(e.Path))%n]
			if target == "Resource" {
				target = "Patient"
			}
		}
		return map[string]any{"reference": target + "/ref-" + strings.ToLower(target), "display": "Ref " + e.Name}
	case "Resource":
		return map[string]any{"resourceType": "Patient", "id": "inner"}
	case "Extension", "Narrative", "Meta":
		if typ == "Meta" {
			return map[string]any{
				"profile":  []any{"http://example.org/profile|2"},
				"tag":      []any{map[string]any{"system": "http://tags", "code": "t1", "display": "Tag One"}},
				"security": []any{map[string]any{"system": "http://sec", "code": "R"}},
				"source":   "http://example.org/source",
			}
		}
		return nil
	case "":
		return nil
	}
	if depth > synthDepth {
		return nil
	}
	if typ == "BackboneElement" || typ == "Element" {
		m := g.object(e.Path, depth)
		if len(m) == 0 {
			return nil
		}
		return m
	}
	if g.reg.TypeKind(typ) == "complex-type" {
		m := g.object(typ, depth)
		if len(m) == 0 {
			return nil
		}
		return m
	}
	return nil
}
