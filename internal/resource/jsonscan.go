package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

// MaxJSONDepth is the deepest nesting of JSON objects and arrays accepted in
// a request body. FHIR resources are far shallower (a deeply nested
// Questionnaire stays well under 64); the cap keeps recursive processing
// (validation, indexing, patching) bounded for hostile input.
const MaxJSONDepth = 128

// utf8BOM is the UTF-8 byte order mark, which RFC 8259 §8.1 allows a
// parser to ignore.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// jsonIssue is a problem found by scanJSON that encoding/json does not
// report: nesting deeper than MaxJSONDepth, invalid UTF-8, duplicate
// object keys, an escaped NUL character, or an unpaired UTF-16 surrogate.
type jsonIssue struct {
	depth bool // nesting too deep: report before decoding
	off   int
	msg   string
}

// checkJSON checks body for the problems jsonIssue lists. It returns a 400
// outcome for a too-deep document at once; for the other problems it first
// lets decode report a syntax error (the more useful message when the JSON
// is broken anyway). what names the document ("the body", "the JSON Patch").
func checkJSON(body []byte, decode func() error, what string) error {
	is := scanJSON(body)
	if is != nil && is.depth {
		line, col := lineCol(body, is.off)
		return outcome.New(http.StatusBadRequest, "structure", "%s is nested too deeply: more than %d levels of objects and arrays (at line %d, column %d)", what, MaxJSONDepth, line, col)
	}
	if err := decode(); err != nil {
		return err
	}
	if is != nil {
		line, col := lineCol(body, is.off)
		return outcome.New(http.StatusBadRequest, "structure", "%s is not valid JSON: %s at line %d, column %d", what, is.msg, line, col)
	}
	return nil
}

// scanJSON walks body once and returns the first jsonIssue, or nil. It is
// not a full JSON parser: syntax errors are left to encoding/json.
func scanJSON(body []byte) *jsonIssue {
	if !utf8.Valid(body) {
		off := 0
		for off < len(body) {
			r, n := utf8.DecodeRune(body[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return &jsonIssue{off: off, msg: "the text is not valid UTF-8"}
	}
	var stack []keyFrame
	var first *jsonIssue
	expectKey := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			if len(stack) >= MaxJSONDepth {
				return &jsonIssue{depth: true, off: i}
			}
			stack = append(stack, keyFrame{obj: c == '{'})
			expectKey = c == '{'
		case '}', ']':
			if len(stack) == 0 {
				return first // broken JSON: encoding/json reports it
			}
			stack = stack[:len(stack)-1]
			expectKey = false
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].obj
		case ':':
			expectKey = false
		case '"':
			start := i
			j := i + 1
			escaped := false
			for j < len(body) && body[j] != '"' {
				if body[j] != '\\' {
					j++
					continue
				}
				escaped = true
				if j+1 < len(body) && body[j+1] == 'u' {
					code, ok := hex4(body, j+2)
					if !ok {
						return first
					}
					switch {
					case code == 0 && first == nil:
						first = &jsonIssue{off: j, msg: `the string contains a NUL character (\u0000)`}
					case code >= 0xD800 && code < 0xDC00:
						low, ok := -1, false
						if j+7 < len(body) && body[j+6] == '\\' && body[j+7] == 'u' {
							low, ok = hex4(body, j+8)
						}
						if !ok || low < 0xDC00 || low > 0xDFFF {
							if first == nil {
								first = &jsonIssue{off: j, msg: "the string contains an unpaired UTF-16 surrogate escape"}
							}
						} else {
							j += 6
						}
					case code >= 0xDC00 && code <= 0xDFFF && first == nil:
						first = &jsonIssue{off: j, msg: "the string contains an unpaired UTF-16 surrogate escape"}
					}
					j += 6
					continue
				}
				j += 2
			}
			if j >= len(body) {
				return first // unterminated string
			}
			if expectKey && len(stack) > 0 && first == nil {
				f := &stack[len(stack)-1]
				key := string(body[start+1 : j])
				if escaped {
					if err := json.Unmarshal(body[start:j+1], &key); err != nil {
						return first
					}
				}
				if f.hasKey(key) {
					first = &jsonIssue{off: start, msg: fmt.Sprintf("the object member %q appears more than once", outcome.Truncate(key, 64))}
				} else {
					f.addKey(key)
				}
			}
			expectKey = false
			i = j
		}
	}
	return first
}

// keyFrame is one open object or array of scanJSON, with the keys seen so
// far in an object (a slice while small, then a set).
type keyFrame struct {
	obj  bool
	keys []string
	set  map[string]struct{}
}

func (f *keyFrame) hasKey(k string) bool {
	if f.set != nil {
		_, ok := f.set[k]
		return ok
	}
	for _, x := range f.keys {
		if x == k {
			return true
		}
	}
	return false
}

func (f *keyFrame) addKey(k string) {
	if f.set != nil {
		f.set[k] = struct{}{}
		return
	}
	f.keys = append(f.keys, k)
	if len(f.keys) > 16 {
		f.set = make(map[string]struct{}, 2*len(f.keys))
		for _, x := range f.keys {
			f.set[x] = struct{}{}
		}
		f.keys = nil
	}
}

// hex4 decodes the four hex digits at body[i:i+4].
func hex4(body []byte, i int) (int, bool) {
	if i+4 > len(body) {
		return 0, false
	}
	v := 0
	for _, c := range body[i : i+4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= int(c - '0')
		case c >= 'a' && c <= 'f':
			v |= int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			v |= int(c-'A') + 10
		default:
			return 0, false
		}
	}
	return v, true
}

// stripBOM removes a leading UTF-8 byte order mark.
func stripBOM(b []byte) []byte { return bytes.TrimPrefix(b, utf8BOM) }
