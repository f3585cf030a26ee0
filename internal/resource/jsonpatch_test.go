package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func decodeAny(t testing.TB, s string) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// RFC 6902 Appendix A examples plus RFC 6901 pointer edge cases.
func TestApplyJSONPatch(t *testing.T) {
	cases := []struct {
		name, doc, patch, want string
		wantErr                bool
		malformed              bool
	}{
		{"A.1 add object member", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux"}]`, `{"baz":"qux","foo":"bar"}`, false, false},
		{"A.2 add array element", `{"foo":["bar","baz"]}`, `[{"op":"add","path":"/foo/1","value":"qux"}]`, `{"foo":["bar","qux","baz"]}`, false, false},
		{"A.3 remove object member", `{"baz":"qux","foo":"bar"}`, `[{"op":"remove","path":"/baz"}]`, `{"foo":"bar"}`, false, false},
		{"A.4 remove array element", `{"foo":["bar","qux","baz"]}`, `[{"op":"remove","path":"/foo/1"}]`, `{"foo":["bar","baz"]}`, false, false},
		{"A.5 replace", `{"baz":"qux","foo":"bar"}`, `[{"op":"replace","path":"/baz","value":"boo"}]`, `{"baz":"boo","foo":"bar"}`, false, false},
		{"A.6 move value", `{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`, `[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`, `{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}`, false, false},
		{"A.7 move array element", `{"foo":["all","grass","cows","eat"]}`, `[{"op":"move","from":"/foo/1","path":"/foo/3"}]`, `{"foo":["all","cows","eat","grass"]}`, false, false},
		{"A.8 test success", `{"baz":"qux","foo":["a",2,"c"]}`, `[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]`, `{"baz":"qux","foo":["a",2,"c"]}`, false, false},
		{"A.9 test error", `{"baz":"qux"}`, `[{"op":"test","path":"/baz","value":"bar"}]`, ``, true, false},
		{"A.10 add nested member", `{"foo":"bar"}`, `[{"op":"add","path":"/child","value":{"grandchild":{}}}]`, `{"child":{"grandchild":{}},"foo":"bar"}`, false, false},
		{"A.11 ignore unrecognized elements", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux","xyz":123}]`, `{"baz":"qux","foo":"bar"}`, false, false},
		{"A.12 add to nonexistent target", `{"foo":"bar"}`, `[{"op":"add","path":"/baz/bat","value":"qux"}]`, ``, true, false},
		{"A.13 invalid JSON patch", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux","op":"remove"}]`, ``, true, true},
		{"A.14 ~ escape ordering", `{"/":9,"~1":10}`, `[{"op":"test","path":"/~01","value":10}]`, `{"/":9,"~1":10}`, false, false},
		{"A.15 comparing strings and numbers", `{"/":9,"~1":10}`, `[{"op":"test","path":"/~01","value":"10"}]`, ``, true, false},
		{"A.16 add array value", `{"foo":["bar"]}`, `[{"op":"add","path":"/foo/-","value":["abc","def"]}]`, `{"foo":["bar",["abc","def"]]}`, false, false},
		{"replace whole document", `{"a":1}`, `[{"op":"replace","path":"","value":{"b":2}}]`, `{"b":2}`, false, false},
		{"add whole document", `{"a":1}`, `[{"op":"add","path":"","value":[1]}]`, `[1]`, false, false},
		{"empty key", `{"":1}`, `[{"op":"replace","path":"/","value":2}]`, `{"":2}`, false, false},
		{"copy", `{"a":{"b":[1]}}`, `[{"op":"copy","from":"/a","path":"/c"},{"op":"add","path":"/c/b/-","value":2}]`, `{"a":{"b":[1]},"c":{"b":[1,2]}}`, false, false},
		{"move to same place", `{"a":1}`, `[{"op":"move","from":"/a","path":"/a"}]`, `{"a":1}`, false, false},
		{"move into child", `{"a":{"b":1}}`, `[{"op":"move","from":"/a","path":"/a/b/c"}]`, ``, true, true},
		{"leading zero index", `{"a":[1,2]}`, `[{"op":"remove","path":"/a/01"}]`, ``, true, false},
		{"index out of range", `{"a":[1,2]}`, `[{"op":"add","path":"/a/3","value":0}]`, ``, true, false},
		{"add at end index", `{"a":[1,2]}`, `[{"op":"add","path":"/a/2","value":3}]`, `{"a":[1,2,3]}`, false, false},
		{"remove dash", `{"a":[1]}`, `[{"op":"remove","path":"/a/-"}]`, ``, true, false},
		{"replace missing", `{"a":1}`, `[{"op":"replace","path":"/b","value":1}]`, ``, true, false},
		{"remove missing", `{"a":1}`, `[{"op":"remove","path":"/b"}]`, ``, true, false},
		{"test numbers by value", `{"a":1.0}`, `[{"op":"test","path":"/a","value":1}]`, `{"a":1.0}`, false, false},
		{"test object member order", `{"a":{"x":1,"y":[true,null]}}`, `[{"op":"test","path":"/a","value":{"y":[true,null],"x":1}}]`, `{"a":{"x":1,"y":[true,null]}}`, false, false},
		{"bad pointer", `{}`, `[{"op":"add","path":"a","value":1}]`, ``, true, true},
		{"bad escape", `{}`, `[{"op":"add","path":"/a~2","value":1}]`, ``, true, true},
		{"unknown op", `{}`, `[{"op":"frob","path":"/a"}]`, ``, true, true},
		{"missing value", `{}`, `[{"op":"add","path":"/a"}]`, ``, true, true},
		{"null value allowed", `{}`, `[{"op":"add","path":"/a","value":null}]`, `{"a":null}`, false, false},
		{"not an array", `{}`, `{"op":"add"}`, ``, true, true},
		{"not json", `{}`, `[`, ``, true, true},
		{"atomic", `{"a":1}`, `[{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":2}]`, ``, true, false},
		{"traverse scalar", `{"a":1}`, `[{"op":"add","path":"/a/b","value":2}]`, ``, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := decodeAny(t, c.doc)
			orig, _ := json.Marshal(doc)
			got, err := ApplyJSONPatch(doc, []byte(c.patch))
			after, _ := json.Marshal(doc)
			if !bytes.Equal(orig, after) {
				t.Fatalf("input document modified: %s -> %s", orig, after)
			}
			if c.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", got)
				}
				var pe *PatchError
				if !errors.As(err, &pe) {
					t.Fatalf("error %T is not *PatchError", err)
				}
				if pe.Malformed != c.malformed {
					t.Fatalf("Malformed = %v, want %v (%v)", pe.Malformed, c.malformed, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !jsonEqual(got, decodeAny(t, c.want)) {
				b, _ := json.Marshal(got)
				t.Fatalf("got %s, want %s", b, c.want)
			}
		})
	}
}

func TestCanonicalDecimal(t *testing.T) {
	eq := [][2]string{{"1", "1.0"}, {"1e2", "100"}, {"-0.5", "-5e-1"}, {"0", "0.000"}, {"120", "1.2E+2"}}
	for _, p := range eq {
		if !numbersEqual(p[0], p[1]) {
			t.Errorf("%s != %s", p[0], p[1])
		}
	}
	ne := [][2]string{{"1", "-1"}, {"1", "10"}, {"0.1", "0.01"}}
	for _, p := range ne {
		if numbersEqual(p[0], p[1]) {
			t.Errorf("%s == %s", p[0], p[1])
		}
	}
}

func FuzzJSONPatch(f *testing.F) {
	f.Add(`{"a":[1,2,{"b":"c"}]}`, `[{"op":"add","path":"/a/-","value":1}]`)
	f.Add(`{"a":1}`, `[{"op":"move","from":"/a","path":"/b"},{"op":"copy","from":"/b","path":"/c"}]`)
	f.Add(`[1,2,3]`, `[{"op":"remove","path":"/1"},{"op":"test","path":"/1","value":3}]`)
	f.Add(`{"~":{"/":1}}`, `[{"op":"replace","path":"/~0/~1","value":{}}]`)
	f.Fuzz(func(t *testing.T, doc, patch string) {
		dec := json.NewDecoder(bytes.NewReader([]byte(doc)))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		before, _ := json.Marshal(v)
		out, err := ApplyJSONPatch(v, []byte(patch))
		after, _ := json.Marshal(v)
		if !bytes.Equal(before, after) {
			t.Fatalf("input modified")
		}
		if err != nil {
			var pe *PatchError
			if !errors.As(err, &pe) {
				t.Fatalf("non-PatchError %T", err)
			}
			return
		}
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("result not marshalable: %v", err)
		}
		// Applying the same patch to the same input is deterministic.
		out2, err := ApplyJSONPatch(v, []byte(patch))
		if err != nil || !jsonEqual(out, out2) {
			t.Fatalf("nondeterministic patch result")
		}
	})
}
