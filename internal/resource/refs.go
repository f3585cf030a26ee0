package resource

import (
	"maps"
	"net/url"
	"regexp"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

// refRewriter rewrites references inside transaction entries (R4
// bundle.html#references and http.html#trules): every reference to the
// fullUrl of another entry is replaced by the entry's resolved "Type/id",
// in Reference.reference, in elements of type uri, url, oid and uuid, and
// in <a href> / <img src> of the narrative; canonical elements are left
// alone. Conditional references ("Patient?identifier=x|y") in
// Reference.reference are resolved by cond. A urn:uuid: or urn:oid:
// Reference.reference that is no entry's fullUrl is an error (400),
// except inside a Bundle resource, whose own fullUrls its references name.
type refRewriter struct {
	reg     *definitions.Registry
	mapping map[string]string // fullUrl -> "Type/id"
	// cond resolves a conditional reference to "Type/id"; nil leaves them.
	cond func(ref string) (string, error)
	// types caches elementType: a Bundle repeats the same members of the
	// same elements many times.
	types map[elemKey]elemInfo
	// inBundle is set inside a Bundle resource (a document stored by an
	// entry): its references resolve within it first, and a placeholder
	// none of its entries has is left as it is.
	inBundle bool
}

// elemKey names member key of the object at definition path path.
type elemKey struct{ path, key string }

// elemInfo is what elementType returns for an elemKey.
type elemInfo struct{ typ, child string }

var condRefRE = regexp.MustCompile(`^[A-Z][A-Za-z]+\?.`)

// isConditionalRef reports whether ref is a conditional reference.
func isConditionalRef(ref string) bool { return condRefRE.MatchString(ref) }

// rewriteResource rewrites the references of a resource in place.
func (rw *refRewriter) rewriteResource(res map[string]any) error {
	typ, _ := res["resourceType"].(string)
	if typ == "" {
		return nil
	}
	if typ == "Bundle" {
		return rw.within(res).walkObject(typ, res)
	}
	return rw.walkObject(typ, res)
}

// within returns the rewriter for the inside of bundle, a Bundle
// resource (R4 bundle.html#references: a reference resolves against the
// Bundle that holds it): its entries' fullUrls are not rewritten, and a
// placeholder is not refused.
func (rw *refRewriter) within(bundle map[string]any) *refRewriter {
	if rw.types == nil {
		rw.types = make(map[elemKey]elemInfo)
	}
	in := *rw
	in.inBundle = true
	entries, _ := bundle["entry"].([]any)
	cloned := false
	for _, e := range entries {
		m, _ := e.(map[string]any)
		fu, _ := m["fullUrl"].(string)
		if _, ok := in.mapping[fu]; !ok {
			continue
		}
		if !cloned {
			in.mapping, cloned = maps.Clone(rw.mapping), true
		}
		delete(in.mapping, fu)
	}
	return &in
}

// walkObject walks the members of an object whose definition path (a type
// name or a backbone element path) is path.
func (rw *refRewriter) walkObject(path string, obj map[string]any) error {
	for key, val := range obj {
		if key == "resourceType" {
			continue
		}
		// A primitive's extension sibling "_x" is an Element: {id, extension}.
		typ, childPath, isRef := "", "Element", false
		if !strings.HasPrefix(key, "_") {
			typ, childPath = rw.elementType(path, key)
			isRef = path == "Reference" && key == "reference"
		}
		nv, err := rw.rewriteValues(typ, childPath, val, isRef)
		if err != nil {
			return err
		}
		obj[key] = nv
	}
	return nil
}

// rewriteValues rewrites val, or each item of val (in place) when it is an
// array, and returns its replacement.
func (rw *refRewriter) rewriteValues(typ, childPath string, val any, isRef bool) (any, error) {
	arr, ok := val.([]any)
	if !ok {
		return rw.rewriteValue(typ, childPath, val, isRef)
	}
	for i, item := range arr {
		nv, err := rw.rewriteValue(typ, childPath, item, isRef)
		if err != nil {
			return nil, err
		}
		arr[i] = nv
	}
	return arr, nil
}

// rewriteValue rewrites one value of type typ and returns its replacement.
func (rw *refRewriter) rewriteValue(typ, childPath string, val any, isRef bool) (any, error) {
	switch v := val.(type) {
	case string:
		switch {
		case isRef:
			if t, ok := rw.mapping[v]; ok {
				return t, nil
			}
			if rw.cond != nil && isConditionalRef(v) {
				return rw.cond(v)
			}
			if !rw.inBundle && (strings.HasPrefix(v, "urn:uuid:") || strings.HasPrefix(v, "urn:oid:")) {
				// A placeholder names an entry of this Bundle, or nothing
				// once stored: refused, not kept as a reference no one can
				// resolve.
				return nil, outcome.BadRequest("reference %q is the fullUrl of no entry in this transaction", outcome.Truncate(v, 100))
			}
		case typ == "uri" || typ == "url" || typ == "oid" || typ == "uuid":
			if t, ok := rw.mapping[v]; ok {
				return t, nil
			}
		case typ == "xhtml":
			return rw.rewriteXHTML(v), nil
		}
		return v, nil
	case map[string]any:
		if typ == "Resource" {
			return v, rw.rewriteResource(v)
		}
		if childPath == "" {
			return v, nil
		}
		return v, rw.walkObject(childPath, v)
	default:
		return val, nil
	}
}

// elementType returns the type code of member key of the object at path
// and the definition path of its children ("" when unknown or primitive).
func (rw *refRewriter) elementType(path, key string) (string, string) {
	k := elemKey{path, key}
	if e, ok := rw.types[k]; ok {
		return e.typ, e.child
	}
	typ, child := rw.lookupElementType(path, key)
	if rw.types == nil {
		rw.types = make(map[elemKey]elemInfo)
	}
	rw.types[k] = elemInfo{typ, child}
	return typ, child
}

// lookupElementType is elementType without the cache.
func (rw *refRewriter) lookupElementType(path, key string) (string, string) {
	if e := rw.reg.Element(path + "." + key); e != nil && !e.Choice {
		if len(e.Types) == 0 {
			return "", e.Path // element with a content reference
		}
		t := e.Types[0]
		switch {
		case t == "BackboneElement" || t == "Element" && e.Path != "Element":
			return t, e.Path
		case rw.reg.IsPrimitive(t):
			return t, ""
		default:
			return t, t
		}
	}
	for _, c := range rw.reg.Children(path) {
		if !c.Choice || !strings.HasPrefix(key, c.Name) || len(key) == len(c.Name) {
			continue
		}
		suffix := key[len(c.Name):]
		for _, t := range c.Types {
			if strings.EqualFold(t, suffix) {
				if rw.reg.IsPrimitive(t) {
					return t, ""
				}
				return t, t
			}
		}
	}
	return "", ""
}

// rewriteXHTML replaces placeholder URLs in href and src attributes.
func (rw *refRewriter) rewriteXHTML(div string) string {
	if len(rw.mapping) == 0 {
		return div
	}
	var b strings.Builder
	rest := div
	changed := false
	for {
		i := strings.Index(rest, "=")
		if i < 0 || i+1 >= len(rest) {
			break
		}
		q := rest[i+1]
		isAttr := (q == '"' || q == '\'') && (strings.HasSuffix(rest[:i], "href") || strings.HasSuffix(rest[:i], "src"))
		if !isAttr {
			b.WriteString(rest[:i+1])
			rest = rest[i+1:]
			continue
		}
		end := strings.IndexByte(rest[i+2:], q)
		if end < 0 {
			break
		}
		val := rest[i+2 : i+2+end]
		b.WriteString(rest[:i+2])
		if to, ok := rw.mapping[val]; ok {
			b.WriteString(to)
			changed = true
		} else {
			b.WriteString(val)
		}
		rest = rest[i+2+end:]
	}
	if !changed {
		return div
	}
	b.WriteString(rest)
	return b.String()
}

// rewriteQuery replaces placeholders used as parameter values in a
// conditional query string or a request URL query.
func (rw *refRewriter) rewriteQuery(q string) string {
	if len(rw.mapping) == 0 || q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	changed := false
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		if to, found := rw.mapping[uv]; found {
			parts[i] = k + "=" + url.QueryEscape(to)
			changed = true
		}
	}
	if !changed {
		return q
	}
	return strings.Join(parts, "&")
}
