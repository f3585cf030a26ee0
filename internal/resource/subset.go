package resource

import (
	"net/http"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

// subsettedTag is the meta.tag added to resources returned with _summary or
// _elements (R4 search.html#summary).
var subsettedTag = map[string]any{
	"system":  "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
	"code":    "SUBSETTED",
	"display": "subsetted",
}

// ValidSummary reports whether v is a valid _summary value ("" = absent).
func ValidSummary(v string) bool {
	switch v {
	case "", "true", "false", "text", "data", "count":
		return true
	}
	return false
}

// Subset applies _summary and _elements to a resource body (R4
// search.html#summary and #elements), working on top-level elements:
//
//   - summary "true": the elements marked isSummary in the definition;
//   - "text": text, id, meta and the mandatory top-level elements;
//   - "data": everything except text;
//   - "false", "count" or "": everything (no subsetting by _summary);
//   - elements (when summary does not subset): the listed elements plus
//     resourceType, id, meta and the mandatory (min > 0) elements.
//     A choice element may be named with or without its type suffix
//     ("value" keeps "valueQuantity").
//
// A subsetted resource gets the SUBSETTED meta.tag. The body is returned
// unchanged when nothing is subsetted.
func Subset(reg *definitions.Registry, body []byte, summary string, elements []string) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	subsetSummary := summary == "true" || summary == "text" || summary == "data"
	if !subsetSummary && len(elements) == 0 {
		return body, nil
	}
	res, err := decodeStored(body)
	if err != nil {
		return nil, err
	}
	typ, _ := res["resourceType"].(string)
	defs := topLevel(reg, typ)
	var keep func(key string) bool
	switch {
	case summary == "true":
		keep = func(key string) bool {
			if key == "resourceType" || key == "id" || key == "meta" {
				return true
			}
			d := defs.lookup(key)
			return d != nil && (d.IsSummary || d.Min > 0)
		}
	case summary == "text":
		keep = func(key string) bool {
			if key == "resourceType" || key == "id" || key == "meta" || key == "text" {
				return true
			}
			d := defs.lookup(key)
			return d != nil && d.Min > 0
		}
	case summary == "data":
		keep = func(key string) bool { return key != "text" }
	default:
		want := map[string]bool{}
		for _, e := range elements {
			e = strings.TrimPrefix(e, typ+".")
			want[e] = true
		}
		keep = func(key string) bool {
			if key == "resourceType" || key == "id" || key == "meta" {
				return true
			}
			name := strings.TrimPrefix(key, "_")
			if want[name] {
				return true
			}
			d := defs.lookup(key)
			if d == nil {
				return false
			}
			return want[d.Name] || d.Min > 0
		}
	}
	changed := false
	for k := range res {
		if !keep(k) {
			delete(res, k)
			changed = true
		}
	}
	if !changed && summary != "text" && summary != "true" && len(elements) == 0 {
		return body, nil
	}
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, subsettedTag)
	return MarshalResource(res)
}

type elementIndex struct {
	byName  map[string]*definitions.ElementDef
	choices []*definitions.ElementDef
}

func topLevel(reg *definitions.Registry, typ string) elementIndex {
	idx := elementIndex{byName: map[string]*definitions.ElementDef{}}
	for _, d := range reg.Children(typ) {
		if d.Choice {
			idx.choices = append(idx.choices, d)
		} else {
			idx.byName[d.Name] = d
		}
	}
	return idx
}

// lookup finds the definition of a top-level JSON key ("valueQuantity",
// "_birthDate").
func (x elementIndex) lookup(key string) *definitions.ElementDef {
	key = strings.TrimPrefix(key, "_")
	if d := x.byName[key]; d != nil {
		return d
	}
	for _, d := range x.choices {
		if strings.HasPrefix(key, d.Name) && len(key) > len(d.Name) {
			suffix := key[len(d.Name):]
			for _, t := range d.Types {
				if strings.EqualFold(t, suffix) && strings.ToUpper(suffix[:1]) == suffix[:1] {
					return d
				}
			}
		}
	}
	return nil
}

// CheckElements validates _elements names (letters, digits, and an
// optional "Type." prefix).
func CheckElements(elements []string) error {
	for _, e := range elements {
		if e == "" {
			return outcome.New(http.StatusBadRequest, "invalid", "_elements contains an empty name")
		}
		for i := 0; i < len(e); i++ {
			c := e[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '[' || c == ']') {
				return outcome.New(http.StatusBadRequest, "invalid", "_elements: %q is not an element name", e)
			}
		}
	}
	return nil
}
