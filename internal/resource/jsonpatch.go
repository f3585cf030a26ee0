package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/jsonvalue"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

// PatchError is returned by ApplyJSONPatch. Malformed reports whether the
// patch document itself is invalid (a 400 Bad Request) as opposed to a
// well-formed patch that cannot be applied to this document (a failed
// "test", a missing path: 422 Unprocessable Entity).
type PatchError struct {
	Malformed bool
	Op        int // index of the failing operation, -1 for the document as a whole
	Msg       string
}

// Error implements error.
func (e *PatchError) Error() string {
	if e.Op >= 0 {
		return fmt.Sprintf("JSON Patch operation %d: %s", e.Op, e.Msg)
	}
	return "JSON Patch: " + e.Msg
}

// patchOp is one decoded RFC 6902 operation.
type patchOp struct {
	Op       string
	Path     []string
	From     []string
	Value    any
	HasValue bool
}

// maxPatchOps bounds the number of operations in one patch document.
const maxPatchOps = 10000

// maxPatchNodes bounds the number of JSON values (objects, arrays and
// scalars) a patch may add to a document.
const maxPatchNodes = 1 << 20

// measure returns the number of JSON values in v (counting stops past
// limit) and its nesting depth (0 for a scalar).
func measure(v any, limit int) (nodes, depth int) {
	var walk func(v any, d int)
	walk = func(v any, d int) {
		if nodes > limit {
			return
		}
		nodes++
		switch c := v.(type) {
		case map[string]any:
			depth = max(depth, d+1)
			for _, x := range c {
				walk(x, d+1)
			}
		case []any:
			depth = max(depth, d+1)
			for _, x := range c {
				walk(x, d+1)
			}
		}
	}
	walk(v, 0)
	return nodes, depth
}

