package extract

import (
	"encoding/json"
	"math"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/fhirid"
	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/store"
)

// Conversion of evaluated values into index rows, by search parameter type
// and the FHIR type of the value (FHIR R4 search.html, 3.1.1.4).

// emitter appends rows for one parameter (or composite component).
type emitter struct {
	idx   *store.Index
	param string
	group int32
	base  string // server base URL without trailing slash
}

// emit converts value v of FHIR type typ for a parameter of type ptype.
func (e *emitter) emit(ptype, typ string, v any) {
	switch ptype {
	case "string":
		e.str(typ, v)
	case "token":
		e.token(typ, v)
	case "reference":
		e.reference(typ, v)
	case "date":
		e.date(typ, v)
	case "number":
		e.number(typ, v)
	case "quantity":
		e.quantity(typ, v)
	case "uri":
		e.uri(typ, v)
	}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// strs returns the strings of a repeating (or, defensively, single) element.
func strs(m map[string]any, k string) []string {
	switch x := m[k].(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, v := range x {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// each calls fn for every object of a repeating (or single) element.
func each(m map[string]any, k string, fn func(map[string]any)) {
	switch x := m[k].(type) {
	case map[string]any:
		fn(x)
	case []any:
		for _, v := range x {
			if o, ok := v.(map[string]any); ok {
				fn(o)
			}
		}
	}
}

// ---- string ----

func (e *emitter) strRow(s string) {
	if s == "" {
		return
	}
	e.idx.Strings = append(e.idx.Strings, store.StringRow{Param: e.param, Group: e.group, Norm: normalize(s), Exact: s})
}

func (e *emitter) str(typ string, v any) {
	switch x := v.(type) {
	case string:
		e.strRow(x)
	case map[string]any:
		switch typ {
		case "HumanName":
			e.strRow(str(x, "family"))
			for _, s := range strs(x, "given") {
				e.strRow(s)
			}
			for _, s := range strs(x, "prefix") {
				e.strRow(s)
			}
			for _, s := range strs(x, "suffix") {
				e.strRow(s)
			}
			e.strRow(str(x, "text"))
		case "Address":
			for _, s := range strs(x, "line") {
				e.strRow(s)
			}
			for _, k := range [...]string{"city", "district", "state", "postalCode", "country", "text"} {
				e.strRow(str(x, k))
			}
		case "CodeableConcept", "Coding":
			// Not in R4's string parameters, but cheap and sensible.
			e.strRow(str(x, "text"))
			e.strRow(str(x, "display"))
		}
	}
}

// ---- token ----

func (e *emitter) tokRow(system, code, text string) {
	e.idx.Tokens = append(e.idx.Tokens, store.TokenRow{Param: e.param, Group: e.group, System: system, Code: code, Text: text})
}

func norm(s string) string {
	if s == "" {
		return ""
	}
	return normalize(s)
}

func (e *emitter) token(typ string, v any) {
	switch x := v.(type) {
	case string:
		if x != "" {
			e.tokRow("", x, "")
		}
		return
	case bool:
		if x {
			e.tokRow("", "true", "")
		} else {
			e.tokRow("", "false", "")
		}
		return
	case json.Number:
		e.tokRow("", string(x), "")
		return
	case map[string]any:
		switch typ {
		case "Coding":
			e.coding(x, "")
		case "CodeableConcept":
			text := str(x, "text")
			ntext := norm(text)
			textCovered := text == ""
			each(x, "coding", func(c map[string]any) {
				// The row text is the display, or the CodeableConcept
				// text when the coding has none.
				if d := norm(str(c, "display")); d == "" || d == ntext {
					textCovered = true
				}
				e.coding(c, ntext)
			})
			if !textCovered {
				// CodeableConcept.text not found in any coding display:
				// an extra row carrying only the text, for :text.
				e.tokRow("", "", ntext)
			}
		case "Identifier":
			e.identifier(x)
		case "ContactPoint":
			if val := str(x, "value"); val != "" {
				e.tokRow("", val, "")
			}
		case "Reference":
			// Only reached through R4's DocumentReference-relationship,
			// whose component definitions are swapped (the token
			// component's expression is "target"): index the reference
			// string as the code, and a logical identifier as such.
			if ref := str(x, "reference"); ref != "" && ref[0] != '#' {
				e.tokRow("", ref, "")
			}
			if id, ok := x["identifier"].(map[string]any); ok {
				e.token("Identifier", id)
			}
		}
	}
}

// identifier emits an Identifier (system|value, text = type.text or the
// first type coding's display) and, for each coded Identifier.type, the
// row that answers :of-type (store.OfTypeParam, store.OfTypeCode).
func (e *emitter) identifier(x map[string]any) {
	sys, val := str(x, "system"), str(x, "value")
	if sys == "" && val == "" {
		return
	}
	typ, _ := x["type"].(map[string]any)
	text := str(typ, "text")
	if text == "" {
		each(typ, "coding", func(c map[string]any) {
			if text == "" {
				text = str(c, "display")
			}
		})
	}
	e.tokRow(sys, val, norm(text))
	if val == "" || typ == nil {
		return
	}
	each(typ, "coding", func(c map[string]any) {
		if code := str(c, "code"); code != "" {
			e.idx.Tokens = append(e.idx.Tokens, store.TokenRow{
				Param: store.OfTypeParam(e.param), Group: e.group,
				System: str(c, "system"), Code: store.OfTypeCode(code, val),
			})
		}
	})
}

// coding emits one Coding; ccText is the CodeableConcept.text (normalized)
// used as the row text when the coding has no display.
func (e *emitter) coding(c map[string]any, ccText string) {
	sys, code, disp := str(c, "system"), str(c, "code"), str(c, "display")
	if sys == "" && code == "" && disp == "" {
		return
	}
	text := norm(disp)
	if text == "" {
		text = ccText
	}
	e.tokRow(sys, code, text)
}

// ---- reference ----

func (e *emitter) refRow(typ, id, url string) {
	e.idx.References = append(e.idx.References, store.ReferenceRow{Param: e.param, Group: e.group, TargetType: typ, TargetID: id, URL: url})
}

func (e *emitter) reference(typ string, v any) {
	switch x := v.(type) {
	case string: // canonical, uri, url
		if x == "" || x[0] == '#' {
			return
		}
		if typ == "code" {
			// DocumentReference-relationship's swapped components give
			// the reference component a code: keep it as a bare id.
			e.refRow("", x, x)
			return
		}
		if typ == "canonical" || typ == "uri" || typ == "url" {
			if i := strings.LastIndexByte(x, '|'); i >= 0 {
				x = x[:i]
			}
		}
		t, id := e.local(x)
		e.refRow(t, id, x)
	case map[string]any:
		if typ == "Attachment" { // Consent.source[x]
			if u := str(x, "url"); u != "" {
				t, id := e.local(u)
				e.refRow(t, id, u)
			}
			return
		}
		if typ != "Reference" && typ != "" {
			return // a contained resource (Bundle.entry[0].resource) and the like
		}
		ref, _ := x["reference"].(string)
		if ref == "" || ref[0] == '#' {
			return
		}
		t, id := e.local(ref)
		e.refRow(t, id, ref)
	}
}

// local returns the type and id of a reference to a resource on this
// server: relative "Type/id[/_history/v]" or "[base]/Type/id[...]".
func (e *emitter) local(ref string) (string, string) {
	rel := ref
	if i := strings.IndexByte(ref, ':'); i >= 0 {
		// Absolute: only our own base is local.
		if e.base == "" || len(ref) <= len(e.base)+1 || !strings.HasPrefix(ref, e.base) || ref[len(e.base)] != '/' {
			return "", ""
		}
		rel = ref[len(e.base)+1:]
	}
	t, id, ok := splitRelative(rel)
	if !ok {
		return "", ""
	}
	return t, id
}

// splitRelative parses "Type/id" or "Type/id/_history/vid".
func splitRelative(s string) (typ, id string, ok bool) { return fhirid.SplitRelative(s) }

// splitReference returns the type and id of any reference string,
// relative or absolute ("http://x/fhir/Patient/1/_history/2").
func splitReference(ref string) (typ, id string, ok bool) {
	if t, i, ok := splitRelative(ref); ok {
		return t, i, true
	}
	if strings.IndexByte(ref, ':') < 0 {
		return "", "", false
	}
	parts := strings.Split(ref, "/")
	n := len(parts)
	if n >= 4 && parts[n-2] == "_history" {
		parts = parts[:n-2]
		n -= 2
	}
	if n < 2 {
		return "", "", false
	}
	if validType(parts[n-2]) && validID(parts[n-1]) {
		return parts[n-2], parts[n-1], true
	}
	return "", "", false
}

func validType(s string) bool { return fhirid.ValidType(s) }

// validID reports whether s is a FHIR id.
func validID(s string) bool { return fhirid.Valid(s) }

// ---- date ----

func (e *emitter) dateRow(lo, hi int64) {
	e.idx.Dates = append(e.idx.Dates, store.DateRow{Param: e.param, Group: e.group, Lo: lo, Hi: hi})
}

func (e *emitter) date(typ string, v any) {
	switch x := v.(type) {
	case string:
		if r, err := fhirtime.Parse(x); err == nil {
			e.dateRow(r.Lo, r.Hi)
		}
	case map[string]any:
		switch typ {
		case "Period":
			e.period(x)
		case "Timing":
			for _, s := range strs(x, "event") {
				if r, err := fhirtime.Parse(s); err == nil {
					e.dateRow(r.Lo, r.Hi)
				}
			}
			if rep, ok := x["repeat"].(map[string]any); ok {
				if p, ok := rep["boundsPeriod"].(map[string]any); ok {
					e.period(p)
				}
			}
		}
	}
}

func (e *emitter) period(p map[string]any) {
	start, hasStart := p["start"].(string)
	end, hasEnd := p["end"].(string)
	if !hasStart && !hasEnd {
		return
	}
	lo, hi := store.MinTime, store.MaxTime
	if hasStart {
		r, err := fhirtime.Parse(start)
		if err != nil {
			return
		}
		lo = r.Lo
	}
	if hasEnd {
		r, err := fhirtime.Parse(end)
		if err != nil {
			return
		}
		hi = r.Hi
	}
	if lo > hi {
		// Inconsistent period (end before start): index the union of the
		// two instants rather than an empty range.
		lo, hi = hi, lo
	}
	e.dateRow(lo, hi)
}

// ---- number ----

func (e *emitter) numRow(lo, hi float64) {
	e.idx.Numbers = append(e.idx.Numbers, store.NumberRow{Param: e.param, Group: e.group, Lo: lo, Hi: hi})
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func (e *emitter) number(typ string, v any) {
	switch x := v.(type) {
	case json.Number, float64:
		if f, ok := toFloat(x); ok && finite(f) {
			e.numRow(f, f)
		}
	case map[string]any:
		switch {
		case typ == "Range":
			lo, hi, ok := rangeBounds(x)
			if ok {
				e.numRow(lo, hi)
			}
		case isQuantityType(typ):
			if f, ok := toFloat(x["value"]); ok && finite(f) {
				e.numRow(comparatorRange(str(x, "comparator"), f))
			}
		}
	}
}

// rangeBounds returns the low and high values of a Range, open ends as
// ±MaxFloat64; ok is false when neither is present.
func rangeBounds(r map[string]any) (lo, hi float64, ok bool) {
	lo, hi = -math.MaxFloat64, math.MaxFloat64
	if l, isMap := r["low"].(map[string]any); isMap {
		if f, fok := toFloat(l["value"]); fok && finite(f) {
			lo, ok = f, true
		}
	}
	if h, isMap := r["high"].(map[string]any); isMap {
		if f, fok := toFloat(h["value"]); fok && finite(f) {
			hi, ok = f, true
		}
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi, ok
}

// ---- quantity ----

func isQuantityType(typ string) bool {
	switch typ {
	case "Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity":
		return true
	}
	return false
}

func (e *emitter) qtyRow(system, code, unit string, lo, hi float64) {
	e.idx.Quantities = append(e.idx.Quantities, store.QuantityRow{Param: e.param, Group: e.group, System: system, Code: code, Unit: unit, Lo: lo, Hi: hi})
}

// CurrencySystem is the system of Money currency codes.
const currencySystem = "urn:iso:std:iso:4217"

func (e *emitter) quantity(typ string, v any) {
	x, ok := v.(map[string]any)
	if !ok {
		if f, ok := toFloat(v); ok && finite(f) {
			if _, isStr := v.(string); !isStr {
				e.qtyRow("", "", "", f, f) // a bare number used as a quantity
			}
		}
		return
	}
	switch {
	case typ == "Money":
		if f, ok := toFloat(x["value"]); ok && finite(f) {
			cur := str(x, "currency")
			sys := ""
			if cur != "" {
				sys = currencySystem
			}
			e.qtyRow(sys, cur, cur, f, f)
		}
	case typ == "Range":
		lo, hi, ok := rangeBounds(x)
		if !ok {
			return
		}
		units, _ := x["low"].(map[string]any)
		if _, has := toFloat(units["value"]); !has {
			units, _ = x["high"].(map[string]any)
		}
		e.qtyRow(str(units, "system"), str(units, "code"), str(units, "unit"), lo, hi)
	case isQuantityType(typ):
		if f, ok := toFloat(x["value"]); ok && finite(f) {
			lo, hi := comparatorRange(str(x, "comparator"), f)
			e.qtyRow(str(x, "system"), str(x, "code"), str(x, "unit"), lo, hi)
		}
	}
}

// comparatorRange is the range of a Quantity value with a comparator: "<5"
// is every value below 5 (open ends as ±MaxFloat64), so that it does not
// match value-quantity=5 but does match lt5.
func comparatorRange(comparator string, f float64) (lo, hi float64) {
	switch comparator {
	case "<":
		return -math.MaxFloat64, math.Nextafter(f, math.Inf(-1))
	case "<=":
		return -math.MaxFloat64, f
	case ">":
		return math.Nextafter(f, math.Inf(1)), math.MaxFloat64
	case ">=":
		return f, math.MaxFloat64
	}
	return f, f
}

// ---- uri ----

func (e *emitter) uri(typ string, v any) {
	s, ok := v.(string)
	if !ok || s == "" {
		return
	}
	e.idx.URIs = append(e.idx.URIs, store.URIRow{Param: e.param, Group: e.group, URI: s})
	if typ == "canonical" {
		if i := strings.LastIndexByte(s, '|'); i > 0 {
			e.idx.URIs = append(e.idx.URIs, store.URIRow{Param: e.param, Group: e.group, URI: s[:i]})
		}
	}
}
