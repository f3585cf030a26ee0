package resource

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

func TestDecodeJSONHostile(t *testing.T) {
	cases := []struct {
		name, body string
		want       string // substring of the diagnostics; "" = success
	}{
		{"ok", `{"a":1,"b":[{"a":2},{"a":3}]}`, ""},
		{"BOM", "\xef\xbb\xbf{\"a\":1}", ""},
		{"surrogate pair", `{"a":"\ud83d\ude00"}`, ""},
		{"escaped keys differ", `{"a":1,"\u0062":2}`, ""},
		{"same key in sibling objects", `{"x":{"a":1},"y":{"a":1}}`, ""},
		{"many keys", `{` + manyKeys(100) + `}`, ""},
		{"duplicate among many", `{` + manyKeys(100) + `,"k7":1}`, `"k7" appears more than once`},
		{"duplicate", `{"a":1,"a":2}`, `"a" appears more than once`},
		{"duplicate escaped", `{"a":1,"\u0061":2}`, `"a" appears more than once`},
		{"duplicate nested", `{"x":[{"a":1,"b":{"c":1,"c":2}}]}`, `"c" appears more than once`},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "not valid UTF-8"},
		{"escaped NUL", `{"a":"\u0000"}`, "NUL"},
		{"lone high surrogate", `{"a":"\ud800x"}`, "unpaired"},
		{"lone low surrogate", `{"a":"\udc00"}`, "unpaired"},
		{"reversed pair", `{"a":"\ude00\ud83d"}`, "unpaired"},
		{"deep", `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, "nested too deeply"},
		{"deep unterminated", strings.Repeat("[", 100000), "nested too deeply"},
		{"at the limit", strings.Repeat(`{"a":`, MaxJSONDepth-1) + "{}" + strings.Repeat("}", MaxJSONDepth-1), ""},
		{"syntax first", `{"a":1,"a":2,}`, "invalid character"},
		{"not an object", `[]`, "not an array"},
		{"null", `null`, "not null"},
		{"string with brackets", `{"a":"[[[[{{{{\"]]]"}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeJSON([]byte(c.body))
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var oe *outcome.Error
			if !errors.As(err, &oe) || oe.Status != 400 {
				t.Fatalf("want a 400 outcome, got %v", err)
			}
			if !strings.Contains(oe.Error(), c.want) {
				t.Fatalf("diagnostics %q do not mention %q", oe.Error(), c.want)
			}
		})
	}
}

func manyKeys(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = `"k` + strconv.Itoa(i) + `":1`
	}
	return strings.Join(keys, ",")
}

func TestJSONPatchGrowthBounded(t *testing.T) {
	doc := map[string]any{"a": []any{"x"}}
	copyOp := `{"op":"copy","from":"/a","path":"/a/-"}`
	patch := "[" + strings.TrimSuffix(strings.Repeat(copyOp+",", 64), ",") + "]"
	_, err := ApplyJSONPatch(doc, []byte(patch))
	var pe *PatchError
	if !errors.As(err, &pe) || pe.Malformed || !strings.Contains(pe.Msg, "too large") {
		t.Fatalf("copy bomb: %v", err)
	}
	nest := `{"op":"copy","from":"/a","path":"/a/0/b"}`
	doc = map[string]any{"a": []any{map[string]any{}}}
	patch = "[" + strings.TrimSuffix(strings.Repeat(nest+",", 64), ",") + "]"
	_, err = ApplyJSONPatch(doc, []byte(patch))
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "too deeply") {
		t.Fatalf("nesting bomb: %v", err)
	}
	// Ordinary copies still work.
	got, err := ApplyJSONPatch(map[string]any{"a": []any{"x"}}, []byte(`[`+copyOp+`,`+copyOp+`]`))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := measure(got, 100); n != 9 {
		t.Fatalf("got %v (%d values)", got, n)
	}
}