// parseJSONPatch decodes and checks an RFC 6902 JSON Patch document (an
// array of operation objects). Numbers are kept exact (json.Number).
func parseJSONPatch(doc []byte) ([]patchOp, error) {
	doc = stripBOM(doc)
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, &PatchError{Malformed: true, Op: -1, Msg: "the body is empty; a JSON array of operations was expected"}
	}
	var raw any
	err := checkJSON(doc, func() error {
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return &PatchError{Malformed: true, Op: -1, Msg: "not valid JSON: " + jsonErrorText(doc, err)}
		}
		if _, err := dec.Token(); err != io.EOF {
			return &PatchError{Malformed: true, Op: -1, Msg: "unexpected data after the JSON Patch array"}
		}
		return nil
	}, "the document")
	if err != nil {
		var oe *outcome.Error
		if errors.As(err, &oe) {
			err = &PatchError{Malformed: true, Op: -1, Msg: oe.Issues[0].Diagnostics}
		}
		return nil, err
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, &PatchError{Malformed: true, Op: -1, Msg: "a JSON Patch document must be a JSON array of operations"}
	}
	if len(list) > maxPatchOps {
		return nil, &PatchError{Malformed: true, Op: -1, Msg: fmt.Sprintf("too many operations (max %d)", maxPatchOps)}
	}
	ops := make([]patchOp, 0, len(list))
	for i, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, &PatchError{Malformed: true, Op: i, Msg: "an operation must be a JSON object"}
		}
		var op patchOp
		name, ok := obj["op"].(string)
		if !ok {
			return nil, &PatchError{Malformed: true, Op: i, Msg: `missing or non-string "op"`}
		}
		op.Op = name
		path, ok := obj["path"].(string)
		if !ok {
			return nil, &PatchError{Malformed: true, Op: i, Msg: `missing or non-string "path"`}
		}
		p, err := parsePointer(path)
		if err != nil {
			return nil, &PatchError{Malformed: true, Op: i, Msg: `"path": ` + err.Error()}
		}
		op.Path = p
		switch name {
		case "add", "replace", "test":
			v, ok := obj["value"]
			if !ok {
				return nil, &PatchError{Malformed: true, Op: i, Msg: fmt.Sprintf(`"%s" requires "value"`, name)}
			}
			op.Value, op.HasValue = v, true
		case "remove":
		case "move", "copy":
			from, ok := obj["from"].(string)
			if !ok {
				return nil, &PatchError{Malformed: true, Op: i, Msg: fmt.Sprintf(`"%s" requires a string "from"`, name)}
			}
			f, err := parsePointer(from)
			if err != nil {
				return nil, &PatchError{Malformed: true, Op: i, Msg: `"from": ` + err.Error()}
			}
			op.From = f
			if name == "move" && isPrefix(f, op.Path) && len(f) < len(op.Path) {
				return nil, &PatchError{Malformed: true, Op: i, Msg: `"move": a location cannot be moved into one of its children`}
			}
		default:
			return nil, &PatchError{Malformed: true, Op: i, Msg: fmt.Sprintf("unknown operation %q (expected add, remove, replace, move, copy or test)", name)}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// ApplyJSONPatch applies an RFC 6902 JSON Patch document to doc (a decoded
// JSON value: map[string]any, []any, string, json.Number, bool or nil) and
// returns the patched value. doc is not modified. The patch is atomic: on
// any error no result is returned.
func ApplyJSONPatch(doc any, patch []byte) (any, error) {
	ops, err := parseJSONPatch(patch)
	if err != nil {
		return nil, err
	}
	return applyOps(doc, ops)
}

func applyOps(doc any, ops []patchOp) (any, error) {
	doc = deepCopy(doc)
	// "copy" can double the document with every operation; bound its
	// size and nesting so that a short patch cannot exhaust memory or the
	// stack.
	nodes, _ := measure(doc, maxPatchNodes)
	grow := func(path []string, v any, added bool) error {
		n, d := measure(v, maxPatchNodes)
		if added {
			nodes += n
		}
		if nodes > maxPatchNodes {
			return fmt.Errorf("the patched document would be too large (more than %d values)", maxPatchNodes)
		}
		if len(path)+d > MaxJSONDepth {
			return fmt.Errorf("the patched document would be nested too deeply (more than %d levels)", MaxJSONDepth)
		}
		return nil
	}
	var err error
	for i, op := range ops {
		switch op.Op {
		case "add", "replace", "move", "copy":
			v := op.Value
			if op.Op == "move" || op.Op == "copy" {
				v, err = ptrGet(doc, op.From)
			}
			if err == nil {
				err = grow(op.Path, v, op.Op != "move")
			}
		}
		if err != nil {
			return nil, &PatchError{Op: i, Msg: err.Error()}
		}
		switch op.Op {
		case "add":
			doc, err = ptrAdd(doc, op.Path, deepCopy(op.Value))
		case "remove":
			doc, _, err = ptrRemove(doc, op.Path)
		case "replace":
			if _, err = ptrGet(doc, op.Path); err == nil {
				if len(op.Path) == 0 {
					doc = deepCopy(op.Value)
				} else {
					doc, _, err = ptrRemove(doc, op.Path)
					if err == nil {
						doc, err = ptrAdd(doc, op.Path, deepCopy(op.Value))
					}
				}
			}
		case "move":
			if equalPath(op.From, op.Path) {
				_, err = ptrGet(doc, op.From)
				break
			}
			var v any
			doc, v, err = ptrRemove(doc, op.From)
			if err == nil {
				doc, err = ptrAdd(doc, op.Path, v)
			}
		case "copy":
			var v any
			v, err = ptrGet(doc, op.From)
			if err == nil {
				doc, err = ptrAdd(doc, op.Path, deepCopy(v))
			}
		case "test":
			var v any
			v, err = ptrGet(doc, op.Path)
			if err == nil && !jsonEqual(v, op.Value) {
				err = fmt.Errorf("test failed: the value at %q is not equal to the expected value", formatPointer(op.Path))
			}
		}
		if err != nil {
			return nil, &PatchError{Op: i, Msg: err.Error()}
		}
	}
	return doc, nil
}

// parsePointer splits an RFC 6901 JSON Pointer into unescaped reference
// tokens. "" is the whole document.
func parsePointer(s string) ([]string, error) {
	if s == "" {
		return []string{}, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("JSON Pointer %q must be empty or start with '/'", s)
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		if strings.Contains(p, "~") {
			var b strings.Builder
			for j := 0; j < len(p); j++ {
				if p[j] != '~' {
					b.WriteByte(p[j])
					continue
				}
				if j+1 >= len(p) || (p[j+1] != '0' && p[j+1] != '1') {
					return nil, fmt.Errorf("JSON Pointer %q has an invalid escape ('~' must be followed by '0' or '1')", s)
				}
				if p[j+1] == '0' {
					b.WriteByte('~')
				} else {
					b.WriteByte('/')
				}
				j++
			}
			parts[i] = b.String()
		}
	}
	return parts, nil
}

// formatPointer renders reference tokens as a JSON Pointer.
func formatPointer(p []string) string {
	var b strings.Builder
	for _, t := range p {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}

func isPrefix(prefix, p []string) bool {
	if len(prefix) > len(p) {
		return false
	}
	for i := range prefix {
		if prefix[i] != p[i] {
			return false
		}
	}
	return true
}

func equalPath(a, b []string) bool { return len(a) == len(b) && isPrefix(a, b) }

// arrayIndex parses an array index token: "0" or a decimal without leading
// zeros. "-" is handled by callers.
func arrayIndex(tok string, n int, forAdd bool) (int, error) {
	if tok == "-" {
		if forAdd {
			return n, nil
		}
		return 0, fmt.Errorf("array index '-' refers to a nonexistent element")
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, fmt.Errorf("invalid array index %q", tok)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, fmt.Errorf("invalid array index %q", tok)
		}
	}
	i, err := strconv.Atoi(tok)
	if err != nil {
		return 0, fmt.Errorf("invalid array index %q", tok)
	}
	limit := n - 1
	if forAdd {
		limit = n
	}
	if i > limit {
		return 0, fmt.Errorf("array index %d is out of bounds (length %d)", i, n)
	}
	return i, nil
}

// ptrGet returns the value at p.
func ptrGet(doc any, p []string) (any, error) {
	cur := doc
	for k, tok := range p {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("path %q does not exist", formatPointer(p[:k+1]))
			}
			cur = v
		case []any:
			i, err := arrayIndex(tok, len(c), false)
			if err != nil {
				return nil, fmt.Errorf("path %q: %v", formatPointer(p[:k+1]), err)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("path %q does not exist (not an object or array)", formatPointer(p[:k+1]))
		}
	}
	return cur, nil
}

// ptrAdd adds v at p (RFC 6902 "add": insert into arrays, set members) and
// returns the new document.
func ptrAdd(doc any, p []string, v any) (any, error) { return put(doc, p, v, true) }

// ptrRemove removes the value at p and returns the new document and the
// removed value.
func ptrRemove(doc any, p []string) (any, any, error) {
	if len(p) == 0 {
		return nil, nil, fmt.Errorf("cannot remove the whole document")
	}
	parent, err := ptrGet(doc, p[:len(p)-1])
	if err != nil {
		return nil, nil, err
	}
	last := p[len(p)-1]
	switch c := parent.(type) {
	case map[string]any:
		v, ok := c[last]
		if !ok {
			return nil, nil, fmt.Errorf("path %q does not exist", formatPointer(p))
		}
		delete(c, last)
		return doc, v, nil
	case []any:
		i, err := arrayIndex(last, len(c), false)
		if err != nil {
			return nil, nil, fmt.Errorf("path %q: %v", formatPointer(p), err)
		}
		v := c[i]
		n := make([]any, 0, len(c)-1)
		n = append(n, c[:i]...)
		n = append(n, c[i+1:]...)
		d, err := setAt(doc, p[:len(p)-1], n)
		return d, v, err
	default:
		return nil, nil, fmt.Errorf("path %q does not exist (not an object or array)", formatPointer(p))
	}
}

// setAt replaces the value at p (which exists) with v.
func setAt(doc any, p []string, v any) (any, error) { return put(doc, p, v, false) }

// put sets the value at p to v and returns the new document: a member of
// an object is set either way; in an array, insert puts v before the
// element at p (or at the end, "-"), otherwise it replaces that element.
func put(doc any, p []string, v any, insert bool) (any, error) {
	if len(p) == 0 {
		return v, nil
	}
	parent, err := ptrGet(doc, p[:len(p)-1])
	if err != nil {
		return nil, err
	}
	last := p[len(p)-1]
	switch c := parent.(type) {
	case map[string]any:
		c[last] = v
		return doc, nil
	case []any:
		i, err := arrayIndex(last, len(c), insert)
		if err != nil {
			return nil, fmt.Errorf("path %q: %v", formatPointer(p), err)
		}
		if !insert {
			c[i] = v
			return doc, nil
		}
		n := make([]any, 0, len(c)+1)
		n = append(n, c[:i]...)
		n = append(n, v)
		n = append(n, c[i:]...)
		return put(doc, p[:len(p)-1], n, false)
	default:
		return nil, fmt.Errorf("path %q: the parent is not an object or array", formatPointer(p))
	}
}

// deepCopy copies a decoded JSON value.
func deepCopy(v any) any {
	switch c := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(c))
		for k, x := range c {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		a := make([]any, len(c))
		for i, x := range c {
			a[i] = deepCopy(x)
		}
		return a
	default:
		return v
	}
}

// jsonEqual compares decoded JSON values; numbers compare by numeric value.
func jsonEqual(a, b any) bool { return jsonvalue.Equal(a, b) }

// numbersEqual compares two JSON number literals by exact decimal value.
func numbersEqual(a, b string) bool { return jsonvalue.NumbersEqual(a, b) }
